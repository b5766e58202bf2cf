"""Against a live `python -m serving`: the generated models.config is served, the compose
readiness check works, and `tfkit promote` moves labels (requests by label follow) or refuses."""

import subprocess

import grpc
import pytest
from click.testing import CliRunner
from google.protobuf import text_format
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc
from tensorflow_serving.config import model_server_config_pb2

from toolkit.artifacts import layout
from toolkit.cli import cli
from toolkit.fleet import manifests, plan, promote
from toolkit.serve import LocalServer, find_server_binary, free_port

# What the two versions of `plus` compute (TF Serving's half_plus_two / half_plus_three).
PLUS = {1: lambda x: 0.5 * x + 2, 2: lambda x: 0.5 * x + 3}


def _predict_by_label(target, label, x=1.0):
    """(version that answered, y) for one Predict on `plus` addressed by version label."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "plus"
    request.model_spec.version_label = label
    request.inputs["x"].dtype = 1  # DT_FLOAT
    request.inputs["x"].tensor_shape.dim.add(size=1)
    request.inputs["x"].float_val.append(x)
    with grpc.insecure_channel(target) as channel:
        response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=10)
    return response.model_spec.version.value, response.outputs["y"].float_val[0]


def _labels_in(config_path):
    config = text_format.Parse(config_path.read_text(), model_server_config_pb2.ModelServerConfig())
    return {c.name: dict(c.version_labels) for c in config.model_config_list.config}


def _promote(server, config_path, *args):
    return CliRunner().invoke(
        cli, ["promote", *map(str, args), "--target", server.grpc_target, "--config", str(config_path)]
    )


def test_generated_config_is_served(live_server, fleet_plan):
    server, _ = live_server
    for model in fleet_plan:
        for version in model.policy.served(model.versions):
            assert promote.version_state(server.grpc_target, model.name, version) == "AVAILABLE"
    assert _predict_by_label(server.grpc_target, "stable") == (1, PLUS[1](1.0))
    assert _predict_by_label(server.grpc_target, "canary") == (2, PLUS[2](1.0))


def test_compose_readiness_script_against_live_rest(live_server, fleet_plan):
    server, _ = live_server
    script = manifests.readiness_script(fleet_plan, server.rest_port)
    assert subprocess.run(["bash", "-c", script], timeout=30).returncode == 0
    missing = plan.ModelEntry("absent", fleet_plan[0].path, fleet_plan[0].versions)
    script = manifests.readiness_script([*fleet_plan, missing], server.rest_port)
    assert subprocess.run(["bash", "-c", script], timeout=30).returncode != 0


def test_promote_moves_label_and_requests_follow(live_server):
    server, config_path = live_server
    try:
        result = _promote(server, config_path, "plus", "--version", 2, "--label", "stable")
        assert result.exit_code == 0, result.output
        assert "label stable 1 -> 2" in result.output
        assert _labels_in(config_path)["plus"] == {"stable": 2, "canary": 2}
        assert _predict_by_label(server.grpc_target, "stable", 4.0) == (2, PLUS[2](4.0))
        assert _predict_by_label(server.grpc_target, "canary", 4.0) == (2, PLUS[2](4.0))
    finally:
        restored = _promote(server, config_path, "plus", "--version", 1, "--label", "stable")
    assert restored.exit_code == 0, restored.output
    assert _predict_by_label(server.grpc_target, "stable", 4.0) == (1, PLUS[1](4.0))


@pytest.mark.parametrize(
    "args,message",
    [
        (
            ["two", "--version", "124", "--label", "canary"],
            "version 124 of model two is NOT_LOADED on {target}, not AVAILABLE",
        ),
        (["nope", "--version", "1", "--label", "canary"], "model 'nope' is not in"),
        (["plus", "--version", "1", "--label", "gold"], "bad label 'gold'"),
    ],
)
def test_promote_refuses_and_leaves_config_alone(live_server, args, message):
    server, config_path = live_server
    before = config_path.read_bytes()
    result = _promote(server, config_path, *args)
    assert result.exit_code == 2
    assert result.output.startswith("Error: ") and result.output.count("\n") == 1, result.output
    assert message.format(target=server.grpc_target) in result.output
    assert config_path.read_bytes() == before
    assert _predict_by_label(server.grpc_target, "stable")[0] == 1


def test_promote_unreachable_target_exits_3_in_one_line(live_server):
    _, config_path = live_server
    before = config_path.read_bytes()
    target = f"127.0.0.1:{free_port()}"
    result = CliRunner().invoke(
        cli,
        [
            "promote",
            "plus",
            "--version",
            "2",
            "--label",
            "stable",
            "--target",
            target,
            "--config",
            str(config_path),
            "--timeout",
            "2",
        ],
    )
    assert result.exit_code == 3
    assert result.output.startswith(f"Error: cannot reach TF Serving at {target}")
    assert result.output.count("\n") == 1
    assert config_path.read_bytes() == before


def test_promote_refuses_a_version_the_config_policy_does_not_load(models_dir, tmp_path):
    """Caught from the file alone, before any server is asked (the target does not exist)."""
    models = plan.plan_models([models_dir / "plus"], ["specific=1"])
    config_path = layout.write_atomic(tmp_path / "models.config", plan.render_config(plan.build_config(models)))
    result = CliRunner().invoke(
        cli,
        [
            "promote",
            "plus",
            "--version",
            "2",
            "--label",
            "stable",
            "--target",
            f"127.0.0.1:{free_port()}",
            "--config",
            str(config_path),
        ],
    )
    assert result.exit_code == 2
    assert result.output == (f"Error: model plus: the version policy in {config_path} loads only versions 1, not 2\n")


@pytest.mark.skipif(find_server_binary() is None, reason="tensorflow_model_server is not on PATH on this machine")
def test_generated_config_and_promote_on_the_real_tensorflow_model_server(fleet_plan, tmp_path):
    """The same flags and config on the real binary, wherever it is installed."""
    config_path = layout.write_atomic(tmp_path / "models.config", plan.render_config(plan.build_config(fleet_plan)))
    flags = plan.server_flags(fleet_plan, str(config_path), grpc_port=None, rest_port=None)
    with LocalServer(flags, binary=find_server_binary(), timeout=120) as server:
        assert _predict_by_label(server.grpc_target, "stable") == (1, PLUS[1](1.0))
        assert _promote(server, config_path, "plus", "--version", 2, "--label", "stable").exit_code == 0
        assert _predict_by_label(server.grpc_target, "stable") == (2, PLUS[2](1.0))
