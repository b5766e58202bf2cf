"""Golden files: the format round-trips losslessly, refuses what is truncated, corrupt or of
another format with one line naming the file, and its runtimes answer as recorded."""

import json

import numpy as np
import pytest

from toolkit.artifacts import golden
from toolkit.errors import InputError
from toolkit.parity import stored
from toolkit.policies import default_policies, policies_from_json, policies_json

INPUTS = {"x": {"dtype": "float32", "shape": [-1, 2]}, "s": {"dtype": "string", "shape": [-1]}}
OUTPUTS = {"y": {"dtype": "float32", "shape": [-1]}, "tag": {"dtype": "string", "shape": [-1]}}


def _call(rows: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    # Trailing zero bytes: numpy's 'S' arrays would drop them.
    return {
        "x": rng.normal(size=(rows, 2)).astype(np.float32),
        "s": np.array([b"ab\x00"] * rows, dtype=object).reshape(rows),
    }


def _outputs(call: dict) -> dict:
    return {"y": call["x"].sum(axis=1), "tag": np.array([v + b"\x00" for v in call["s"]], dtype=object)}


@pytest.fixture
def written(tmp_path):
    feeds = [
        golden.GoldenFeed("rows", [_call(5, 0), _call(3, 1)]),
        golden.GoldenFeed("empty batch", [_call(0, 2)], batched=False, in_distribution=False),
    ]
    calls = [c for f in feeds for c in f.calls]
    record = golden.Golden(
        "serving_default",
        INPUTS,
        OUTPUTS,
        feeds,
        [golden.GoldenRuntime("savedmodel", "savedmodel", "float", [_outputs(c) for c in calls])],
        reference="savedmodel",
        model={"name": "m", "version": 1, "saved_model_sha256": "ab" * 32},
        policies=policies_json(default_policies()),
        environment=golden.environment(),
    )
    return golden.write(record, tmp_path / "g" / "serving_default.json"), calls


def test_a_golden_file_round_trips_bytes_and_empty_batches(written):
    path, calls = written
    read = golden.read(path)
    assert [f.name for f in read.feeds] == ["rows", "empty batch"]
    assert [len(f.calls) for f in read.feeds] == [2, 1] and read.feeds[1].in_distribution is False
    for got, want in zip(read.calls, calls, strict=True):
        assert got["x"].tobytes() == want["x"].tobytes() and got["x"].dtype == np.float32
        assert got["s"].tolist() == want["s"].tolist()  # b"ab\x00" kept whole
    (runtime,) = read.runtimes
    assert runtime.outputs[0]["tag"].tolist() == [b"ab\x00\x00"] * 5
    assert runtime.outputs[2]["y"].shape == (0,)
    # The .npz beside it reads the same.
    assert golden.read(path.with_suffix(".npz")).model["saved_model_sha256"] == "ab" * 32


def test_recorded_runtimes_answer_the_recorded_calls(written):
    path, calls = written
    ((runner, policy),) = stored.recorded_runtimes([stored.read(path)])
    assert runner.name == "golden:savedmodel" and policy == "float"
    with runner:
        assert runner.infer(calls[1])["y"].tolist() == _outputs(calls[1])["y"].tolist()
    feeds = stored.inputs_of(stored.read(path)).feeds
    assert feeds[0].row_inputs == ("s", "x") and feeds[1].batched is False


def test_a_truncated_arrays_file_is_refused_naming_it(written):
    path, _ = written
    npz = path.with_suffix(".npz")
    npz.write_bytes(npz.read_bytes()[:200])
    with pytest.raises(InputError, match=r"golden file .*serving_default\.npz is corrupt or truncated"):
        golden.read(path)


def test_a_corrupt_json_is_refused_naming_it(written):
    path, _ = written
    path.write_text(path.read_text()[:100])
    with pytest.raises(InputError, match=r"golden file .*serving_default\.json is corrupt or truncated"):
        golden.read(path)


def test_a_missing_arrays_file_and_another_format_are_refused(written, tmp_path):
    path, _ = written
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"status": "pass"}))
    with pytest.raises(InputError, match="is not a tfkit golden file"):
        golden.read(other)
    path.with_suffix(".npz").unlink()
    with pytest.raises(InputError, match="its arrays file .* is missing; copy both files"):
        golden.read(path)


def test_a_report_that_saved_no_outputs_says_how_to_save_them(tmp_path):
    (tmp_path / "report.json").write_text(json.dumps({"schema_version": 2, "saved_outputs": None}))
    with pytest.raises(InputError, match="this report saved no outputs; run the check again with --save-outputs"):
        stored.read(tmp_path)


def test_policies_round_trip_through_json():
    policies = default_policies(atol={"y": 1e-3}, quantized_atol=0.2)
    back = policies_from_json(json.loads(json.dumps(policies_json(policies))))
    assert back == policies


def test_saved_model_hash_covers_variables_and_names_them(tmp_path):
    (tmp_path / "variables").mkdir()
    (tmp_path / "saved_model.pb").write_bytes(b"graph")
    (tmp_path / "variables" / "variables.index").write_bytes(b"w1")
    first = golden.saved_model_sha256(tmp_path)
    (tmp_path / "assets.extra").mkdir()
    (tmp_path / "assets.extra" / "note").write_text("not part of the model")
    assert golden.saved_model_sha256(tmp_path) == first
    (tmp_path / "variables" / "variables.index").write_bytes(b"w2")
    assert golden.saved_model_sha256(tmp_path) != first
    assert golden.saved_model_sha256(tmp_path / "variables") is None
