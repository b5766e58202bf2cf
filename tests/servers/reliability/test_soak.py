"""Bounded load: a short soak in the suite, and proof that the soak can fail."""

import os
import subprocess
import sys

import numpy as np

from reliability.reference import ModelReference
from reliability.soak import run_soak
from reliability.traffic import KINDS

from reliability_helpers import MODEL


def test_short_soak_keeps_every_promise(logreg_server, reference):
    result = run_soak(
        logreg_server.grpc_target,
        logreg_server.rest_url,
        MODEL,
        reference,
        duration_s=10,
        clients=16,
        server_pid=logreg_server.process.pid,
        warmup_s=3,
    )
    print(result.summary())
    assert result.broken() == [], result.summary()
    assert set(result.per_kind) == set(KINDS)
    assert all(n >= 20 for n, _ in result.per_kind.values()), result.per_kind
    assert result.versions_seen == [1]
    assert result.rss_start and result.rss_end and result.p99_ms >= result.p50_ms > 0


def test_soak_reports_wrong_answers(logreg_server, reference):
    """Clients told the wrong weights must count every answer as an error."""
    w, b = reference.expected(1, np.eye(reference.num_features, dtype=np.float32))["logits"][:, 0], 0.0
    wrong = ModelReference(reference.feature_names)
    wrong.add(1, -w, b)
    result = run_soak(logreg_server.grpc_target, logreg_server.rest_url, MODEL, wrong, duration_s=2, clients=2)
    assert result.errors > 0
    assert any("failed or answered wrongly" in line for line in result.broken())
    # GetModelStatus answers carry no values to check; everything else is wrong.
    assert result.errors == result.requests - result.per_kind.get("grpc_status", [0])[0]


def test_soak_command_against_a_running_server(logreg_server, exported_model, tmp_path):
    """`python -m reliability soak --target ...` from outside: figures printed, exit 0."""
    report = tmp_path / "soak.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "reliability",
            "soak",
            "--duration",
            "3",
            "--clients",
            "4",
            "--target",
            logreg_server.grpc_target,
            "--rest-url",
            logreg_server.rest_url,
            "--model-base-path",
            str(exported_model),
            "--server-pid",
            str(logreg_server.process.pid),
            "--json",
            str(report),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for figure in ("requests", "errors        0", "p50", "p99", "server RSS    start"):
        assert figure in done.stdout
    assert report.read_text().count('"broken": []') == 1


def test_soak_command_refuses_target_without_weights(logreg_server):
    done = subprocess.run(
        [sys.executable, "-m", "reliability", "soak", "--target", logreg_server.grpc_target],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "--target needs --model-base-path" in done.stderr


def test_soak_command_exits_1_when_answers_are_wrong(logreg_server, tmp_path):
    """Told another model's weights (seed 3, not the served seed 0), the soak must break its promise."""
    from toolkit.artifacts.export import export_model
    from toolkit.training.rundir import train_to_dir

    train_to_dir(tmp_path / "run", seed=3, plots=False)
    export_model(tmp_path / "run", tmp_path / "models", MODEL)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "reliability",
            "soak",
            "--duration",
            "2",
            "--clients",
            "2",
            "--target",
            logreg_server.grpc_target,
            "--model-base-path",
            str(tmp_path / "models"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "BROKEN:" in done.stderr and "answered wrongly" in done.stderr
