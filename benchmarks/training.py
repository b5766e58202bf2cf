"""Training at scale: `tfkit train --data` beside its ceilings, on CSV shards this module writes.

- train_peak_rss_mb: peak RSS of `tfkit train` on the big CSV (20M rows) vs on the
  small one (200k rows), same shard count, batch size and steps: streaming means
  memory does not grow with the rows (target: within 1.25x, so ratio >= 0.8).
- train_rows_per_s: the training phase's rows/s (training.json) on the big CSV vs a
  bare tf.data pass that only reads and parses the same files (`python -m
  benchmarks.training bare PATTERN`: the same interleave and chunking, tf.io.decode_csv).
- train_scaleout_2w: rows/s of two workers on loopback, each pinned to its own core,
  vs one worker pinned to one core: two one-core machines against one.

Each repeat runs the value and its ceiling back to back; results are medians.
The data is the tutorial's two Gaussians: a block of rows written once and
repeated, so 20M rows take seconds to write (duplicates fall on the same side
of the held-out split, as any duplicate row does).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.harness import BenchError

BLOCK_ROWS = 200_000


@dataclasses.dataclass(frozen=True)
class TrainingBudget:
    big_rows: int
    small_rows: int
    shards: int
    batch_size: int
    steps: int  # training steps of the memory/throughput runs
    scaleout_rows: int
    scaleout_steps: int
    repeats: int


FULL = TrainingBudget(
    big_rows=20_000_000,
    small_rows=200_000,
    shards=8,
    batch_size=4096,
    steps=2000,
    scaleout_rows=4_000_000,
    scaleout_steps=600,
    repeats=3,
)
QUICK = TrainingBudget(
    big_rows=2_000_000,
    small_rows=20_000,
    shards=4,
    batch_size=4096,
    steps=200,
    scaleout_rows=400_000,
    scaleout_steps=100,
    repeats=1,
)


def write_csv_shards(folder: Path, rows: int, shards: int, seed: int = 0) -> str:
    """`rows` rows of the tutorial's data as `shards` CSV files in `folder`; returns their glob."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n = min(rows, BLOCK_ROWS)
    labels = rng.integers(0, 2, n)
    means = np.where(labels[:, None] == 1, [4.0, 0.0], [0.0, 4.0])
    features = rng.multivariate_normal([0.0, 0.0], [[1.0, 0.4], [0.4, 1.0]], n) + means
    lines = [f"{a:.5f},{b:.5f},{y}\n".encode() for (a, b), y in zip(features, labels)]
    block = b"".join(lines)
    per_shard, extra = divmod(rows, shards)
    for s in range(shards):
        left = per_shard + (s < extra)
        with open(folder / f"part-{s:05d}.csv", "wb") as f:
            f.write(b"x0,x1,label\n")
            while left >= n:
                f.write(block)
                left -= n
            f.write(b"".join(lines[:left]))
    return str(folder / "part-*.csv")


