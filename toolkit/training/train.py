"""The tutorial's training loop: GradientTape, sigmoid cross-entropy, `assign_sub`.

No file I/O here (see `toolkit.training.rundir` for the run folder). Full-batch by
default like the tutorial; with `batch_size` the steps walk a shuffled,
repeating `tf.data` pipeline of mini-batches.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from toolkit.errors import InputError
from toolkit.training.data import Dataset
from toolkit.training.model import LogisticRegression, tf


@dataclass
class StepMetrics:
    """Loss and accuracy of one step, measured on that step's batch (of `rows` rows) before the update."""

    step: int
    loss: float
    accuracy: float
    rows: int = 0

    def as_record(self) -> dict:
        """The step as training.json lists it."""
        return {"step": self.step, "loss": self.loss, "accuracy": self.accuracy}


@dataclass
class EpochMetrics:
    """Loss and accuracy over one epoch's steps (weighted by their rows), and how fast it went."""

    epoch: int  # 1-based
    loss: float
    accuracy: float
    rows: int
    seconds: float

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float("nan")


class EpochTracker:
    """Folds the steps into epochs of `steps_per_epoch` steps; `add` returns an epoch's metrics as it completes."""

    def __init__(self, steps_per_epoch: int):
        self.steps_per_epoch = steps_per_epoch
        self.done: list[EpochMetrics] = []
        self._start()

    def _start(self) -> None:
        self._began = time.perf_counter()
        self._steps = self._rows = 0
        self._loss = self._correct = 0.0

    def add(self, m: StepMetrics) -> EpochMetrics | None:
        self._steps += 1
        self._rows += m.rows
        self._loss += m.loss * m.rows
        self._correct += m.accuracy * m.rows
        if self._steps < self.steps_per_epoch:
            return None
        rows = max(self._rows, 1)
        epoch = EpochMetrics(
            len(self.done) + 1, self._loss / rows, self._correct / rows, self._rows, time.perf_counter() - self._began
        )
        self.done.append(epoch)
        self._start()
        return epoch


def steps_per_epoch(rows: int, batch_size: int | None) -> int:
    """Steps in one pass over `rows` rows: 1 for full batch."""
    return 1 if batch_size is None or batch_size >= rows else math.ceil(rows / batch_size)


def total_steps(steps: int | None, epochs: int | None, per_epoch: int) -> int:
    """The steps to run: --steps, or --epochs passes, or the tutorial's 10."""
    if steps is not None and epochs is not None:
        raise InputError("give --steps or --epochs, not both")
    if epochs is not None:
        if epochs < 1:
            raise InputError(f"--epochs must be at least 1, got {epochs}")
        return epochs * per_epoch
    steps = DEFAULT_STEPS if steps is None else steps
    if steps < 1:
        raise InputError(f"--steps must be at least 1, got {steps}")
    return steps


# training.json keeps every step up to this many; beyond, an even spread of them and the last.
HISTORY_MAX = 1000
DEFAULT_STEPS = 10


def kept_in_history(step: int, steps: int) -> bool:
    """Whether training.json lists this step: all of a short run, about HISTORY_MAX of a long one."""
    return steps <= HISTORY_MAX or step % math.ceil(steps / HISTORY_MAX) == 0 or step == steps - 1


@dataclass
class TrainResult:
    model: LogisticRegression
    history: list[StepMetrics] = field(default_factory=list)


def batch_metrics(model: LogisticRegression, features, labels) -> tuple:
    """Mean sigmoid cross-entropy and accuracy (class = probability > 0.5) as tensors."""
    out = model.predict(features)
    targets = tf.reshape(labels, [-1, 1])
    loss = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=targets, logits=out["logits"]))
    accuracy = tf.reduce_mean(tf.cast(tf.equal(tf.cast(out["classes"], tf.float32), targets), tf.float32))
    return loss, accuracy


def evaluate(model: LogisticRegression, data: Dataset) -> dict:
    """{'loss', 'accuracy'} of `model` on all of `data`."""
    loss, accuracy = batch_metrics(model, tf.constant(data.features), tf.constant(data.labels))
    return {"loss": float(loss), "accuracy": float(accuracy), "samples": len(data)}


def train(
    data: Dataset,
    steps: int = 10,
    learning_rate: float = 0.1,
    batch_size: int | None = None,
    seed: int = 0,
    on_step: Callable[[StepMetrics], None] | None = None,
) -> TrainResult:
    """Train a fresh `LogisticRegression` (weights seeded with `seed`) on `data`.

    `batch_size=None` means full batch. `on_step` is called after every step.
    """
    if steps < 1:
        raise InputError(f"--steps must be at least 1, got {steps}")
    if not learning_rate > 0:
        raise InputError(f"--learning-rate must be positive, got {learning_rate}")
    if batch_size is not None and batch_size < 1:
        raise InputError(f"--batch-size must be at least 1, got {batch_size}")

    model = LogisticRegression(data.num_features, seed=seed, feature_names=data.feature_names)
    lr = tf.constant(learning_rate, tf.float32)

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, data.num_features], tf.float32),
            tf.TensorSpec([None], tf.float32),
        ]
    )
    def training_step(features, labels):
        with tf.GradientTape() as tape:
            loss, accuracy = batch_metrics(model, features, labels)
        grad_w, grad_b = tape.gradient(loss, [model.w, model.b])
        model.w.assign_sub(grad_w * lr)
        model.b.assign_sub(grad_b * lr)
        return loss, accuracy

    result = TrainResult(model)
    for step, (features, labels) in enumerate(_batches(data, steps, batch_size, seed)):
        loss, accuracy = training_step(features, labels)
        metrics = StepMetrics(step, float(loss), float(accuracy), int(features.shape[0]))
        result.history.append(metrics)
        if on_step is not None:
            on_step(metrics)
    return result


def _batches(data: Dataset, steps: int, batch_size: int | None, seed: int):
    """`steps` (features, labels) batches: the whole set each time, or shuffled mini-batches."""
    features = tf.constant(data.features)
    labels = tf.constant(data.labels)
    if batch_size is None or batch_size >= len(data):
        return ((features, labels) for _ in range(steps))
    pipeline = (
        tf.data.Dataset.from_tensor_slices((features, labels))
        .shuffle(len(data), seed=seed, reshuffle_each_iteration=True)
        .batch(batch_size)
        .repeat()
        .take(steps)
        .prefetch(tf.data.AUTOTUNE)
    )
    return iter(pipeline)
