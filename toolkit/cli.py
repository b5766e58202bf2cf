"""The `tfkit` command line: parse options, call the library, print, exit.

Only click and the standard library are imported at module level; TensorFlow
and the heavy library modules are imported inside the commands that need them
so `tfkit --help` stays instant. Library errors (`toolkit.errors`) become a
one-line `Error: ...` with their exit code in one place, `ToolkitGroup.invoke`.
A command that wants a non-zero exit without an error (a failed check)
calls `ctx.exit(code)`.
"""

import click

from toolkit import __version__
from toolkit.errors import ToolkitError


class _LibraryError(click.ClickException):
    def __init__(self, error: ToolkitError):
        super().__init__(str(error))
        self.exit_code = error.exit_code


class ToolkitGroup(click.Group):
    """A group that turns `ToolkitError` from any subcommand into a clean exit."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ToolkitError as exc:
            raise _LibraryError(exc) from None


@click.group(cls=ToolkitGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tfkit")
def cli():
    """tfkit: train a TensorFlow model, export it for TF Serving and TFLite,
    serve it, and prove every runtime gives the same answers."""


def main():
    """Console-script entry point."""
    cli(prog_name="tfkit")
