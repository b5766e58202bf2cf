"""Stored outputs as runtimes: golden files, saved checks and device reports read back
(`tfkit check --load-outputs`, `tfkit-edge check --golden`), and a check's outputs written in
the same format (`--save-outputs`, the device checker's outputs.json).

Each recorded runtime becomes a `RecordedRunner` named after where it was recorded:
`golden:NAME` (a `tfkit export`), `stored:NAME` (a `tfkit check --save-outputs`),
`device:NAME` (`tfkit-edge check`), with `@FILE` added when two files hold the same
name. It is judged by the policy recorded for it. numpy only: no TensorFlow.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from toolkit.artifacts import golden as golden_file
from toolkit.artifacts.golden import Golden, GoldenFeed, GoldenRuntime
from toolkit.artifacts.layout import sha256_file
from toolkit.errors import InputError
from toolkit.parity.feeds import Feed, Inputs
from toolkit.parity.runners.base import Signature, TensorSpec, dtype_name
from toolkit.parity.runners.recorded import RecordedRunner
from toolkit.policies import policies_json

#: runtime name prefix per origin of the file
PREFIXES = {"export": "golden", "check": "stored", "device": "device"}
#: the policy of a recorded runtime that has none (a file's reference): another build's
DEFAULT_POLICY = "float"
REPORT_FILE = "report.json"


def read(path) -> Golden:
    """The golden file at `path`: its .json or .npz, a report.json that saved outputs (the device
    checker's), or a report folder holding one."""
    path = Path(path)
    report = path / REPORT_FILE if path.is_dir() else path
    if report.name == REPORT_FILE or path.is_dir():
        return golden_file.read(_saved_outputs_of(report))
    return golden_file.read(path)


def _saved_outputs_of(report: Path) -> Path:
    try:
        document = json.loads(report.read_text())
    except FileNotFoundError:
        raise InputError(f"--load-outputs {report}: no such file") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"--load-outputs {report}: not a readable report.json ({exc})") from None
    saved = document.get("saved_outputs") if isinstance(document, dict) else None
    if not saved:
        raise InputError(
            f"--load-outputs {report}: this report saved no outputs; run the check again with "
            "--save-outputs FILE (tfkit-edge check always saves them)"
        )
    return report.parent / saved


def signature_of(golden: Golden) -> Signature:
    """The signature a golden file records."""

    def spec(name: str, doc: dict) -> TensorSpec:
        dtype = np.dtype(object) if doc["dtype"] == "string" else np.dtype(doc["dtype"])
        shape = None if doc["shape"] is None else tuple(None if d < 0 else d for d in doc["shape"])
        return TensorSpec(name, dtype, shape)

    return Signature(
        inputs={n: spec(n, d) for n, d in sorted(golden.inputs.items())},
        outputs={n: spec(n, d) for n, d in sorted(golden.outputs.items())},
    )


def inputs_of(golden: Golden) -> Inputs:
    """The feeds a golden file recorded, to run every runtime on exactly its calls."""
    rows = signature_of(golden).row_inputs
    feeds = [Feed(f.name, f.calls, f.batched, f.in_distribution, rows) for f in golden.feeds]
    return Inputs(f"{golden.source or 'recorded'} (recorded in {golden.path})", feeds)


def recorded_runtimes(goldens: list[Golden]) -> list[tuple[RecordedRunner, str]]:
    """A RecordedRunner and its policy for every runtime of every file, each file's reference first."""
    entries = [(g, r) for g in goldens for r in sorted(g.runtimes, key=lambda r: r.name != g.reference)]
    names = [f"{PREFIXES.get(g.origin, 'stored')}:{r.name}" for g, r in entries]
    made = []
    for (g, runtime), name in zip(entries, names, strict=True):
        if names.count(name) > 1:
            name = f"{name}@{_label(g)}"
        details = {k: v for k, v in runtime.details.items() if k not in ("name", "kind", "policy")}
        runner = RecordedRunner(
            name,
            signature_of(g),
            list(zip(g.calls, runtime.outputs, strict=True)),
            kind=PREFIXES.get(g.origin, "stored"),
            details={**details, "recorded": str(g.path), "recorded_kind": runtime.kind},
        )
        made.append((runner, runtime.policy or DEFAULT_POLICY))
    return made


def _label(golden: Golden) -> str:
    """A short name for the file: its stem, or its folder's name for the usual file names."""
    path = golden.path
    return path.parent.name if path.stem in ("outputs", golden.signature) else path.stem


def check_model(version_dir, goldens: list[Golden], allow_mismatch: bool) -> None:
    """Refuse a golden file recorded for another model than the SavedModel in `version_dir`."""
    actual = golden_file.saved_model_sha256(version_dir)
    for g in goldens:
        recorded = g.model.get("saved_model_sha256")
        if actual and recorded and recorded != actual and not allow_mismatch:
            raise InputError(
                f"{g.path} was recorded for another model: its SavedModel sha256 {recorded} differs "
                f"from {actual} of {version_dir}; give the golden file of this model, or pass "
                "--allow-model-mismatch"
            )


def tflite_changes(recorded: list[tuple[Path, dict]], files) -> list[str]:
    """A note for each TFLite file whose sha256 differs from the one a golden file (path, its "model"
    record) recorded at export."""
    notes = []
    for path in files:
        actual = sha256_file(path)
        for where, model in recorded:
            expected = (model.get("tflite") or {}).get(Path(path).name)
            if expected and expected != actual:
                notes.append(
                    f"{Path(path).name} changed since export: its sha256 {actual[:16]}... differs from "
                    f"{expected[:16]}... recorded in {where}; it is judged by its outputs like any candidate"
                )
                break
    return notes


def recording(result, origin: str, model: dict, names: list[str] | None = None) -> Golden:
    """The golden file of a finished check: its calls as run and the outputs of runtimes `names` (default: all)."""
    feeds: list[GoldenFeed] = []
    for feed, call in result.fed:
        if feeds and feeds[-1].name == feed.name:
            feeds[-1].calls.append(call)
        else:
            feeds.append(GoldenFeed(feed.name, [call], feed.batched, feed.in_distribution))
    details = {r["name"]: r for r in result.runtimes}
    names = [n for n in (names or result.runtime_names()) if n in result.outputs]
    recorded = [
        GoldenRuntime(
            n,
            details[n]["kind"],
            details[n].get("policy"),
            result.outputs[n],
            {k: v for k, v in details[n].items() if k not in ("name", "kind", "policy")},
        )
        for n in names
    ]
    signature = result.signature
    return Golden(
        signature=result.model["signature"],
        inputs={n: _spec_json(s) for n, s in signature.inputs.items()},
        outputs={n: _spec_json(s) for n, s in signature.outputs.items()},
        feeds=feeds,
        runtimes=recorded,
        reference=result.reference if result.reference in names else None,
        origin=origin,
        source=result.inputs.source,
        model=model,
        policies=policies_json(result.policies),
        environment=golden_file.environment(),
    )


def save(result, path, origin: str = "check", model: dict | None = None, names: list[str] | None = None) -> Path:
    """Write `recording(...)` to PATH(.json + .npz); return the .json path."""
    try:
        return golden_file.write(recording(result, origin, model or {}, names), path)
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc.strerror or exc}") from None


def _spec_json(spec: TensorSpec) -> dict:
    return {"dtype": dtype_name(spec.dtype), "shape": spec.to_json()["shape"]}
