"""Two `tfkit train` worker processes on 127.0.0.1 train one model with MultiWorkerMirroredStrategy.

One worker gets its place from --workers/--worker-index, the other from TF_CONFIG,
so both ways of naming the cluster are exercised in every run.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from toolkit.training import data
from toolkit.training.rundir import train_to_dir

from support import free_port

ROOT = Path(__file__).resolve().parents[3]
SHARDS = 4
BATCH = 64  # the global batch: 32 rows per worker
TIMEOUT_S = 600


@pytest.fixture(scope="module")
def tutorial_shards(tmp_path_factory) -> Path:
    """The tutorial's data (seed 0, 2000 per class) as SHARDS CSV files, classes interleaved."""
    folder = tmp_path_factory.mktemp("shards")
    d = data.synthetic(2000, seed=0)
    order = np.random.default_rng(0).permutation(len(d))
    for s in range(SHARDS):
        rows = order[s::SHARDS]
        lines = [f"{a!r},{b!r},{int(y)}" for (a, b), y in zip(d.features[rows].tolist(), d.labels[rows])]
        (folder / f"part-{s}.csv").write_text("x0,x1,label\n" + "\n".join(lines) + "\n")
    return folder


def run_two_workers(data_dir: Path, out: Path, *args: str) -> list[subprocess.CompletedProcess]:
    """Worker 0 named by flags, worker 1 by TF_CONFIG; both run to the end."""
    addresses = [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]
    command = [
        sys.executable,
        "-m",
        "toolkit",
        "train",
        "--data",
        str(data_dir),
        "--out",
        str(out),
        "--no-plots",
        *args,
    ]
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("TF_CONFIG", None)
    tf_config = json.dumps({"cluster": {"worker": addresses}, "task": {"type": "worker", "index": 1}})
    workers = [
        subprocess.Popen(
            command + ["--workers", ",".join(addresses), "--worker-index", "0"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        ),
        subprocess.Popen(
            command, env=dict(env, TF_CONFIG=tf_config), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        ),
    ]
    try:
        outputs = [w.communicate(timeout=TIMEOUT_S) for w in workers]
    finally:
        for w in workers:
            w.kill()
    return [subprocess.CompletedProcess(w.args, w.returncode, o, e) for w, (o, e) in zip(workers, outputs)]


def test_two_workers_train_like_one_with_the_same_global_batch(tutorial_shards, tmp_path):
    from toolkit.artifacts.export import export_model
    from toolkit.artifacts.inspect import saved_model_info

    args = ["--batch-size", str(BATCH), "--epochs", "2"]
    chief, worker = run_two_workers(tutorial_shards, tmp_path / "two", *args)
    assert chief.returncode == 0, chief.stdout + chief.stderr
    assert worker.returncode == 0, worker.stdout + worker.stderr
    assert f"Wrote {tmp_path / 'two'}" in chief.stdout
    assert f"Worker 1 of 2 done; the chief (worker 0) writes {tmp_path / 'two'}" in worker.stdout
    two = json.loads((tmp_path / "two" / "training.json").read_text())
    assert two["cluster"]["workers"] == 2 and two["cluster"]["worker_index"] == 0

    one = train_to_dir(tmp_path / "one", data_path=str(tutorial_shards), batch_size=BATCH, epochs=2, plots=False)
    for key in ("num_train", "num_heldout", "steps", "data_hash"):
        assert two["config"][key] == one["config"][key], key
    assert two["heldout"]["samples"] == one["heldout"]["samples"] > 0
    assert abs(two["heldout"]["accuracy"] - one["heldout"]["accuracy"]) <= 0.002
    # Every worker took the same steps: each prints the same last step as the chief.
    assert chief.stdout.splitlines()[-3] == worker.stdout.splitlines()[-3]

    exported = {}
    for name in ("one", "two"):
        version = export_model(tmp_path / name, tmp_path / "models", name)
        exported[name] = saved_model_info(version)["meta_graphs"][0]["signatures"]
    assert exported["one"] == exported["two"]


def test_a_bad_row_stops_both_workers_and_the_reader_names_it(tutorial_shards, tmp_path):
    shards = tmp_path / "shards"
    shards.mkdir()
    for path in tutorial_shards.iterdir():
        (shards / path.name).write_text(path.read_text())
    lines = (shards / "part-1.csv").read_text().splitlines()
    lines[4] = "abc," + lines[4].split(",", 1)[1]  # line 5; worker 1 reads shards 1 and 3
    (shards / "part-1.csv").write_text("\n".join(lines) + "\n")

    chief, worker = run_two_workers(shards, tmp_path / "run", "--batch-size", str(BATCH), "--steps", "5")
    assert (chief.returncode, worker.returncode) == (2, 2), chief.stderr + worker.stderr
    assert "part-1.csv: line 5, column 'x0': 'abc' is not a number (1 bad row in --data" in worker.stderr
    assert "1 bad row in --data; fix them or pass --skip-bad-rows (another worker names the first one)" in chief.stderr
    for result in (chief, worker):
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()
