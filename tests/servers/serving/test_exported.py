"""A model exported by `tfkit export` served by `python -m serving`: warmup replayed
at load, Predict/Classify/Regress equal to the SavedModel called eagerly, any
batch size, and the gRPC API on a UNIX socket as well as TCP."""

import json

import grpc
import numpy as np
import pytest
import tensorflow as tf

from toolkit.training.model import make_example

from serving_helpers import Client, rpc_error


@pytest.fixture(scope="module")
def client(logreg_server, client_of):
    return client_of(logreg_server)


@pytest.fixture(scope="module")
def reference(exported_version):
    loaded = tf.saved_model.load(str(exported_version))
    heldout = np.load(exported_version / "assets.extra" / "heldout.npz")["features"]
    names = json.loads((exported_version / "manifest.json").read_text())["feature_names"]
    return loaded, heldout.astype(np.float32), names


def test_warmup_requests_replayed_at_load(logreg_server):
    lines = [line for line in logreg_server.log_lines() if "Finished reading warmup data" in line]
    assert len(lines) == 1
    count = int(lines[0].split("Number of warmup records read: ")[1].split(".")[0])
    assert count > 0


def test_predict_equals_eager_savedmodel(client, reference):
    loaded, heldout, _ = reference
    expected = {k: v.numpy() for k, v in loaded.signatures["serving_default"](features=tf.constant(heldout)).items()}
    got = client.predict("logreg", {"features": heldout})
    assert set(got) == {"probabilities", "logits", "classes"}
    for key, value in expected.items():
        assert got[key].dtype == value.dtype
        np.testing.assert_allclose(got[key], value, rtol=1e-6, atol=1e-7)


def test_batch_sizes(client, reference):
    _, heldout, _ = reference
    for n in (1, 10000, 0):
        batch = np.resize(heldout, (n, heldout.shape[1])).astype(np.float32)
        assert client.predict("logreg", {"features": batch})["probabilities"].shape == (n, 1)


def test_classify_and_regress_match_predict(client, reference):
    _, heldout, names = reference
    rows = heldout[:5]
    probabilities = client.predict("logreg", {"features": rows})["probabilities"].ravel()
    examples = [tf.train.Example.FromString(make_example(r, names)) for r in rows]
    request_rows = [{k: list(f.float_list.value) for k, f in e.features.feature.items()} for e in examples]
    classified = client.classify("logreg", "classify", request_rows).result.classifications
    np.testing.assert_allclose([c.classes[1].score for c in classified], probabilities, rtol=1e-6)
    assert len(classified[0].classes) == 2
    regressed = client.regress("logreg", "regress", request_rows).result.regressions
    np.testing.assert_allclose([r.value for r in regressed], probabilities, rtol=1e-6)


def test_unix_socket(logreg_server, logreg_socket, reference):
    _, heldout, _ = reference
    with grpc.insecure_channel(f"unix:{logreg_socket}") as channel:
        got = Client(channel).predict("logreg", {"features": heldout[:3]})
    assert got["probabilities"].shape == (3, 1)


def test_wrong_shapes_are_invalid_argument(client, reference):
    _, heldout, _ = reference
    wide = np.concatenate([heldout[:3], heldout[:3, :1]], axis=1)  # one feature too many
    for bad in (wide, heldout[0]):  # and a rank-1 tensor
        error = rpc_error(client.predict, "logreg", {"features": bad})
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
