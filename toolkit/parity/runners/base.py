"""The Runner interface every runtime implements.

A runner exposes its signature (input and output names, dtypes, shapes with
`None` for dynamic dimensions), is started and stopped (also as a context
manager), and answers `infer(feed) -> {output: ndarray}`. Feeds are validated
here, once, so every runtime rejects a bad feed with the same message; each
runtime only implements `_infer` on a feed that is known to be well formed.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field

import numpy as np

from toolkit.errors import InputError

#: the SavedModel MetaGraph TF Serving loads unless --saved_model_tags says otherwise
DEFAULT_TAGS = ("serve",)


def dtype_name(dtype) -> str:
    """numpy's dtype name, except `string` for TensorFlow strings (object arrays)."""
    dtype = np.dtype(dtype)
    return "string" if dtype.kind in "OSU" else dtype.name


@dataclass(frozen=True)
class TensorSpec:
    """Name, numpy dtype and shape of one tensor; `None` marks a dynamic dim."""

    name: str
    dtype: np.dtype
    shape: tuple | None  # None: unknown rank

    def dims(self) -> str:
        """The shape as `[?,2]` (`?` dynamic; unknown rank is `[?]`)."""
        if self.shape is None:
            return "[?]"
        return "[" + ",".join("?" if d is None else str(d) for d in self.shape) + "]"

    def describe(self) -> str:
        return f"{self.name}: {dtype_name(self.dtype)}{self.dims()}"

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "dtype": dtype_name(self.dtype),
            "shape": None if self.shape is None else [-1 if d is None else d for d in self.shape],
        }

    @property
    def batch_dynamic(self) -> bool:
        """True when the first dimension is dynamic, i.e. rows can be batched."""
        return bool(self.shape) and self.shape[0] is None


@dataclass
class Signature:
    """Inputs and outputs of one callable endpoint of a model."""

    inputs: dict[str, TensorSpec]
    outputs: dict[str, TensorSpec]
    extra: dict = field(default_factory=dict)

    @property
    def row_inputs(self) -> tuple[str, ...]:
        """Inputs that carry rows (dynamic first dimension); the others (scalars such
        as a temperature, fixed shapes) go whole with every call."""
        return tuple(name for name, spec in self.inputs.items() if spec.batch_dynamic)


def shape_from_dims(dims) -> tuple:
    """A TensorSpec shape from a list of sizes where -1 means dynamic."""
    return tuple(None if int(d) < 0 else int(d) for d in dims)


def feed_rows(feed: dict, row_inputs) -> int | None:
    """Rows a call carries in its `row_inputs`, or None when it has none or they disagree."""
    sizes = {feed[name].shape[0] for name in row_inputs if name in feed and np.ndim(feed[name]) > 0}
    return sizes.pop() if len(sizes) == 1 else None


def take_rows(feed: dict, row_inputs, start: int, stop: int) -> dict:
    """Rows `start:stop` of the `row_inputs`; every other input of the call stays whole."""
    return {name: value[start:stop] if name in row_inputs else value for name, value in feed.items()}


def validate_feed(feed: dict, specs: dict[str, TensorSpec], where: str, require_all: bool = True) -> None:
    """Raise InputError naming every problem of `feed` against `specs` (missing inputs only if `require_all`)."""
    problems = []
    missing = sorted(set(specs) - set(feed)) if require_all else []
    extra = sorted(set(feed) - set(specs))
    if missing:
        problems.append(f"missing input(s) {', '.join(missing)}")
    if extra:
        problems.append(f"unknown input(s) {', '.join(extra)} (expected {', '.join(sorted(specs))})")
    for name in sorted(set(feed) & set(specs)):
        spec, value = specs[name], feed[name]
        if not isinstance(value, np.ndarray):
            problems.append(f"input {name} is a {type(value).__name__}, not a numpy array")
            continue
        if not _dtype_matches(value.dtype, spec.dtype):
            problems.append(f"input {name} has dtype {dtype_name(value.dtype)}, expected {dtype_name(spec.dtype)}")
        if spec.shape is not None and not _shape_matches(value.shape, spec.shape):
            problems.append(
                f"input {name} has shape {list(value.shape)}, expected {dtype_name(spec.dtype)}{spec.dims()}"
            )
    if problems:
        raise InputError(f"bad feed for {where}: " + "; ".join(problems))


def _dtype_matches(got: np.dtype, want: np.dtype) -> bool:
    # Strings arrive as bytes (S), str (U) or object arrays; all map to DT_STRING.
    if np.dtype(want) == np.dtype(object):
        return got.kind in "SUO"
    return got == np.dtype(want)


def _shape_matches(got: tuple, want: tuple) -> bool:
    return len(got) == len(want) and all(w is None or g == w for g, w in zip(got, want))


class Runner(abc.ABC):
    """One runtime behind one interface (see the module docstring)."""

    #: the kind of runtime: eager, savedmodel, grpc, rest or tflite
    kind: str = ""
    #: whether a feed may leave inputs out (a server fills the ones with defaults, and answers for the rest)
    inputs_optional: bool = False

    def __init__(self, name: str):
        self.name = name
        self._signature: Signature | None = None

    # -- lifecycle -----------------------------------------------------------
    def start(self) -> Runner:
        """Load the model / connect; afterwards `signature` is known."""
        if self._signature is None:
            self._signature = self._start()
        return self

    def stop(self) -> None:
        """Release what `start` acquired; safe to call twice."""
        if self._signature is not None:
            self._stop()
            self._signature = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def signature(self) -> Signature:
        if self._signature is None:
            raise RuntimeError(f"runner {self.name} used before start()")
        return self._signature

    def describe(self) -> dict:
        """What this runner runs, for reports (kind, source, quantization...)."""
        return {"name": self.name, "kind": self.kind}

    def max_rows(self, feed: dict) -> int | None:
        """Most rows of `feed` one call may carry (transport limits), or None."""
        return None

    # -- inference -----------------------------------------------------------
    def infer(self, feed: dict) -> dict:
        """Validate `feed` against the signature, run it, return {output: ndarray}.

        A feed bigger than `max_rows` is split into consecutive row chunks
        whose outputs are concatenated, so callers never see transport limits.
        """
        validate_feed(feed, self.signature.inputs, self.name, require_all=not self.inputs_optional)
        limit = self.max_rows(feed)
        row_inputs = self.signature.row_inputs
        rows = feed_rows(feed, row_inputs)
        if limit is None or rows is None or rows <= limit:
            return self._infer(feed)
        parts = [self._infer(take_rows(feed, row_inputs, i, i + limit)) for i in range(0, rows, limit)]
        return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}

    @abc.abstractmethod
    def _start(self) -> Signature:
        """Acquire the runtime and return its signature."""

    def _stop(self) -> None:
        """Release the runtime (default: nothing to release)."""

    @abc.abstractmethod
    def _infer(self, feed: dict) -> dict:
        """Run one validated feed."""
