"""The feeds a check sends to every runtime.

A `Feed` is a named group of calls; each call is one `{input: ndarray}` dict
passed to `Runner.infer`, and every runtime receives exactly the same calls,
so batch composition (and with it bit-exactness) is identical everywhere.
Signatures with a dynamic batch dimension get one call per feed (the check
may split it under transport limits, identically for all runtimes); fully
static signatures get one call per sample.

Sources: the held-out split exported next to a tfkit model plus edge cases
derived from it; values generated from the signature's dtypes and shapes; or
a user's `.npz` file with one array per input.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from toolkit.errors import InputError
from toolkit.parity.runners.base import Signature, TensorSpec

HELDOUT_FILE = "assets.extra/heldout.npz"


@dataclass
class Feed:
    """Calls that belong together, e.g. "heldout" or "edge: on the boundary"."""

    name: str
    calls: list[dict]
    #: True when the calls may be split further into smaller batches
    batched: bool = True

    @property
    def rows(self) -> int:
        return sum(_call_rows(call) for call in self.calls)


@dataclass
class Inputs:
    """All feeds of one check plus where they came from."""

    source: str
    feeds: list[Feed]
    seed: int | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.feeds)

    def sha256(self) -> str:
        """A digest of every array fed, so a report names exactly what was run."""
        digest = hashlib.sha256()
        for feed in self.feeds:
            digest.update(feed.name.encode())
            for call in feed.calls:
                for name in sorted(call):
                    value = np.ascontiguousarray(call[name])
                    digest.update(f"{name}:{value.dtype.str}:{value.shape}".encode())
                    digest.update(value.tobytes() if value.dtype.kind != "O" else repr(value.tolist()).encode())
        return digest.hexdigest()

    def to_json(self) -> dict:
        return {"source": self.source, "seed": self.seed, "rows": self.rows, "sha256": self.sha256(),
                "feeds": [{"name": f.name, "rows": f.rows, "calls": len(f.calls)} for f in self.feeds],
                "notes": self.notes}


def _call_rows(call: dict) -> int:
    first = next(iter(call.values()))
    return int(first.shape[0]) if first.ndim else 1


def heldout_path(version_dir: Path) -> Path | None:
    """The held-out split a tfkit export keeps next to the model, if any."""
    path = Path(version_dir) / HELDOUT_FILE
    return path if path.is_file() else None


def tfkit_feeds(features: np.ndarray, signature: Signature, reference) -> Inputs:
    """Held-out rows plus edge cases for a one-input classifier like tfkit's.

    `reference` is a started Runner; its logits (or probabilities) locate the
    decision boundary, so the edge cases fit whatever model was trained.
    """
    (name, spec), = signature.inputs.items()
    features = np.asarray(features, dtype=spec.dtype)
    if spec.shape is not None and (len(spec.shape) != 2 or spec.shape[1] not in (None, features.shape[1])):
        raise InputError(f"held-out features of shape {list(features.shape)} do not fit input {spec.describe()}")
    cases = _edge_cases(features, lambda x: _logit(reference.infer({name: x})))
    feeds = [Feed("heldout", [{name: features}])]
    feeds += [Feed(f"edge: {label}", [{name: rows.astype(spec.dtype)}]) for label, rows in cases]
    feeds.append(Feed("batch of 1", [{name: features[:1]}], batched=False))
    feeds.append(Feed("empty batch", [{name: features[:0]}], batched=False))
    return Inputs("heldout+edge", feeds)


def _logit(outputs: dict) -> np.ndarray:
    if "logits" in outputs:
        return np.asarray(outputs["logits"], np.float64).reshape(len(outputs["logits"]), -1)[:, 0]
    for key, value in outputs.items():
        if "prob" in key.lower():
            p = np.clip(np.asarray(value, np.float64).reshape(len(value), -1)[:, -1], 1e-12, 1 - 1e-12)
            return np.log(p / (1 - p))
    raise InputError(f"cannot find a logits or probabilities output among {', '.join(outputs)} "
                     "to place edge cases; pass --inputs FILE.npz")


def _edge_cases(x: np.ndarray, logit, pairs: int = 8) -> list[tuple[str, np.ndarray]]:
    """On the decision boundary, far from it on both sides, zeros, huge magnitudes."""
    cases = [("zeros", np.zeros((1, x.shape[1]), x.dtype)),
             ("large magnitude x1e3", x[:pairs] * 1e3),
             ("large magnitude x1e6", x[:pairs] * 1e6)]
    scores = logit(x)
    pos, neg = x[scores > 0][:pairs], x[scores <= 0][:pairs]
    n = min(len(pos), len(neg))
    if n == 0:
        return cases
    a, b = neg[:n].astype(np.float64), pos[:n].astype(np.float64)
    la, lb = logit(a.astype(x.dtype)), logit(b.astype(x.dtype))
    direction = b - a
    # Far from the boundary: step along each segment until the logit is about +/-40.
    scale = (40.0 / np.where(lb - la == 0, 1.0, lb - la))[:, None]
    # Secant steps along each segment: exact in one step for a linear logit.
    for _ in range(3):
        t = np.clip(la / np.where(la - lb == 0, 1, la - lb), 0, 1)[:, None]
        mid = a + t * (b - a)
        lm = logit(mid.astype(x.dtype))
        left = (lm > 0)[:, None]
        b, a = np.where(left, mid, b), np.where(left, a, mid)
        lb, la = np.where(left[:, 0], lm, lb), np.where(left[:, 0], la, lm)
    boundary = mid
    cases.insert(0, ("on the decision boundary", boundary))
    cases.insert(1, ("saturated (logit ~ +/-40)", np.concatenate([boundary + scale * direction,
                                                                    boundary - scale * direction])))
    return cases


def generated_feeds(signature: Signature, samples: int = 64, seed: int = 0,
                    value_range: tuple[float, float] = (-1.0, 1.0)) -> Inputs:
    """Random values from each input's dtype and shape, plus zeros and a batch of 1."""
    if samples < 1:
        raise InputError(f"--samples must be at least 1, got {samples}")
    low, high = value_range
    if not low < high:
        raise InputError(f"--value-range {low:g} {high:g}: LOW must be below HIGH")
    for spec in signature.inputs.values():
        _check_generatable(spec)
    rng = np.random.default_rng(seed)

    def draw(spec: TensorSpec, rows: int) -> np.ndarray:
        inner = tuple(spec.shape[1:]) if signature.batch_dynamic else tuple(spec.shape)
        shape = (rows, *inner) if signature.batch_dynamic else inner
        kind = np.dtype(spec.dtype).kind
        if kind == "f":
            return rng.uniform(low, high, shape).astype(spec.dtype)
        if kind == "b":
            return rng.integers(0, 2, shape).astype(bool)
        info = np.iinfo(spec.dtype)
        lo, hi = max(info.min, int(np.ceil(low))), min(info.max, int(np.floor(high)))
        if lo > hi:
            raise InputError(f"--value-range {low:g} {high:g} holds no {np.dtype(spec.dtype).name} value")
        return rng.integers(lo, hi + 1, shape, dtype=spec.dtype)

    specs = signature.inputs.values()
    if signature.batch_dynamic:
        feeds = [Feed("generated", [{s.name: draw(s, samples) for s in specs}]),
                 Feed("zeros", [{s.name: np.zeros((1, *s.shape[1:]), s.dtype) for s in specs}]),
                 Feed("batch of 1", [{s.name: draw(s, 1) for s in specs}], batched=False)]
    else:
        # A fully static signature takes exactly one shape: one call per sample.
        feeds = [Feed("generated", [{s.name: draw(s, 0) for s in specs} for _ in range(samples)], batched=False),
                 Feed("zeros", [{s.name: np.zeros(s.shape, s.dtype) for s in specs}], batched=False)]
    return Inputs("generated", feeds, seed=seed,
                  notes=[f"uniform values in [{low:g}, {high:g}] from seed {seed}"])


