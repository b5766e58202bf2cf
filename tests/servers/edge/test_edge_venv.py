"""The device checker where a device has it: a virtual environment made by scripts/edge-venv (this
repository installed without extras: numpy and LiteRT, no TensorFlow), run on a real export."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from toolkit.artifacts import golden

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def edge_venv(tmp_path_factory) -> Path:
    """DIR made by `scripts/edge-venv DIR` (pip downloads numpy and ai-edge-litert unless cached)."""
    venv = tmp_path_factory.mktemp("edge") / "venv"
    done = subprocess.run([str(ROOT / "scripts" / "edge-venv"), str(venv)], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    return venv


def run(venv: Path, *args, cwd=None) -> subprocess.CompletedProcess:
    """A program of the edge environment; PYTHONPATH unset, so nothing of the host's leaks in."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(
        [str(venv / "bin" / args[0]), *map(str, args[1:])],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=cwd,
    )


def test_tensorflow_is_not_there(edge_venv):
    done = run(edge_venv, "python", "-c", "import tensorflow")
    assert done.returncode == 1 and "No module named 'tensorflow'" in done.stderr
    installed = run(edge_venv, "python", "-m", "pip", "list", "--format=json").stdout
    names = {p["name"].lower() for p in json.loads(installed)}
    assert {"numpy", "ai-edge-litert", "tfkit"} <= names
    assert not names & {"tensorflow", "grpcio", "click", "matplotlib"}


def test_tfkit_there_says_to_install_the_full_toolkit(edge_venv):
    done = run(edge_venv, "tfkit", "--help")
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert "pip install 'tfkit[full]'" in line and "tfkit-edge" in line


def test_the_device_checker_passes_on_a_real_export(edge_venv, exported_version, tmp_path):
    done = run(edge_venv, "tfkit-edge", "check", exported_version, "--report", tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "PASS: 12 runtime(s) agree with golden:savedmodel" in done.stdout
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["passed"] is True and report["reproducibility"]["versions"]["tensorflow"] is None
    assert all(d["device"]["litert"] for d in report["runtime_details"][1:])


def _alter_weights(path: Path) -> None:
    """Add 1 to the largest constant float32 buffer of a TFLite file (the Dense kernel)."""
    from ai_edge_litert import schema_py_generated as schema

    data = bytearray(path.read_bytes())
    model = schema.Model.GetRootAs(data, 0)
    graph = model.Subgraphs(0)
    buffers = [
        model.Buffers(graph.Tensors(k).Buffer()).DataAsNumpy()
        for k in range(graph.TensorsLength())
        if graph.Tensors(k).Type() == schema.TensorType.FLOAT32
    ]
    weights = max((b for b in buffers if isinstance(b, np.ndarray)), key=len)
    weights.view(np.float32)[:] += 1.0  # a view into `data`
    path.write_bytes(bytes(data))


def test_altered_weights_exit_1_naming_the_file_and_output(edge_venv, exported_version, tmp_path):
    version = tmp_path / "1"
    shutil.copytree(exported_version, version)
    _alter_weights(version / "model.tflite")
    done = run(edge_venv, "tfkit-edge", "check", version, "--report", tmp_path / "report")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "golden:savedmodel vs tflite:model.tflite, output logits:" in done.stdout
    assert "golden:savedmodel vs tflite:model.tflite[ref], output probabilities:" in done.stdout
    assert "note: model.tflite changed since export" in done.stdout
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    failed = {c["candidate"] for c in report["comparisons"] if not c["passed"] and c["judged"]}
    assert failed == {"tflite:model.tflite", "tflite:model.tflite[builtin]", "tflite:model.tflite[ref]"}


def test_a_golden_file_of_another_model_exits_2(edge_venv, exported_version, other_golden, tmp_path):
    done = run(edge_venv, "tfkit-edge", "check", exported_version, "--golden", other_golden, "--report", tmp_path / "r")
    assert done.returncode == 2, done.stdout + done.stderr
    (line,) = done.stderr.strip().splitlines()[-1:]
    assert line.startswith("Error: ") and golden.read(other_golden).model["saved_model_sha256"] in line
    assert golden.saved_model_sha256(exported_version) in line and "Traceback" not in done.stderr
    assert json.loads((tmp_path / "r" / "report.json").read_text())["status"] == "error"
