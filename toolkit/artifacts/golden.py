"""Golden files: recorded inputs and outputs that travel to devices, fleets and later TensorFlow builds.

A golden file is a pair written side by side:

- `NAME.json`: what was recorded and how to judge it: the signature and its
  tensor specs, the feeds (named groups of calls, in or out of the data's
  distribution), the runtimes whose outputs it holds (with the policy each is
  judged by), the model's sha256 (SavedModel files and each .tflite), the
  policies, the TensorFlow/LiteRT/numpy versions and the platform;
- `NAME.npz`: every call's inputs (`in/CALL/INPUT`) and every runtime's outputs
  (`out/RUNTIME/CALL/OUTPUT`), read with allow_pickle=False; string tensors are
  stored losslessly as `KEY.bytes` (uint8, the values' bytes concatenated in C
  order) + `KEY.lengths` (each value's length, shaped like the tensor).

The JSON records the .npz's sha256, so a truncated or corrupt pair is refused.
`tfkit export` writes one per signature into `assets.extra/tfkit_golden/` (origin
"export"), `tfkit check --save-outputs` one with every runtime it ran (origin
"check"), `tfkit-edge` one with the device's outputs (origin "device").

numpy and the standard library only: the device checker (toolkit.edge) reads and writes them.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import platform
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from toolkit import __version__
from toolkit.artifacts.arrays import BYTES_SUFFIX, LENGTHS_SUFFIX, join_bytes, split_bytes
from toolkit.artifacts.layout import sha256_file, write_atomic
from toolkit.errors import InputError

FORMAT = "tfkit-golden"
SCHEMA_VERSION = 1
#: where a version folder keeps its golden files, one pair per signature
GOLDEN_DIR = "assets.extra/tfkit_golden"
#: what a SavedModel's hash covers (fingerprint.pb and assets.extra/ are derived or extra)
SAVED_MODEL_PARTS = ("saved_model.pb", "saved_model.pbtxt", "variables", "assets")
ORIGINS = ("export", "check", "device")


@dataclass
class GoldenFeed:
    """Calls that belong together, as `toolkit.parity.feeds.Feed` without what the signature tells."""

    name: str
    calls: list[dict]
    batched: bool = True
    in_distribution: bool = True


@dataclass
class GoldenRuntime:
    """One runtime's outputs for every call, the policy it is judged by, and what it was."""

    name: str
    kind: str
    policy: str | None
    outputs: list[dict]
    details: dict = field(default_factory=dict)


@dataclass
class Golden:
    """One golden file (see the module docstring); `path` is the .json it was read from."""

    signature: str
    inputs: dict[str, dict]  # input name -> {"dtype", "shape"} (shape: -1 dynamic, None unknown rank)
    outputs: dict[str, dict]
    feeds: list[GoldenFeed]
    runtimes: list[GoldenRuntime]
    reference: str | None = None
    origin: str = "export"
    source: str = ""  # where the inputs came from: heldout+boundary, generated, npz:PATH...
    model: dict = field(default_factory=dict)  # name, version, saved_model_sha256, tflite {file: sha256}
    policies: dict = field(default_factory=dict)  # toolkit.policies.policies_json
    environment: dict = field(default_factory=dict)
    path: Path | None = None

    @property
    def calls(self) -> list[dict]:
        """Every call's inputs, feed after feed."""
        return [call for feed in self.feeds for call in feed.calls]

    def runtime(self, name: str) -> GoldenRuntime:
        return next(r for r in self.runtimes if r.name == name)


def golden_path(version_dir, signature: str = "serving_default") -> Path:
    """Where a version folder keeps the golden file (.json) of `signature`."""
    return Path(version_dir) / GOLDEN_DIR / f"{signature}.json"


def arrays_path(path) -> Path:
    """The .npz beside a golden file's .json."""
    return Path(path).with_suffix(".npz")


# -- hashes and environment --------------------------------------------------------------
def saved_model_sha256(version_dir) -> str | None:
    """One sha256 over the SavedModel's own files (saved_model.pb, variables/, assets/), their
    relative paths included; None when the folder holds no SavedModel."""
    version_dir = Path(version_dir)
    files = []
    for part in SAVED_MODEL_PARTS:
        path = version_dir / part
        files += sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path] * path.is_file()
    if not files:
        return None
    digest = hashlib.sha256()
    for path in files:
        digest.update(f"{path.relative_to(version_dir).as_posix()}\0{sha256_file(path)}\n".encode())
    return digest.hexdigest()


def tflite_sha256(paths) -> dict[str, str]:
    """{file name: sha256} of TFLite files."""
    return {Path(p).name: sha256_file(p) for p in sorted(paths)}


