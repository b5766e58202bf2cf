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

SCHEMA_VERSION = 1
#: rows named in a failure line before "+N more"
NAMED_ROWS = 5


# -- JSON -----------------------------------------------------------------------------
def to_json(result) -> dict:
    """The report.json document (schema documented in the README)."""
    comparisons, classes = [], []
    for pair in result.pairs:
        comparisons += [c.to_json() for c in pair.outputs]
        if pair.classes is not None:
            classes.append(pair.classes.to_json())
    return _finite({
        "schema_version": SCHEMA_VERSION,
        "status": "pass" if result.passed else "fail",
        "passed": result.passed,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seconds": round(result.seconds, 3),
        "model": result.model,
        "reference": result.reference,
        "runtimes": result.runtime_names(),
        "runtime_details": result.runtimes,
        "policies": {name: {"atol": p.default.atol, "rtol": p.default.rtol,
                            "per_output": {o: {"atol": t.atol, "rtol": t.rtol} for o, t in p.per_output.items()},
                            "quantized": p.quantized, "min_class_agreement": p.min_class_agreement}
                     for name, p in result.policies.items()},
        "inputs": result.inputs.to_json(),
        "row_labels": result.row_labels,
        "comparisons": comparisons,
        "class_agreement": classes,
        "batch_invariance": [b.to_json() for b in result.batch_invariance],
        "signature_consistency": [s.to_json() for s in result.signatures],
        "edge": result.edge,
        "errors": result.errors,
        "not_run": result.not_run,
        "reproducibility": result.reproducibility,
    })


def error_json(error, model) -> dict:
    """The report.json of a check that ended in an error (exit 2 or 3) before any verdict."""
    return {"schema_version": SCHEMA_VERSION, "status": "error", "passed": False, "exit_code": error.exit_code,
            "error": str(error), "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "model": {"path": str(model)}}


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
def _rows_text(result, rows: list[int], total: int) -> str:
    named = [result.row_labels[r] if r < len(result.row_labels) else str(r) for r in rows[:NAMED_ROWS]]
    more = total - len(named)
    return ", ".join(named) + (f" (+{more} more)" if more > 0 else "")


def _num(x) -> str:
    if x is None:
        return "-"
    if x == 0:
        return "0"
    return f"{x:.3g}" if abs(x) >= 1e-3 else f"{x:.2e}"


def _verdict(comparison) -> str:
    if not comparison.judged:
        return "info"
    if not comparison.passed:
        return "FAIL"
    return "exact" if comparison.bit_exact else "pass"


def table(result) -> str:
    """Runtime pairs x outputs: policy, max abs error, p99, max ULPs, failures, verdict."""
    header = ("candidate", "output", "policy", "max abs", "p99 abs", "max ulp", "fail", "verdict")
    lines = [header]
    for pair in result.pairs:
        for c in pair.outputs:
            ulp = "-" if c.max_ulp_error is None else (str(c.max_ulp_error) if c.max_ulp_error < 10**6 else ">1e6")
            lines.append((pair.candidate, c.output, c.policy, _num(c.max_abs_error), _num(c.p99_abs_error), ulp,
                          str(c.failures), "ERROR" if c.error else _verdict(c)))
    widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
    text = [f"reference: {result.reference}"]
    text += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in lines]
    return "\n".join(text)


def _failure_line(result, pair, c) -> str:
    """What failed in one output comparison: the pair, the output, the rows."""
    where = f"{pair.reference} vs {pair.candidate}, output {c.output}"
    if c.error:
        return f"{where}: {c.error}"
    return (f"{where}: {c.failures} element(s) outside atol={c.atol:g} rtol={c.rtol:g} "
            f"(max abs error {_num(c.max_abs_error)}); rows {_rows_text(result, c.failed_rows, c.failed_row_count)}")


def problems(result) -> list[str]:
    """One line per failure of any kind: which pair, which output, which rows."""
    lines = list(result.errors)
    for pair in result.pairs:
        lines += [_failure_line(result, pair, c) for c in pair.outputs if not c]
        cls = pair.classes
        if cls is not None and not cls.passed:
            lines.append(f"{pair.reference} vs {pair.candidate}: class agreement {cls.agreement:.4f} below "
                         f"{cls.min_agreement:g} ({cls.flips} flip(s) away from the threshold: "
                         f"rows {_rows_text(result, cls.flipped_rows, cls.flips)})")
    for b in result.batch_invariance:
        if not b:
            lines.append(f"{b.runtime}, output {b.output}: batch 1 and batch N differ by {b.max_ulps} ULPs "
                         f"(bound {b.bound}) on {b.rows_differing} of {b.rows} rows")
    for s in result.signatures:
        if not s:
            lines.append(f"signature of {s.runtime} differs from the SavedModel's SignatureDef: {'; '.join(s.problems)}")
    return lines


