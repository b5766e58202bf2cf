"""`tfkit train`: the tutorial model, trained into a run folder."""

import sys

import click

from toolkit.cli.group import cli


# Above this many steps `train` shows a progress bar instead of one line per step.
STEP_LINES_MAX = 50


def step_line(step: int, loss: float, accuracy: float) -> str:
    """The tutorial's per-step line."""
    return f"Loss at step {step}: {loss:.4f}, Accuracy: {accuracy:.4f}"


def heldout_line(record: dict) -> str:
    """The held-out result of a training record (training.json)."""
    held = record["heldout"]
    return f"Held-out ({held['samples']} samples): loss {held['loss']:.4f}, accuracy {held['accuracy']:.4f}"


@cli.command()
@click.option("--out", "out", required=True, type=click.Path(file_okay=False),
              help="Run folder to write (training.json, checkpoint, heldout.npz, plots/).")
@click.option("--data", "data_path", type=click.Path(dir_okay=False),
              help="Your own data: a .csv (numeric feature columns plus a label column) or a "
                   ".npz (features [N, D], labels [N]). Default: the tutorial's two Gaussians.")
@click.option("--label-column", default="label", show_default=True, help="CSV column holding the 0/1 labels.")
@click.option("--num-per-class", type=int, default=2000, show_default=True,
              help="Samples per class of the generated data (ignored with --data).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seeds the data, the split, the initial weights and the batch shuffling.")
@click.option("--steps", type=int, default=10, show_default=True, help="Training steps.")
@click.option("--learning-rate", type=float, default=0.1, show_default=True, help="Gradient descent step size.")
@click.option("--batch-size", type=int, default=None,
              help="Mini-batch size over a shuffled tf.data pipeline. Default: the full training set.")
@click.option("--test-fraction", type=float, default=0.2, show_default=True,
              help="Share of the data held out for evaluation (and later for parity checks).")
@click.option("--plots/--no-plots", default=True, show_default=True, help="Write PNG plots into RUN/plots/.")
@click.option("--force", is_flag=True, help="Overwrite a run already in --out.")
def train(out, data_path, label_column, num_per_class, seed, steps, learning_rate, batch_size,
          test_fraction, plots, force):
    """Train the tutorial's logistic regression and write a run folder for `tfkit export`."""
    from toolkit.training.rundir import train_to_dir

    options = dict(out=out, data_path=data_path, label_column=label_column, num_per_class=num_per_class,
                   seed=seed, steps=steps, learning_rate=learning_rate, batch_size=batch_size,
                   test_fraction=test_fraction, plots=plots, force=force)
    if steps <= STEP_LINES_MAX:
        record = train_to_dir(**options, on_step=lambda m: click.echo(step_line(m.step, m.loss, m.accuracy)))
    else:
        # The bar goes to stderr so stdout keeps only results.
        with click.progressbar(length=steps, label="Training", file=sys.stderr) as bar:
            record = train_to_dir(**options, on_step=lambda m: bar.update(1))
        click.echo(step_line(**record["steps"][-1]))
    click.echo(heldout_line(record))
    made = ["training.json", "checkpoint/", "heldout.npz", "train.npz"] + sorted(record.get("plots", {}).values())
    click.echo(f"Wrote {out}: {', '.join(made)}")
