"""`tfkit check` with its local model server (a real process on ephemeral ports)
on inputs unlike tfkit's: rank-0 inputs and serialized tf.Example strings that
end in a zero byte, which must round-trip gRPC and REST unchanged."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from input_models import (
    predict_log,
    save_default_scale_model,
    save_example_model,
    save_lossless_npz,
    save_temperature_model,
    serialized_examples,
    write_prediction_log,
)
from support import tflite_runtimes


def tfkit(*args):
    from toolkit.cli import cli

    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    base = tmp_path_factory.mktemp("foreign_inputs")
    return {
        "temperature": save_temperature_model(base / "temperature" / "1"),
        "default": save_default_scale_model(base / "default" / "1"),
        "examples": save_example_model(base / "examples" / "1"),
    }


def judged(report_dir) -> dict:
    """{candidate: passed} over every comparison in report.json."""
    report = json.loads((report_dir / "report.json").read_text())
    verdicts = {}
    for c in report["comparisons"]:
        verdicts[c["candidate"]] = verdicts.get(c["candidate"], True) and c["passed"]
    return verdicts


@pytest.mark.parametrize("name", ["temperature", "default"])
def test_rank0_inputs_round_trip_grpc_and_rest(models, tmp_path, name):
    result = tfkit("check", models[name], "--report", tmp_path)
    assert result.exit_code == 0, result.output
    assert judged(tmp_path) == dict.fromkeys(tflite_runtimes("converted.tflite") | {"grpc", "rest"}, True)


@pytest.fixture(scope="module")
def example_files(tmp_path_factory):
    """The same six tf.Examples (each ending in b"\\x00") as a PredictionLog TFRecord
    (three requests of two) and as a lossless .npz."""
    folder = tmp_path_factory.mktemp("example_inputs")
    examples = serialized_examples(6, seed=1)
    logs = [predict_log({"examples": np.array(examples[i : i + 2], dtype=object)}) for i in range(0, 6, 2)]
    return {
        "tfrecord": write_prediction_log(folder / "requests.tfrecord", logs),
        "npz": save_lossless_npz(folder / "examples.npz", "examples", examples),
    }


@pytest.mark.parametrize("form", ["tfrecord", "npz"])
def test_examples_ending_in_a_zero_byte_are_fed_whole(models, example_files, tmp_path, form):
    # parse_example needs Flex ops, which LiteRT lacks: the servers are the candidates.
    result = tfkit("check", models["examples"], "--inputs", example_files[form], "--no-convert", "--report", tmp_path)
    assert result.exit_code == 0, result.output
    assert judged(tmp_path) == {"grpc": True, "rest": True}
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["inputs"]["rows"] == 6