def summary(result) -> str:
    """Table, notes, flips near the threshold, and the verdict, for the terminal."""
    out = [table(result)]
    near = [(p.candidate, p.classes) for p in result.pairs if p.classes and p.classes.near_threshold_rows]
    for candidate, cls in near:
        out.append(f"note: {candidate}: {len(cls.near_threshold_rows)} class flip(s) on rows within tolerance of the "
                   f"threshold, not counted as failures: {_rows_text(result, cls.near_threshold_rows, len(cls.near_threshold_rows))}")
    for pair in result.pairs:
        if pair.classes is not None and any(o.judged for o in pair.outputs) and pair.policy == "quantized":
            out.append(f"{pair.candidate}: class agreement {pair.classes.agreement:.4f} "
                       f"(min {pair.classes.min_agreement:g}), max {pair.classes.output} error "
                       f"{_num(next(o.max_abs_error for o in pair.outputs if o.output == pair.classes.output))}")
    if result.batch_invariance:
        worst = max(result.batch_invariance, key=lambda b: b.max_ulps)
        out.append(f"batch invariance: worst {worst.max_ulps} ULPs ({worst.runtime}, {worst.output}); bound {worst.bound}")
    for e in result.edge:
        lat = e.get("latency") or {}
        out.append(f"edge: {Path(e['file']).name}: {e['size_bytes']} bytes, {e['quantization']}, "
                   f"{'NEEDS FLEX ' + ','.join(e['flex_ops']) if e['needs_flex'] else 'builtin ops only'}"
                   + (f", {lat['us_per_row_batched']:.3g} us/row batched, {lat['us_single_row']:.3g} us single row"
                      if lat else ""))
    for n in result.model.get("notes", []) + result.inputs.notes:
        out.append(f"note: {n}")
    issues = problems(result)
    if result.passed:
        out.append(f"PASS: {len(result.runtimes) - 1} runtime(s) agree with {result.reference} "
                   f"on {result.inputs.rows} rows" + (f"; {len(result.not_run)} not run" if result.not_run else ""))
    else:
        out.append(f"FAIL: {len(issues)} problem(s)")
        out += [f"  - {line}" for line in issues]
    out += [f"  not run: {n['runtime']}: {n['reason']}" for n in result.not_run]
    return "\n".join(out)


