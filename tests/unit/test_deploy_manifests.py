"""`tfkit deploy compose` / `tfkit deploy k8s`: the YAML parses and carries what a fleet needs.
No Docker or Kubernetes runs here, so the files are checked field by field."""

import re
import tomllib
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from serving.server import DRAIN_GRACE_S, DRAIN_TIMEOUT_S
from toolkit.cli import cli

ROOT = Path(__file__).resolve().parents[2]
# What our server needs after SIGTERM before it may be killed: its grace period and its drain.
SERVER_DRAIN_S = DRAIN_GRACE_S + DRAIN_TIMEOUT_S


def _pinned_tensorflow() -> str:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["full"]
    return next(d.split("==")[1] for d in deps if d.startswith("tensorflow=="))


def _run(*args):
    result = CliRunner().invoke(cli, list(map(str, args)))
    assert result.exit_code == 0, result.output
    return result


def _parse_config(text):
    return text_format.Parse(text, model_server_config_pb2.ModelServerConfig())


MODEL_ARGS = ["--policy", "plus:all", "--label", "plus:stable=1", "--label", "plus:canary=2"]


@pytest.fixture(scope="module")
def compose(models_dir, tmp_path_factory):
    """The tf-serving and python variants of a 3-replica compose fleet."""
    variants = {}
    for server in ("tf-serving", "python"):
        out = tmp_path_factory.mktemp(f"compose-{server}")
        _run(
            "deploy",
            "compose",
            models_dir / "plus",
            models_dir / "two",
            *MODEL_ARGS,
            "--server",
            server,
            "--replicas",
            3,
            "--host-port",
            9000,
            "-o",
            out,
        )
        variants[server] = out
    return variants


def test_compose_services_ports_mounts_and_probe(compose, models_dir):
    out = compose["tf-serving"]
    doc = yaml.safe_load((out / "docker-compose.yaml").read_text())
    services = doc["services"]
    assert list(services) == ["serving-0", "serving-1", "serving-2"]
    for i, service in enumerate(services.values()):
        assert service["image"] == f"tensorflow/serving:{_pinned_tensorflow()}"
        assert service["entrypoint"] == ["tensorflow_model_server"]
        assert service["ports"] == [f"{9000 + 10 * i}:8500", f"{9001 + 10 * i}:8501"]
        mounts = {v["target"]: v for v in service["volumes"]}
        assert mounts["/models/plus"]["source"] == str((models_dir / "plus").resolve())
        assert mounts["/models/two"]["source"] == str((models_dir / "two").resolve())
        assert mounts["/config"]["source"] == "./config"
        assert all(v["read_only"] for v in service["volumes"])
        assert "--model_config_file=/config/models.config" in service["command"]
        assert "--allow_version_labels_for_unavailable_models=true" in service["command"]
        probe = " ".join(service["healthcheck"]["test"])
        assert "/v1/models/plus " in probe and "/v1/models/two " in probe
        assert service["deploy"]["resources"]["reservations"] == {"cpus": "0.5", "memory": "1024M"}
    config = _parse_config((out / "config" / "models.config").read_text())
    assert {c.name: c.base_path for c in config.model_config_list.config} == {
        "plus": "/models/plus",
        "two": "/models/two",
    }
    assert dict(config.model_config_list.config[0].version_labels) == {"stable": 1, "canary": 2}


def _seconds(duration: str) -> float:
    """A compose duration such as `30s` or `1m30s`, in seconds."""
    parts = re.fullmatch(r"(?:(\d+)m)?(?:(\d+)s)?", duration)
    assert parts and duration, duration
    return int(parts[1] or 0) * 60 + int(parts[2] or 0)


def _checks_available_state(script: str, model: str) -> bool:
    """Whether a bash readiness script asks the REST status of `model` and requires the AVAILABLE state
    (the status answers 200 while a version is still LOADING)."""
    return f"GET /v1/models/{model} " in script and "grep -q '\"AVAILABLE\"'" in script


def test_compose_replicas_drain_before_they_are_killed(compose):
    for server, out in compose.items():
        for service in yaml.safe_load((out / "docker-compose.yaml").read_text())["services"].values():
            assert _seconds(service["stop_grace_period"]) > SERVER_DRAIN_S, server
            test = service["healthcheck"]["test"]
            assert test[:3] == ["CMD", "bash", "-c"]
            assert _checks_available_state(test[3], "plus") and _checks_available_state(test[3], "two")


def test_compose_python_fallback_runs_our_server_with_the_same_flags(compose):
    official = yaml.safe_load((compose["tf-serving"] / "docker-compose.yaml").read_text())
    fallback = yaml.safe_load((compose["python"] / "docker-compose.yaml").read_text())
    for name, service in fallback["services"].items():
        assert service["entrypoint"] == ["python", "-m", "serving"]
        assert service["command"] == official["services"][name]["command"]
        assert service["volumes"] == official["services"][name]["volumes"]
        assert service["build"]["context"] == str(ROOT)
        assert "pip install" in service["build"]["dockerfile_inline"]
        assert service["image"].startswith("tfkit-serving:")


def _k8s(models_dir, tmp_path, *extra):
    out = tmp_path / "k8s.yaml"
    _run(
        "deploy",
        "k8s",
        models_dir / "plus",
        "--policy",
        "all",
        "--label",
        "stable=1",
        "--label",
        "canary=2",
        "-o",
        out,
        *extra,
    )
    return list(yaml.safe_load_all(out.read_text()))


