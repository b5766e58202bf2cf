"""Exception types callers can catch; the CLI maps each to an exit code."""


class ToolkitError(Exception):
    """Base class. The message is one line: what went wrong and where."""

    exit_code = 2


class InputError(ToolkitError):
    """Bad user input: a path, a data file, a model, an option value (exit 2)."""


class ServerNotReady(ToolkitError):
    """A server did not become ready/reachable in time (exit 3)."""

    exit_code = 3
