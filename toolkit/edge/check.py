"""`tfkit-edge check`: every TFLite file of a version folder (or one file), under every LiteRT op
resolver, against the golden outputs the export recorded, judged as `tfkit check` judges them.

The golden file's reference outputs are the reference; its inputs are fed to every file; its
policies judge them. The result is a `CheckResult`, so the verdict table, exit codes and
report.json are `tfkit check`'s; the device's own outputs are saved next to report.json
(outputs.json + outputs.npz, the golden format) for `tfkit check --load-outputs` at home.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

from toolkit.artifacts.golden import GOLDEN_DIR, Golden, device, golden_path, tflite_sha256
from toolkit.errors import InputError
from toolkit.parity import report, stored
from toolkit.parity.compare import signature_consistency
from toolkit.parity.verdict import CheckResult, judge_runtimes, reproducibility, tflite_candidates
from toolkit.policies import INVARIANCE_ULPS, default_policies, policies_from_json

#: the device's outputs, next to report.json
OUTPUTS_FILE = "outputs.json"


def check(
    target, golden: str | None = None, allow_model_mismatch: bool = False, progress=lambda msg: None
) -> tuple[CheckResult, Golden]:
    """Check the TFLite files at `target` (a version folder, or one .tflite file) against `golden`
    (default: the version folder's golden file of serving_default); return the result and the golden file."""
    started = time.monotonic()
    target = Path(target)
    version_dir, files = _tflite_files(target)
    recorded = stored.read(golden or _default_golden(version_dir or target.parent, target))
    if version_dir is not None:
        stored.check_model(version_dir, [recorded], allow_model_mismatch)
    policies = default_policies()
    try:
        policies.update(policies_from_json(recorded.policies))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InputError(f"golden file {recorded.path}: malformed policies ({exc})") from None
    notes, errors, edge, not_run = [], [], [], []
    reference = stored.recorded_runtimes([recorded])[0][0]
    with contextlib.ExitStack() as stack:
        stack.enter_context(reference)
        candidates = tflite_candidates(files, recorded.signature, True, False, notes.append, errors, edge, not_run)
        progress(f"loading {len(files)} TFLite file(s), each under every op resolver")
        for c in candidates:
            stack.enter_context(c.runner)
        if not candidates and not errors:
            raise InputError(f"no TFLite file in {target} can run signature {recorded.signature!r}")
        judged = judge_runtimes(
            reference,
            candidates,
            stored.inputs_of(recorded),
            policies,
            None,
            INVARIANCE_ULPS,
            errors,
            not_run,
            progress,
        )
        signatures = [
            signature_consistency(c.runner.name, reference.signature, c.runner.signature) for c in judged.candidates
        ]
        notes += stored.tflite_changes([(recorded.path, recorded.model)], files)
        repro = reproducibility(version_dir, files + [recorded.path, recorded.path.with_suffix(".npz")], judged.inputs)
        result = judged.result(
            model={
                "path": str(target),
                "name": recorded.model.get("name"),
                "version": str(recorded.model.get("version")),
                "signature": recorded.signature,
                "notes": notes,
            },
            signatures=signatures,
            errors=errors,
            reproducibility=repro,
            policies=policies,
            not_run=not_run,
            seconds=time.monotonic() - started,
            edge=edge,
        )
    here = device()
    for runtime in result.runtimes[1:]:
        runtime["device"] = here
    return result, recorded


def write(result: CheckResult, recorded: Golden, report_dir) -> dict:
    """Save the device's outputs (outputs.json + outputs.npz) and write report.json and report.md
    (no plots: matplotlib is not on the device) into `report_dir`; return their paths."""
    report_dir = Path(report_dir)
    files = [Path(r["source"]) for r in result.runtimes[1:] if r.get("resolver") == "auto"]
    outputs = stored.save(
        result,
        report_dir / OUTPUTS_FILE,
        origin="device",
        model={**recorded.model, "tflite": tflite_sha256(files)},
        names=result.runtime_names()[1:],
    )
    result.saved_outputs = outputs.name
    return {**report.write_report(result, report_dir, plots=False), "outputs": outputs}


def _tflite_files(target: Path) -> tuple[Path | None, list[Path]]:
    """(the version folder or None, the TFLite files to check): model.tflite first."""
    if target.is_dir():
        files = sorted(target.glob("*.tflite"), key=lambda p: (p.name != "model.tflite", p.name))
        if not files:
            raise InputError(
                f"{target} holds no .tflite file; give a version folder exported by tfkit export or a .tflite file"
            )
        return target, files
    if target.suffix == ".tflite" and target.is_file():
        return None, [target]
    raise InputError(f"{target}: no such version folder or .tflite file")


def _default_golden(folder: Path, target: Path) -> Path:
    """The golden file of serving_default in `folder`, else its only golden file."""
    path = golden_path(folder)
    if path.is_file():
        return path
    found = sorted((folder / GOLDEN_DIR).glob("*.json"))
    if len(found) == 1:
        return found[0]
    where = f"{folder / GOLDEN_DIR}" + (f" (it has: {', '.join(p.name for p in found)})" if found else "")
    raise InputError(f"no golden file for {target} in {where}; pass --golden FILE")
