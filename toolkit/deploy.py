"""Deployment to TF Serving fleets: models.config, docker-compose, Kubernetes, label promotion.

Everything is built as data and serialized by a library, never by string
templates: the model config is a `ModelServerConfig` proto printed with
`text_format`, the manifests are dicts dumped with PyYAML, so the output
always parses.

One rule of TF Serving shapes this module (model_servers/server_core.cc,
`UpdateModelVersionLabelMap`): a version label may only point at a version
that is AVAILABLE on the server. At start-up nothing is loaded yet, so a
config with labels is refused unless the server runs with
`--allow_version_labels_for_unavailable_models`, which lets a *new* label
point at a not-yet-loaded version but still refuses to *move* an existing
label onto one. The generated server flags therefore add that flag whenever a
config carries labels, and `promote` checks GetModelStatus on every replica
before it moves a label.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import yaml

from toolkit.errors import InputError, ServerNotReady, ToolkitError

GRPC_PORT = 8500
REST_PORT = 8501
MODELS_MOUNT = "/models"
CONFIG_DIR = "/config"
CONFIG_NAME = "models.config"
LABELS = ("stable", "canary")
# How often replicas re-read the mounted models.config, so a label moved in
# the file (or in the Kubernetes ConfigMap) reaches every replica.
CONFIG_POLL_SECONDS = 30
SERVERS = ("tf-serving", "python")

# What TF Serving loads from a version folder (model.tflite with --prefer_tflite_model).
_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt", "model.tflite")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_K8S_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def _config_pb2():
    """TF Serving's config protos; light (no TensorFlow import), so config commands stay fast."""
    from tensorflow_serving.config import model_server_config_pb2

    return model_server_config_pb2


def _service_protos():
    """TF Serving's ModelService protos; they pull in TensorFlow, so import quietly on demand."""
    from toolkit.tfenv import tf

    tf()  # imported quietly before the protos pull it in with its banner
    from tensorflow_serving.apis import (
        get_model_status_pb2,
        model_management_pb2,
        model_service_pb2_grpc,
    )

    return get_model_status_pb2, model_management_pb2, model_service_pb2_grpc


# --------------------------------------------------------------------------- models


@dataclass(frozen=True)
class VersionPolicy:
    """Which versions of a model the server loads: the latest N, all, or specific ones."""

    kind: str = "latest"
    num_versions: int = 1
    versions: tuple[int, ...] = ()

    @classmethod
    def parse(cls, text: str) -> "VersionPolicy":
        """Parse `latest`, `latest=N`, `all` or `specific=V1,V2`."""
        kind, _, value = text.strip().partition("=")
        try:
            if kind == "latest":
                n = int(value) if value else 1
                if n < 1:
                    raise ValueError
                return cls("latest", num_versions=n)
            if kind == "all" and not value:
                return cls("all")
            if kind == "specific" and value:
                versions = tuple(sorted({_parse_version(v) for v in value.split(",")}))
                return cls("specific", versions=versions)
        except ValueError:
            pass
        raise InputError(
            f"bad version policy {text!r}: use latest, latest=N (N >= 1), all, or specific=V1,V2")

    def served(self, on_disk: tuple[int, ...]) -> tuple[int, ...]:
        """The versions a server applying this policy loads from `on_disk` (sorted)."""
        if self.kind == "all":
            return on_disk
        if self.kind == "latest":
            return on_disk[-self.num_versions:]
        return tuple(v for v in self.versions if v in on_disk)

    def __str__(self):
        if self.kind == "latest":
            return "latest" if self.num_versions == 1 else f"latest={self.num_versions}"
        if self.kind == "all":
            return "all"
        return "specific=" + ",".join(map(str, self.versions))


def _parse_version(text: str) -> int:
    version = int(text)
    if version < 0:
        raise ValueError(text)
    return version


@dataclass(frozen=True)
class ModelEntry:
    """One model of a deployment: its base path on this machine and how to serve it."""

    name: str
    path: Path
    versions: tuple[int, ...]
    policy: VersionPolicy = VersionPolicy()
    labels: dict[str, int] = field(default_factory=dict)


def disk_versions(base_path: Path) -> tuple[int, ...]:
    """Version numbers under a model base path, as TF Serving sees them (numeric folders)."""
    return tuple(sorted(int(p.name) for p in base_path.iterdir()
                        if p.is_dir() and p.name.isdigit()))


