"""Training on streamed data, on one worker or many (tf.distribute): scan, train, evaluate.

1. Scan: every worker reads its own shards once, counting good and bad rows on
   each side of the held-out split; the counts are summed over the workers, so
   every worker stops on the same bad data, and an epoch has a known number of
   steps on all of them.
2. Train: mini-batch steps over a shuffled, repeating pipeline of the worker's
   shards, or (without --batch-size) full-batch steps, each one pass over the
   training rows with the gradient summed chunk by chunk. Either way a step
   sums loss, accuracy and gradient over its rows on every worker, the strategy
   all-reduces the sums, and every worker applies the same update: the
   tutorial's `w -= learning_rate * mean gradient`.
3. Evaluate: one more pass sums loss and accuracy on both sides of the split
   (or over --eval-data), again over all workers.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from toolkit.errors import InputError, ToolkitError
from toolkit.training import stream
from toolkit.training.distribute import Cluster, sum_over_workers
from toolkit.training.model import LogisticRegression, tf
from toolkit.training.train import (
    EpochMetrics,
    EpochTracker,
    StepMetrics,
    kept_in_history,
    steps_per_epoch,
    total_steps,
)


@dataclass(frozen=True)
class StreamOptions:
    """How to train on streamed data (the `tfkit train` options of the same names)."""

    steps: int | None = None
    epochs: int | None = None
    learning_rate: float = 0.1
    batch_size: int | None = None
    shuffle_buffer: int = 10_000
    test_fraction: float = 0.2
    seed: int = 0
    skip_bad_rows: bool = False


@dataclass(frozen=True)
class Throughput:
    """Rows trained and seconds taken, in all and after the first step (which traces and fills the pipeline)."""

    rows: int
    seconds: float
    first_step_seconds: float
    rows_after_first_step: int
    seconds_after_first_step: float

    def as_record(self) -> dict:
        steady = self.seconds_after_first_step
        return {
            "train_rows": self.rows,
            "seconds": round(self.seconds, 3),
            "first_step_seconds": round(self.first_step_seconds, 3),
            "rows_per_second": round(self.rows_after_first_step / steady, 1) if steady > 0 else None,
        }


@dataclass
class StreamedRun:
    """What training on streamed data produced; the chief also has the samples for the run folder."""

    model: LogisticRegression
    history: list[StepMetrics]
    epochs: list[EpochMetrics]
    steps: int
    steps_per_epoch: int
    counts: dict  # summed over workers: bad, train, heldout, ...
    data_hash: str
    final_train: dict
    heldout: dict
    throughput: Throughput
    heldout_sample: object = None  # datamod.Dataset, chief only
    train_sample: object = None
    eval_counts: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)  # wall time of each phase: scan, train, evaluate, samples


def train_streamed(
    data: stream.Source,
    eval_data: stream.Source | None,
    options: StreamOptions,
    cluster: Cluster,
    strategy,
    on_start: Callable[[int], None] | None = None,
    on_step: Callable[[StepMetrics], None] | None = None,
    on_epoch: Callable[[EpochMetrics], None] | None = None,
) -> StreamedRun:
    """Scan, train and evaluate on `data` (held-out split by hash, or `eval_data`) across `cluster`."""
    _check_options(options, cluster)
    fraction = None if eval_data is not None else options.test_fraction
    began = time.perf_counter()
    counts = _scan(data, fraction, options, cluster, strategy)
    eval_counts = _scan(eval_data, None, options, cluster, strategy) if eval_data is not None else {}
    scanned = time.perf_counter() - began
    per_epoch = steps_per_epoch(counts["train"], options.batch_size)
    steps = total_steps(options.steps, options.epochs, per_epoch)

    with strategy.scope():
        model = LogisticRegression(data.num_features, seed=options.seed, feature_names=data.feature_names)
    step = (
        _minibatch_step(model, data, fraction, options, cluster, strategy)
        if options.batch_size
        else _full_batch_step(model, data, fraction, options, cluster, strategy, counts["my_chunks"])
    )
    if on_start is not None:
        on_start(steps)
    history, epochs, throughput = _loop(step, steps, per_epoch, on_step, on_epoch)

    trained = _plain_copy(model, data, options.seed)
    began = time.perf_counter()
    final_train, heldout = _evaluate(trained, data, eval_data, fraction, cluster, strategy)
    evaluated = time.perf_counter()
    run = StreamedRun(
        trained,
        history,
        epochs,
        steps,
        per_epoch,
        counts,
        stream.data_hash(data, counts["train"] + counts["heldout"], counts["fingerprint_sum"]),
        final_train,
        heldout,
        throughput,
        eval_counts=eval_counts,
    )
    if cluster.is_chief:
        run.train_sample, run.heldout_sample = stream.samples(data, fraction)
        if eval_data is not None:
            run.heldout_sample = stream.samples(eval_data, None)[0]
    run.seconds = {
        "scan": scanned,
        "train": throughput.seconds,
        "evaluate": evaluated - began,
        "samples": time.perf_counter() - evaluated,
    }
    return run


def _loop(step, steps: int, per_epoch: int, on_step, on_epoch) -> tuple[list, list, Throughput]:
    """Run the steps, reporting each and each epoch; (kept history, epochs, throughput)."""
    tracker = EpochTracker(per_epoch)
    history, trained_rows = [], 0
    began = time.perf_counter()
    for number in range(steps):
        loss_sum, correct, rows = _run(step)[-3:]
        metrics = StepMetrics(number, float(loss_sum / rows), float(correct / rows), int(rows))
        if number == 0:  # the first step traces the step function and fills the pipeline
            warm, first_rows = time.perf_counter(), metrics.rows
        trained_rows += metrics.rows
        if kept_in_history(number, steps):
            history.append(metrics)
        if on_step is not None:
            on_step(metrics)
        epoch = tracker.add(metrics) if per_epoch > 1 else None
        if epoch is not None and on_epoch is not None:
            on_epoch(epoch)
    ended = time.perf_counter()
    return (
        history,
        tracker.done,
        Throughput(trained_rows, ended - began, warm - began, trained_rows - first_rows, ended - warm),
    )


def _check_options(options: StreamOptions, cluster: Cluster) -> None:
    if not options.learning_rate > 0:
        raise InputError(f"--learning-rate must be positive, got {options.learning_rate}")
    if options.batch_size is not None:
        if options.batch_size < 1:
            raise InputError(f"--batch-size must be at least 1, got {options.batch_size}")
        if options.batch_size % cluster.size:
            raise InputError(
                f"--batch-size {options.batch_size} is the global batch: it must be a multiple of the "
                f"{cluster.size} workers"
            )
    if options.shuffle_buffer < 1:
        raise InputError(f"--shuffle-buffer must be at least 1, got {options.shuffle_buffer}")
    if not 0.0 < options.test_fraction < 1.0:
        raise InputError(f"--test-fraction must be between 0 and 1 (exclusive), got {options.test_fraction}")


def _run(step) -> np.ndarray:
    """Run one step; a worker that went away, or data that became unreadable, is one clean error."""
    try:
        return step().numpy()
    except (tf.errors.UnavailableError, tf.errors.CancelledError, tf.errors.DeadlineExceededError):
        raise ToolkitError("training stopped: another worker stopped answering; see that worker's output") from None
    except tf.errors.OpError as exc:
        raise ToolkitError(f"training stopped: {stream.first_line(exc)}") from None


# -- 1. scan ----------------------------------------------------------------------------------------
def _scan(source: stream.Source, fraction: float | None, options: StreamOptions, cluster: Cluster, strategy) -> dict:
    """Counts over all workers (SCAN_FIELDS, plus `idle_workers`) and this worker's `my_chunks`.

    Raises on bad data, the same way on every worker.
    """
    local, first_bad = _scan_local(source, fraction, cluster)
    idle = int(local[stream.SCAN_FIELDS.index("train")] == 0)
    summed = sum_over_workers(strategy, tf.constant(np.append(local, idle), tf.int64)).numpy()
    counts = dict(zip(stream.SCAN_FIELDS + ("idle_workers",), (int(v) for v in summed)))
    counts["my_chunks"] = int(local[stream.SCAN_FIELDS.index("chunks")])
    _check_counts(source, fraction, counts, first_bad, options, cluster)
    return counts


def _scan_local(source: stream.Source, fraction: float | None, cluster: Cluster) -> tuple[np.ndarray, int]:
    try:
        return stream.scan(stream.read_chunks(source, cluster.my_shards(len(source.shards))), fraction)
    except tf.errors.OpError as exc:
        # The chunk parsers mark bad rows instead of failing, except for what only a TFRecord
        # parse can reject (a feature stored as another type); name the record if it can be found.
        raise InputError(
            stream.locate_unparsable(source, cluster.my_shards(len(source.shards)))
            or f"{source.option} {source.describe()}: cannot read ({stream.first_line(exc)})"
        ) from None


def _check_counts(
    source: stream.Source,
    fraction: float | None,
    counts: dict,
    first_bad: int,
    options: StreamOptions,
    cluster: Cluster,
) -> None:
    bad, good = counts["bad"], counts["train"] + counts["heldout"]
    if bad and not options.skip_bad_rows:
        total = f"{bad} bad row{'s' if bad > 1 else ''} in {source.option}; fix them or pass --skip-bad-rows"
        if first_bad != stream.NO_ROW:
            raise InputError(f"{stream.explain(source, first_bad)} ({total})")
        raise InputError(f"{source.option} {source.describe()}: {total} (another worker names the first one)")
    if not good:
        if source.format == "csv" and len(source.shards) == 1 and not bad:
            raise InputError(f"{source.shards[0]}: file is empty (a header but no data rows)")
        raise InputError(
            f"{source.option} {source.describe()}: no good rows" + (f" ({bad} bad rows skipped)" if bad else "")
        )
    positives = counts["train_positive"] + counts["heldout_positive"]
    if positives in (0, good):
        raise InputError(
            f"{source.describe()}: every label is {int(positives == good)}; "
            "a classifier needs samples of both classes 0 and 1"
        )
    if fraction is not None and not counts["heldout"]:
        raise InputError(
            f"{source.option} {source.describe()}: none of the {good} rows fell in the held-out split "
            f"(--test-fraction {fraction:g}); give more rows, a larger --test-fraction, or --eval-data"
        )
    if fraction is not None and not counts["train"]:
        raise InputError(
            f"{source.option} {source.describe()}: all {good} rows fell in the held-out split "
            f"(--test-fraction {fraction:g}); give more rows or a smaller --test-fraction"
        )
    if source.option == "--data" and counts["idle_workers"]:
        raise InputError(
            f"{source.option} {source.describe()}: {counts['idle_workers']} of the {cluster.size} "
            f"workers got no training rows; give at least {cluster.size} shards with data "
            "(worker i reads shards i, i + workers, ...)"
        )


# -- 2. train ---------------------------------------------------------------------------------------
def _batch_sums(model: LogisticRegression, features, labels):
    """float64 [D + 4]: gradient sums for w (D) and b, then the loss sum, the correct count and the rows."""
    with tf.GradientTape() as tape:
        out = model.predict(features)
        targets = tf.reshape(labels, [-1, 1])
        loss_sum = tf.reduce_sum(tf.nn.sigmoid_cross_entropy_with_logits(labels=targets, logits=out["logits"]))
    grad_w, grad_b = tape.gradient(loss_sum, [model.w, model.b])
    correct = tf.reduce_sum(tf.cast(tf.equal(tf.cast(out["classes"], tf.float32), targets), tf.float32))
    rows = tf.cast(tf.shape(labels)[0], tf.float32)
    return tf.cast(
        tf.concat([tf.reshape(grad_w, [-1]), grad_b, tf.stack([loss_sum, correct, rows])], axis=0), tf.float64
    )


def _apply(model: LogisticRegression, total, learning_rate: float) -> None:
    """The tutorial's update with the mean gradient over all workers' rows."""
    d = model.num_features
    rows = tf.maximum(total[-1], 1.0)
    model.w.assign_sub(tf.reshape(tf.cast(total[:d] / rows, tf.float32), [d, 1]) * learning_rate)
    model.b.assign_sub(tf.cast(total[d : d + 1] / rows, tf.float32) * learning_rate)


def _minibatch_step(model, data: stream.Source, fraction, options: StreamOptions, cluster: Cluster, strategy):
    def dataset(context):
        per_worker = context.get_per_replica_batch_size(options.batch_size)
        chunks = stream.read_chunks(data, cluster.my_shards(len(data.shards)), shuffle_seed=options.seed)
        rows = stream.side(chunks.repeat(), fraction, heldout=False)
        return stream.shuffled_batches(rows, per_worker, options.shuffle_buffer, options.seed + cluster.index)

    iterator = iter(strategy.distribute_datasets_from_function(dataset))

    @tf.function(autograph=False)
    def step(iterator):
        features, labels = next(iterator)
        total = strategy.reduce(
            tf.distribute.ReduceOp.SUM, strategy.run(_batch_sums, args=(model, features, labels)), axis=None
        )
        _apply(model, total, options.learning_rate)
        return total

    return lambda: step(iterator)


def _full_batch_step(
    model, data: stream.Source, fraction, options: StreamOptions, cluster: Cluster, strategy, chunks_per_pass: int
):
    """One pass per step: the worker's chunks, in order, from one repeating pipeline (built once, not per step)."""
    rows = stream.side(stream.read_chunks(data, cluster.my_shards(len(data.shards))).repeat(), fraction, heldout=False)
    iterator = iter(rows)

    @tf.function
    def step(iterator):
        def one_pass():
            total = tf.zeros([model.num_features + 4], tf.float64)
            for _ in tf.range(chunks_per_pass):
                features, labels = next(iterator)
                total += _batch_sums(model, features, labels)
            return total

        total = strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(one_pass), axis=None)
        _apply(model, total, options.learning_rate)
        return total

    return lambda: step(iterator)


