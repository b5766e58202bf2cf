"""The `tfkit-edge` command line (argparse: click is not on the device).

    tfkit-edge check VERSION_DIR|FILE.tflite [--golden FILE] [--report DIR] [--allow-model-mismatch]

Exit 0: every file agrees with the golden outputs; 1: a mismatch; 2: bad input (a missing or
corrupt golden file, one of another model), with one `Error:` line.
"""

from __future__ import annotations

import argparse
import contextlib
import sys

from toolkit import __version__
from toolkit.errors import ToolkitError

DEFAULT_REPORT = "tfkit-edge-report"


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="tfkit-edge", description="Check TFLite files against golden outputs on a device: numpy and LiteRT only."
    )
    top.add_argument("--version", action="version", version=f"tfkit-edge {__version__}")
    commands = top.add_subparsers(dest="command", required=True)
    check = commands.add_parser(
        "check",
        help="Check a version folder's TFLite files (or one file) against its "
        "golden outputs, under every LiteRT op resolver.",
    )
    check.add_argument(
        "target",
        metavar="VERSION_DIR|FILE.tflite",
        help="A version folder from tfkit export (every .tflite in it), or one .tflite file.",
    )
    check.add_argument(
        "--golden",
        metavar="FILE",
        help="Golden file (.json, with its .npz beside it). Default: "
        "VERSION_DIR/assets.extra/tfkit_golden/serving_default.json.",
    )
    check.add_argument(
        "--report",
        metavar="DIR",
        default=DEFAULT_REPORT,
        help=f"Write report.json, report.md and the device's outputs here (default: {DEFAULT_REPORT}).",
    )
    check.add_argument(
        "--allow-model-mismatch",
        action="store_true",
        help="Check against a golden file recorded for another SavedModel instead of exiting 2.",
    )
    return top


def main(argv=None) -> int:
    """Console-script entry point; returns the exit code."""
    args = parser().parse_args(argv)
    from toolkit.edge import check
    from toolkit.parity import report

    try:
        with _error_report(args.report, args.target):
            result, recorded = check.check(
                args.target,
                args.golden,
                args.allow_model_mismatch,
                progress=lambda message: print(f"tfkit-edge: {message}", file=sys.stderr),
            )
            print(report.summary(result))
            paths = check.write(result, recorded, args.report)
    except ToolkitError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(f"report: {paths['json']} (outputs: {paths['outputs']})")
    return 0 if result.passed else 1


@contextlib.contextmanager
def _error_report(report_dir, target):
    """A check that ends in an error still writes report.json saying so (as tfkit check does)."""
    try:
        yield
    except ToolkitError as exc:
        from toolkit.parity import report

        with contextlib.suppress(ToolkitError):
            report.write_error_report(report_dir, exc, target)
        raise
