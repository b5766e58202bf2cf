"""Render a CheckResult: terminal table, report.json, report.md with PNG plots,
and JUnit XML for CI. matplotlib is imported lazily (Agg backend) only when
plots are written."""

from __future__ import annotations

import contextlib
import json
import math
import time
from pathlib import Path
from xml.etree import ElementTree as ET

import numpy as np

from toolkit.errors import InputError
from toolkit.policies import policies_json

SCHEMA_VERSION = 2
#: rows or calls named in a failure line before "+N more"
NAMED_UNITS = 5
#: the option that moves each policy's bound, named in failure lines
POLICY_FLAGS = {
    "exact": "--atol/--rtol",
    "session": "--session-ulps",
    "float": "--float-ulps, --atol, --rtol",
    "quantized": "--quantized-atol",
}


# -- JSON -----------------------------------------------------------------------------
def to_json(result) -> dict:
    """The report.json document (schema in docs/parity.md and docs/)."""
    comparisons, classes = [], []
    for pair in result.pairs:
        comparisons += [c.to_json() for c in pair.outputs]
        if pair.classes is not None:
            classes.append(pair.classes.to_json())
    return _finite(
        {
            "schema_version": SCHEMA_VERSION,
            "status": "pass" if result.passed else "fail",
            "passed": result.passed,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "seconds": round(result.seconds, 3),
            "model": result.model,
            "reference": result.reference,
            "runtimes": result.runtime_names(),
            "runtime_details": result.runtimes,
            "policies": policies_json(result.policies),
            "inputs": result.inputs.to_json(),
            "rows": result.rows,
            "calls": result.calls,
            "row_labels": result.row_labels,
            "call_labels": result.call_labels,
            "outputs_per_call": sorted(_per_call_outputs(result)),
            "comparisons": comparisons,
            "class_agreement": classes,
            "batch_invariance": [b.to_json() for b in result.batch_invariance],
            "repeatability": [r.to_json() for r in result.repeatability],
            "not_judged": result.not_judged,
            "signature_consistency": [s.to_json() for s in result.signatures],
            "edge": result.edge,
            "kernel_spread": result.kernel_spread,
            "errors": result.errors,
            "not_run": result.not_run,
            "reproducibility": result.reproducibility,
            "saved_outputs": result.saved_outputs,
        }
    )


def error_json(error, model) -> dict:
    """The report.json of a check that ended in an error (exit 2 or 3) before any verdict."""
    return {
        "schema_version": SCHEMA_VERSION,
        "status": "error",
        "passed": False,
        "exit_code": error.exit_code,
        "error": str(error),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "model": {"path": None if model is None else str(model)},
    }


def _per_call_outputs(result) -> set[str]:
    """Outputs that do not follow the batch (compared call by call)."""
    return {c.output for pair in result.pairs for c in pair.outputs if c.unit == "call"}


def _finite(value):
    """JSON has no inf/NaN: write them as null (documented)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


# -- terminal -------------------------------------------------------------------------
def _named_units(result, unit: str, numbers: list[int], total: int) -> str:
    """`rows heldout[3], heldout[7] (+2 more)` or `calls generated #2`: what the numbers point at."""
    labels = result.row_labels if unit == "row" else result.call_labels
    named = [labels[n] if n < len(labels) else str(n) for n in numbers[:NAMED_UNITS]]
    more = total - len(named)
    return f"{unit}{'s' if total != 1 else ''} " + ", ".join(named) + (f" (+{more} more)" if more > 0 else "")


def _num(x) -> str:
    if x is None:
        return "-"
    if x == 0:
        return "0"
    return f"{x:.3g}" if abs(x) >= 1e-3 else f"{x:.2e}"


def _count(n: int, unit: str) -> str:
    return f"{n} {unit}{'' if n == 1 else 's'}"


def _verdict(comparison) -> str:
    if not comparison.judged:
        return "info"
    if not comparison.passed:
        return "FAIL"
    return "exact" if comparison.bit_exact else "pass"


def table(result) -> str:
    """Runtime pairs x outputs: policy, max abs and rel error, ULPs of the output's scale, failures, verdict."""
    header = ("candidate", "output", "per", "policy", "max abs", "max rel", "ulp@scale", "fail", "verdict")
    lines = [header]
    for pair in result.pairs:
        for c in pair.outputs:
            lines.append(
                (
                    pair.candidate,
                    c.output,
                    c.unit,
                    c.policy,
                    _num(c.max_abs_error),
                    _num(c.max_rel_error),
                    _num(c.max_scale_ulp_error),
                    str(c.failures),
                    "ERROR" if c.error else _verdict(c),
                )
            )
    widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
    text = [f"reference: {result.reference} (ulp@scale: error in ULPs of the output's scale, see docs/parity.md)"]
    text += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in lines]
    return "\n".join(text)


