"""`tfkit train`: the tutorial model, trained into a run folder."""

import sys
import time

import click

from toolkit.cli.group import cli

# Above this many steps `train` shows a progress bar instead of one line per step.
STEP_LINES_MAX = 50


def step_line(step: int, loss: float, accuracy: float) -> str:
    """The tutorial's per-step line."""
    return f"Loss at step {step}: {loss:.4f}, Accuracy: {accuracy:.4f}"


def epoch_line(epoch, epochs: int | None) -> str:
    """One line per completed epoch: its loss and accuracy over all its rows, and its speed."""
    of = f"/{epochs}" if epochs else ""
    return (
        f"Epoch {epoch.epoch}{of}: loss {epoch.loss:.4f}, accuracy {epoch.accuracy:.4f} "
        f"({epoch.rows:,} rows, {epoch.seconds:.1f} s, {epoch.rows_per_second:,.0f} rows/s)"
    )


def heldout_line(record: dict) -> str:
    """The held-out result of a training record (training.json)."""
    held = record["heldout"]
    return f"Held-out ({held['samples']} samples): loss {held['loss']:.4f}, accuracy {held['accuracy']:.4f}"


class _Progress:
    """The tutorial's step lines for a short run; a progress bar (stderr) with rows/s for a long one."""

    def __init__(self, epochs: int | None):
        self.epochs = epochs
        self.bar = None

    def start(self, steps: int) -> None:
        self.began, self.rows = time.perf_counter(), 0
        if steps > STEP_LINES_MAX:
            self.bar = click.progressbar(
                length=steps, label="Training", file=sys.stderr, item_show_func=lambda rate: rate
            )
            self.bar.__enter__()

    def step(self, m) -> None:
        if self.bar is None:
            click.echo(step_line(m.step, m.loss, m.accuracy))
            return
        self.rows += m.rows
        self.bar.update(1, f"{self.rows / max(time.perf_counter() - self.began, 1e-9):,.0f} rows/s")

    def epoch(self, e) -> None:
        click.echo(epoch_line(e, self.epochs))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)


@cli.command()
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(file_okay=False),
    help="Run folder to write (training.json, checkpoint, heldout.npz, plots/).",
)
@click.option(
    "--data",
    "data_path",
    metavar="PATH",
    help="Your own data, streamed: a .csv (a header, numeric feature columns and a label column), a "
    ".tfrecord of tf.Examples (one float feature per column plus the label), a glob or a folder of "
    "such shards, on any filesystem tf.io.gfile reads (gs://...); or an .npz (features [N, D], "
    "labels [N]). Default: the tutorial's two Gaussians, in memory.",
)
@click.option(
    "--eval-data",
    "eval_data_path",
    metavar="PATH",
    help="A separate evaluation set (same forms as --data) instead of holding out --test-fraction of it.",
)
@click.option("--label-column", default="label", show_default=True, help="Column (feature) holding the 0/1 labels.")
@click.option(
    "--num-per-class",
    type=int,
    default=2000,
    show_default=True,
    help="Samples per class of the generated data (ignored with --data).",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Seeds the data, the split of the generated data, the initial weights and the batch shuffling.",
)
@click.option("--steps", type=int, default=None, help="Training steps (default 10 unless --epochs is given).")
@click.option(
    "--epochs",
    type=int,
    default=None,
    help="Passes over the training rows, instead of --steps (a full-batch step is one pass).",
)
@click.option("--learning-rate", type=float, default=0.1, show_default=True, help="Gradient descent step size.")
@click.option(
    "--batch-size",
    type=int,
    default=None,
    help="Mini-batch size (over all workers) from a shuffled tf.data pipeline. Default: full batch, "
    "i.e. every step is one pass over the training rows.",
)
@click.option(
    "--shuffle-buffer",
    type=int,
    default=10_000,
    show_default=True,
    help="With --data: rows are shuffled within blocks of this many (seeded, reshuffled every pass).",
)
@click.option(
    "--test-fraction",
    type=float,
    default=0.2,
    show_default=True,
    help="Share of the data held out for evaluation (and later for parity checks). With --data a stable "
    "hash of each row decides, the same on every run and worker.",
)
@click.option(
    "--skip-bad-rows",
    is_flag=True,
    help="With --data: skip malformed rows and labels other than 0/1 (counted in training.json) "
    "instead of stopping at the first.",
)
@click.option(
    "--workers",
    metavar="HOST:PORT,...",
    help="Train on several workers (tf.distribute.MultiWorkerMirroredStrategy): every worker's address, "
    "chief first; run the same command on each with its --worker-index. Or set TF_CONFIG.",
)
@click.option(
    "--worker-index",
    type=int,
    default=None,
    help="This worker's place in --workers (0 is the chief, which writes the run folder).",
)
@click.option("--plots/--no-plots", default=True, show_default=True, help="Write PNG plots into RUN/plots/.")
@click.option("--force", is_flag=True, help="Overwrite a run already in --out.")
def train(
    out,
    data_path,
    eval_data_path,
    label_column,
    num_per_class,
    seed,
    steps,
    epochs,
    learning_rate,
    batch_size,
    shuffle_buffer,
    test_fraction,
    skip_bad_rows,
    workers,
    worker_index,
    plots,
    force,
):
    """Train the tutorial's logistic regression and write a run folder for `tfkit export`."""
    from toolkit.training.rundir import train_to_dir

    progress = _Progress(epochs)
    try:
        record = train_to_dir(
            out=out,
            data_path=data_path,
            eval_data_path=eval_data_path,
            label_column=label_column,
            num_per_class=num_per_class,
            seed=seed,
            steps=steps,
            epochs=epochs,
            learning_rate=learning_rate,
            batch_size=batch_size,
            shuffle_buffer=shuffle_buffer,
            test_fraction=test_fraction,
            skip_bad_rows=skip_bad_rows,
            workers=workers,
            worker_index=worker_index,
            plots=plots,
            force=force,
            on_start=progress.start,
            on_step=progress.step,
            on_epoch=progress.epoch,
        )
    finally:
        progress.close()
    if progress.bar is not None:
        click.echo(step_line(**record["steps"][-1]))
    if record.get("bad_rows_skipped"):
        click.echo(f"Skipped {record['bad_rows_skipped']} bad row(s)")
    click.echo(heldout_line(record))
    cluster = record.get("cluster", {"workers": 1, "worker_index": 0})
    if cluster["worker_index"] != 0:
        click.echo(f"Worker {cluster['worker_index']} of {cluster['workers']} done; the chief (worker 0) writes {out}")
        return
    made = ["training.json", "checkpoint/", "heldout.npz", "train.npz"] + sorted(record.get("plots", {}).values())
    click.echo(f"Wrote {out}: {', '.join(made)}")
