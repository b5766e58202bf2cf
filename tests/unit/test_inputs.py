"""Feeds of a check for inputs unlike tfkit's: per-dtype generated ranges,
rank-0 inputs, bytes that end in a zero byte (.npz and PredictionLog TFRecords)."""

import numpy as np
import pytest

from toolkit.errors import InputError
from toolkit.parity.inputs import file_feeds, generated_feeds
from toolkit.parity.runners.base import Runner, Signature, TensorSpec, feed_rows, take_rows

from input_models import predict_log, save_lossless_npz, serialized_examples, write_prediction_log


def sig(**inputs):
    return Signature({n: TensorSpec(n, np.dtype(d), s) for n, (d, s) in inputs.items()}, {})


def test_generated_values_get_a_range_per_dtype_and_the_note_names_it():
    signature = sig(
        f=("float32", (None, 3)),
        pixels=("uint8", (None, 8)),
        small=("int8", (None, 8)),
        ids=("int64", (None, 2)),
        mask=("bool", (None, 2)),
    )
    inputs = generated_feeds(signature, samples=256)
    call = inputs.feeds[0].calls[0]
    assert -1 <= call["f"].min() < -0.9 and 0.9 < call["f"].max() <= 1
    # uint8 spans 0..255 (not only 0 and 1); int8 its signed range; wide integers small non-negative ids.
    assert call["pixels"].min() < 10 and call["pixels"].max() > 245
    assert call["small"].min() < -118 and call["small"].max() > 117
    assert set(np.unique(call["ids"])) == set(range(10))
    assert call["mask"].dtype == bool and set(np.unique(call["mask"])) == {False, True}
    (note,) = inputs.notes
    for part in (
        "f float32 uniform in [-1, 1]",
        "pixels uint8 integers in [0, 255]",
        "small int8 integers in [-128, 127]",
        "ids int64 integers in [0, 9]",
        "mask bool False/True",
        "--value-range LOW HIGH or --inputs FILE",
    ):
        assert part in note


def test_value_range_overrides_every_numeric_dtype():
    signature = sig(f=("float32", (None, 3)), pixels=("uint8", (None, 8)), ids=("int64", (None, 2)))
    inputs = generated_feeds(signature, samples=64, value_range=(-3, 3))
    call = inputs.feeds[0].calls[0]
    assert call["f"].min() >= -3 and call["f"].max() <= 3 and call["f"].min() < -2
    assert set(np.unique(call["pixels"])) == {0, 1, 2, 3} and set(np.unique(call["ids"])) == set(range(-3, 4))
    assert "pixels uint8 integers in [0, 3]" in inputs.notes[0]
    with pytest.raises(InputError, match="holds no uint8 value for input pixels"):
        generated_feeds(signature, value_range=(-3, -1))


def test_a_rank0_input_gets_one_scalar_per_call_beside_the_batch():
    signature = sig(x=("float32", (None, 4)), temperature=("float32", ()))
    inputs = generated_feeds(signature, samples=10)
    assert [f.name for f in inputs.feeds] == ["generated", "zeros", "batch of 1"]
    for feed in inputs.feeds:
        (call,) = feed.calls
        assert isinstance(call["temperature"], np.ndarray) and call["temperature"].shape == ()
        assert feed.row_inputs == ("x",)
    assert inputs.feeds[0].calls[0]["x"].shape == (10, 4) and inputs.rows == 12


def test_splitting_a_call_keeps_scalars_whole():
    call = {"x": np.arange(10, dtype=np.float32).reshape(5, 2), "t": np.array(3.0, np.float32)}
    assert feed_rows(call, ("x",)) == 5
    part = take_rows(call, ("x",), 1, 3)
    assert part["x"].tolist() == [[2, 3], [4, 5]] and part["t"].shape == () and part["t"] == 3

    class Recording(Runner):
        def __init__(self):
            super().__init__("recording")
            self.seen = []

        def _start(self):
            return sig(x=("float32", (None, 2)), t=("float32", ()))

        def max_rows(self, feed):
            return 2

        def _infer(self, feed):
            self.seen.append(feed)
            return {"y": feed["x"].sum(1) * feed["t"]}

    with Recording() as runner:
        out = runner.infer(call)
    assert [len(f["x"]) for f in runner.seen] == [2, 2, 1] and all(f["t"].shape == () for f in runner.seen)
    np.testing.assert_array_equal(out["y"], call["x"].sum(1) * 3)


def test_check_splits_calls_with_scalars_whole():
    from toolkit.parity.verdict import uniform_calls

    signature = sig(x=("float32", (None, 2)), t=("float32", ()))
    inputs = generated_feeds(signature, samples=5)

    class Limited:
        def max_rows(self, call):
            return 2

    calls = uniform_calls(inputs, [Limited()], max_batch=None)
    generated = [call for feed, call in calls if feed.name == "generated"]
    assert [len(c["x"]) for c in generated] == [2, 2, 1]
    assert all(c["t"] == inputs.feeds[0].calls[0]["t"] for c in generated)


def test_npz_with_a_rank0_array(tmp_path):
    signature = sig(x=("float32", (None, 4)), temperature=("float32", ()))
    np.savez(tmp_path / "in.npz", x=np.ones((5, 4)), temperature=np.float64(0.5))
    inputs = file_feeds(tmp_path / "in.npz", signature)
    (call,) = inputs.feeds[0].calls
    assert call["temperature"].shape == () and call["temperature"].dtype == np.float32 and inputs.rows == 5