# -- files ------------------------------------------------------------------------------
def write_report(result, directory) -> dict:
    """Write report.json, report.md and plots/*.png into `directory`; return their paths."""
    directory = Path(directory)
    with _writing(directory):
        directory.mkdir(parents=True, exist_ok=True)
        plots = write_plots(result, directory / "plots")
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
    """report.md: verdict, table, agreement, invariance, signatures, edge, reproducibility, plots."""
    md = [f"# tfkit check: {'PASS' if result.passed else 'FAIL'}", "",
          f"Model `{result.model['path']}` (name `{result.model['name']}`, version {result.model['version']}, "
          f"signature `{result.model['signature']}`); reference: **{result.reference}**.", "",
          f"Inputs: {result.inputs.source}, {result.inputs.rows} rows "
          f"({', '.join(f'{f.name}: {f.rows}' for f in result.inputs.feeds)}), sha256 `{result.inputs.sha256()[:16]}…`.",
          "", "## Comparisons", "",
          "| candidate | output | policy | atol | rtol | max abs | mean abs | p99 abs | max rel | max ULP | failures | verdict |",
          "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for pair in result.pairs:
        for c in pair.outputs:
            md.append(f"| {pair.candidate} | {c.output} | {c.policy} | {c.atol:g} | {c.rtol:g} | {_num(c.max_abs_error)} | "
                      f"{_num(c.mean_abs_error)} | {_num(c.p99_abs_error)} | {_num(c.max_rel_error)} | "
                      f"{'-' if c.max_ulp_error is None else c.max_ulp_error} | {c.failures} | "
                      f"{'ERROR: ' + c.error if c.error else _verdict(c)} |")
    classes = [p.classes for p in result.pairs if p.classes is not None]
    if classes:
        md += ["", "## Class agreement", "", "| candidate | rows | agreement | min | flips | flips near threshold |",
               "|---|---|---|---|---|---|"]
        md += [f"| {c.candidate} | {c.rows} | {c.agreement:.4f} | {c.min_agreement:g} | {c.flips} | "
               f"{len(c.near_threshold_rows)} |" for c in classes]
    if result.batch_invariance:
        md += ["", "## Batch invariance (batch 1 vs batch N, same runtime)", "",
               "| runtime | output | rows | max ULPs | rows differing | bound | verdict |", "|---|---|---|---|---|---|---|"]
        md += [f"| {b.runtime} | {b.output} | {b.rows} | {b.max_ulps} | {b.rows_differing} | {b.bound} | "
               f"{('pass' if b.passed else 'FAIL') if b.judged else 'info'} |" for b in result.batch_invariance]
    md += ["", "## Signature consistency", ""]
    md += [f"- {s.runtime}: {'consistent' if s else '; '.join(s.problems)}" for s in result.signatures] or ["- (no candidates)"]
    if result.edge:
        md += ["", "## Edge readiness", "", "| file | size | quantization | ops | Flex | inputs | us/row (batched) | us (1 row) |",
               "|---|---|---|---|---|---|---|---|"]
        for e in result.edge:
            lat = e.get("latency") or {}
            ios = "; ".join(f"{i['name']} {i['dtype']}" + (f" s={i['quantization']['scales'][0]:.3g} "
                                                            f"z={i['quantization']['zero_points'][0]}"
                                                            if i["quantization"] else "") for i in e.get("inputs", []))
            md.append(f"| {Path(e['file']).name} | {e['size_bytes']} | {e['quantization']} | "
                      f"{', '.join(f'{k}×{v}' for k, v in e['ops'].items())} | "
                      f"{', '.join(e['flex_ops']) or 'none'} | {ios} | "
                      f"{_num(lat.get('us_per_row_batched'))} | {_num(lat.get('us_single_row'))} |")
    issues = problems(result)
    if issues:
        md += ["", "## Problems", ""] + [f"- {line}" for line in issues]
    if result.not_run:
        md += ["", "## Not run", ""] + [f"- {n['runtime']}: {n['reason']}" for n in result.not_run]
    notes = result.model.get("notes", []) + result.inputs.notes
    if notes:
        md += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    versions = result.reproducibility["versions"]
    md += ["", "## Reproducibility", "", f"- versions: {', '.join(f'{k} {v}' for k, v in versions.items())}",
           f"- seed: {result.reproducibility['seed']}", f"- input sha256: `{result.reproducibility['input_sha256']}`",
           "- file sha256: see report.json `reproducibility.files`"]
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
    ref = result.outputs.get(result.reference, {})
    floats = [n for n, v in sorted(ref.items()) if v.dtype.kind == "f"]
    written = []
    candidates = [n for n in result.runtime_names()[1:] if n in result.outputs]
    for name in candidates:
        cand = result.outputs[name]
        fig, axes = plt.subplots(1, max(len(floats), 1), figsize=(4 * max(len(floats), 1), 3.6), squeeze=False)
        for ax, output in zip(axes[0], floats):
            if output in cand and cand[output].shape == ref[output].shape:
                a, b = ref[output].ravel(), cand[output].ravel().astype(np.float64)
                ax.scatter(a, b, s=6, alpha=0.6)
                lo, hi = np.nanmin(a), np.nanmax(a)
                ax.plot([lo, hi], [lo, hi], color="grey", linewidth=0.8)
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
                cand = result.outputs[name].get(output)
                if cand is None or cand.shape != ref[output].shape:
                    continue
                err = np.abs(cand.astype(np.float64) - ref[output].astype(np.float64)).ravel()
                err = err[np.isfinite(err)]
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


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in name)


# -- JUnit ------------------------------------------------------------------------------
def write_junit(result, path) -> Path:
    """One testcase per comparison, class agreement, invariance and signature check."""
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
            case(f"{pair.reference}.vs.{pair.candidate}", c.output, None if c else _failure_line(result, pair, c),
                 json.dumps(_finite(c.to_json())))
        if pair.classes is not None:
            cls = pair.classes
            case(f"{pair.reference}.vs.{pair.candidate}", "class_agreement",
                 None if cls.passed else f"agreement {cls.agreement:.4f} < {cls.min_agreement:g}",
                 json.dumps(cls.to_json()))
    for b in result.batch_invariance:
        case(f"batch_invariance.{b.runtime}", b.output,
             None if b else f"{b.max_ulps} ULPs > bound {b.bound}", json.dumps(b.to_json()))
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