def bare_pass(pattern: str) -> float:
    """Rows/s of reading and parsing every row of the CSV shards, nothing else (the throughput ceiling)."""
    import tensorflow as tf

    from toolkit.training.stream import CHUNK_ROWS, CYCLE_LENGTH

    files = sorted(tf.io.gfile.glob(pattern))
    width = len(Path(files[0]).open().readline().split(","))
    lines = tf.data.Dataset.from_tensor_slices(files).interleave(
        lambda path: tf.data.TextLineDataset(path).skip(1).batch(CHUNK_ROWS),
        cycle_length=min(CYCLE_LENGTH, len(files)),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    parsed = lines.map(
        lambda batch: tf.io.decode_csv(batch, [[0.0]] * width), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    ).prefetch(tf.data.AUTOTUNE)
    began = time.perf_counter()
    rows = int(parsed.reduce(tf.constant(0, tf.int64), lambda n, cells: n + tf.size(cells[0], out_type=tf.int64)))
    return rows / (time.perf_counter() - began)


class Trainer:
    """Runs `tfkit train` processes and reads what they measured."""

    def __init__(self, tfkit: str, env: dict, cwd: Path, budget: TrainingBudget):
        self.tfkit, self.env, self.cwd, self.budget = tfkit, env, cwd, budget
        cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        self.cores = cores if len(cores) >= 2 else []

    def train(self, pattern: str, out: Path, steps: int, extra=(), core: int | None = None) -> tuple[dict, float]:
        """One `tfkit train` run: (its training.json, its peak RSS in MB)."""
        process = self._start(pattern, out, steps, extra, core)
        rss_mb = self._wait(process, "tfkit train")
        return json.loads((out / "training.json").read_text()), rss_mb

    def train_two_workers(self, pattern: str, out: Path, steps: int) -> dict:
        """Two workers on 127.0.0.1, each on its own core (when there are two): the chief's training.json."""
        from toolkit.serve import free_port

        workers = ",".join(f"127.0.0.1:{free_port()}" for _ in range(2))
        processes = [
            self._start(
                pattern,
                out,
                steps,
                ("--workers", workers, "--worker-index", str(i)),
                self.cores[i] if self.cores else None,
            )
            for i in range(2)
        ]
        for process in processes:
            self._wait(process, "a tfkit train worker")
        return json.loads((out / "training.json").read_text())

    def _start(self, pattern: str, out: Path, steps: int, extra, core: int | None) -> subprocess.Popen:
        args = [
            self.tfkit,
            "train",
            "--data",
            pattern,
            "--out",
            str(out),
            "--force",
            "--no-plots",
            "--batch-size",
            str(self.budget.batch_size),
            "--steps",
            str(steps),
            *extra,
        ]
        pin = (lambda: os.sched_setaffinity(0, {core})) if core is not None else None
        return subprocess.Popen(
            args,
            env=self.env,
            cwd=self.cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            preexec_fn=pin,
        )

    @staticmethod
    def _wait(process: subprocess.Popen, what: str) -> float:
        """Wait for the process; its peak RSS in MB (from wait4's rusage: this child alone)."""
        output = process.stdout.read()
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            tail = "\n  ".join(output.strip().splitlines()[-10:])
            raise BenchError(f"{what} exited with code {process.returncode}:\n  {tail}")
        return usage.ru_maxrss / 1024  # kB on Linux

    def bare(self, pattern: str) -> float:
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks.training", "bare", pattern],
            env=self.env,
            cwd=self.cwd,
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise BenchError(f"the bare tf.data pass exited with code {done.returncode}: {done.stderr[-500:]}")
        return float(done.stdout.strip().splitlines()[-1])


def measure(trainer: Trainer, workdir: Path, progress) -> dict:
    """Every training series, `repeats` times each, value and ceiling back to back: {series: [values]}."""
    b = trainer.budget
    progress(f"training: writing {b.big_rows:,} + {b.small_rows:,} + {b.scaleout_rows:,} CSV rows")
    big = write_csv_shards(workdir / "big", b.big_rows, b.shards)
    small = write_csv_shards(workdir / "small", b.small_rows, b.shards)
    scaleout = write_csv_shards(workdir / "scaleout", b.scaleout_rows, b.shards)
    series = {name: [] for name in ("rss_big", "rss_small", "rows_big", "bare_big", "rows_2w", "rows_1w")}
    for repeat in range(b.repeats):
        progress(f"training measurements, repeat {repeat + 1}/{b.repeats}: {b.big_rows:,} rows")
        record, rss = trainer.train(big, workdir / "run-big", b.steps)
        series["rss_big"].append(rss)
        series["rows_big"].append(record["throughput"]["rows_per_second"])
        series["bare_big"].append(trainer.bare(big))
        series["rss_small"].append(trainer.train(small, workdir / "run-small", b.steps)[1])
        progress(f"training measurements, repeat {repeat + 1}/{b.repeats}: two workers vs one")
        series["rows_2w"].append(
            trainer.train_two_workers(scaleout, workdir / "run-2w", b.scaleout_steps)["throughput"]["rows_per_second"]
        )
        core = trainer.cores[0] if trainer.cores else None
        series["rows_1w"].append(
            trainer.train(scaleout, workdir / "run-1w", b.scaleout_steps, core=core)[0]["throughput"]["rows_per_second"]
        )
    return series


def main(argv: list) -> int:
    if len(argv) == 2 and argv[0] == "bare":
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        print(bare_pass(argv[1]))
        return 0
    print("usage: python -m benchmarks.training bare PATTERN", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
