"""Exception types callers can catch (the CLI maps each to an exit code), and `root_cause`,
which turns a runtime's error text into the one line a user needs."""

import re


class ToolkitError(Exception):
    """Base class. The message is one line: what went wrong and where."""

    exit_code = 2


class InputError(ToolkitError):
    """Bad user input: a path, a data file, a model, an option value (exit 2)."""


class ServerNotReady(ToolkitError):
    """A server did not become ready/reachable in time (exit 3)."""

    exit_code = 3


class ModelNotFound(ServerNotReady):
    """A server answered that the model (or version) does not exist (exit 3, at once: NOT_FOUND is final)."""


# Runtimes glue messages together without a separator ("...ops_selectNode number 0 (FlexSin) failed").
_GLUED = re.compile(r"(?<=\S)(?=Node number \d+ \(|<unknown>:\d+: )")
# MLIR locations: loc("x"), loc(callsite(fused[...] at ...)), nested parentheses and all.
_LOCATION = re.compile(r"\bloc\(")
_NODE = re.compile(r"\s*\[\[\{\{node ([^}]+)\}\}\]\]")
_OP_TAG = re.compile(r"\s*\[Op:[^\]]*\]|\{\{function_node [^}]*\}\}\s*")
_ROOT_ERROR = re.compile(r"^\(\d+\) [A-Z_]+: ")
#: lines that only announce the real message, or number TF's stack
_PREAMBLES = (
    "Graph execution error:",
    "Could not translate MLIR to FlatBuffer.",
    "<stack traces unavailable>",
    "0 successful operations.",
    "Details:",
)
_NOISE = re.compile(
    r"^(\d+ root error\(s\) found\.|\d+ derived errors ignored\.|Detected at node .* defined at|"
    r"Node: '|note: |File \"|Traceback)"
)
# An MLIR IR dump ("func.func"() <{...}> ({ ^bb0(...) %0 = ... })) follows a "see current operation:" note.
_MLIR_IR = re.compile(r'^("[\w.]+"\(|\^bb\d|%\w+|\}\)|\})')


def root_cause(error) -> str:
    """One line that keeps the root cause of a TensorFlow, LiteRT or TFLite-converter error whole.

    `error` is an exception or its text. Drops what only locates or announces the
    cause (TF's "Graph execution error:" and its stack, `[[{{node X}}]]`,
    `{{function_node F}}` and `[Op:...]` tags, MLIR `loc(...)` locations, notes
    and IR dumps), splits
    messages a runtime glued together, and joins what is left with "; ". The
    node a TF kernel failed in is kept as "(node X)". Nothing is cut short.
    """
    text = str(error).strip()
    if not text:
        return type(error).__name__ if isinstance(error, BaseException) else ""
    node = _NODE.search(text)
    text = _OP_TAG.sub("", _NODE.sub("", _GLUED.sub("\n", text)))
    kept = []
    for raw in text.splitlines():
        line = _strip_locations(raw).strip()
        line = re.sub(r"^(<unknown>:\d+: )?(error: )?", "", line)
        line = _ROOT_ERROR.sub("", line)
        if not line or line in _PREAMBLES or _NOISE.match(line) or _MLIR_IR.match(line):
            continue
        if raw[:1].isspace() and not _ROOT_ERROR.match(raw.strip()):
            continue  # stack frames, source lines and converter "Details" rows
        line = " ".join(line.split())
        if line not in kept:
            kept.append(line)
    cause = "; ".join(line.rstrip(":") for line in kept) or " ".join(text.split())
    if node and f"node {node.group(1)}" not in cause:
        cause += f" (node {node.group(1)})"
    return cause


def _strip_locations(line: str) -> str:
    """`line` without MLIR `loc(...)` groups (balanced parentheses) and the ": " after them."""
    while (match := _LOCATION.search(line)) is not None:
        depth, end = 0, match.end() - 1
        for end in range(match.end() - 1, len(line)):
            depth += {"(": 1, ")": -1}.get(line[end], 0)
            if depth == 0:
                break
        rest = line[end + 1 :]
        line = line[: match.start()] + (rest[2:] if rest.startswith(": ") else rest)
    return line