def test_npz_for_a_fixed_shape_signature_stacks_samples_and_keeps_scalars_whole(tmp_path):
    signature = sig(a=("float32", (3,)), t=("int32", ()))
    np.savez(tmp_path / "in.npz", a=np.arange(12).reshape(4, 3), t=np.int32(7))
    calls = file_feeds(tmp_path / "in.npz", signature).feeds[0].calls
    assert len(calls) == 4 and calls[1]["a"].tolist() == [3, 4, 5] and all(c["t"] == 7 for c in calls)
    np.savez(tmp_path / "bad.npz", a=np.ones((4, 2)), t=np.int32(7))
    with pytest.raises(InputError, match="fit neither their input's shape nor a stack of samples"):
        file_feeds(tmp_path / "bad.npz", signature)


def test_npz_keeps_bytes_that_end_in_zero_bytes(tmp_path):
    values = [*serialized_examples(3), b"", b"\x00\x00"]
    signature = sig(examples=("object", (None,)))
    inputs = file_feeds(save_lossless_npz(tmp_path / "in.npz", "examples", values), signature)
    (call,) = inputs.feeds[0].calls
    assert call["examples"].dtype == object and call["examples"].tolist() == values
    # The lengths array gives the input's shape, here [2, 2] from a [?, 2] input.
    signature = sig(pairs=("object", (None, 2)))
    np.savez(
        tmp_path / "pairs.npz",
        **{"pairs.bytes": np.frombuffer(b"ab\x00c\x00", np.uint8), "pairs.lengths": np.array([[3, 0], [1, 1]])},
    )
    assert file_feeds(tmp_path / "pairs.npz", signature).feeds[0].calls[0]["pairs"].tolist() == [
        [b"ab\x00", b""],
        [b"c", b"\x00"],
    ]
    np.savez(tmp_path / "short.npz", **{"pairs.bytes": np.zeros(4, np.uint8), "pairs.lengths": np.array([[3, 0]])})
    with pytest.raises(InputError, match="the lengths add up to 3 bytes, the data holds 4"):
        file_feeds(tmp_path / "short.npz", signature)


def test_an_S_array_that_lost_zero_bytes_is_refused_with_the_lossless_forms(tmp_path):
    signature = sig(examples=("object", (None,)))
    np.savez(tmp_path / "cut.npz", examples=np.array(serialized_examples(3)))  # all end in b"\x00": all cut
    with pytest.raises(InputError, match=r"lost trailing zero bytes.*examples\.bytes .*PredictionLogs"):
        file_feeds(tmp_path / "cut.npz", signature)
    # Shorter binary values may have lost some: fed, with a note naming the lossless forms.
    values = [*serialized_examples(2), b"\x01" + b"the longest value, not cut" * 2]
    np.savez(tmp_path / "maybe.npz", examples=np.array(values))
    inputs = file_feeds(tmp_path / "maybe.npz", signature)
    assert inputs.feeds[0].calls[0]["examples"].tolist() == [v.rstrip(b"\x00") for v in values]
    (note,) = inputs.notes
    assert "drops trailing zero bytes" in note and "examples.bytes" in note
    np.savez(tmp_path / "text.npz", examples=np.array([b"a", b"text value"]))  # text: nothing to say
    assert file_feeds(tmp_path / "text.npz", signature).notes == []


def test_prediction_log_tfrecord_replays_each_predict_request(tmp_path):
    from tensorflow_serving.apis import prediction_log_pb2

    examples = serialized_examples(5)
    signature = sig(examples=("object", (None,)), temperature=("float32", ()))
    logs = [
        predict_log({"examples": np.array(examples[:2], object), "temperature": np.float32(0.5)}),
        predict_log({"examples": np.array(examples[2:], object), "temperature": np.float32(2)}, "serving_default"),
        predict_log({"examples": np.array(examples[:1], object)}, "other"),
        prediction_log_pb2.PredictionLog(classify_log=prediction_log_pb2.ClassifyLog()),
    ]
    # A warmup file has no suffix: the format is read from the content.
    inputs = file_feeds(write_prediction_log(tmp_path / "tf_serving_warmup_requests", logs), signature)
    (feed,) = inputs.feeds
    assert [c["examples"].tolist() for c in feed.calls] == [examples[:2], examples[2:]]
    assert [c["temperature"].tolist() for c in feed.calls] == [0.5, 2.0] and feed.rows == 5
    assert inputs.notes == [
        f"--inputs {tmp_path / 'tf_serving_warmup_requests'}: skipped "
        "1 requests for signature 'other'; "
        "1 Classify requests (the signature has no single string input to take tf.Examples)"
    ]
    assert inputs.logged is None  # a warmup file logs no responses
    with pytest.raises(InputError, match="no logged request for signature 'nope'"):
        file_feeds(tmp_path / "tf_serving_warmup_requests", signature, "nope")
    write_prediction_log(tmp_path / "partial", logs[2:3])
    with pytest.raises(InputError, match="partial: record 0 lacks input\\(s\\) temperature"):
        file_feeds(tmp_path / "partial", signature, "other")


def test_a_file_that_is_neither_npz_nor_tfrecord_says_so(tmp_path):
    (tmp_path / "junk.bin").write_bytes(b"\x01\x02 not a record at all" * 3)
    with pytest.raises(InputError, match="neither an .npz nor a TFRecord file of PredictionLogs"):
        file_feeds(tmp_path / "junk.bin", sig(x=("float32", (None, 1))))
