"""Feeds (generated, .npz, literals, tfkit's held-out split with boundary cases)
and the runners' shared validation and request chunking."""

import numpy as np
import pytest

from toolkit.errors import InputError
from toolkit.parity.inputs import generated_feeds, literal_feed, npz_feeds, tfkit_feeds
from toolkit.parity.runners.base import Signature, TensorSpec


def sig(**inputs):
    return Signature({n: TensorSpec(n, np.dtype(d), s) for n, (d, s) in inputs.items()}, {})


def test_generated_feeds_follow_dtypes_shapes_seed_and_range():
    signature = sig(a=("float32", (None, 4)), b=("int32", (None, 2, 2)))
    one = generated_feeds(signature, samples=10, seed=1, value_range=(-3, 3))
    again = generated_feeds(signature, samples=10, seed=1, value_range=(-3, 3))
    other = generated_feeds(signature, samples=10, seed=2, value_range=(-3, 3))
    call = one.feeds[0].calls[0]
    assert call["a"].shape == (10, 4) and call["a"].dtype == np.float32 and call["b"].shape == (10, 2, 2)
    assert call["a"].min() >= -3 and call["a"].max() <= 3 and set(np.unique(call["b"])) <= set(range(-3, 4))
    assert one.sha256() == again.sha256() != other.sha256()
    assert [f.name for f in one.feeds] == ["generated", "zeros", "batch of 1"]


def test_static_signature_gets_one_call_per_sample():
    inputs = generated_feeds(sig(x=("float32", (1,))), samples=5)
    assert len(inputs.feeds[0].calls) == 5 and inputs.feeds[0].calls[0]["x"].shape == (1,)
    assert not inputs.feeds[0].batched


@pytest.mark.parametrize(
    "spec, message",
    [
        (("object", (None,)), "string tensor .* pass --inputs FILE \\(.npz with an array named 'x'"),
        (("float32", None), "unknown rank"),
        (("float32", (None, None)), "dynamic inner dimensions"),
    ],
)
def test_generator_says_what_to_pass(spec, message):
    with pytest.raises(InputError, match=message):
        generated_feeds(sig(x=spec))


def test_npz_feeds(tmp_path):
    signature = sig(a=("float32", (None, 2)), b=("int64", (None,)))
    np.savez(tmp_path / "in.npz", a=np.ones((3, 2)), b=np.arange(3))
    inputs = npz_feeds(tmp_path / "in.npz", signature)
    assert inputs.rows == 3 and inputs.feeds[0].calls[0]["a"].dtype == np.float32
    np.savez(tmp_path / "bad.npz", a=np.ones((3, 2)))
    with pytest.raises(InputError, match="lacks array\\(s\\) b .*it has: a"):
        npz_feeds(tmp_path / "bad.npz", signature)


def test_literal_feed():
    signature = sig(features=("float32", (None, 2)))
    assert literal_feed(signature, csv_text="1,2;3,4")["features"].tolist() == [[1, 2], [3, 4]]
    assert literal_feed(signature, json_text='{"features": [[1, 2]]}')["features"].dtype == np.float32
    with pytest.raises(InputError, match="unknown input"):
        literal_feed(signature, json_text='{"x": [[1, 2]]}')


def test_tfkit_feeds_place_boundary_cases_on_the_trained_model(exported_version):
    from toolkit.parity.runners.eager import EagerRunner

    with EagerRunner(exported_version) as reference:
        features = np.load(exported_version / "assets.extra" / "heldout.npz")["features"]
        inputs = tfkit_feeds(features, reference.signature, reference)
        feeds = {f.name: f.calls[0]["features"] for f in inputs.feeds}
        assert feeds["heldout"].shape == features.shape
        boundary = reference.infer({"features": feeds["on the decision boundary"]})["logits"]
        saturated = reference.infer({"features": feeds["saturated (logit ~ +/-40)"]})["probabilities"]
    assert np.abs(boundary).max() < 1e-4
    assert set(np.round(saturated.ravel(), 6)) == {0.0, 1.0}
    assert feeds["batch of 1"].shape == (1, 2) and not feeds["zeros"].any()
    assert feeds["empty batch"].shape == (0, 2)
    outside = {f.name for f in inputs.feeds if not f.in_distribution}
    assert outside == {"saturated (logit ~ +/-40)", "large magnitude x1e3", "large magnitude x1e6"}


def test_every_runtime_rejects_a_bad_feed_the_same_way(exported_version, foreign_models, server):
    from toolkit.parity.runners.eager import EagerRunner
    from toolkit.parity.runners.grpc import GrpcRunner
    from toolkit.parity.runners.tflite import TFLiteRunner

    bad = {"x": np.ones((2, 4), np.float64)}
    runners = [EagerRunner(foreign_models / "scale" / "2"), GrpcRunner(server.grpc_target, "scale")]
    messages = []
    for runner in runners:
        with runner:
            with pytest.raises(InputError) as error:
                runner.infer(bad)
            messages.append(str(error.value).split(": ", 1)[1])
    assert (
        messages[0]
        == messages[1]
        == ("input x has dtype float64, expected float32; input x has shape [2, 4], expected float32[?,3]")
    )
    with TFLiteRunner(exported_version / "model.tflite") as lite, pytest.raises(InputError, match="missing input"):
        lite.infer(bad)


def test_grpc_requests_are_chunked_under_the_message_limit(foreign_models, server):
    from toolkit.parity.runners.grpc import GrpcRunner

    x = np.arange(300, dtype=np.float32).reshape(100, 3)
    with GrpcRunner(server.grpc_target, "scale") as runner:
        whole = runner.infer({"x": x})
        runner.message_limit = 200  # 12 bytes a row: 15 rows per request
        assert runner.max_rows({"x": x}) == 15
        calls = []
        inner = runner._infer
        runner._infer = lambda feed: calls.append(len(feed["x"])) or inner(feed)
        chunked = runner.infer({"x": x})
    assert calls == [15] * 6 + [10]
    np.testing.assert_array_equal(whole["y"], chunked["y"])
    np.testing.assert_array_equal(whole["y"], x * 3)
