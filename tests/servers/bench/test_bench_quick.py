"""scripts/bench keeps working: its --quick path on the one cheap measurement."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_quick_cli_help_writes_results(tmp_path):
    out = tmp_path / "results.json"
    done = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--only", "cli_help_s", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    assert {"cpu", "cores", "python", "tf"} <= set(report["machine"])
    [row] = report["results"]
    assert set(row) == {"name", "value", "unit", "ceiling", "ratio"}
    assert row["name"] == "cli_help_s" and row["unit"] == "s"
    assert row["value"] > 0 and row["ceiling"] > 0
    # A time: the ratio is ceiling / value, to the results' 4 significant digits.
    assert abs(row["ratio"] - row["ceiling"] / row["value"]) <= 1e-3 * row["ratio"] + 1e-3
    assert "cli_help_s" in done.stdout  # the table


def test_unknown_measurement_is_a_usage_error(tmp_path):
    done = subprocess.run([sys.executable, "-m", "benchmarks", "--only", "grpc_predict_c2"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "unknown measurement(s) grpc_predict_c2" in done.stderr