def _check_generatable(spec: TensorSpec) -> None:
    hint = f"pass --inputs FILE.npz with an array named {spec.name!r}"
    if np.dtype(spec.dtype).kind in "SUO":
        raise InputError(f"input {spec.describe()} is a string tensor (e.g. serialized tf.Example) that "
                         f"cannot be generated from its signature; {hint}")
    if np.dtype(spec.dtype).kind not in "fiub":
        raise InputError(f"cannot generate values for input {spec.describe()}; {hint}")
    if spec.shape is None:
        raise InputError(f"input {spec.name} has an unknown rank, so no shape can be generated; {hint}")
    if any(d is None for d in spec.shape[1:]):
        raise InputError(f"input {spec.describe()} has dynamic inner dimensions; {hint}")


def npz_feeds(path, signature: Signature) -> Inputs:
    """A user's .npz with one array per input name (rows along the first axis)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        hint = "; store strings as a bytes array (dtype 'S'), never as objects" if "pickle" in str(exc) else ""
        raise InputError(f"cannot read --inputs {path}: {exc}{hint}") from None
    missing = sorted(set(signature.inputs) - set(arrays))
    if missing:
        raise InputError(f"--inputs {path} lacks array(s) {', '.join(missing)} "
                         f"(it has: {', '.join(sorted(arrays)) or 'none'}; the signature needs "
                         f"{', '.join(s.describe() for s in signature.inputs.values())})")
    feed = {}
    for name, spec in signature.inputs.items():
        value = arrays[name]
        if value.dtype.kind == "U" and np.dtype(spec.dtype) == np.dtype(object):
            value = np.char.encode(value, "utf-8").astype(object)
        elif value.dtype != spec.dtype and value.dtype.kind in "fiub" and np.dtype(spec.dtype).kind in "fiub":
            value = value.astype(spec.dtype)
        feed[name] = value
    if signature.batch_dynamic:
        rows = {v.shape[0] for v in feed.values() if v.ndim}
        if len(rows) != 1:
            raise InputError(f"--inputs {path}: arrays disagree on the number of rows ({sorted(rows)})")
        return Inputs(f"npz:{path}", [Feed(path.name, [feed])])
    # Static signature: either exactly its shape, or samples stacked on a new first axis.
    first = next(iter(signature.inputs.values()))
    if feed[first.name].shape == tuple(first.shape):
        return Inputs(f"npz:{path}", [Feed(path.name, [feed], batched=False)])
    count = len(feed[first.name])
    return Inputs(f"npz:{path}", [Feed(path.name, [{k: v[i] for k, v in feed.items()} for i in range(count)],
                                       batched=False)])


def literal_feed(signature: Signature, json_text: str | None = None, csv_text: str | None = None) -> dict:
    """A feed from a JSON literal ({"input": [[...]]} or, for one input, [[...]])
    or a CSV literal (rows separated by ';' or newlines, values by ',')."""
    specs = signature.inputs
    if json_text is not None:
        import json

        try:
            value = json.loads(json_text)
        except ValueError as exc:
            raise InputError(f"--json: not valid JSON ({exc})") from None
        if not isinstance(value, dict):
            if len(specs) != 1:
                raise InputError(f"--json: the signature has inputs {', '.join(specs)}; pass an object "
                                 '{"name": values, ...}')
            value = {next(iter(specs)): value}
        raw = value
    else:
        if len(specs) != 1:
            raise InputError(f"--csv feeds a single input, but the signature has {', '.join(specs)}; use --json")
        rows = [r for r in csv_text.replace(";", "\n").splitlines() if r.strip()]
        try:
            raw = {next(iter(specs)): [[float(x) for x in r.split(",")] for r in rows]}
        except ValueError as exc:
            raise InputError(f"--csv: {exc}") from None
    unknown = sorted(set(raw) - set(specs))
    if unknown:
        raise InputError(f"unknown input(s) {', '.join(unknown)}; the signature has {', '.join(specs)}")
    feed = {}
    for name, values in raw.items():
        spec = specs[name]
        if np.dtype(spec.dtype) == np.dtype(object):
            feed[name] = np.array([v.encode() if isinstance(v, str) else v for v in np.ravel(values)],
                                  dtype=object).reshape(np.shape(values))
        else:
            try:
                feed[name] = np.asarray(values, dtype=spec.dtype)
            except (TypeError, ValueError) as exc:
                raise InputError(f"input {name}: cannot make {np.dtype(spec.dtype).name} values ({exc})") from None
    return feed
