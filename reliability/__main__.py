"""`python -m reliability soak|fuzz|break`: load, hostile traffic and broken versions for a model server.

Without --target, a model is trained and exported into a temporary folder and
served by `python -m serving` on free 127.0.0.1 ports (stopped afterwards).
With --target (and --rest-url), the traffic goes to a server you started;
--model-base-path BASE tells the harness the versions' weights (BASE/NAME/N),
--server-pid lets the soak watch its memory, and `soak --swap-every S` and
`break` publish new (good or broken) versions into BASE while it serves.

Exit codes: 0 every promise kept; 1 a promise broken (the figures say which);
2 bad arguments or a server that could not be set up.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
from pathlib import Path

from reliability.faults import BROKEN_KINDS, publish_broken_version
from toolkit.artifacts.layout import version_numbers

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

DEFAULT_MODEL = "logreg"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m reliability", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    soak = commands.add_parser("soak", help="bounded mixed load; checks errors, answers and memory")
    soak.add_argument("--duration", type=float, default=60.0, help="seconds of load (default 60)")
    soak.add_argument("--clients", type=int, default=16, help="concurrent clients (default 16)")
    soak.add_argument(
        "--swap-every",
        type=float,
        default=0.0,
        metavar="S",
        help="publish a new, differently trained version every S seconds "
        "(with --target: into --model-base-path, which that server must poll)",
    )
    soak.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    fuzz = commands.add_parser("fuzz", help="malformed gRPC requests and REST bodies")
    fuzz.add_argument("--count", type=int, default=1000, help="gRPC cases (default 1000)")
    for sub in (soak, fuzz):
        sub.add_argument("--target", help="host:port of a running server's gRPC API")
        sub.add_argument("--rest-url", help="http://host:port of its REST API (omit: no REST traffic)")
        sub.add_argument("--model", default=DEFAULT_MODEL, help=f"model name (default {DEFAULT_MODEL})")
        sub.add_argument(
            "--model-base-path",
            type=Path,
            help="BASE holding NAME/VERSION folders of the served model (needed with --target)",
        )
        sub.add_argument("--server-pid", type=int, help="pid of the server at --target (for RSS figures)")
        sub.add_argument("--seed", type=int, default=0)
    broken = commands.add_parser("break", help="publish a broken copy of the newest version as the next one")
    broken.add_argument("--model-base-path", type=Path, required=True, help="BASE holding NAME/VERSION folders")
    broken.add_argument("--model", default=DEFAULT_MODEL, help=f"model name (default {DEFAULT_MODEL})")
    broken.add_argument("--kind", required=True, choices=BROKEN_KINDS)
    return parser


def _break(args) -> int:
    """`break`: the next version number, broken; the server polling BASE must refuse it."""
    model_dir = args.model_base_path / args.model
    if not model_dir.is_dir():
        raise ValueError(f"{model_dir}: no such model folder")
    on_disk = version_numbers(model_dir)
    folder = publish_broken_version(model_dir, args.kind, max(on_disk, default=0) + 1)
    print(
        f"published {folder} ({args.kind}); GetModelStatus should show it END with an error, "
        "and the version serving now keep answering"
    )
    if args.kind == "unreadable folder" and os.geteuid() == 0:
        print("note: a server running as root reads mode-000 folders anyway; see README, Reliability", file=sys.stderr)
    return 0


@contextlib.contextmanager
def _own_server(workdir: Path, model: str):
    """Train + export version 1 into workdir and serve it; yields (server, publisher)."""
    from reliability.models import VersionPublisher
    from toolkit.serve import LocalServer

    base = workdir / "models"
    publisher = VersionPublisher(base, model, workdir)
    publisher.publish()
    args = [f"--model_name={model}", f"--model_base_path={base / model}", "--file_system_poll_wait_seconds=1"]
    with LocalServer(args, rest=True, timeout=120) as server:
        yield server, publisher


def _run(args, server_target, rest_url, server_pid, reference, publisher) -> int:
    if args.command == "soak":
        from reliability.soak import run_soak

        swap = publisher.publish if (publisher and args.swap_every > 0) else None
        result = run_soak(
            server_target,
            rest_url,
            args.model,
            reference,
            duration_s=args.duration,
            clients=args.clients,
            server_pid=server_pid,
            swap=swap,
            swap_every=args.swap_every,
            seed=args.seed,
        )
        print(result.summary())
        if args.json:
            args.json.write_text(
                json.dumps({**result.__dict__, "rss_growth": result.rss_growth, "broken": result.broken()}, indent=2)
                + "\n"
            )
        broken = result.broken()
    else:
        from reliability.fuzz import run_grpc_fuzz, run_rest_fuzz

        results = [("gRPC", run_grpc_fuzz(server_target, args.model, reference, args.count, args.seed))]
        if rest_url:
            results.append(("REST", run_rest_fuzz(rest_url, args.model, reference, args.seed)))
        broken = []
        for api, result in results:
            print(f"{api}: {result.summary()}")
            broken += [f"{api} {f}" for f in result.failures]
        from reliability.traffic import TrafficClient

        client = TrafficClient(server_target, rest_url, args.model, reference, seed=args.seed)
        try:
            after = [client.request(kind) for kind in client.kinds]
        finally:
            client.close()
        broken += [f"after the fuzz, {o.kind}: {o.error}" for o in after if o.error]
        print(
            "after the fuzz: "
            + ("server still answers correctly" if not any(o.error for o in after) else "server answers WRONGLY")
        )
    for line in broken:
        print(f"BROKEN: {line}", file=sys.stderr)
    return 1 if broken else 0


def main(argv=None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    from reliability.models import VersionPublisher
    from reliability.reference import ModelReference
    from toolkit.errors import ToolkitError

    try:
        if args.command == "break":
            return _break(args)
        if args.target:
            if not args.model_base_path:
                parser.error("--target needs --model-base-path (to check every answer)")
            model_dir = args.model_base_path / args.model
            if not model_dir.is_dir():
                parser.error(f"{model_dir}: no such model folder")
            reference = ModelReference.from_model_dir(model_dir)
            with tempfile.TemporaryDirectory(prefix="tfkit-reliability-") as tmp:
                # Seeds far from the usual 0..9, so published versions differ from the served ones.
                publisher = VersionPublisher(
                    args.model_base_path, args.model, tmp, reference, first_seed=1000 + args.seed
                )
                return _run(args, args.target, args.rest_url, args.server_pid, reference, publisher)
        with (
            tempfile.TemporaryDirectory(prefix="tfkit-reliability-") as tmp,
            _own_server(Path(tmp), args.model) as (server, publisher),
        ):
            print(f"serving {args.model} from {tmp} at {server.grpc_target} and {server.rest_url}", flush=True)
            return _run(args, server.grpc_target, server.rest_url, server.process.pid, publisher.reference, publisher)
    except (ToolkitError, ValueError, OSError) as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