def _plain_copy(model: LogisticRegression, data: stream.Source, seed: int) -> LogisticRegression:
    """The trained weights in a module outside the strategy: what the run folder saves and export reloads."""
    plain = LogisticRegression(data.num_features, seed=seed, feature_names=data.feature_names)
    plain.w.assign(model.w.numpy())
    plain.b.assign(model.b.numpy())
    return plain


# -- 3. evaluate ------------------------------------------------------------------------------------
def _evaluate(
    model, data: stream.Source, eval_data: stream.Source | None, fraction, cluster: Cluster, strategy
) -> tuple[dict, dict]:
    """Loss and accuracy on the training side and the held-out side (or --eval-data), over all workers."""
    train_sums, held_sums = _side_sums(model, data, fraction, cluster)
    if eval_data is not None:
        held_sums, _ = _side_sums(model, eval_data, None, cluster)
    total = sum_over_workers(strategy, tf.constant(np.concatenate([train_sums, held_sums]))).numpy()
    return _metrics(total[:3]), _metrics(total[3:])


def _side_sums(model, source: stream.Source, fraction, cluster: Cluster) -> tuple[np.ndarray, np.ndarray]:
    """[loss sum, correct, rows] (float64) of the non-held-out rows and of the held-out rows of this worker's shards."""
    chunks = stream.read_chunks(source, cluster.my_shards(len(source.shards)))

    @stream.plain_graph
    def sums(chunk):
        held = stream.heldout_mask(chunk, fraction)
        out = model.predict(chunk["x"])
        losses = tf.nn.sigmoid_cross_entropy_with_logits(labels=chunk["y"], logits=out["logits"][:, 0])
        right = tf.cast(out["classes"][:, 0], tf.float32) == chunk["y"]

        def of(mask):
            return tf.stack(
                [
                    tf.reduce_sum(tf.cast(tf.boolean_mask(losses, mask), tf.float64)),
                    tf.reduce_sum(tf.cast(mask & right, tf.float64)),
                    tf.reduce_sum(tf.cast(mask, tf.float64)),
                ]
            )

        return tf.concat([of(chunk["ok"] & ~held), of(chunk["ok"] & held)], axis=0)

    total = (
        chunks.map(sums, num_parallel_calls=tf.data.AUTOTUNE)
        .reduce(tf.zeros([6], tf.float64), stream.plain_graph(lambda a, b: a + b))
        .numpy()
    )
    return total[:3], total[3:]


def _metrics(sums: np.ndarray) -> dict:
    loss_sum, correct, rows = sums
    rows = int(rows)
    return {
        "loss": float(loss_sum / rows) if rows else math.nan,
        "accuracy": float(correct / rows) if rows else math.nan,
        "samples": rows,
    }
