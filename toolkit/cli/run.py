"""`tfkit run`: train -> export -> serve -> check, the main job."""

import click

from toolkit.cli.check import check_options, finish_check, parity_options, progress
from toolkit.cli.group import cli
from toolkit.cli.train import heldout_line, step_line


@cli.command("run")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder for everything made.")
@click.option("--seed", type=int, default=0, show_default=True, help="Training seed (as tfkit train --seed).")
@click.option(
    "--quantize",
    default="dynamic,float16,int8",
    show_default=True,
    metavar="LIST",
    help="TFLite variants to export and check besides float32.",
)
@click.option("--force", is_flag=True, help="Overwrite a previous run in --out.")
@click.option(
    "--model",
    "model",
    type=click.Path(),
    metavar="SOURCE",
    help="Export, serve and check this model instead of training one: anything tfkit export takes "
    "(a SavedModel or version folder, a Keras .keras file, a run folder).",
)
@click.option(
    "--inputs",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="Inputs for the export and the check (as tfkit export --inputs and tfkit check --inputs).",
)
@click.option(
    "--calibration",
    type=click.Path(dir_okay=False),
    metavar="FILE.npz",
    help="Calibrate the int8 variant of --model on these rows (as tfkit export --calibration).",
)
@parity_options
@click.pass_context
def run_cmd(ctx, out, seed, quantize, force, model, inputs, calibration, report_dir, junit, **tolerances):
    """Train (or take --model), export, serve on a free local port and check every runtime.

    The report lands in OUT/report/ (override with --report).
    """
    from pathlib import Path

    from toolkit.artifacts.tflite import parse_quantize
    from toolkit.pipeline import run

    options = check_options(**tolerances, inputs=inputs)
    report_dir = report_dir or str(Path(out) / "report")
    options.work_dir = report_dir
    made = run(
        out,
        seed=seed,
        quantize=parse_quantize(quantize),
        options=options,
        force=force,
        progress=progress,
        on_step=lambda m: click.echo(step_line(m.step, m.loss, m.accuracy)),
        on_trained=lambda record: click.echo(heldout_line(record)),
        model=model,
        calibration=calibration,
    )
    if made.run_dir is not None:
        click.echo(f"trained:  {made.run_dir}")
    click.echo(f"exported: {made.version_dir} ({', '.join(sorted(p.name for p in made.version_dir.glob('*.tflite')))})")
    click.echo(f"served:   gRPC {made.grpc_target}, REST {made.rest_url} (stopped)")
    finish_check(ctx, made.check, report_dir, junit)
