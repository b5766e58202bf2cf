"""The `tfkit` command group, the one place library errors become exit codes, and options
several command groups share."""

import click

from toolkit import __version__
from toolkit.errors import ToolkitError


class _LibraryError(click.ClickException):
    def __init__(self, error: ToolkitError):
        super().__init__(str(error))
        self.exit_code = error.exit_code


class ToolkitGroup(click.Group):
    """A group that turns `ToolkitError` from any subcommand into a clean exit."""

    group_class = type  # subgroups (deploy) list their commands the same way

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ToolkitError as exc:
            raise _LibraryError(exc) from None

    def list_commands(self, ctx):
        """Commands in the order they were registered: the pipeline's order."""
        return list(self.commands)

    def format_commands(self, ctx, formatter):
        """List each command with its whole first sentence, wrapped; click cuts it at ~45 characters."""
        rows = [
            (name, command.get_short_help_str(limit=1000))
            for name, command in ((name, self.get_command(ctx, name)) for name in self.list_commands(ctx))
            if command is not None and not command.hidden
        ]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=ToolkitGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tfkit")
def cli():
    """tfkit: train a TensorFlow model, export it for TF Serving and TFLite,
    serve it, and prove every runtime gives the same answers."""


def tags_option(command):
    """--tags: which MetaGraph of a SavedModel to load, as TF Serving's --saved_model_tags."""
    return click.option(
        "--tags",
        default="serve",
        show_default=True,
        metavar="TAG[,TAG...]",
        callback=_parse_tags,
        help="Tag-set of the SavedModel MetaGraph to load, comma-separated (TF Serving's --saved_model_tags).",
    )(command)


def _parse_tags(ctx, param, value: str) -> tuple:
    tags = tuple(sorted({tag.strip() for tag in value.split(",") if tag.strip()}))
    if not tags:
        raise click.BadParameter("give at least one tag, e.g. serve")
    return tags
