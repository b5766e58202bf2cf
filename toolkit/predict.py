"""What `tfkit predict` sends rows to: a SavedModel, a .tflite file, or a server."""

from __future__ import annotations

from toolkit.artifacts.layout import resolve_model
from toolkit.errors import InputError
from toolkit.parity.runners.base import DEFAULT_TAGS, Runner
from toolkit.tfenv import import_tf


def predict_runner(
    source=None,
    target: str | None = None,
    rest_target: str | None = None,
    model_name: str | None = None,
    signature: str = "serving_default",
    timeout: float = 30.0,
    tags=DEFAULT_TAGS,
) -> Runner:
    """The runner `tfkit predict` sends rows to: a SavedModel (its MetaGraph tagged `tags`), a .tflite
    file, or a server."""
    from toolkit.parity.runners.eager import EagerRunner
    from toolkit.parity.runners.grpc import GrpcRunner
    from toolkit.parity.runners.rest import RestRunner
    from toolkit.parity.runners.tflite import TFLiteRunner

    import_tf()
    given = [x for x in (source, target, rest_target) if x]
    if len(given) != 1:
        raise InputError("give exactly one of SOURCE (SavedModel or .tflite), --target or --rest-target")
    if target or rest_target:
        if not model_name:
            raise InputError("--model-name is required with --target/--rest-target")
        if target:
            return GrpcRunner(target, model_name, signature, timeout)
        return RestRunner(rest_target, model_name, signature, timeout)
    if str(source).endswith(".tflite"):
        return TFLiteRunner(source, signature)
    version_dir = resolve_model(source)
    # Named by its path: errors then say which model, not "eager".
    return EagerRunner(version_dir, signature, name=str(version_dir), tags=tags)