def _split_model_prefix(text: str, names: list[str], what: str) -> tuple[str, str]:
    """Split an optional `NAME:` prefix; without one, the option needs a single model."""
    prefix, sep, rest = text.partition(":")
    if sep:
        if prefix not in names:
            raise InputError(f"{what} {text!r} names model {prefix!r}, "
                             f"which is not among the models ({', '.join(names)})")
        return prefix, rest
    if len(names) > 1:
        raise InputError(f"{what} {text!r} needs a model prefix NAME: when deploying "
                         f"several models ({', '.join(names)})")
    return names[0], text


def plan_models(paths: list[str | Path], policies: list[str] = (),
                labels: list[str] = ()) -> list[ModelEntry]:
    """Validate model base paths, version policies and labels; return the deployment plan.

    `paths` are model base paths (BASE/NAME, as `tfkit export` writes them; the
    folder name is the model name). `policies` are `[NAME:]POLICY` (see
    `VersionPolicy.parse`), `labels` are `[NAME:]LABEL=VERSION`. Raises
    InputError naming the first problem: a missing path, a model without
    versions, a version that is not on disk, a label on a version the policy
    does not load.
    """
    if not paths:
        raise InputError("no models given: pass one or more model base paths (BASE/NAME)")
    entries: dict[str, dict] = {}
    for raw in paths:
        path = Path(raw).expanduser().resolve()
        if not path.is_dir():
            raise InputError(f"model base path {raw} is not a directory")
        name = path.name
        if not _NAME_RE.match(name):
            raise InputError(f"model name {name!r} (from {raw}) must match {_NAME_RE.pattern}")
        if name in entries:
            raise InputError(f"model {name!r} given twice ({entries[name]['path']} and {path})")
        versions = disk_versions(path)
        if not versions:
            raise InputError(f"model base path {raw} has no version folders (numeric names like 1/)")
        entries[name] = {"path": path, "versions": versions, "policy": VersionPolicy(),
                         "labels": {}}
    names = list(entries)

    given_policy = set()
    for text in policies:
        name, spec = _split_model_prefix(text, names, "--policy")
        if name in given_policy:
            raise InputError(f"model {name}: --policy given twice")
        given_policy.add(name)
        policy = VersionPolicy.parse(spec)
        entry = entries[name]
        missing = [v for v in policy.versions if v not in entry["versions"]]
        if missing:
            raise InputError(f"model {name}: version {missing[0]} is not on disk in {entry['path']} "
                             f"(versions: {_fmt(entry['versions'])})")
        entry["policy"] = policy

    for name, entry in entries.items():
        for version in entry["policy"].served(entry["versions"]):
            folder = entry["path"] / str(version)
            if not any((folder / f).is_file() for f in _MODEL_FILES):
                raise InputError(f"model {name}: version folder {folder} holds no "
                                 f"{' or '.join(_MODEL_FILES)}")

    for text in labels:
        name, spec = _split_model_prefix(text, names, "--label")
        label, sep, value = spec.partition("=")
        if label not in LABELS or not sep:
            raise InputError(f"bad --label {text!r}: use [NAME:]LABEL=VERSION with LABEL one of "
                             f"{', '.join(LABELS)}")
        try:
            version = _parse_version(value)
        except ValueError:
            raise InputError(f"bad --label {text!r}: version {value!r} is not a number") from None
        entry = entries[name]
        if label in entry["labels"]:
            raise InputError(f"model {name}: label {label} given twice")
        if version not in entry["versions"]:
            raise InputError(f"model {name}: label {label} points at version {version}, which is "
                             f"not on disk in {entry['path']} (versions: {_fmt(entry['versions'])})")
        served = entry["policy"].served(entry["versions"])
        if version not in served:
            raise InputError(f"model {name}: label {label} points at version {version}, but version "
                             f"policy {entry['policy']} loads only {_fmt(served)}; "
                             f"use --policy {name}:specific=... or all")
        entry["labels"][label] = version

    return [ModelEntry(name=n, **e) for n, e in entries.items()]


def _fmt(versions) -> str:
    return ", ".join(map(str, versions)) or "none"


# --------------------------------------------------------------------------- models.config


