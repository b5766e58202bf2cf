"""Servers shared across the tests that start servers, and `other_golden`, a golden file of another
model than the session's export.

`logreg_server` is `python -m serving` on the session's export (tests/conftest.py),
logreg version 1 only, over gRPC (127.0.0.1 and the UNIX socket `logreg_socket`)
and REST. Tests only read from it: the exported-model tests, the reliability
soak and fuzz (which check it still answers correctly afterwards) and the deploy
tests, as the replica that never received version 2.
"""

import pytest

from toolkit.serve import LocalServer


@pytest.fixture(scope="session")
def logreg_socket(tmp_path_factory):
    """The UNIX socket path `logreg_server` also serves gRPC on."""
    return tmp_path_factory.mktemp("sock") / "grpc.sock"


@pytest.fixture(scope="session")
def logreg_server(exported_model, logreg_socket):
    args = [
        "--model_name=logreg",
        f"--model_base_path={exported_model / 'logreg'}",
        f"--grpc_socket_path={logreg_socket}",
    ]
    with LocalServer(args, rest=True, timeout=120) as server:
        yield server


@pytest.fixture(scope="session")
def other_golden(tmp_path_factory):
    """A golden file written for another SavedModel (y = 2x)."""
    import numpy as np

    from toolkit.artifacts.golden import GoldenFeed
    from toolkit.artifacts.golden_writer import write_golden
    from toolkit.tfenv import import_tf

    tf = import_tf()

    class Double(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32, name="features")])
        def serve(self, features):
            return {"y": features * 2.0}

    folder = tmp_path_factory.mktemp("other_model") / "1"
    module = Double()
    tf.saved_model.save(module, str(folder), signatures={"serving_default": module.serve})
    return write_golden(folder, [GoldenFeed("rows", [{"features": np.ones((3, 2), np.float32)}])])
