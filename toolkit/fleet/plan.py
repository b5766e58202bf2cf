"""The deploy plan: which models and versions a TF Serving fleet serves, as a models.config.

Everything is built as data and serialized by a library, never by string
templates: the model config is a `ModelServerConfig` proto printed with
`text_format` (manifests, in `fleet.manifests`, are dicts dumped with PyYAML),
so the output always parses.

One rule of TF Serving shapes the fleet package (model_servers/server_core.cc,
`UpdateModelVersionLabelMap`): a version label may only point at a version
that is AVAILABLE on the server. At start-up nothing is loaded yet, so a
config with labels is refused unless the server runs with
`--allow_version_labels_for_unavailable_models`, which lets a *new* label
point at a not-yet-loaded version but still refuses to *move* an existing
label onto one. The generated server flags therefore add that flag whenever a
config carries labels, and `fleet.promote` checks GetModelStatus on every
replica before it moves a label.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from toolkit.artifacts.layout import version_folders
from toolkit.errors import InputError

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


def _config_pb2():
    """TF Serving's config protos; light (no TensorFlow import), so config commands stay fast."""
    from tensorflow_serving.config import model_server_config_pb2

    return model_server_config_pb2


def service_protos():
    """TF Serving's ModelService protos; they pull in TensorFlow, so import quietly on demand."""
    from toolkit.tfenv import import_tf

    import_tf()  # imported quietly before the protos pull it in with its banner
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
    def parse(cls, text: str) -> VersionPolicy:
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
        raise InputError(f"bad version policy {text!r}: use latest, latest=N (N >= 1), all, or specific=V1,V2")

    def served(self, on_disk: tuple[int, ...]) -> tuple[int, ...]:
        """The versions a server applying this policy loads from `on_disk` (sorted)."""
        if self.kind == "all":
            return on_disk
        if self.kind == "latest":
            return on_disk[-self.num_versions :]
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


def _split_model_prefix(text: str, names: list[str], what: str) -> tuple[str, str]:
    """Split an optional `NAME:` prefix; without one, the option needs a single model."""
    prefix, sep, rest = text.partition(":")
    if sep:
        if prefix not in names:
            raise InputError(
                f"{what} {text!r} names model {prefix!r}, which is not among the models ({', '.join(names)})"
            )
        return prefix, rest
    if len(names) > 1:
        raise InputError(
            f"{what} {text!r} needs a model prefix NAME: when deploying several models ({', '.join(names)})"
        )
    return names[0], text


def plan_models(paths: list[str | Path], policies: list[str] = (), labels: list[str] = ()) -> list[ModelEntry]:
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
        versions = tuple(sorted(version_folders(path)))
        if not versions:
            raise InputError(f"model base path {raw} has no version folders (numeric names like 1/)")
        entries[name] = {"path": path, "versions": versions, "policy": VersionPolicy(), "labels": {}}
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
            raise InputError(
                f"model {name}: version {missing[0]} is not on disk in {entry['path']} "
                f"(versions: {format_versions(entry['versions'])})"
            )
        entry["policy"] = policy

    for name, entry in entries.items():
        for version in entry["policy"].served(entry["versions"]):
            folder = version_folders(entry["path"])[version]  # e.g. 00000123/ for version 123
            if not any((folder / f).is_file() for f in _MODEL_FILES):
                raise InputError(f"model {name}: version folder {folder} holds no {' or '.join(_MODEL_FILES)}")

    for text in labels:
        name, spec = _split_model_prefix(text, names, "--label")
        label, sep, value = spec.partition("=")
        if label not in LABELS or not sep:
            raise InputError(f"bad --label {text!r}: use [NAME:]LABEL=VERSION with LABEL one of {', '.join(LABELS)}")
        try:
            version = _parse_version(value)
        except ValueError:
            raise InputError(f"bad --label {text!r}: version {value!r} is not a number") from None
        entry = entries[name]
        if label in entry["labels"]:
            raise InputError(f"model {name}: label {label} given twice")
        if version not in entry["versions"]:
            raise InputError(
                f"model {name}: label {label} points at version {version}, which is "
                f"not on disk in {entry['path']} (versions: {format_versions(entry['versions'])})"
            )
        served = entry["policy"].served(entry["versions"])
        if version not in served:
            raise InputError(
                f"model {name}: label {label} points at version {version}, but version "
                f"policy {entry['policy']} loads only {format_versions(served)}; "
                f"use --policy {name}:specific=... or all"
            )
        entry["labels"][label] = version

    return [ModelEntry(name=n, **e) for n, e in entries.items()]


def format_versions(versions) -> str:
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
        entry.base_path = f"{models_root.rstrip('/')}/{model.name}" if models_root else str(model.path)
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


def server_flags(
    models: list[ModelEntry], config_path: str, grpc_port: int | None = GRPC_PORT, rest_port: int | None = REST_PORT
) -> list[str]:
    """tensorflow_model_server flags serving `config_path` (the same for `python -m serving`).

    A port of None leaves its flag out, for launchers that pick ports themselves.
    """
    flags = [f"--port={grpc_port}"] if grpc_port is not None else []
    if rest_port is not None:
        flags.append(f"--rest_api_port={rest_port}")
    flags += [f"--model_config_file={config_path}", f"--model_config_file_poll_wait_seconds={CONFIG_POLL_SECONDS}"]
    if any(m.labels for m in models):
        flags.append("--allow_version_labels_for_unavailable_models=true")
    return flags