def _bound_text(c) -> str:
    """The bound an output comparison was held to, in words."""
    if c.policy == "exact" and not (c.atol or c.rtol):
        return "bit-exactness"
    parts = [f"{c.ulps:g} ULPs of the output's scale"] if c.ulps else []
    parts += [f"atol={c.atol:g}"] if c.atol else []
    parts += [f"rtol={c.rtol:g}"] if c.rtol else []
    return " + ".join(parts) or "bit-exactness"


def _failure_line(result, pair, c) -> str:
    """What failed in one output comparison: the pair, the output, the bound, the rows or calls, the flag."""
    where = f"{pair.reference} vs {pair.candidate}, output {c.output}"
    if c.error:
        return f"{where}: {c.error}"
    return (
        f"{where}: {c.failures} element(s) outside {_bound_text(c)} (max abs error {_num(c.max_abs_error)}, "
        f"max rel error {_num(c.max_rel_error)}, {_num(c.max_scale_ulp_error)} ULPs of the output's scale) "
        f"in {_named_units(result, c.unit, c.failed_units, c.failed_unit_count)}; "
        f"the {c.policy} policy's bound moves with {POLICY_FLAGS[c.policy]}"
    )


def _invariance_line(b) -> str:
    where = f"{b.runtime}, output {b.output}: batch 1 and batch N"
    if b.error:
        return f"{where} disagree: {b.error}"
    return (
        f"{where} differ by up to {_num(b.max_abs_error)} abs, {_num(b.max_rel_error)} rel "
        f"({_num(b.max_scale_ulps)} ULPs of the output's scale) on {b.units_failed} of {_count(b.units, 'row')}; "
        f"bound {b.bound:g} ULPs of the output's scale (--max-ulps)"
    )


def _repeat_line(result) -> str | None:
    """One finding for every runtime whose answers changed between identical calls."""
    changed = [r for r in result.repeatability if not r]
    if not changed:
        return None
    worst = max(changed, key=lambda r: r.max_abs_error)
    how = worst.error or f"up to {_num(worst.max_abs_error)} apart"
    return (
        f"answers change between identical calls (state or randomness): "
        f"{', '.join(result.unstable_runtimes())} (e.g. {worst.runtime}, output {worst.output}: {how} "
        "when one call was repeated); their comparisons are reported, not judged"
    )


def problems(result) -> list[str]:
    """One line per failure of any kind: which pair, which output, which rows or calls, which bound."""
    lines = list(result.errors)
    repeat = _repeat_line(result)
    if repeat:
        lines.append(repeat)
    for pair in result.pairs:
        lines += [_failure_line(result, pair, c) for c in pair.outputs if not c]
        cls = pair.classes
        if cls is not None and not cls.passed:
            lines.append(
                f"{pair.reference} vs {pair.candidate}: class agreement {cls.agreement:.4f}: "
                f"{cls.flips} flip(s) away from the threshold in {cls.rows} rows, at most {cls.allowed_flips} "
                f"allowed for an agreement of {cls.min_agreement:g} (--min-class-agreement): "
                f"{_named_units(result, 'row', cls.flipped_rows, cls.flips)}"
            )
    lines += [_invariance_line(b) for b in result.batch_invariance if not b]
    for s in result.signatures:
        if not s:
            lines.append(
                f"signature of {s.runtime} differs from the SavedModel's SignatureDef: {'; '.join(s.problems)}"
            )
    return lines


