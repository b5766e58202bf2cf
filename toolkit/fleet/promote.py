"""`tfkit promote`: move a version label on every replica, only once the version is AVAILABLE there."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from toolkit.artifacts.layout import write_atomic
from toolkit.errors import InputError, ServerNotReady, ToolkitError
from toolkit.fleet.plan import LABELS, format_versions, read_config, render_config, service_protos


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

    from toolkit.status import model_versions

    service_protos()  # TensorFlow imported quietly before the protos pull it in
    with grpc.insecure_channel(target) as channel:
        try:
            states = {v: state for v, state, _ in model_versions(channel, model, version, timeout)}
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return "NOT_LOADED"
            raise _rpc_error(target, exc) from None
    return states.get(version, "NOT_LOADED")


def reload_config(target: str, config, timeout: float = 30.0) -> None:
    """Apply a ModelServerConfig to a running server (ModelService.HandleReloadConfigRequest)."""
    import grpc

    _, management_pb2, service_grpc = service_protos()
    request = management_pb2.ReloadConfigRequest(config=config)
    with grpc.insecure_channel(target) as channel:
        try:
            response = service_grpc.ModelServiceStub(channel).HandleReloadConfigRequest(request, timeout=timeout)
        except grpc.RpcError as exc:
            raise _rpc_error(target, exc) from None
    if response.status.error_code:
        raise ToolkitError(f"{target} refused the new config: {response.status.error_message}")


def promote(
    config_path: str | Path, model: str, version: int, label: str, targets: list[str], timeout: float = 10.0
) -> Promotion:
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
        raise InputError(f"model {model!r} is not in {config_path} (models: {', '.join(entries) or 'none'})")
    entry = entries[model]
    policy = entry.model_version_policy
    if policy.WhichOneof("policy_choice") == "specific" and version not in policy.specific.versions:
        raise InputError(
            f"model {model}: the version policy in {config_path} loads only versions "
            f"{format_versions(policy.specific.versions)}, not {version}"
        )
    for target in targets:
        state = version_state(target, model, version, timeout)
        if state != "AVAILABLE":
            raise InputError(
                f"version {version} of model {model} is {state} on {target}, "
                f"not AVAILABLE: refusing to label it {label}"
            )

    previous = entry.version_labels.get(label)
    entry.version_labels[label] = version
    write_atomic(config_path, render_config(config))
    for done, target in enumerate(targets):
        try:
            reload_config(target, config, timeout=max(timeout, 30.0))
        except ToolkitError as exc:
            applied = ", ".join(targets[:done]) or "no replica"
            raise type(exc)(
                f"{exc} ({config_path} is updated and applied on {applied}; re-run promote to retry)"
            ) from None
    return Promotion(model, label, version, previous, config_path, tuple(targets))
