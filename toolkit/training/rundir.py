"""The training run folder that `tfkit train` writes and `tfkit export` reads.

RUN/
  training.json          config, per-step metrics, held-out metrics, versions
  checkpoint/model.*     tf.train.Checkpoint of the LogisticRegression module
  heldout.npz            the held-out split: features float32 [N, D], labels float32 [N]
                         (streamed data: its first SAMPLE_ROWS rows in shard order; training.json says so)
  train.npz              the training split (int8 quantization draws its representative data here; likewise bounded)
  plots/data.png         the data with the learned decision boundary
  plots/curves.png       loss and accuracy per step
"""

from __future__ import annotations

import json
import platform
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from toolkit import __version__
from toolkit.errors import InputError
from toolkit.training import data as datamod
from toolkit.training import stream
from toolkit.training.distribute import cluster_from, strategy_for
from toolkit.training.model import LogisticRegression, tf
from toolkit.training.stream_train import StreamedRun, StreamOptions, train_streamed
from toolkit.training.train import (
    EpochMetrics,
    EpochTracker,
    StepMetrics,
    evaluate,
    steps_per_epoch,
    total_steps,
    train,
)

TRAINING_JSON = "training.json"
CHECKPOINT_PREFIX = "checkpoint/model"
HELDOUT_NPZ = "heldout.npz"
TRAIN_NPZ = "train.npz"
PLOTS_DIR = "plots"


@dataclass
class Run:
    """A finished training run read back from its folder."""

    path: Path
    record: dict
    model: LogisticRegression
    heldout: datamod.Dataset

    def train_data(self) -> datamod.Dataset:
        """The training split (read on demand: only int8 quantization needs it)."""
        return datamod.load(self.path / TRAIN_NPZ)

    @property
    def config(self) -> dict:
        return self.record["config"]


def train_to_dir(
    out: str | Path,
    data_path: str | None = None,
    label_column: str = "label",
    num_per_class: int = 2000,
    seed: int = 0,
    steps: int | None = None,
    learning_rate: float = 0.1,
    batch_size: int | None = None,
    test_fraction: float = 0.2,
    plots: bool = True,
    force: bool = False,
    on_step: Callable[[StepMetrics], None] | None = None,
    epochs: int | None = None,
    eval_data_path: str | None = None,
    shuffle_buffer: int = 10_000,
    skip_bad_rows: bool = False,
    workers: str | None = None,
    worker_index: int | None = None,
    on_epoch: Callable[[EpochMetrics], None] | None = None,
    on_start: Callable[[int], None] | None = None,
) -> dict:
    """Generate or stream the data, train, evaluate and write the run folder; return training.json's content.

    Without `data_path`: the tutorial's generated data, in memory, split by class
    (the tutorial's numbers). With it: streamed shards, split by a stable hash
    per row (or `eval_data_path`), on one worker or a cluster (`workers` and
    `worker_index`, or TF_CONFIG); only the chief writes the run folder, and
    the record says which worker this was. `on_start` receives the number of
    steps before the first one, `on_step` and `on_epoch` each as it ends.
    """
    out = Path(out)
    cluster = cluster_from(workers, worker_index)
    if cluster.is_chief:
        if (out / TRAINING_JSON).exists() and not force:
            raise InputError(
                f"{out}: already holds a training run; pass --force to overwrite it or choose another --out"
            )
        if out.exists() and not out.is_dir():
            raise InputError(f"{out}: exists and is not a directory")
    if data_path is None:
        for given, option in (
            (eval_data_path, "--eval-data"),
            (skip_bad_rows, "--skip-bad-rows"),
            (cluster.size > 1, "multi-worker training"),
        ):
            if given:
                raise InputError(f"{option} needs --data: the generated tutorial data is made in memory")
        record, model, train_data, heldout, history = _train_in_memory(
            num_per_class, seed, steps, epochs, learning_rate, batch_size, test_fraction, on_start, on_step, on_epoch
        )
    else:
        strategy = strategy_for(cluster)  # first: it configures TensorFlow's collective ops
        data = stream.open_source(data_path, label_column)
        eval_data = stream.open_source(eval_data_path, label_column, "--eval-data") if eval_data_path else None
        if eval_data is not None and eval_data.feature_names != data.feature_names:
            raise InputError(
                f"--eval-data {eval_data_path}: features ({', '.join(eval_data.feature_names)}) differ "
                f"from --data's ({', '.join(data.feature_names)})"
            )
        options = StreamOptions(
            steps, epochs, learning_rate, batch_size, shuffle_buffer, test_fraction, seed, skip_bad_rows
        )
        run = train_streamed(data, eval_data, options, cluster, strategy, on_start, on_step, on_epoch)
        record = _streamed_record(data, eval_data, options, cluster, run)
        if not cluster.is_chief:
            return record
        model, train_data, heldout, history = run.model, run.train_sample, run.heldout_sample, run.history
    _write_run(out, record, model, train_data, heldout, history, plots)
    return record


