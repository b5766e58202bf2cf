"""Servers shared across the tests that start servers.

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
    args = ["--model_name=logreg", f"--model_base_path={exported_model / 'logreg'}",
            f"--grpc_socket_path={logreg_socket}"]
    with LocalServer(args, rest=True, timeout=120) as server:
        yield server
