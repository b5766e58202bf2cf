"""A two-replica local fleet: the live server (logreg at version 2) and a stale replica that
still serves version 1."""

from click.testing import CliRunner

from toolkit import deploy
from toolkit.cli import cli


def test_promote_refuses_when_one_replica_lacks_the_version(live_server, stale_replica):
    server, config_path = live_server
    before = config_path.read_bytes()
    assert deploy.version_state(server.grpc_target, "logreg", 2) == "AVAILABLE"
    result = CliRunner().invoke(cli, [
        "promote", "logreg", "--version", "2", "--label", "canary", "--config", str(config_path),
        "--target", server.grpc_target, "--target", stale_replica.grpc_target])
    assert result.exit_code == 2
    assert result.output == (f"Error: version 2 of model logreg is NOT_LOADED on "
                             f"{stale_replica.grpc_target}, not AVAILABLE: refusing to label it "
                             f"canary\n")
    assert config_path.read_bytes() == before
