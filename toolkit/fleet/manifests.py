"""Container manifests for a fleet: docker-compose and Kubernetes, as dicts dumped with PyYAML."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import yaml

from toolkit.artifacts.layout import write_atomic
from toolkit.errors import InputError
from toolkit.fleet.plan import (
    CONFIG_DIR,
    CONFIG_NAME,
    GRPC_PORT,
    MODELS_MOUNT,
    REST_PORT,
    SERVERS,
    ModelEntry,
    build_config,
    render_config,
    server_flags,
)

_K8S_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")

# Replacing a replica loses no request (docs/server.md, "Draining and rollouts"). tensorflow_model_server has
# no SIGTERM handler; as a container's PID 1 it ignores SIGTERM and serves on until SIGKILL, so the
# time between the two is its drain. Our server drains itself (serving.server.ModelServer.drain).
PRESTOP_PAUSE_S = 10  # Kubernetes: SIGTERM only once every Service has stopped routing to the pod
# SIGTERM to SIGKILL (Kubernetes: counted from the preStop pause's start); covers the pause and
# our server's whole drain (DRAIN_GRACE_S + DRAIN_TIMEOUT_S).
TERMINATION_GRACE_S = 30


def serving_image() -> str:
    """The official image matching the TensorFlow we export with.

    tensorflow/serving is tagged with the bare release version (`2.21.0`; GPU
    builds `2.21.0-gpu`; no `v` prefix). Serving releases follow TensorFlow's
    minor versions but not always its patch releases, so the tag comes from
    the installed tensorflow-serving-api (released with each server build) and
    must share TensorFlow's major.minor: the server then runs the ops our
    SavedModels were exported with.
    """
    tf_version = metadata.version("tensorflow")
    api_version = metadata.version("tensorflow-serving-api")
    if not re.fullmatch(r"\d+\.\d+\.\d+", api_version):
        raise InputError(
            f"tensorflow-serving-api {api_version} is not a release with a tensorflow/serving image; pass --image"
        )
    if tf_version.split(".")[:2] != api_version.split(".")[:2]:
        raise InputError(
            f"TensorFlow {tf_version} and tensorflow-serving-api {api_version} differ "
            "in minor version, so no tensorflow/serving tag matches both; pass --image"
        )
    return f"tensorflow/serving:{api_version}"


def python_image() -> str:
    """Tag of the image that runs our `python -m serving` (built by the compose file)."""
    from toolkit import __version__

    return f"tfkit-serving:{__version__}"


# Built by `docker compose build` from the tfkit source tree; the Kubernetes
# manifests expect the same image pushed to a registry.
_PYTHON_DOCKERFILE = """\
FROM python:3.11-slim
COPY . /src
RUN pip install --no-cache-dir "/src[full]"
ENV TF_CPP_MIN_LOG_LEVEL=3
EXPOSE 8500 8501
ENTRYPOINT ["python", "-m", "serving"]
"""


@dataclass(frozen=True)
class FleetOptions:
    """What every generated replica shares: server flavour, image, replicas and resources."""

    server: str = "tf-serving"
    image: str | None = None
    replicas: int = 2
    cpus: float = 0.5
    memory_mib: int = 1024

    def __post_init__(self):
        if self.server not in SERVERS:
            raise InputError(f"unknown server {self.server!r}: use one of {', '.join(SERVERS)}")
        if self.replicas < 1:
            raise InputError(f"replicas must be at least 1, got {self.replicas}")
        if self.cpus <= 0 or self.memory_mib <= 0:
            raise InputError("cpus and memory must be positive")

    @property
    def resolved_image(self) -> str:
        if self.image:
            return self.image
        return serving_image() if self.server == "tf-serving" else python_image()

    def container_command(self, models: list[ModelEntry]) -> tuple[list[str], list[str]]:
        """(entrypoint, args) of a replica container."""
        # tensorflow/serving's own entrypoint script adds --model_name=model
        # --model_base_path=/models/model; call the binary directly instead.
        entrypoint = ["tensorflow_model_server"] if self.server == "tf-serving" else ["python", "-m", "serving"]
        return entrypoint, server_flags(models, f"{CONFIG_DIR}/{CONFIG_NAME}")


def readiness_script(models: list[ModelEntry], rest_port: int = REST_PORT) -> str:
    """A bash check that every model reports an AVAILABLE version over REST.

    `GET /v1/models/NAME` answers 200 while a version is still LOADING, so the
    check reads the state. Uses bash's /dev/tcp because the tensorflow/serving
    image ships no curl.
    """
    checks = [
        f"exec 3<>/dev/tcp/127.0.0.1/{rest_port} && "
        f"printf 'GET /v1/models/{m.name} HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && "
        f"grep -q '\"AVAILABLE\"' <&3 && exec 3<&-"
        for m in models
    ]
    return " && ".join(checks)


def compose_spec(models: list[ModelEntry], options: FleetOptions, host_port: int = GRPC_PORT) -> dict:
    """A docker-compose document: one service per replica, models mounted read-only.

    Replica i publishes gRPC on host_port + 10*i and REST on the next port, so
    each replica can be checked on its own (`tfkit check --target ...`). The
    config folder (not the file) is mounted so an atomic rewrite of
    models.config by `tfkit promote` reaches the containers.
    """
    entrypoint, args = options.container_command(models)
    volumes = [
        {"type": "bind", "source": str(m.path), "target": f"{MODELS_MOUNT}/{m.name}", "read_only": True} for m in models
    ]
    volumes.append({"type": "bind", "source": "./config", "target": CONFIG_DIR, "read_only": True})
    services = {}
    for i, (grpc_host, rest_host) in enumerate(replica_host_ports(options.replicas, host_port)):
        service = {
            "image": options.resolved_image,
            "entrypoint": entrypoint,
            "command": args,
            "ports": [f"{grpc_host}:{GRPC_PORT}", f"{rest_host}:{REST_PORT}"],
            "volumes": volumes,
            "healthcheck": {
                "test": ["CMD", "bash", "-c", readiness_script(models)],
                "interval": "10s",
                "timeout": "5s",
                "retries": 3,
                "start_period": "60s",
            },
            "stop_grace_period": f"{TERMINATION_GRACE_S}s",
            "deploy": {"resources": {"reservations": {"cpus": str(options.cpus), "memory": f"{options.memory_mib}M"}}},
            "restart": "unless-stopped",
        }
        if options.server == "python":
            service["environment"] = {"TF_CPP_MIN_LOG_LEVEL": "3"}
            if not options.image:
                service["build"] = {"context": str(_source_dir()), "dockerfile_inline": _PYTHON_DOCKERFILE}
        services[f"serving-{i}"] = service
    return {"name": "tfkit-serving", "services": services}


def replica_host_ports(replicas: int, host_port: int = GRPC_PORT) -> list[tuple[int, int]]:
    """(gRPC, REST) host ports of each compose replica."""
    return [(host_port + 10 * i, host_port + 10 * i + 1) for i in range(replicas)]


def _source_dir() -> Path:
    """The tfkit source tree the python image is built from (this checkout)."""
    root = Path(__file__).resolve().parents[2]
    if not (root / "pyproject.toml").is_file() or not (root / "serving").is_dir():
        raise InputError(
            f"{root} is not the tfkit source tree (needs pyproject.toml and serving/) "
            "to build the python server image; pass --image instead"
        )
    return root


def k8s_manifests(
    models: list[ModelEntry],
    options: FleetOptions,
    app: str = "tfserving",
    namespace: str | None = None,
    models_volume: str = "pvc:tfkit-models",
) -> list[dict]:
    """ConfigMap (models.config), Deployment, Service and PodDisruptionBudget for a TF Serving fleet.

    `models_volume` is `pvc:CLAIM` or `host:/PATH`: a volume holding NAME/VERSION
    folders for every model, mounted read-only at /models. A pod is ready once
    every model has an AVAILABLE version (readiness_script). Updates roll one
    new pod in before an old one goes, and an old pod leaves the Service's
    endpoints (preStop pause) before it is told to stop.
    """
    if not _K8S_NAME_RE.match(app) or len(app) > 53:
        raise InputError(f"app name {app!r} must be a DNS-1123 label (lowercase letters, digits, -)")
    kind, sep, where = models_volume.partition(":")
    if kind == "pvc" and sep and where:
        volume = {"name": "models", "persistentVolumeClaim": {"claimName": where, "readOnly": True}}
    elif kind == "host" and sep and where.startswith("/"):
        volume = {"name": "models", "hostPath": {"path": where, "type": "Directory"}}
    else:
        raise InputError(f"bad models volume {models_volume!r}: use pvc:CLAIM or host:/ABSOLUTE/PATH")

    config_text = render_config(build_config(models, MODELS_MOUNT))
    meta = {"name": app, "labels": {"app": app}}
    if namespace:
        meta["namespace"] = namespace
    config_meta = {**meta, "name": f"{app}-config"}
    entrypoint, args = options.container_command(models)
    container = {
        "name": "serving",
        "image": options.resolved_image,
        "command": entrypoint,
        "args": args,
        "ports": [
            {"name": "grpc", "containerPort": GRPC_PORT, "protocol": "TCP"},
            {"name": "http", "containerPort": REST_PORT, "protocol": "TCP"},
        ],
        "readinessProbe": {
            "exec": {"command": ["bash", "-c", readiness_script(models)]},
            "initialDelaySeconds": 5,
            "periodSeconds": 5,
            "timeoutSeconds": 5,
            "failureThreshold": 3,
        },
        "livenessProbe": {"tcpSocket": {"port": GRPC_PORT}, "initialDelaySeconds": 30, "periodSeconds": 10},
        "resources": {
            "requests": {"cpu": f"{round(options.cpus * 1000)}m", "memory": f"{options.memory_mib}Mi"},
            "limits": {"memory": f"{options.memory_mib}Mi"},
        },
        "volumeMounts": [
            {"name": "models", "mountPath": MODELS_MOUNT, "readOnly": True},
            {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
        ],
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", str(PRESTOP_PAUSE_S)]}}},
    }
    if options.server == "python":
        container["env"] = [{"name": "TF_CPP_MIN_LOG_LEVEL", "value": "3"}]
    return [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": config_meta, "data": {CONFIG_NAME: config_text}},
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": meta,
            "spec": {
                "replicas": options.replicas,
                "selector": {"matchLabels": {"app": app}},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
                "template": {
                    "metadata": {"labels": {"app": app}},
                    "spec": {
                        "terminationGracePeriodSeconds": TERMINATION_GRACE_S,
                        "containers": [container],
                        "volumes": [volume, {"name": "config", "configMap": {"name": config_meta["name"]}}],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": meta,
            "spec": {
                "selector": {"app": app},
                "ports": [
                    {"name": "grpc", "port": GRPC_PORT, "targetPort": "grpc"},
                    {"name": "http", "port": REST_PORT, "targetPort": "http"},
                ],
            },
        },
        # Node drains and other voluntary evictions take one pod at a time.
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": meta,
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": app}}},
        },
    ]


class _PlainDumper(yaml.SafeDumper):
    """SafeDumper that writes shared lists out in full instead of as &anchors/*aliases."""

    def ignore_aliases(self, data):
        return True


def dump_yaml(documents: list[dict]) -> str:
    """Serialize documents as multi-document YAML, keys in the order built."""
    return yaml.dump_all(documents, Dumper=_PlainDumper, sort_keys=False, default_flow_style=False)


def write_compose(
    models: list[ModelEntry], options: FleetOptions, out_dir: str | Path, host_port: int = GRPC_PORT
) -> tuple[Path, Path]:
    """Write OUT/docker-compose.yaml and OUT/config/models.config; return both paths."""
    out_dir = Path(out_dir)
    spec = compose_spec(models, options, host_port)
    config_path = write_atomic(out_dir / "config" / CONFIG_NAME, render_config(build_config(models, MODELS_MOUNT)))
    compose_path = write_atomic(out_dir / "docker-compose.yaml", dump_yaml([spec]))
    return compose_path, config_path
