"""The `tfkit` command line: parse options, call the library, print, exit.

Only click and the standard library are imported at module level; TensorFlow
and the heavy library modules are imported inside the commands that need them
so `tfkit --help` stays instant. Library errors (`toolkit.errors`) become a
one-line `Error: ...` with their exit code in one place, `ToolkitGroup.invoke`.
A command that wants a non-zero exit without an error (a failed check)
calls `ctx.exit(code)`.
"""

# Commands register on import, in pipeline order (the order `tfkit --help` lists them).
from toolkit.cli import train, export, serve, check, run, fleet  # noqa: F401  isort: skip
from toolkit.cli.group import cli


def main():
    """Console-script entry point."""
    cli(prog_name="tfkit")
