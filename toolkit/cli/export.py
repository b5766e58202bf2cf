"""`tfkit export` and `tfkit inspect`: TF Serving version folders and what is in them."""

import click

from toolkit.cli.group import cli, tags_option


@cli.command()
@click.argument("source", metavar="SOURCE", type=click.Path())
@click.option(
    "--model-base-path",
    required=True,
    type=click.Path(file_okay=False),
    help="TF Serving's model base path; the model goes to BASE/NAME/VERSION/.",
)
@click.option("--name", required=True, help="Model name (the folder under --model-base-path).")
@click.option(
    "--version",
    "version",
    type=int,
    default=None,
    help="Version number. Default: one more than the highest existing version (1 if none).",
)
@click.option("--force", is_flag=True, help="Replace an existing version (atomically).")
@click.option(
    "--signature",
    "signatures",
    multiple=True,
    metavar="NAME",
    help="Keep this signature (repeatable) in the SavedModel and as a TFLite signature runner. "
    "Default: all; those that cannot be fed without --inputs get no warmup or TFLite runner.",
)
@tags_option
@click.option(
    "--inputs",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="What to feed the signatures (warmup, int8 calibration, golden outputs): an .npz with one array "
    "per input name, or a TFRecord file of PredictionLogs (a warmup file, request logs). Default: "
    "the source's own data, else values generated from each signature.",
)
@click.option(
    "--calibration",
    type=click.Path(dir_okay=False),
    metavar="FILE.npz",
    help="Calibrate int8 on these rows (one array per input name) instead of the inputs.",
)
@click.option(
    "--value-range",
    type=(float, float),
    default=None,
    metavar="LOW HIGH",
    help="Range of every generated number (as tfkit check --value-range).",
)
@click.option(
    "--quantize",
    default="",
    metavar="LIST",
    help="Comma-separated quantized TFLite variants to add: dynamic, float16, int8.",
)
@click.option("--no-tflite", is_flag=True, help="Export without any TFLite file.")
@click.option(
    "--allow-flex",
    is_flag=True,
    help="Write TFLite files that need TF Select (Flex) ops; the device then needs the Flex delegate.",
)
def export(
    source,
    model_base_path,
    name,
    version,
    force,
    signatures,
    tags,
    inputs,
    calibration,
    value_range,
    quantize,
    no_tflite,
    allow_flex,
):
    """Export a model into TF Serving's layout, plus TFLite files, warmup requests and the inputs fed.

    SOURCE is a tfkit run folder, a SavedModel folder (TF2 or TF1), a TF Serving version folder
    (or a model folder: its latest version), or a Keras .keras file.
    """
    from toolkit.exporting import export_any

    made = export_any(
        source,
        model_base_path,
        name,
        version=version,
        force=force,
        quantize=quantize,
        signatures=signatures,
        tags=tags,
        inputs=inputs,
        calibration=calibration,
        value_range=value_range,
        tflite=not no_tflite,
        allow_flex=allow_flex,
    )
    folder = made.folder
    click.echo(f"Exported {folder}")
    fed = ", ".join(f"{key} ({source})" for key, source in made.fed.items())
    click.echo(f"  from {made.source['kind']} {made.source['path']}; fed {fed}")
    if made.not_fed:
        click.echo(
            f"  not fed (kept, without warmup or TFLite runner): {', '.join(made.not_fed)}; "
            "pass --inputs FILE to feed them (why: manifest.json, not_fed)"
        )
    for filename, facts in made.tflite.items():
        if facts["needs_flex"]:
            click.echo(
                f"  {filename} needs the Flex delegate (ops {', '.join(facts['flex_ops'])}): "
                "a device can run it only with TF Select ops linked in"
            )
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        click.echo(f"  {str(path.relative_to(folder)):45} {path.stat().st_size:>9} bytes")


@cli.command("inspect")
@click.argument("path", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.option(
    "--tags",
    metavar="TAG[,TAG...]",
    help="Show only the SavedModel MetaGraph with this tag-set (default: every tag-set).",
)
def inspect_cmd(path, as_json, tags):
    """Show the signatures of a SavedModel folder (and the .tflite files in it) or a .tflite file."""
    from toolkit.artifacts import inspect as inspect_model

    info = inspect_model.inspect_path(path, tags.split(",") if tags else None)
    if as_json:
        click.echo(inspect_model.to_json(info))
    else:
        click.echo(inspect_model.to_text(info), nl=False)
