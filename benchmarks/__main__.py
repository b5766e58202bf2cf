"""`python -m benchmarks [--quick] [--only NAME,...] [--out FILE] [--keep DIR]`: measure, print the table, write results.json."""

import argparse
import sys
import time
from pathlib import Path

from benchmarks import harness, suite
from toolkit.errors import ToolkitError

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "bench" / "results.json"


def main(argv: list) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/bench",
        description="Measure tfkit's serving and inference paths beside their ceilings; print a table, write results.json.",
    )
    parser.add_argument("--quick", action="store_true", help="shorter windows, fewer repeats (under a minute)")
    parser.add_argument(
        "--only", metavar="NAME,...", help=f"measure only these (default: all): {', '.join(suite.NAMES)}"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results file (default: bench/results.json)")
    parser.add_argument("--keep", type=Path, metavar="DIR", help="work in DIR and keep it (model, requests, logs)")
    args = parser.parse_args(argv)
    names = suite.NAMES
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in names if n not in suite.NAMES]
        if unknown:
            parser.error(f"--only: unknown measurement(s) {', '.join(unknown)}; choose from {', '.join(suite.NAMES)}")
    began = time.monotonic()
    machine = harness.machine()

    def progress(msg: str) -> None:
        print(f"bench [{time.monotonic() - began:5.1f}s] {msg}", file=sys.stderr, flush=True)

    try:
        results = suite.run(suite.QUICK if args.quick else suite.FULL, names, progress, args.keep)
    except (harness.BenchError, ToolkitError) as exc:  # e.g. a server that never became ready
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    print(harness.table(results))
    harness.write_results(args.out, machine, results)
    progress(f"done; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
