"""`tfkit check --no-server` on models with rank-0 inputs: a scalar temperature
beside a batch input, and a TF1 input with a default value."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from input_models import save_default_scale_model, save_temperature_model
from support import tflite_runtimes


def tfkit(*args):
    from toolkit.cli import cli

    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def rank0_models(tmp_path_factory):
    base = tmp_path_factory.mktemp("rank0")
    return {
        "temperature": save_temperature_model(base / "temperature" / "1"),
        "default": save_default_scale_model(base / "default" / "1"),
    }


@pytest.mark.parametrize("name, scalar", [("temperature", "temperature"), ("default", "scale")])
def test_check_runs_and_passes_with_a_rank0_input(rank0_models, tmp_path, name, scalar):
    result = tfkit("check", rank0_models[name], "--no-server", "--report", tmp_path)
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "report.json").read_text())
    assert {c["candidate"] for c in report["comparisons"]} == tflite_runtimes("converted.tflite")
    assert all(c["passed"] for c in report["comparisons"])
    # Batch invariance re-ran single rows, each with the scalar whole.
    assert any(b["runtime"] == "eager" for b in report["batch_invariance"])
    assert f"{scalar} float32 uniform in [-1, 1]" in result.output


def test_check_reads_a_rank0_array_from_npz(rank0_models, tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "in.npz", x=rng.uniform(-1, 1, (7, 4)).astype(np.float32), temperature=np.float32(0.25))
    result = tfkit(
        "check",
        rank0_models["temperature"],
        "--no-server",
        "--inputs",
        tmp_path / "in.npz",
        "--report",
        tmp_path / "report",
    )
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["inputs"]["rows"] == 7 and report["inputs"]["source"] == f"npz:{tmp_path / 'in.npz'}"
