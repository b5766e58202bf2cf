"""`tfkit export` and `tfkit inspect`: TF Serving version folders and what is in them."""

import click

from toolkit.cli.group import cli


@cli.command()
@click.argument("run_dir", metavar="RUN", type=click.Path(file_okay=False))
@click.option("--model-base-path", required=True, type=click.Path(file_okay=False),
              help="TF Serving's model base path; the model goes to BASE/NAME/VERSION/.")
@click.option("--name", required=True, help="Model name (the folder under --model-base-path).")
@click.option("--version", "version", type=int, default=None,
              help="Version number. Default: one more than the highest existing version (1 if none).")
@click.option("--force", is_flag=True, help="Replace an existing version (atomically).")
@click.option("--quantize", default="", metavar="LIST",
              help="Comma-separated quantized TFLite variants to add: dynamic, float16, int8.")
def export(run_dir, model_base_path, name, version, force, quantize):
    """Export a training run as a SavedModel in TF Serving's layout, plus TFLite files."""
    from toolkit.artifacts.export import export_model

    folder = export_model(run_dir, model_base_path, name, version=version, force=force, quantize=quantize)
    click.echo(f"Exported {folder}")
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        click.echo(f"  {str(path.relative_to(folder)):45} {path.stat().st_size:>9} bytes")


@cli.command("inspect")
@click.argument("path", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.option("--tags", metavar="TAG[,TAG...]",
              help="Show only the SavedModel MetaGraph with this tag-set (default: every tag-set).")
def inspect_cmd(path, as_json, tags):
    """Show the signatures of a SavedModel folder (and the .tflite files in it) or a .tflite file."""
    from toolkit.artifacts import inspect as inspect_model

    info = inspect_model.inspect_path(path, tags.split(",") if tags else None)
    if as_json:
        click.echo(inspect_model.to_json(info))
    else:
        click.echo(inspect_model.to_text(info), nl=False)