def _feeds_text(inputs) -> str:
    return ", ".join(f"{feed.name} ({_count(len(feed.calls), 'call')})" for feed in inputs.feeds)


def summary(result) -> str:
    """Table, notes, flips near the threshold, what was not judged, and the verdict, for the terminal."""
    out = [table(result)]
    near = [(p.candidate, p.classes) for p in result.pairs if p.classes and p.classes.near_threshold_rows]
    for candidate, cls in near:
        out.append(
            f"note: {candidate}: {len(cls.near_threshold_rows)} class flip(s) on rows within tolerance of the "
            f"threshold, not counted as failures: "
            f"{_named_units(result, 'row', cls.near_threshold_rows, len(cls.near_threshold_rows))}"
        )
    for pair in result.pairs:
        cls = pair.classes
        if cls is not None and any(o.judged for o in pair.outputs) and pair.policy == "quantized":
            score = next(o for o in pair.outputs if o.output == cls.output)
            out.append(
                f"{pair.candidate}: class agreement {cls.agreement:.4f} ({cls.flips} flip(s) in "
                f"{cls.rows} rows, {cls.allowed_flips} allowed at {cls.min_agreement:g}), "
                f"max {cls.output} error {_num(score.max_abs_error)} (atol {score.atol:g})"
            )
    per_call = sorted(_per_call_outputs(result))
    if per_call:
        out.append(f"compared per call (not following the batch): {', '.join(per_call)}")
    judged = [b for b in result.batch_invariance if b.judged]
    if judged:
        worst = max(judged, key=lambda b: b.max_scale_ulps or 0)
        out.append(
            f"batch invariance: worst {_num(worst.max_scale_ulps)} ULPs of the output's scale "
            f"({worst.runtime}, {worst.output}); bound {worst.bound:g}"
        )
    if result.repeatability and all(result.repeatability):
        same = all(r.bit_identical for r in result.repeatability)
        out.append(
            f"repeat: a repeated call gave {'identical' if same else 'the same (within the bound)'} "
            f"answers in every runtime"
        )
    for e in result.edge:
        lat = e.get("latency") or {}
        out.append(
            f"edge: {Path(e['file']).name}: {e['size_bytes']} bytes, {e['quantization']}, "
            f"{'NEEDS FLEX ' + ','.join(e['flex_ops']) if e['needs_flex'] else 'builtin ops only'}"
            + (
                f", {lat['us_per_row_batched']:.3g} us/row batched, {lat['us_single_row']:.3g} us single row"
                if lat
                else ""
            )
        )
    out += _kernel_lines(result)
    for n in result.model.get("notes", []) + result.inputs.notes:
        out.append(f"note: {n}")
    out += [f"not judged: {item}" for item in result.not_judged]
    issues = problems(result)
    if result.passed:
        unjudged = f" ({_count(len(result.not_judged), 'item')} not judged, listed above)" if result.not_judged else ""
        out.append(
            f"PASS: {len(result.runtimes) - 1} runtime(s) agree with {result.reference} "
            f"on {result.extent()}{unjudged}" + (f"; {len(result.not_run)} not run" if result.not_run else "")
        )
    else:
        out.append(f"FAIL: {len(issues)} problem(s)")
        out += [f"  - {line}" for line in issues]
    out += [f"  not run: {n['runtime']}: {n['reason']}" for n in result.not_run]
    return "\n".join(out)


def _kernel_lines(result) -> list[str]:
    """One line per TFLite file run under several op resolvers: how far its kernels' answers lie apart."""
    by_file: dict[str, list] = {}
    for k in result.kernel_spread:
        by_file.setdefault(k["file"], []).append(k)
    lines = []
    for file, spread in by_file.items():
        resolvers = len(spread[0]["runtimes"])
        if all(k["bit_identical"] for k in spread):
            lines.append(f"kernels: {file}: identical under {resolvers} op resolvers")
            continue
        parts = [
            f"{k['output']} "
            + ("(shape or dtype differs)" if k["max_abs_difference"] is None else _num(k["max_abs_difference"]))
            for k in spread
            if not k["bit_identical"]
        ]
        lines.append(f"kernels: {file}: {resolvers} op resolvers differ by up to {', '.join(parts)} (max abs)")
    return lines