def test_k8s_deployment_service_and_configmap(models_dir, tmp_path):
    docs = _k8s(models_dir, tmp_path, "--replicas", 4, "--namespace", "ml", "--cpus", 1.5, "--memory-mib", 2048)
    by_kind = {d["kind"]: d for d in docs}
    assert list(by_kind) == ["ConfigMap", "Deployment", "Service", "PodDisruptionBudget"]
    assert {d["metadata"]["namespace"] for d in docs} == {"ml"}

    deployment = by_kind["Deployment"]["spec"]
    assert deployment["replicas"] == 4
    pod = deployment["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == f"tensorflow/serving:{_pinned_tensorflow()}"
    assert container["command"] == ["tensorflow_model_server"]
    assert "--model_config_file=/config/models.config" in container["args"]
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"grpc": 8500, "http": 8501}
    assert container["resources"]["requests"] == {"cpu": "1500m", "memory": "2048Mi"}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/models"]["readOnly"] and mounts["/config"]["readOnly"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["models"]["persistentVolumeClaim"] == {"claimName": "tfkit-models", "readOnly": True}
    assert volumes["config"]["configMap"]["name"] == by_kind["ConfigMap"]["metadata"]["name"]
    assert deployment["selector"]["matchLabels"] == deployment["template"]["metadata"]["labels"]

    service = by_kind["Service"]["spec"]
    assert service["selector"] == deployment["selector"]["matchLabels"]
    assert {p["port"]: p["targetPort"] for p in service["ports"]} == {8500: "grpc", 8501: "http"}

    # The README promises `deploy config --models-root /models` writes the ConfigMap's file.
    config_text = by_kind["ConfigMap"]["data"]["models.config"]
    _run(
        "deploy",
        "config",
        models_dir / "plus",
        "--policy",
        "all",
        "--label",
        "stable=1",
        "--label",
        "canary=2",
        "--models-root",
        "/models",
        "-o",
        tmp_path / "k8s-models.config",
    )
    assert (tmp_path / "k8s-models.config").read_text() == config_text
    config = _parse_config(config_text)
    (plus,) = config.model_config_list.config
    assert plus.base_path == "/models/plus"
    assert dict(plus.version_labels) == {"stable": 1, "canary": 2}


@pytest.mark.parametrize("server", ["tf-serving", "python"])
def test_k8s_rollouts_and_evictions_lose_no_request(models_dir, tmp_path, server):
    by_kind = {d["kind"]: d for d in _k8s(models_dir, tmp_path, "--replicas", 3, "--server", server)}
    deployment = by_kind["Deployment"]["spec"]
    assert deployment["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    pod = deployment["template"]["spec"]
    (container,) = pod["containers"]
    # The pod leaves the Service's endpoints during the pause, before SIGTERM; SIGKILL comes only
    # after the pause and our server's whole drain.
    pause = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pause[0] == "sleep" and int(pause[1]) >= 5
    assert pod["terminationGracePeriodSeconds"] > int(pause[1]) + SERVER_DRAIN_S
    probe = container["readinessProbe"]
    assert probe["exec"]["command"][:2] == ["bash", "-c"]
    assert _checks_available_state(probe["exec"]["command"][2], "plus")
    budget = by_kind["PodDisruptionBudget"]
    assert budget["apiVersion"] == "policy/v1"
    assert budget["spec"] == {"maxUnavailable": 1, "selector": deployment["selector"]}


def test_k8s_python_fallback_and_host_volume(models_dir, tmp_path):
    official = _k8s(models_dir, tmp_path)
    fallback = _k8s(
        models_dir,
        tmp_path,
        "--server",
        "python",
        "--image",
        "registry.example/tfkit:1",
        "--models-volume",
        "host:/srv/models",
    )
    official_c = official[1]["spec"]["template"]["spec"]["containers"][0]
    pod = fallback[1]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == "registry.example/tfkit:1"
    assert container["command"] == ["python", "-m", "serving"]
    assert container["args"] == official_c["args"]
    assert pod["volumes"][0]["hostPath"] == {"path": "/srv/models", "type": "Directory"}


@pytest.mark.parametrize(
    "args,message",
    [
        (["k8s", "--app", "Bad_Name"], "must be a DNS-1123 label"),
        (["k8s", "--models-volume", "nfs:x"], "bad models volume 'nfs:x'"),
        (["compose", "--replicas", "0"], "replicas must be at least 1"),
    ],
)
def test_bad_fleet_options_exit_2(models_dir, tmp_path, args, message):
    command, *options = args
    result = CliRunner().invoke(
        cli, ["deploy", command, str(models_dir / "plus"), *options, "-o", str(tmp_path / "out")]
    )
    assert result.exit_code == 2
    assert re.fullmatch(r"Error: .+\n", result.output) and message in result.output


@pytest.mark.parametrize(
    "tf_version,api_version,expected",
    [
        ("2.16.2", "2.16.1", "tensorflow/serving:2.16.1"),  # a TF patch release with no server build
        ("2.17.0", "2.16.1", None),
        ("2.21.0", "2.21.0rc1", None),
    ],
)
def test_serving_image_tag_follows_the_serving_release(monkeypatch, tf_version, api_version, expected):
    from toolkit.errors import InputError
    from toolkit.fleet import manifests

    versions = {"tensorflow": tf_version, "tensorflow-serving-api": api_version}
    monkeypatch.setattr(manifests.metadata, "version", versions.__getitem__)
    if expected:
        assert manifests.serving_image() == expected
    else:
        with pytest.raises(InputError, match="pass --image"):
            manifests.serving_image()
