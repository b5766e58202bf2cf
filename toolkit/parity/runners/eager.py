"""Eager TensorFlow: a SavedModel reloaded with `tf.saved_model.load`, or an
in-memory `tf.function` / `tf.Module` endpoint, called eagerly."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from toolkit.errors import InputError, root_cause
from toolkit.parity.runners.base import DEFAULT_TAGS, Runner, Signature
from toolkit.tfenv import import_tf


class EagerRunner(Runner):
    """Calls one signature of a SavedModel (`source` is a path; its MetaGraph tagged `tags`) or a
    `tf.function` with an input signature / a ConcreteFunction (in memory)."""

    def __init__(
        self,
        source,
        signature_name: str = "serving_default",
        name: str = "eager",
        kind: str = "eager",
        tags=DEFAULT_TAGS,
    ):
        super().__init__(name)
        self.kind = kind
        self.source = source
        self.signature_name = signature_name
        self.tags = tuple(tags)
        self._fn = None
        self._loaded = None

    def describe(self) -> dict:
        where = str(self.source) if isinstance(self.source, (str, Path)) else "in-memory tf.Module"
        return {**super().describe(), "source": where, "signature": self.signature_name}

    def _start(self) -> Signature:
        from toolkit.parity.runners.protos import spec_from_tf

        if isinstance(self.source, (str, Path)):
            self._loaded = load_saved_model(self.source, self.tags)
            signatures = self._loaded.signatures
            if self.signature_name not in signatures:
                raise InputError(
                    f"SavedModel {self.source} has no signature {self.signature_name!r} "
                    f"(it has: {', '.join(sorted(signatures)) or 'none'}); pass --signature"
                )
            self._fn = signatures[self.signature_name]
        else:
            fn = self.source
            self._fn = fn.get_concrete_function() if hasattr(fn, "get_concrete_function") else fn
        args, kwargs = self._fn.structured_input_signature
        # A tf.function's input_signature is positional; its specs carry the names.
        kwargs = {**{spec.name: spec for spec in args}, **kwargs}
        outputs = self._fn.structured_outputs
        if not isinstance(outputs, dict):
            raise InputError(
                f"{self.name}: the endpoint must return a dict of named outputs, got {type(outputs).__name__}"
            )
        return Signature(
            inputs={k: spec_from_tf(k, s) for k, s in sorted(kwargs.items())},
            outputs={k: spec_from_tf(k, s) for k, s in sorted(outputs.items())},
        )

    def _stop(self) -> None:
        self._fn = self._loaded = None

    def _infer(self, feed: dict) -> dict:
        t = import_tf()
        args = {}
        for k, v in feed.items():
            dtype = self.signature.inputs[k].dtype
            args[k] = t.constant(v, dtype=t.string if dtype == np.dtype(object) else dtype)
        try:
            outputs = self._fn(**args)
        except (t.errors.OpError, ValueError, TypeError) as exc:
            raise InputError(f"{self.name} failed to run: {root_cause(exc)}") from None
        return {k: np.asarray(v.numpy()) for k, v in outputs.items()}


def load_saved_model(path, tags=DEFAULT_TAGS):
    """`tf.saved_model.load` of the MetaGraph tagged `tags` (TF Serving's choice), with a one-line
    InputError for unloadable folders and for tags no MetaGraph has."""
    from toolkit.parity.runners.protos import tag_sets

    path = Path(path)
    if not (path / "saved_model.pb").is_file() and not (path / "saved_model.pbtxt").is_file():
        raise InputError(f"{path} is not a SavedModel folder (no saved_model.pb)")
    available = tag_sets(path)
    if available and set(tags) not in [set(t) for t in available]:
        raise InputError(
            f"SavedModel {path} has no MetaGraph tagged {','.join(tags)} (it has tag-sets: "
            f"{'; '.join(','.join(t) for t in available)}); pass --tags, as TF Serving's "
            "--saved_model_tags"
        )
    try:
        return import_tf().saved_model.load(str(path), tags=list(tags))
    except Exception as exc:  # TF raises many types for corrupt models
        raise InputError(f"cannot load SavedModel {path}: {root_cause(exc)}") from None