# -- files ------------------------------------------------------------------------------
def write_report(result, directory, plots: bool = True) -> dict:
    """Write report.json, report.md and (with `plots`, which needs matplotlib) plots/*.png into
    `directory`; return their paths."""
    directory = Path(directory)
    with _writing(directory):
        directory.mkdir(parents=True, exist_ok=True)
        plots = write_plots(result, directory / "plots") if plots else []
        document = to_json(result)
        document["plots"] = [str(p.relative_to(directory)) for p in plots]
        (directory / "report.json").write_text(json.dumps(document, indent=2) + "\n")
        (directory / "report.md").write_text(markdown(result, document))
    return {"json": directory / "report.json", "markdown": directory / "report.md", "plots": plots}


def write_error_report(directory, error, model) -> None:
    """Write report.json and report.md for a check that ended in `error` (exit 2 or 3)."""
    directory = Path(directory)
    with _writing(directory):
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "report.json").write_text(json.dumps(error_json(error, model), indent=2) + "\n")
        (directory / "report.md").write_text(f"# tfkit check: ERROR\n\nModel `{model}`.\n\n{error}\n")


@contextlib.contextmanager
def _writing(path: Path):
    """Turn a failed write into a one-line InputError naming the path."""
    try:
        yield
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc.strerror or exc}") from None