def library_versions() -> dict:
    """Installed versions of what computes and compares outputs (None: not installed); TensorFlow is not imported."""

    def version(dist):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return None

    return {
        "tfkit": __version__,
        "tensorflow": version("tensorflow"),
        "litert": version("ai-edge-litert"),
        "tensorflow_serving_api": version("tensorflow-serving-api"),
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def device() -> dict:
    """The machine this runs on: machine, processor, OS, Python and LiteRT versions."""
    return {
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "litert": library_versions()["litert"],
    }


def environment() -> dict:
    return {"versions": library_versions(), "platform": device()}


# -- the rows a tfkit model's golden file holds -----------------------------------------
def heldout_feeds(features: np.ndarray, input_name: str, infer) -> list[GoldenFeed]:
    """Held-out rows plus boundary and extreme cases for a one-input classifier like tfkit's.

    `infer(feed) -> outputs` runs the model; its logits (or probabilities)
    locate the decision boundary, so the cases fit whatever model was trained.
    `tfkit export` records these rows and `tfkit check` feeds the same.
    """

    def logit(x):
        return _logit(infer({input_name: x}))

    cases = _boundary_cases(features, logit)
    feeds = [GoldenFeed("heldout", [{input_name: features}])]
    feeds += [
        GoldenFeed(label, [{input_name: values.astype(features.dtype)}], in_distribution=inside)
        for label, values, inside in cases
    ]
    feeds.append(GoldenFeed("batch of 1", [{input_name: features[:1]}], batched=False))
    feeds.append(GoldenFeed("empty batch", [{input_name: features[:0]}], batched=False))
    return feeds


def _logit(outputs: dict) -> np.ndarray:
    if "logits" in outputs:
        return np.asarray(outputs["logits"], np.float64).reshape(len(outputs["logits"]), -1)[:, 0]
    for key, value in outputs.items():
        if "prob" in key.lower():
            p = np.clip(np.asarray(value, np.float64).reshape(len(value), -1)[:, -1], 1e-12, 1 - 1e-12)
            return np.log(p / (1 - p))
    raise InputError(
        f"cannot find a logits or probabilities output among {', '.join(outputs)} "
        "to place boundary cases; pass --inputs FILE"
    )


def _boundary_cases(x: np.ndarray, logit, pairs: int = 8) -> list[tuple[str, np.ndarray, bool]]:
    """(label, rows, in distribution): on the decision boundary and zeros (inside the
    data's range), saturated far from the boundary and huge magnitudes (outside it)."""
    cases = [
        ("zeros", np.zeros((1, x.shape[1]), x.dtype), True),
        ("large magnitude x1e3", x[:pairs] * 1e3, False),
        ("large magnitude x1e6", x[:pairs] * 1e6, False),
    ]
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
    cases.insert(0, ("on the decision boundary", boundary, True))
    cases.insert(
        1,
        (
            "saturated (logit ~ +/-40)",
            np.concatenate([boundary + scale * direction, boundary - scale * direction]),
            False,
        ),
    )
    return cases


def _put(arrays: dict, key: str, value) -> None:
    value = np.asarray(value)
    if value.dtype.kind in "OSU":
        arrays[key + BYTES_SUFFIX], arrays[key + LENGTHS_SUFFIX] = split_bytes(value)
    else:
        arrays[key] = value


def _take(data, key: str) -> np.ndarray | None:
    if key in data:
        return data[key]
    if key + BYTES_SUFFIX in data and key + LENGTHS_SUFFIX in data:
        return join_bytes(data[key + BYTES_SUFFIX], data[key + LENGTHS_SUFFIX])
    return None


# -- write -----------------------------------------------------------------------------------
def write(golden: Golden, path) -> Path:
    """Write `golden` as PATH.json + PATH.npz (the .npz first: a .json always names a whole one)."""
    path = Path(path).with_suffix(".json")
    arrays: dict[str, np.ndarray] = {}
    for c, call in enumerate(golden.calls):
        for name, value in call.items():
            _put(arrays, f"in/{c}/{name}", value)
    for r, runtime in enumerate(golden.runtimes):
        for c, outputs in enumerate(runtime.outputs):
            for name, value in outputs.items():
                _put(arrays, f"out/{r}/{c}/{name}", value)
    npz = arrays_path(path)
    npz.parent.mkdir(parents=True, exist_ok=True)
    staged = npz.with_name(f".{npz.name}.tmp")
    with open(staged, "wb") as handle:
        np.savez(handle, **arrays)
    staged.replace(npz)
    document = {
        "format": FORMAT,
        "schema_version": SCHEMA_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "origin": golden.origin,
        "signature": golden.signature,
        "inputs": golden.inputs,
        "outputs": golden.outputs,
        "source": golden.source,
        "feeds": [
            {"name": f.name, "calls": len(f.calls), "batched": f.batched, "in_distribution": f.in_distribution}
            for f in golden.feeds
        ],
        "reference": golden.reference,
        "runtimes": [
            {
                "name": r.name,
                "kind": r.kind,
                "policy": r.policy,
                "details": r.details,
                "outputs": sorted({name for outputs in r.outputs for name in outputs}),
            }
            for r in golden.runtimes
        ],
        "model": golden.model,
        "policies": golden.policies,
        "environment": golden.environment,
        "arrays": npz.name,
        "arrays_sha256": sha256_file(npz),
    }
    write_atomic(path, json.dumps(document, indent=2) + "\n")
    return path


# -- read ------------------------------------------------------------------------------------
def read(path) -> Golden:
    """Read and validate a golden file (its .json, or the .npz beside it).

    Anything wrong (missing, truncated, corrupt, another format, a missing
    array) is an InputError naming the file.
    """
    path = Path(path)
    if path.suffix == ".npz":
        path = path.with_suffix(".json")
    document = _document(path)
    try:
        npz = path.parent / document["arrays"]
        recorded = document["arrays_sha256"]
        feeds_doc, runtimes_doc = document["feeds"], document["runtimes"]
        signature, inputs, outputs = document["signature"], document["inputs"], document["outputs"]
    except (KeyError, TypeError) as exc:
        raise InputError(
            f"golden file {path} is malformed (no field {exc}); write it again with "
            "tfkit export or tfkit check --save-outputs"
        ) from None
    if not npz.is_file():
        raise InputError(f"golden file {path}: its arrays file {npz} is missing; copy both files")
    actual = sha256_file(npz)
    if actual != recorded:
        raise InputError(
            f"golden file {npz} is corrupt or truncated: its sha256 {actual[:16]}... differs from "
            f"{str(recorded)[:16]}... recorded in {path.name}; copy the pair again"
        )
    try:
        with np.load(npz, allow_pickle=False) as data:
            return _golden(document, data, path, feeds_doc, runtimes_doc, signature, inputs, outputs)
    except (OSError, ValueError, zipfile.BadZipFile, KeyError, TypeError) as exc:
        raise InputError(f"golden file {npz} cannot be read: {exc}") from None


def read_model(path) -> dict:
    """The "model" record of a golden file (hashes, name, version), reading its .json only."""
    return _document(Path(path)).get("model") or {}


def _document(path: Path) -> dict:
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"golden file {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"golden file {path} cannot be read: {exc}") from None
    except ValueError as exc:
        raise InputError(f"golden file {path} is corrupt or truncated (not valid JSON: {exc})") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise InputError(f'{path} is not a tfkit golden file (no "format": "{FORMAT}")')
    if document.get("schema_version") != SCHEMA_VERSION:
        raise InputError(
            f"golden file {path} has schema version {document.get('schema_version')}; this tfkit "
            f"reads version {SCHEMA_VERSION}"
        )
    return document


def _golden(document, data, path, feeds_doc, runtimes_doc, signature, inputs, outputs) -> Golden:
    def array(key: str) -> np.ndarray:
        value = _take(data, key)
        if value is None:
            raise InputError(f"golden file {arrays_path(path)} lacks array {key}")
        return value

    feeds, call = [], 0
    for feed in feeds_doc:
        calls = [{name: array(f"in/{call + i}/{name}") for name in inputs} for i in range(int(feed["calls"]))]
        call += len(calls)
        feeds.append(GoldenFeed(feed["name"], calls, bool(feed["batched"]), bool(feed["in_distribution"])))
    runtimes = []
    for r, runtime in enumerate(runtimes_doc):
        # A runtime may lack an output in some call: the comparison then names it as missing.
        per_call = [
            {name: value for name in runtime["outputs"] if (value := _take(data, f"out/{r}/{c}/{name}")) is not None}
            for c in range(call)
        ]
        runtimes.append(
            GoldenRuntime(
                runtime["name"], runtime["kind"], runtime.get("policy"), per_call, runtime.get("details") or {}
            )
        )
    return Golden(
        signature,
        inputs,
        outputs,
        feeds,
        runtimes,
        document.get("reference"),
        document.get("origin", "export"),
        document.get("source", ""),
        document.get("model") or {},
        document.get("policies") or {},
        document.get("environment") or {},
        path,
    )
