"""The training run folder that `tfkit train` writes and `tfkit export` reads.

RUN/
  training.json          config, per-step metrics, held-out metrics, versions
  checkpoint/model.*     tf.train.Checkpoint of the LogisticRegression module
  heldout.npz            the held-out split: features float32 [N, D], labels float32 [N]
  train.npz              the training split (int8 quantization draws its representative data here)
  plots/data.png         the data with the learned decision boundary
  plots/curves.png       loss and accuracy per step
"""

from __future__ import annotations

import json
import platform
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from toolkit import __version__
from toolkit.training import data as datamod
from toolkit.errors import InputError
from toolkit.training.model import LogisticRegression, tf
from toolkit.training.train import StepMetrics, evaluate, train

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
    data_path: str | Path | None = None,
    label_column: str = "label",
    num_per_class: int = 2000,
    seed: int = 0,
    steps: int = 10,
    learning_rate: float = 0.1,
    batch_size: int | None = None,
    test_fraction: float = 0.2,
    plots: bool = True,
    force: bool = False,
    on_step: Callable[[StepMetrics], None] | None = None,
) -> dict:
    """Load or generate data, split, train, evaluate and write the run folder; return training.json's content."""
    out = Path(out)
    if (out / TRAINING_JSON).exists() and not force:
        raise InputError(f"{out}: already holds a training run; pass --force to overwrite it or choose another --out")
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a directory")
    full = datamod.load(data_path, label_column) if data_path else datamod.synthetic(num_per_class, seed)
    train_data, heldout = datamod.split(full, test_fraction, seed)
    result = train(train_data, steps=steps, learning_rate=learning_rate, batch_size=batch_size, seed=seed, on_step=on_step)

    record = {
        "tfkit_version": __version__,
        "tensorflow_version": tf.__version__,
        "python_version": platform.python_version(),
        "config": {
            "seed": seed,
            "steps": steps,
            "learning_rate": learning_rate,
            "batch_size": batch_size,
            "test_fraction": test_fraction,
            "data_source": full.source,
            "data_hash": full.digest(),
            "label_column": label_column if data_path else None,
            "num_per_class": None if data_path else num_per_class,
            "feature_names": list(full.feature_names),
            "num_features": full.num_features,
            "num_train": len(train_data),
            "num_heldout": len(heldout),
        },
        "steps": [asdict(m) for m in result.history],
        "final_train": evaluate(result.model, train_data),
        "heldout": evaluate(result.model, heldout),
        "weights": {"w": result.model.w.numpy().reshape(-1).tolist(), "b": float(result.model.b.numpy()[0])},
    }

    out.mkdir(parents=True, exist_ok=True)
    tf.train.Checkpoint(model=result.model).write(str(out / CHECKPOINT_PREFIX))
    datamod.save_npz(out / HELDOUT_NPZ, heldout)
    datamod.save_npz(out / TRAIN_NPZ, train_data)
    if plots:
        from toolkit.training import plots as plotsmod

        record["plots"] = plotsmod.plot_run(out / PLOTS_DIR, result.model, train_data, heldout, result.history)
    (out / TRAINING_JSON).write_text(json.dumps(record, indent=2) + "\n")
    return record


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