def _train_in_memory(
    num_per_class, seed, steps, epochs, learning_rate, batch_size, test_fraction, on_start, on_step, on_epoch
):
    full = datamod.synthetic(num_per_class, seed)
    train_data, heldout = datamod.split(full, test_fraction, seed)
    per_epoch = steps_per_epoch(len(train_data), batch_size)
    tracker = EpochTracker(per_epoch)

    def step_done(metrics: StepMetrics) -> None:
        if on_step is not None:
            on_step(metrics)
        epoch = tracker.add(metrics) if per_epoch > 1 else None
        if epoch is not None and on_epoch is not None:
            on_epoch(epoch)

    steps = total_steps(steps, epochs, per_epoch)
    if on_start is not None:
        on_start(steps)
    result = train(
        train_data, steps=steps, learning_rate=learning_rate, batch_size=batch_size, seed=seed, on_step=step_done
    )
    record = _header() | {
        "config": {
            "seed": seed,
            "steps": steps,
            "epochs": epochs,
            "learning_rate": learning_rate,
            "batch_size": batch_size,
            "test_fraction": test_fraction,
            "data_source": full.source,
            "data_hash": full.digest(),
            "label_column": None,
            "num_per_class": num_per_class,
            "feature_names": list(full.feature_names),
            "num_features": full.num_features,
            "num_train": len(train_data),
            "num_heldout": len(heldout),
        },
        "steps": [m.as_record() for m in result.history],
        "epochs": [_epoch_record(e) for e in tracker.done],
        "final_train": evaluate(result.model, train_data),
        "heldout": evaluate(result.model, heldout),
        "weights": _weights(result.model),
    }
    return record, result.model, train_data, heldout, result.history


def _streamed_record(
    data: stream.Source, eval_data: stream.Source | None, options: StreamOptions, cluster, run: StreamedRun
) -> dict:
    counts = run.counts
    num_heldout = run.eval_counts["train"] if eval_data is not None else counts["heldout"]
    heldout_rule = (
        "the first rows of --eval-data in shard order"
        if eval_data is not None
        else "the first held-out rows in shard order"
    )
    record = _header() | {
        "config": {
            "seed": options.seed,
            "steps": run.steps,
            "epochs": options.epochs,
            "steps_per_epoch": run.steps_per_epoch,
            "learning_rate": options.learning_rate,
            "batch_size": options.batch_size,
            "shuffle_buffer": options.shuffle_buffer,
            "test_fraction": None if eval_data is not None else options.test_fraction,
            "split": None
            if eval_data is not None
            else (
                f"a row is held out when the fingerprint of its values mod {stream.SPLIT_BUCKETS} is below "
                f"test_fraction x {stream.SPLIT_BUCKETS}: the same on every run, worker and file format"
            ),
            "data_source": data.describe(),
            "data_format": data.format,
            "data_shards": len(data.shards),
            "data_hash": run.data_hash,
            "eval_data": eval_data.describe() if eval_data is not None else None,
            "label_column": data.label_column,
            "num_per_class": None,
            "feature_names": list(data.feature_names),
            "num_features": data.num_features,
            "num_train": counts["train"],
            "num_heldout": num_heldout,
            "skip_bad_rows": options.skip_bad_rows,
        },
        "bad_rows_skipped": counts["bad"] + run.eval_counts.get("bad", 0),
        "cluster": cluster.as_record(),
        "throughput": run.throughput.as_record(),
        "seconds": {phase: round(seconds, 3) for phase, seconds in run.seconds.items()},
        "steps": [m.as_record() for m in run.history],
        "epochs": [_epoch_record(e) for e in run.epochs],
        "final_train": run.final_train,
        "heldout": run.heldout,
        "weights": _weights(run.model),
    }
    if run.heldout_sample is not None:
        record["samples"] = {
            HELDOUT_NPZ: {"rows": len(run.heldout_sample), "of": num_heldout, "rule": heldout_rule},
            TRAIN_NPZ: {
                "rows": len(run.train_sample),
                "of": counts["train"],
                "rule": "the first training rows in shard order",
            },
        }
    return record


def _header() -> dict:
    return {
        "tfkit_version": __version__,
        "tensorflow_version": tf.__version__,
        "python_version": platform.python_version(),
    }


def _weights(model: LogisticRegression) -> dict:
    return {"w": model.w.numpy().reshape(-1).tolist(), "b": float(model.b.numpy()[0])}


def _epoch_record(epoch: EpochMetrics) -> dict:
    return asdict(epoch) | {"rows_per_second": round(epoch.rows_per_second, 1)}


def _write_run(out: Path, record: dict, model, train_data, heldout, history, plots: bool) -> None:
    """Write the run folder; a folder this call created is removed again if writing fails."""
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        tf.train.Checkpoint(model=model).write(str(out / CHECKPOINT_PREFIX))
        datamod.save_npz(out / HELDOUT_NPZ, heldout)
        datamod.save_npz(out / TRAIN_NPZ, train_data)
        if plots:
            from toolkit.training import plots as plotsmod

            record["plots"] = plotsmod.plot_run(out / PLOTS_DIR, model, train_data, heldout, history)
        (out / TRAINING_JSON).write_text(json.dumps(record, indent=2) + "\n")
    except BaseException:
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise


def load_run(run_dir: str | Path) -> Run:
    """Read a run folder back: the record, the module restored from its checkpoint, the held-out split."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError(f"{run_dir}: no such run folder; create one with `tfkit train --out {run_dir}`")
    record_path = run_dir / TRAINING_JSON
    try:
        record = json.loads(record_path.read_text())
        config = record["config"]
        model = LogisticRegression(config["num_features"], seed=config["seed"], feature_names=config["feature_names"])
    except FileNotFoundError:
        raise InputError(f"{run_dir}: not a training run (no {TRAINING_JSON}); create one with `tfkit train`") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{record_path}: unreadable training record ({exc})") from None
    try:
        tf.train.Checkpoint(model=model).read(str(run_dir / CHECKPOINT_PREFIX)).assert_consumed()
    except (tf.errors.OpError, ValueError, AssertionError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{run_dir / CHECKPOINT_PREFIX}: cannot restore the model checkpoint ({first_line})") from None
    heldout = datamod.load(run_dir / HELDOUT_NPZ)
    return Run(run_dir, record, model, heldout)