def markdown(result, document: dict) -> str:
    """report.md: verdict, table, agreement, invariance, repeats, signatures, edge, reproducibility, plots."""
    md = [
        f"# tfkit check: {'PASS' if result.passed else 'FAIL'}",
        "",
        f"Model `{result.model['path']}` (name `{result.model['name']}`, version {result.model['version']}, "
        f"signature `{result.model['signature']}`); reference: **{result.reference}**.",
        "",
        f"Inputs: {result.inputs.source}, {result.extent()} "
        f"(feeds: {_feeds_text(result.inputs)}), "
        f"sha256 `{result.inputs.sha256()[:16]}…`.",
        "",
        "## Comparisons",
        "",
        "Bound per element: |a - b| <= atol + rtol·|b| + ulps·eps·scale, where scale is the larger of the "
        "output's largest finite |value| in the call and its median |value| over all calls (see docs/parity.md).",
        "",
        "| candidate | output | per | policy | atol | rtol | ulps | max abs | mean abs | p99 abs | max rel "
        "| ULP@scale | max ULP | failures | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for pair in result.pairs:
        for c in pair.outputs:
            md.append(
                f"| {pair.candidate} | {c.output} | {c.unit} | {c.policy} | {c.atol:g} | {c.rtol:g} | "
                f"{c.ulps:g} | {_num(c.max_abs_error)} | {_num(c.mean_abs_error)} | {_num(c.p99_abs_error)} | "
                f"{_num(c.max_rel_error)} | {_num(c.max_scale_ulp_error)} | "
                f"{'-' if c.max_ulp_error is None else c.max_ulp_error} | {c.failures} | "
                f"{'ERROR: ' + c.error if c.error else _verdict(c)} |"
            )
    classes = [p.classes for p in result.pairs if p.classes is not None]
    if classes:
        md += [
            "",
            "## Class agreement",
            "",
            "| candidate | rows | agreement | min | flips | allowed flips | flips near threshold |",
            "|---|---|---|---|---|---|---|",
        ]
        md += [
            f"| {c.candidate} | {c.rows} | {c.agreement:.4f} | {c.min_agreement:g} | {c.flips} | "
            f"{c.allowed_flips} | {len(c.near_threshold_rows)} |"
            for c in classes
        ]
    for title, results in (
        ("Batch invariance (batch 1 vs batch N, same runtime)", result.batch_invariance),
        ("Repeatability (one call run twice, same runtime)", result.repeatability),
    ):
        if results:
            md += [
                "",
                f"## {title}",
                "",
                "| runtime | output | per | units | bit-identical | max abs | ULP@scale "
                "| units failed | bound (ULP@scale) | verdict |",
                "|---|---|---|---|---|---|---|---|---|---|",
            ]
            md += [
                f"| {b.runtime} | {b.output} | {b.unit} | {b.units} | {'yes' if b.bit_identical else 'no'} | "
                f"{_num(b.max_abs_error)} | {_num(b.max_scale_ulps)} | {b.units_failed} | {b.bound:g} | "
                f"{('pass' if b.passed else 'FAIL') if b.judged else 'info'} |"
                for b in results
            ]
    if result.not_judged:
        md += ["", "## Not judged", ""] + [f"- {item}" for item in result.not_judged]
    md += ["", "## Signature consistency", ""]
    md += [f"- {s.runtime}: {'consistent' if s else '; '.join(s.problems)}" for s in result.signatures] or [
        "- (no candidates)"
    ]
    if result.edge:
        md += [
            "",
            "## Edge readiness",
            "",
            "| file | size | quantization | ops | Flex | inputs | us/row (batched) | us (1 row) |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for e in result.edge:
            lat = e.get("latency") or {}
            ios = "; ".join(
                f"{i['name']} {i['dtype']}"
                + (
                    f" s={i['quantization']['scales'][0]:.3g} z={i['quantization']['zero_points'][0]}"
                    if i["quantization"]
                    else ""
                )
                for i in e.get("inputs", [])
            )
            md.append(
                f"| {Path(e['file']).name} | {e['size_bytes']} | {e['quantization']} | "
                f"{', '.join(f'{k}×{v}' for k, v in e['ops'].items())} | "
                f"{', '.join(e['flex_ops']) or 'none'} | {ios} | "
                f"{_num(lat.get('us_per_row_batched'))} | {_num(lat.get('us_single_row'))} |"
            )
    if result.kernel_spread:
        md += [
            "",
            "## Kernels (op resolvers)",
            "",
            "| file | output | runtimes | max abs difference | identical |",
            "|---|---|---|---|---|",
        ]
        md += [
            f"| {k['file']} | {k['output']} | {', '.join(k['runtimes'])} | {_num(k['max_abs_difference'])} | "
            f"{'yes' if k['bit_identical'] else 'no'} |"
            for k in result.kernel_spread
        ]
    issues = problems(result)
    if issues:
        md += ["", "## Problems", ""] + [f"- {line}" for line in issues]
    if result.not_run:
        md += ["", "## Not run", ""] + [f"- {n['runtime']}: {n['reason']}" for n in result.not_run]
    notes = result.model.get("notes", []) + result.inputs.notes
    if notes:
        md += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    versions = result.reproducibility["versions"]
    md += [
        "",
        "## Reproducibility",
        "",
        f"- versions: {', '.join(f'{k} {v}' for k, v in versions.items())}",
        f"- seed: {result.reproducibility['seed']}",
        f"- input sha256: `{result.reproducibility['input_sha256']}`",
        "- file sha256: see report.json `reproducibility.files`",
    ]
    if document.get("plots"):
        md += ["", "## Plots", ""] + [f"![{p}]({p})" for p in document["plots"]]
    return "\n".join(md) + "\n"


def write_plots(result, directory: Path) -> list[Path]:
    """One scatter per candidate (its outputs against the reference's) and one
    figure of absolute-error distributions per float output."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    ref_calls = result.outputs.get(result.reference, [])
    floats = sorted(n for n, v in (ref_calls[0].items() if ref_calls else []) if np.asarray(v).dtype.kind == "f")
    written = []
    candidates = [n for n in result.runtime_names()[1:] if n in result.outputs]
    for name in candidates:
        fig, axes = plt.subplots(1, max(len(floats), 1), figsize=(4 * max(len(floats), 1), 3.6), squeeze=False)
        for ax, output in zip(axes[0], floats):
            paired = _finite_pairs(ref_calls, result.outputs[name], output)
            if paired is not None and paired[0].size:
                a, b = paired
                ax.scatter(a, b, s=6, alpha=0.6)
                ax.plot([a.min(), a.max()], [a.min(), a.max()], color="grey", linewidth=0.8)
            ax.set_title(output, fontsize=9)
            ax.set_xlabel(result.reference, fontsize=8)
            ax.set_ylabel(name, fontsize=8)
        fig.suptitle(f"{name} vs {result.reference}", fontsize=10)
        fig.tight_layout()
        path = directory / f"vs_{_slug(name)}.png"
        fig.savefig(path, dpi=80)
        plt.close(fig)
        written.append(path)
    if floats and candidates:
        fig, axes = plt.subplots(1, len(floats), figsize=(4.5 * len(floats), 3.6), squeeze=False)
        for ax, output in zip(axes[0], floats):
            for name in candidates:
                paired = _finite_pairs(ref_calls, result.outputs[name], output)
                if paired is None:
                    continue
                err = np.abs(paired[1] - paired[0])
                # log10 of the error; exact matches sit at the left edge (1e-12).
                ax.hist(np.log10(np.maximum(err, 1e-12)), bins=40, histtype="step", label=name)
            ax.set_title(f"|{output} - reference|", fontsize=9)
            ax.set_xlabel("log10 abs error (exact = -12)", fontsize=8)
            ax.set_ylabel("elements", fontsize=8)
        axes[0][0].legend(fontsize=6)
        fig.tight_layout()
        path = directory / "error_distribution.png"
        fig.savefig(path, dpi=80)
        plt.close(fig)
        written.append(path)
    return written


def _finite_pairs(ref_calls: list[dict], cand_calls: list[dict], output: str):
    """Reference and candidate values of one output over all calls, where both are finite (float64);
    None when the candidate's shapes differ from the reference's."""
    if len(cand_calls) != len(ref_calls) or any(output not in c for c in cand_calls):
        return None
    if any(np.shape(r[output]) != np.shape(c[output]) for r, c in zip(ref_calls, cand_calls, strict=True)):
        return None
    a = np.concatenate([np.ravel(r[output]) for r in ref_calls]).astype(np.float64)
    b = np.concatenate([np.ravel(c[output]) for c in cand_calls]).astype(np.float64)
    keep = np.isfinite(a) & np.isfinite(b)
    return a[keep], b[keep]


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in name)


# -- JUnit ------------------------------------------------------------------------------
def write_junit(result, path) -> Path:
    """One testcase per comparison, class agreement, invariance, repeat and signature check."""
    suite = ET.Element("testsuite", name="tfkit-check")
    cases = 0
    failures = 0

    def case(classname: str, name: str, failure: str | None, output: str = "") -> None:
        nonlocal cases, failures
        cases += 1
        element = ET.SubElement(suite, "testcase", classname=classname, name=name)
        if failure:
            failures += 1
            ET.SubElement(element, "failure", message=failure[:500]).text = failure
        if output:
            ET.SubElement(element, "system-out").text = output

    for pair in result.pairs:
        for c in pair.outputs:
            case(
                f"{pair.reference}.vs.{pair.candidate}",
                c.output,
                None if c else _failure_line(result, pair, c),
                json.dumps(_finite(c.to_json())),
            )
        if pair.classes is not None:
            cls = pair.classes
            case(
                f"{pair.reference}.vs.{pair.candidate}",
                "class_agreement",
                None if cls.passed else f"{cls.flips} flips > {cls.allowed_flips} allowed in {cls.rows} rows",
                json.dumps(cls.to_json()),
            )
    for b in result.batch_invariance:
        case(
            f"batch_invariance.{b.runtime}",
            b.output,
            None if b else _invariance_line(b),
            json.dumps(_finite(b.to_json())),
        )
    for r in result.repeatability:
        case(
            f"repeatability.{r.runtime}",
            r.output,
            None if r else _repeat_line(result),
            json.dumps(_finite(r.to_json())),
        )
    for s in result.signatures:
        case(f"signature.{s.runtime}", "consistency", None if s else "; ".join(s.problems))
    for error in result.errors:
        case("runtime", error.split(":")[0], error)
    for entry in result.not_run:
        case("runtime", entry["runtime"], None)
        ET.SubElement(suite[-1], "skipped", message=entry["reason"])
    suite.set("tests", str(cases))
    suite.set("failures", str(failures))
    suite.set("errors", "0")
    suite.set("skipped", str(len(result.not_run)))
    suite.set("time", f"{result.seconds:.3f}")
    path = Path(path)
    with _writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        ET.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)
    return path
