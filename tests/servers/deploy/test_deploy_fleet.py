"""A two-replica local fleet: the live server (logreg at version 2) and a stale replica that
still serves version 1."""

import json

from click.testing import CliRunner

from toolkit.cli import cli
from toolkit.fleet import promote


def test_promote_refuses_when_one_replica_lacks_the_version(live_server, stale_replica):
    server, config_path = live_server
    before = config_path.read_bytes()
    assert promote.version_state(server.grpc_target, "logreg", 2) == "AVAILABLE"
    result = CliRunner().invoke(
        cli,
        [
            "promote",
            "logreg",
            "--version",
            "2",
            "--label",
            "canary",
            "--config",
            str(config_path),
            "--target",
            server.grpc_target,
            "--target",
            stale_replica.grpc_target,
        ],
    )
    assert result.exit_code == 2
    assert result.output == (
        f"Error: version 2 of model logreg is NOT_LOADED on "
        f"{stale_replica.grpc_target}, not AVAILABLE: refusing to label it "
        f"canary\n"
    )
    assert config_path.read_bytes() == before


def test_check_fails_naming_the_stale_replica(live_server, stale_replica, logreg_store, tmp_path):
    """The fleet should serve logreg's latest export (version 2); one replica still serves 1."""
    healthy, _ = live_server
    healthy_runtime = f"grpc@{healthy.grpc_target}"
    stale_runtime = f"grpc@{stale_replica.grpc_target}"
    result = CliRunner().invoke(
        cli,
        [
            "check",
            str(logreg_store / "logreg"),
            "--target",
            healthy.grpc_target,
            "--target",
            stale_replica.grpc_target,
            "--no-convert",
            "--report",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 1, result.output
    assert f"{stale_runtime} answered with model version 1, the checked folder is version 2" in result.output
    problems = [line for line in result.output.split("FAIL:", 1)[1].splitlines() if line.startswith("  - ")]
    assert problems and all(stale_runtime in line for line in problems), result.output

    report = json.loads((tmp_path / "report.json").read_text())
    assert {healthy_runtime, stale_runtime} <= set(report["runtimes"])
    verdicts = {(c["candidate"], c["output"]): c["passed"] for c in report["comparisons"] if c["reference"] == "eager"}
    assert all(ok for (runtime, _), ok in verdicts.items() if runtime == healthy_runtime)
    assert verdicts[(stale_runtime, "probabilities")] is False