def build_config(models: list[ModelEntry], models_root: str | None = None):
    """Build the ModelServerConfig proto; `models_root` rewrites base paths to ROOT/NAME.

    Without `models_root` the base paths are this machine's absolute paths (a
    local server); with it, the paths a container sees where the models are
    mounted (e.g. /models).
    """
    config = _config_pb2().ModelServerConfig()
    for model in models:
        entry = config.model_config_list.config.add()
        entry.name = model.name
        entry.base_path = (f"{models_root.rstrip('/')}/{model.name}" if models_root
                           else str(model.path))
        entry.model_platform = "tensorflow"
        policy = entry.model_version_policy
        if model.policy.kind == "latest":
            policy.latest.num_versions = model.policy.num_versions
        elif model.policy.kind == "all":
            policy.all.SetInParent()
        else:
            policy.specific.versions.extend(model.policy.versions)
        for label, version in sorted(model.labels.items()):
            entry.version_labels[label] = version
    return config


def render_config(config) -> str:
    """The config as a text proto, the format of --model_config_file."""
    from google.protobuf import text_format

    return "# ModelServerConfig written by tfkit\n" + text_format.MessageToString(config)


def read_config(path: str | Path):
    """Parse a models.config file; InputError (one line) when missing or malformed."""
    from google.protobuf import text_format

    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise InputError(f"cannot read model config {path}: {exc.strerror}") from None
    try:
        return text_format.Parse(text, _config_pb2().ModelServerConfig())
    except text_format.ParseError as exc:
        raise InputError(f"model config {path} is not a ModelServerConfig text proto: {exc}") from None


