"""`tfkit serve` as a real process, and edge facts of a file that needs Flex ops."""

import json
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest

from toolkit.serve import free_port


def test_serve_pins_a_version_folder_and_answers(foreign_models):
    from toolkit.parity.runners.grpc import GrpcRunner
    from toolkit.parity.runners.rest import RestRunner

    grpc_port, rest_port = free_port(), free_port()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "toolkit",
            "serve",
            str(foreign_models / "scale" / "1"),
            "--port",
            str(grpc_port),
            "--rest-port",
            str(rest_port),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        x = np.ones((2, 3), np.float32)
        # Version 1 of two: the generated config pins it although 2 is the latest.
        with GrpcRunner(f"127.0.0.1:{grpc_port}", "scale", timeout=90) as runner:
            np.testing.assert_array_equal(runner.infer({"x": x})["y"], x * 2)
            assert runner.served_version == 1
        with RestRunner(f"http://127.0.0.1:{rest_port}", "scale", timeout=30) as runner:
            np.testing.assert_array_equal(runner.infer({"x": x})["y"], x * 2)
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
    assert "tfkit: exec" in output and f"--port={grpc_port}" in output


def test_flex_tflite_is_reported_with_its_facts(half_plus_two, tmp_path, tfkit):
    from toolkit.parity.device import model_facts
    from toolkit.tfenv import import_tf

    t = import_tf()
    converter = t.lite.TFLiteConverter.from_saved_model(
        str(half_plus_two / "00000123"), signature_keys=["classify_x_to_y"]
    )
    converter.target_spec.supported_ops = [t.lite.OpsSet.TFLITE_BUILTINS, t.lite.OpsSet.SELECT_TF_OPS]
    path = tmp_path / "flex.tflite"
    path.write_bytes(converter.convert())
    facts = model_facts(path)
    assert facts["needs_flex"] and facts["flex_ops"] == ["FlexParseExampleV2"]
    assert facts["size_bytes"] == path.stat().st_size and facts["quantization"] == "float32"
    result = tfkit("check", half_plus_two, "--tflite", path, "--no-server", "--report", tmp_path / "r")
    assert result.exit_code == 1, result.output
    assert "tflite:flex.tflite needs the Flex delegate (ops FlexParseExampleV2)" in result.output
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["edge"][0]["needs_flex"] and not report["passed"]


@pytest.mark.skipif(
    shutil.which("tensorflow_model_server") is None,
    reason="the real tensorflow_model_server binary is not installed on this machine",
)
def test_check_against_the_real_binary(tfkit, half_plus_two):
    result = tfkit(
        "check",
        half_plus_two,
        "--server-binary",
        shutil.which("tensorflow_model_server"),
        "--timeout",
        120,
        "--no-convert",
    )
    assert result.exit_code == 0, result.output
