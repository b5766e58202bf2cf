"""A config file edited into an invalid one, and exports killed with SIGKILL part-way."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from toolkit.artifacts.export import export_model
from toolkit.serve import LocalServer

from reliability_helpers import MODEL, predict
from support import wait_for

FEATURES = np.array([[0.5, -1.0], [2.0, 3.0]], dtype=np.float32)
VALID_CONFIG = """model_config_list {{
  config {{ name: "{name}" base_path: "{path}" model_platform: "tensorflow" }}
}}
"""


@pytest.mark.parametrize(
    "broken, log_marker",
    [
        ("model_config_list { config { name: ", "Failed to read ModelServerConfig file"),
        (
            'model_config_list { config { name: "logreg" base_path: "relative/path" model_platform: "tensorflow" } }',
            "PollFilesystemAndReloadConfig failed",
        ),
    ],
    ids=["unparseable", "relative base path"],
)
def test_config_edited_into_invalid_keeps_the_previous_one(exported_model, reference, tmp_path, broken, log_marker):
    config = tmp_path / "models.config"
    config.write_text(VALID_CONFIG.format(name=MODEL, path=exported_model / MODEL))
    args = [f"--model_config_file={config}", "--model_config_file_poll_wait_seconds=1"]
    with LocalServer(args, timeout=120) as server:
        config.write_text(broken)

        def refusals():
            return [ln for ln in server.log_lines() if log_marker in ln]

        line = wait_for(refusals, what=f"{log_marker!r} in the server log")[0]
        assert " E " in line or "error" in line.lower()
        if "read" in log_marker:
            assert str(config) in line
        # Every poll refuses the file again: a second refusal is a later poll.
        wait_for(lambda: len(refusals()) >= 2, what=f"a second {log_marker!r} in the server log")
        version, outputs = predict(server.grpc_target, FEATURES[:, : reference.num_features])
        assert reference.mismatch(version, FEATURES[:, : reference.num_features], outputs) is None
        assert server.process.poll() is None
        assert not any("Traceback" in ln for ln in server.log_lines())


def _staging(model_dir):
    return [p for p in model_dir.iterdir() if p.name.startswith(".tmp-")] if model_dir.is_dir() else []


def _published(model_dir):
    return sorted(p.name for p in model_dir.iterdir() if p.name.isdigit()) if model_dir.is_dir() else []


# Points to kill at: the staging folder appearing, the SavedModel written, the TFLite file written.
KILL_POINTS = {
    "staging folder created": lambda staging: True,
    "SavedModel written": lambda staging: (staging / "variables" / "variables.index").exists(),
    "TFLite written": lambda staging: (staging / "model.tflite").exists(),
}


def test_export_killed_at_any_point_leaves_no_visible_version(trained_run, tmp_path):
    base = tmp_path / "models"
    model_dir = base / MODEL
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    killed_at = []
    for point, reached in KILL_POINTS.items():
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "toolkit",
                "export",
                str(trained_run),
                "--model-base-path",
                str(base),
                "--name",
                MODEL,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        try:
            deadline = time.monotonic() + 120
            while proc.poll() is None and time.monotonic() < deadline:
                staging = _staging(model_dir)
                if any(reached(s) for s in staging):
                    proc.send_signal(signal.SIGKILL)
                    killed_at.append(point)
                    break
                # A version folder must never be visible while the export runs.
                assert _published(model_dir) == [], f"version visible before the export finished ({point})"
                time.sleep(0.005)  # pacing the watch on the export's staging folder
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        assert _published(model_dir) == [], f"a partial version is visible after SIGKILL at {point}"
    assert killed_at == list(KILL_POINTS), f"the export finished before some kill points: {killed_at}"
    # Leftover staging folders are invisible to servers and do not disturb the next export.
    assert _staging(model_dir)
    version_dir = export_model(trained_run, base, MODEL)
    assert version_dir.name == "1" and _published(model_dir) == ["1"]
    assert (version_dir / "saved_model.pb").is_file() and (version_dir / "manifest.json").is_file()
