"""RecordedRunner: answers from recorded calls, whole or cut into row chunks, and refuses inputs it never saw."""

import numpy as np
import pytest

from toolkit.errors import InputError
from toolkit.parity.runners.base import Signature, TensorSpec
from toolkit.parity.runners.recorded import RecordedRunner, feed_digest

SIGNATURE = Signature(
    inputs={"x": TensorSpec("x", np.dtype(np.float32), (None, 2)), "t": TensorSpec("t", np.dtype(np.float32), ())},
    outputs={"y": TensorSpec("y", np.dtype(np.float32), (None,)), "mean": TensorSpec("mean", np.dtype(np.float32), ())},
)


def _answer(feed):
    y = feed["x"].sum(axis=1) * feed["t"]
    return {"y": y.astype(np.float32), "mean": np.float32(y.mean())}


def _runner():
    calls = [
        {"x": np.arange(8, dtype=np.float32).reshape(4, 2), "t": np.array(2.0, np.float32)},
        {"x": np.ones((3, 2), np.float32), "t": np.array(0.5, np.float32)},
    ]
    return RecordedRunner("stored:run", SIGNATURE, [(c, _answer(c)) for c in calls], kind="stored").start(), calls


def test_a_recorded_call_is_answered_exactly():
    runner, calls = _runner()
    for call in calls:
        got = runner.infer(call)
        assert got["y"].tolist() == _answer(call)["y"].tolist() and got["mean"] == _answer(call)["mean"]


def test_rows_of_a_recorded_call_are_answered_for_outputs_that_follow_the_batch():
    signature = Signature(inputs=SIGNATURE.inputs, outputs={"y": SIGNATURE.outputs["y"]})
    call = {"x": np.arange(8, dtype=np.float32).reshape(4, 2), "t": np.array(2.0, np.float32)}
    runner = RecordedRunner("stored:run", signature, [(call, {"y": _answer(call)["y"]})]).start()
    chunk = {"x": call["x"][1:3], "t": call["t"]}
    assert runner.infer(chunk)["y"].tolist() == _answer(call)["y"][1:3].tolist()


def test_a_chunk_cannot_be_answered_when_an_output_does_not_follow_the_batch():
    runner, calls = _runner()
    with pytest.raises(InputError, match="output mean does not follow the batch"):
        runner.infer({"x": calls[0]["x"][:2], "t": calls[0]["t"]})


def test_inputs_never_recorded_are_refused():
    runner, calls = _runner()
    with pytest.raises(InputError, match="no recorded answer"):
        runner.infer({"x": calls[0]["x"] + 1, "t": calls[0]["t"]})


def test_digest_tells_apart_bytes_that_numpy_would_strip():
    a = {"s": np.array([b"ab\x00"], dtype=object)}
    b = {"s": np.array([b"ab"], dtype=object)}
    assert feed_digest(a) != feed_digest(b)