def write_atomic(path: str | Path, text: str) -> Path:
    """Write `text` to `path` via a temporary file and rename, so readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return path


def server_flags(models: list[ModelEntry], config_path: str, grpc_port: int | None = GRPC_PORT,
                 rest_port: int | None = REST_PORT) -> list[str]:
    """tensorflow_model_server flags serving `config_path` (the same for `python -m serving`).

    A port of None leaves its flag out, for launchers that pick ports themselves.
    """
    flags = [f"--port={grpc_port}"] if grpc_port is not None else []
    if rest_port is not None:
        flags.append(f"--rest_api_port={rest_port}")
    flags += [f"--model_config_file={config_path}",
              f"--model_config_file_poll_wait_seconds={CONFIG_POLL_SECONDS}"]
    if any(m.labels for m in models):
        flags.append("--allow_version_labels_for_unavailable_models=true")
    return flags


# --------------------------------------------------------------------------- images and manifests


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
        raise InputError(f"tensorflow-serving-api {api_version} is not a release with a "
                         "tensorflow/serving image; pass --image")
    if tf_version.split(".")[:2] != api_version.split(".")[:2]:
        raise InputError(f"TensorFlow {tf_version} and tensorflow-serving-api {api_version} differ "
                         "in minor version, so no tensorflow/serving tag matches both; pass --image")
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
RUN pip install --no-cache-dir /src
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
        entrypoint = (["tensorflow_model_server"] if self.server == "tf-serving"
                      else ["python", "-m", "serving"])
        return entrypoint, server_flags(models, f"{CONFIG_DIR}/{CONFIG_NAME}")


def readiness_script(models: list[ModelEntry], rest_port: int = REST_PORT) -> str:
    """A bash check that every model reports an AVAILABLE version over REST.

    Uses bash's /dev/tcp because the tensorflow/serving image ships no curl.
    """
    checks = [
        f"exec 3<>/dev/tcp/127.0.0.1/{rest_port} && "
        f"printf 'GET /v1/models/{m.name} HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && "
        f"grep -q '\"AVAILABLE\"' <&3 && exec 3<&-"
        for m in models
    ]
    return " && ".join(checks)


def compose_spec(models: list[ModelEntry], options: FleetOptions,
                 host_port: int = GRPC_PORT) -> dict:
    """A docker-compose document: one service per replica, models mounted read-only.

    Replica i publishes gRPC on host_port + 10*i and REST on the next port, so
    each replica can be checked on its own (`tfkit check --target ...`). The
    config folder (not the file) is mounted so an atomic rewrite of
    models.config by `tfkit promote` reaches the containers.
    """
    entrypoint, args = options.container_command(models)
    volumes = [{"type": "bind", "source": str(m.path), "target": f"{MODELS_MOUNT}/{m.name}",
                "read_only": True} for m in models]
    volumes.append({"type": "bind", "source": "./config", "target": CONFIG_DIR, "read_only": True})
    services = {}
    for i, (grpc_host, rest_host) in enumerate(replica_host_ports(options.replicas, host_port)):
        service = {
            "image": options.resolved_image,
            "entrypoint": entrypoint,
            "command": args,
            "ports": [f"{grpc_host}:{GRPC_PORT}", f"{rest_host}:{REST_PORT}"],
            "volumes": volumes,
            "healthcheck": {"test": ["CMD", "bash", "-c", readiness_script(models)],
                            "interval": "10s", "timeout": "5s", "retries": 3,
                            "start_period": "60s"},
            "deploy": {"resources": {"reservations": {
                "cpus": str(options.cpus), "memory": f"{options.memory_mib}M"}}},
            "restart": "unless-stopped",
        }
        if options.server == "python":
            service["environment"] = {"TF_CPP_MIN_LOG_LEVEL": "3"}
            if not options.image:
                service["build"] = {"context": str(_source_dir()),
                                    "dockerfile_inline": _PYTHON_DOCKERFILE}
        services[f"serving-{i}"] = service
    return {"name": "tfkit-serving", "services": services}


def replica_host_ports(replicas: int, host_port: int = GRPC_PORT) -> list[tuple[int, int]]:
    """(gRPC, REST) host ports of each compose replica."""
    return [(host_port + 10 * i, host_port + 10 * i + 1) for i in range(replicas)]


def _source_dir() -> Path:
    """The tfkit source tree the python image is built from (this checkout)."""
    root = Path(__file__).resolve().parent.parent
    if not (root / "pyproject.toml").is_file() or not (root / "serving").is_dir():
        raise InputError(f"{root} is not the tfkit source tree (needs pyproject.toml and serving/) "
                         "to build the python server image; pass --image instead")
    return root


def k8s_manifests(models: list[ModelEntry], options: FleetOptions, app: str = "tfserving",
                  namespace: str | None = None, models_volume: str = "pvc:tfkit-models") -> list[dict]:
    """ConfigMap (models.config), Deployment and Service for a TF Serving fleet.

    `models_volume` is `pvc:CLAIM` or `host:/PATH`: a volume holding NAME/VERSION
    folders for every model, mounted read-only at /models. The readiness probe
    asks the REST status of the first model.
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
        "ports": [{"name": "grpc", "containerPort": GRPC_PORT, "protocol": "TCP"},
                  {"name": "http", "containerPort": REST_PORT, "protocol": "TCP"}],
        "readinessProbe": {"httpGet": {"path": f"/v1/models/{models[0].name}", "port": REST_PORT},
                           "initialDelaySeconds": 5, "periodSeconds": 5, "failureThreshold": 3},
        "livenessProbe": {"tcpSocket": {"port": GRPC_PORT},
                          "initialDelaySeconds": 30, "periodSeconds": 10},
        "resources": {"requests": {"cpu": f"{round(options.cpus * 1000)}m",
                                   "memory": f"{options.memory_mib}Mi"},
                      "limits": {"memory": f"{options.memory_mib}Mi"}},
        "volumeMounts": [{"name": "models", "mountPath": MODELS_MOUNT, "readOnly": True},
                         {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True}],
    }
    if options.server == "python":
        container["env"] = [{"name": "TF_CPP_MIN_LOG_LEVEL", "value": "3"}]
    return [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": config_meta,
         "data": {CONFIG_NAME: config_text}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
         "spec": {"replicas": options.replicas,
                  "selector": {"matchLabels": {"app": app}},
                  "template": {"metadata": {"labels": {"app": app}},
                               "spec": {"containers": [container],
                                        "volumes": [volume, {"name": "config", "configMap": {
                                            "name": config_meta["name"]}}]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": meta,
         "spec": {"selector": {"app": app},
                  "ports": [{"name": "grpc", "port": GRPC_PORT, "targetPort": "grpc"},
                            {"name": "http", "port": REST_PORT, "targetPort": "http"}]}},
    ]


class _PlainDumper(yaml.SafeDumper):
    """SafeDumper that writes shared lists out in full instead of as &anchors/*aliases."""

    def ignore_aliases(self, data):
        return True


def dump_yaml(documents: list[dict]) -> str:
    """Serialize documents as multi-document YAML, keys in the order built."""
    return yaml.dump_all(documents, Dumper=_PlainDumper, sort_keys=False,
                         default_flow_style=False)


def write_compose(models: list[ModelEntry], options: FleetOptions, out_dir: str | Path,
                  host_port: int = GRPC_PORT) -> tuple[Path, Path]:
    """Write OUT/docker-compose.yaml and OUT/config/models.config; return both paths."""
    out_dir = Path(out_dir)
    spec = compose_spec(models, options, host_port)
    config_path = write_atomic(out_dir / "config" / CONFIG_NAME,
                               render_config(build_config(models, MODELS_MOUNT)))
    compose_path = write_atomic(out_dir / "docker-compose.yaml", dump_yaml([spec]))
    return compose_path, config_path


# --------------------------------------------------------------------------- promote


@dataclass(frozen=True)
class Promotion:
    """What `promote` did: the label move and the replicas it was applied to."""

    model: str
    label: str
    version: int
    previous: int | None
    config_path: Path
    targets: tuple[str, ...]


def _rpc_error(target: str, exc) -> ToolkitError:
    import grpc

    if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return ServerNotReady(f"cannot reach TF Serving at {target}: {exc.details()}")
    return ToolkitError(f"{target} answered {exc.code().name}: {exc.details()}")


def version_state(target: str, model: str, version: int, timeout: float = 10.0) -> str:
    """State name (AVAILABLE, LOADING, ..., or NOT_LOADED) of one model version on a server."""
    import grpc

    status_pb2, _, service_grpc = _service_protos()
    request = status_pb2.GetModelStatusRequest()
    request.model_spec.name = model
    request.model_spec.version.value = version
    with grpc.insecure_channel(target) as channel:
        try:
            response = service_grpc.ModelServiceStub(channel).GetModelStatus(request, timeout=timeout)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return "NOT_LOADED"
            raise _rpc_error(target, exc) from None
    states = {s.version: s.state for s in response.model_version_status}
    if version not in states:
        return "NOT_LOADED"
    return status_pb2.ModelVersionStatus.State.Name(states[version])


def reload_config(target: str, config, timeout: float = 30.0) -> None:
    """Apply a ModelServerConfig to a running server (ModelService.HandleReloadConfigRequest)."""
    import grpc

    _, management_pb2, service_grpc = _service_protos()
    request = management_pb2.ReloadConfigRequest(config=config)
    with grpc.insecure_channel(target) as channel:
        try:
            response = service_grpc.ModelServiceStub(channel).HandleReloadConfigRequest(
                request, timeout=timeout)
        except grpc.RpcError as exc:
            raise _rpc_error(target, exc) from None
    if response.status.error_code:
        raise ToolkitError(f"{target} refused the new config: {response.status.error_message}")


def promote(config_path: str | Path, model: str, version: int, label: str,
            targets: list[str], timeout: float = 10.0) -> Promotion:
    """Point `label` of `model` at `version` in models.config and on every target server.

    Refuses (InputError) before changing anything when the model is not in the
    config, the config's version policy would not load the version, or the
    version is not AVAILABLE on any one of the targets — TF Serving itself
    refuses to move a label onto a version it is not serving. Then rewrites
    the config atomically and reloads it on each target; re-running after a
    failed reload is safe.
    """
    if label not in LABELS:
        raise InputError(f"bad label {label!r}: use one of {', '.join(LABELS)}")
    if not targets:
        raise InputError("no --target given: name the server(s) to apply the label on")
    config_path = Path(config_path)
    config = read_config(config_path)
    entries = {c.name: c for c in config.model_config_list.config}
    if model not in entries:
        raise InputError(f"model {model!r} is not in {config_path} "
                         f"(models: {', '.join(entries) or 'none'})")
    entry = entries[model]
    policy = entry.model_version_policy
    if policy.WhichOneof("policy_choice") == "specific" and version not in policy.specific.versions:
        raise InputError(f"model {model}: the version policy in {config_path} loads only versions "
                         f"{_fmt(policy.specific.versions)}, not {version}")
    for target in targets:
        state = version_state(target, model, version, timeout)
        if state != "AVAILABLE":
            raise InputError(f"version {version} of model {model} is {state} on {target}, "
                             f"not AVAILABLE: refusing to label it {label}")

    previous = entry.version_labels.get(label)
    entry.version_labels[label] = version
    write_atomic(config_path, render_config(config))
    for done, target in enumerate(targets):
        try:
            reload_config(target, config, timeout=max(timeout, 30.0))
        except ToolkitError as exc:
            applied = ", ".join(targets[:done]) or "no replica"
            raise type(exc)(f"{exc} ({config_path} is updated and applied on {applied}; "
                             "re-run promote to retry)") from None
    return Promotion(model, label, version, previous, config_path, tuple(targets))
