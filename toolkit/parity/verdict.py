"""Run every runtime on identical calls and judge: what `tfkit check` and the device checker
(`tfkit-edge check`) share once their runtimes are started.

Splits the feeds into the same batches for everyone, runs them, compares every
candidate with the reference under its policy, measures repeatability and batch
invariance within each runtime, the spread between a TFLite file's kernels, and
the device facts of TFLite files; `Judged.result` assembles the `CheckResult`.
numpy and LiteRT only: no TensorFlow, no gRPC.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from toolkit.artifacts.golden import library_versions
from toolkit.artifacts.layout import sha256_file
from toolkit.errors import InputError, ServerNotReady, ToolkitError
from toolkit.parity.compare import (
    ClassifierSpec,
    Comparator,
    Layout,
    PairComparison,
    Policy,
    SignatureConsistency,
    WithinRuntime,
)
from toolkit.parity.feeds import Feed, Inputs
from toolkit.parity.runners.base import Runner, Signature, feed_rows, take_rows
from toolkit.parity.runners.recorded import RecordedRunner

#: rows of the first batched feed re-run one at a time for batch invariance
INVARIANCE_ROWS = 16


@dataclass
class CheckResult:
    """The whole outcome; truthy when every judged comparison passed."""

    model: dict
    reference: str
    runtimes: list[dict]
    inputs: Inputs
    pairs: list[PairComparison]
    batch_invariance: list[WithinRuntime]
    repeatability: list[WithinRuntime]
    signatures: list[SignatureConsistency]
    edge: list[dict]
    errors: list[str]
    reproducibility: dict
    policies: dict[str, Policy]
    layout: Layout
    row_labels: list[str]
    call_labels: list[str]
    rows: int | None  # rows fed over all calls; None: the signature has no batch dimension
    outputs: dict[str, list]  # runtime -> each call's {output: array}, for plots
    not_judged: list[str] = field(default_factory=list)  # what the verdict does not cover, and why
    seconds: float = 0.0
    #: runtimes tfkit added on its own that cannot run this model: {"runtime", "reason"}; the rest is judged
    not_run: list[dict] = field(default_factory=list)
    signature: Signature | None = None  # the reference's
    fed: list[tuple[Feed, dict]] = field(default_factory=list)  # every call as run, split as `uniform_calls` split it
    #: per TFLite file run under several op resolvers and per output: how far its kernels' answers lie apart
    kernel_spread: list[dict] = field(default_factory=list)
    saved_outputs: str | None = None  # the golden file --save-outputs (or the device checker) wrote

    @property
    def passed(self) -> bool:
        return (
            not self.errors
            and all(self.pairs)
            and all(self.batch_invariance)
            and all(self.repeatability)
            and all(self.signatures)
        )

    @property
    def calls(self) -> int:
        return len(self.call_labels)

    def extent(self) -> str:
        """What was run: `66 rows in 3 calls`, or `11 calls` without a batch dimension."""
        return extent_text(self.rows, self.calls)

    def unstable_runtimes(self) -> list[str]:
        """Runtimes whose answers changed between identical calls."""
        return sorted({r.runtime for r in self.repeatability if not r})

    def __bool__(self):
        return self.passed

    def runtime_names(self) -> list[str]:
        return [r["name"] for r in self.runtimes]


def extent_text(rows: int | None, calls: int) -> str:
    """`66 rows in 3 calls`, or `11 calls` when the signature has no batch dimension (rows None)."""
    text = f"{calls} call{'' if calls == 1 else 's'}"
    return text if rows is None else f"{rows} row{'' if rows == 1 else 's'} in {text}"


@dataclass
class Candidate:
    runner: Runner
    policy: str
    edge: dict | None = None
    #: tfkit's own on-the-fly conversion: if it cannot run, it is "not run", not a failure of the check
    made_here: bool = False


def tflite_candidates(
    paths, signature: str, named: bool, made_here: bool, note, errors: list, edge: list, not_run: list
) -> list[Candidate]:
    """One candidate per TFLite file and op resolver (`RESOLVERS`), judged by the file's policy
    (float, or quantized); the device facts ride on the default resolver's candidate.

    A file without `signature` is noted and skipped unless the user `named` it
    (then its runner says so). A file that needs Flex ops cannot run in LiteRT:
    its facts go to `edge`, and it goes to `errors` when named, else to `not_run`.
    """
    from toolkit.parity.device import model_facts
    from toolkit.parity.runners.tflite import RESOLVERS, TFLiteRunner, runtime_name

    candidates = []
    for path in paths:
        facts = model_facts(path)
        if facts["signatures"] and signature not in facts["signatures"] and not named:
            # A file found in the version folder was converted from another signature.
            note(
                f"{Path(path).name} has no signature {signature!r} (it has: "
                f"{', '.join(facts['signatures'])}): not compared"
            )
            continue
        if facts["needs_flex"]:
            reason = (
                f"needs the Flex delegate (ops {', '.join(facts['flex_ops'])}), "
                "which LiteRT and most edge runtimes lack"
            )
            if named:
                errors.append(f"{runtime_name(path)} {reason}")
            else:
                not_run.append({"runtime": runtime_name(path), "reason": reason})
            edge.append({**facts, "latency": None, "policy": None})
            continue
        policy = "float" if facts["quantization"] == "float32" else "quantized"
        # The other resolvers are tfkit's own addition: one lacking a kernel the file uses (the reference
        # kernels have no HASHTABLE) is "not run", like an on-the-fly conversion that fails.
        candidates += [
            Candidate(
                TFLiteRunner(path, signature, resolver=resolver),
                policy,
                facts if resolver == "auto" else None,
                made_here=made_here or resolver != "auto",
            )
            for resolver in RESOLVERS
        ]
    return candidates


@dataclass
class Judged:
    """Every runtime run on the same calls and judged; `result` adds what the caller knows."""

    reference: Runner
    candidates: list[Candidate]  # those that ran or failed (not those found unable to run)
    inputs: Inputs
    calls: list[tuple[Feed, dict]]
    counts: list
    outputs: dict[str, list]
    layout: Layout
    row_labels: list[str]
    call_labels: list[str]
    judgement: _Judgement
    edge: list[dict]
    kernel_spread: list[dict]

    def runtimes(self) -> list[dict]:
        """Each runtime's description, candidates with their policy."""
        return [self.reference.describe()] + [{**c.runner.describe(), "policy": c.policy} for c in self.candidates]

    def result(
        self,
        model: dict,
        signatures: list,
        errors: list,
        reproducibility: dict,
        policies: dict,
        not_run: list,
        seconds: float,
        edge: list | None = None,
    ) -> CheckResult:
        """The CheckResult; `edge` adds facts of files that could not run (Flex ops)."""
        counts = self.counts
        return CheckResult(
            model=model,
            reference=self.reference.name,
            runtimes=self.runtimes(),
            inputs=self.inputs,
            pairs=self.judgement.pairs,
            batch_invariance=self.judgement.invariance,
            repeatability=self.judgement.repeats,
            signatures=signatures,
            edge=(edge or []) + self.edge,
            errors=errors,
            reproducibility=reproducibility,
            policies=policies,
            layout=self.layout,
            row_labels=self.row_labels,
            call_labels=self.call_labels,
            rows=None if None in counts else sum(counts),
            outputs=self.outputs,
            not_judged=self.judgement.not_judged,
            seconds=seconds,
            not_run=not_run,
            signature=self.reference.signature,
            fed=self.calls,
            kernel_spread=self.kernel_spread,
        )


def judge_runtimes(
    reference: Runner,
    candidates: list[Candidate],
    inputs: Inputs,
    policies: dict,
    max_batch: int | None,
    max_ulps: float,
    errors: list,
    not_run: list,
    progress=lambda msg: None,
) -> Judged:
    """Run the started `reference` and `candidates` on identical calls and judge every candidate."""
    calls = uniform_calls(inputs, [reference] + [c.runner for c in candidates], max_batch)
    counted = [feed_rows(call, feed.row_inputs) for feed, call in calls]
    progress(
        f"running {extent_text(None if None in counted else sum(counted), len(calls))} "
        f"through {1 + len(candidates)} runtimes"
    )
    outputs, counts = _run_all(reference, candidates, calls, inputs, errors, not_run)
    candidates = without_not_run(candidates, not_run)
    layout = Layout.detect(outputs[reference.name], counts, _declared_batch_outputs(reference.signature))
    row_labels = _row_labels(calls, [rows or 0 for rows in counts])
    call_labels, in_dist = _call_labels(calls)
    ran = [c for c in candidates if c.runner.name in outputs]
    judgement = _judge(reference, ran, policies, calls, counts, outputs, layout, in_dist, max_ulps, errors)

    from toolkit.parity.device import edge_report

    sample = calls[_first_batched(calls)][1] if calls else None
    edge = [{**edge_report(c.runner, sample), "policy": c.policy} for c in ran if c.edge is not None]
    return Judged(
        reference,
        candidates,
        inputs,
        calls,
        counts,
        outputs,
        layout,
        row_labels,
        call_labels,
        judgement,
        edge,
        kernel_spread(ran, outputs),
    )


def _run_all(
    reference: Runner, candidates: list, calls, inputs: Inputs, errors: list, not_run: list
) -> tuple[dict, list[int]]:
    """Outputs of the reference and of every candidate that could run the calls.

    A failing reference, recorded runtime (its recorded inputs are not these) or an
    unreachable server ends the check (exit 2 / 3); a failing on-the-fly
    conversion goes to `not_run`, any other failing candidate to `errors`.
    """
    outputs, counts = {}, []
    for runner, made_here in [(reference, False)] + [(c.runner, c.made_here) for c in candidates]:
        try:
            outputs[runner.name], rows = run_calls(runner, calls)
            counts = counts or rows
        except ToolkitError as exc:
            if runner is reference and inputs.source == "generated":
                raise InputError(f"{exc}; {_generated_inputs_hint(inputs, reference.signature)}") from None
            if runner is reference or isinstance(exc, ServerNotReady) or isinstance(runner, RecordedRunner):
                raise
            if made_here:
                not_run.append({"runtime": runner.name, "reason": without_name(exc, runner.name)})
            else:
                errors.append(str(exc) if runner.name in str(exc) else f"{runner.name}: {exc}")
    return outputs, counts


def without_name(exc: Exception, name: str) -> str:
    """An error's message without the runtime name it starts with (reports put the name beside it)."""
    return str(exc).removeprefix(name).lstrip(": ")


def without_not_run(candidates: list, not_run: list) -> list:
    names = {n["runtime"] for n in not_run}
    return [c for c in candidates if c.runner.name not in names]


def _generated_inputs_hint(inputs: Inputs, signature) -> str:
    """What the generated inputs held (their real span, so ids out of a table's range show) and the fix."""
    spans = []
    for name, spec in signature.inputs.items():
        values = [call[name] for feed in inputs.feeds for call in feed.calls if np.size(call.get(name, ()))]
        if np.dtype(spec.dtype).kind in "iuf" and values:
            spans.append(f"{name} in [{min(v.min() for v in values):g}, {max(v.max() for v in values):g}]")
    held = f" held {', '.join(spans)}" if spans else ""
    return f"the generated inputs{held}; pass --value-range LOW HIGH or --inputs FILE with values the model accepts"


class _Judgement(NamedTuple):
    pairs: list[PairComparison]
    invariance: list[WithinRuntime]
    repeats: list[WithinRuntime]
    not_judged: list[str]


def _judge(
    reference: Runner,
    ran: list[Candidate],
    policies: dict,
    calls,
    counts,
    outputs: dict,
    layout: Layout,
    in_dist: list[bool],
    max_ulps: float,
    errors: list,
) -> _Judgement:
    """Repeat one call in every runtime, compare every candidate, measure batch invariance.

    A runtime whose answers change between identical calls (state or
    randomness) is its own finding: its comparisons and batch invariance are
    reported but not judged, since they would blame whichever runtime ran later.
    Recorded runtimes cannot be run again: neither is measured for them.
    """
    runners = [(reference, True)] + [(c.runner, not policies[c.policy].quantized) for c in ran]
    recorded = sorted(r.name for r, _ in runners if isinstance(r, RecordedRunner))
    runners = [(r, judged) for r, judged in runners if r.name not in recorded]
    repeats = []
    for runner, _ in runners:
        repeats += repeatability(runner, calls, outputs[runner.name], layout, max_ulps, errors)
    unstable = {r.runtime for r in repeats if not r}
    comparator = Comparator(ClassifierSpec.detect(reference.signature.outputs))
    pairs = []
    for c in ran:
        compared = _compare_candidate(comparator, reference.name, outputs, c, policies[c.policy], layout, in_dist)
        if unstable & {reference.name, c.runner.name}:
            for pair in compared:
                pair.mark_informational()
        pairs += compared
    invariance = []
    for runner, judged in runners:
        invariance += batch_invariance(
            runner, calls, outputs[runner.name], layout, max_ulps, judged=judged and runner.name not in unstable
        )
    return _Judgement(
        pairs,
        invariance,
        repeats,
        _not_judged(layout, reference.signature, counts, invariance, unstable, recorded, measured=bool(runners)),
    )


def _compare_candidate(
    comparator, reference: str, outputs: dict, c: Candidate, policy: Policy, layout: Layout, in_dist: list[bool]
) -> list[PairComparison]:
    """One comparison; quantized variants are judged on in-distribution calls and
    reported, unjudged, on the rest."""
    ref_out, cand_out = outputs[reference], outputs[c.runner.name]
    if not policy.quantized or all(in_dist):
        return [comparator.compare(reference, ref_out, c.runner.name, cand_out, policy, layout)]
    pairs = []
    for inside, candidate in ((True, c.runner.name), (False, f"{c.runner.name} (outside data range)")):
        picked = [i for i, flag in enumerate(in_dist) if flag == inside]
        pairs.append(
            comparator.compare(
                reference,
                [ref_out[i] for i in picked],
                candidate,
                [cand_out[i] for i in picked],
                policy,
                layout.subset(picked),
            )
        )
    pairs[1].mark_informational()
    return pairs


def uniform_calls(inputs: Inputs, runners: list, max_batch: int | None) -> list[tuple[Feed, dict]]:
    """Split every batchable call under the smallest limit of all runtimes, so each
    runtime sees exactly the same batches (the precondition for bit-exactness).
    Inputs without rows (a scalar) go whole with every part."""
    calls = []
    for feed in inputs.feeds:
        for call in feed.calls:
            rows = feed_rows(call, feed.row_inputs) if feed.batched else None
            limits = [r.max_rows(call) for r in runners] + [max_batch]
            limit = min((n for n in limits if n), default=None)
            if rows is None or limit is None or rows <= limit:
                calls.append((feed, call))
            else:
                calls += [(feed, take_rows(call, feed.row_inputs, i, i + limit)) for i in range(0, rows, limit)]
    return calls


def run_calls(runner: Runner, calls) -> tuple[list[dict], list[int | None]]:
    """Run every call: each call's outputs, and its row count (None: the signature has no batch dimension)."""
    return [runner.infer(call) for _, call in calls], [feed_rows(call, feed.row_inputs) for feed, call in calls]


def _declared_batch_outputs(signature) -> frozenset:
    """Outputs whose first dimension the signature declares dynamic, or leaves unknown (TF1 graphs):
    with calls of one size, their shapes decide; batch invariance then names any wrong guess."""
    return frozenset(name for name, spec in signature.outputs.items() if spec.shape is None or spec.batch_dynamic)


def batch_invariance(
    runner, calls, outputs: list[dict], layout: Layout, bound: float, judged: bool
) -> list[WithinRuntime]:
    """Re-run the first rows of the first batched call one at a time; compare every output that follows the batch."""
    if not calls or not layout.batch_outputs:
        return []
    index = _first_batched(calls)
    feed, call = calls[index]
    rows = feed_rows(call, feed.row_inputs)
    if not feed.batched or not rows or rows < 2:
        return []
    take = min(rows, INVARIANCE_ROWS)
    # Inputs without rows (a scalar beside the batch) go whole with every row.
    alone = [runner.infer(take_rows(call, feed.row_inputs, i, i + 1)) for i in range(take)]
    batched = {name: outputs[index][name][:take] for name in layout.batch_outputs}
    alone = {name: np.concatenate([a[name] for a in alone]) for name in layout.batch_outputs}
    return Comparator.within_runtime(runner.name, batched, alone, bound, layout.batch_outputs, judged)


def repeatability(
    runner, calls, outputs: list[dict], layout: Layout, bound: float, errors: list
) -> list[WithinRuntime]:
    """Run one call again: answers that change between identical calls mean state or randomness."""
    if not calls:
        return []
    index = _first_batched(calls)
    try:
        again = runner.infer(calls[index][1])
    except ToolkitError as exc:
        errors.append(f"{runner.name} failed on a repeated call: {exc}")
        return []
    return Comparator.within_runtime(runner.name, outputs[index], again, bound, layout.batch_outputs)


def _not_judged(
    layout: Layout, signature, counts, invariance: list, unstable: set, recorded: list, measured: bool
) -> list[str]:
    """What the verdict does not cover, each with its reason, for the verdict line and the report."""
    notes = []
    per_call = sorted(set(signature.outputs) - layout.batch_outputs)
    if None in counts:
        notes.append("batch invariance: the signature has no batch dimension (outputs compared per call)")
    elif per_call:
        notes.append(
            f"batch invariance of {', '.join(per_call)}: "
            f"{'it does' if len(per_call) == 1 else 'they do'} not follow the batch (compared per call)"
        )
    if layout.batch_outputs and not invariance and measured:
        notes.append("batch invariance: no call has two or more rows")
    quantized = sorted({b.runtime for b in invariance if not b.judged and b.runtime not in unstable})
    if quantized:
        notes.append(f"batch invariance of {', '.join(quantized)}: quantized (reported only)")
    if unstable:
        notes.append(
            f"comparisons and batch invariance of {', '.join(sorted(unstable))}: answers change between identical calls"
        )
    if recorded:
        notes.append(f"batch invariance and repeatability of {', '.join(recorded)}: recorded outputs, not run again")
    return notes


def _row_labels(calls, counts) -> list[str]:
    """`feed[row]` for every row of every call, in call order (which calls are in-distribution: `_call_labels`)."""
    labels, counters = [], {}
    for (feed, _), rows in zip(calls, counts, strict=True):
        start = counters.get(feed.name, 0)
        labels += [f"{feed.name}[{start + i}]" for i in range(rows)]
        counters[feed.name] = start + rows
    return labels


def _call_labels(calls) -> tuple[list[str], list[bool]]:
    """`feed` (or `feed #n` when a feed has several calls) for every call, and which calls are in-distribution."""
    per_feed: dict[str, int] = {}
    for feed, _ in calls:
        per_feed[feed.name] = per_feed.get(feed.name, 0) + 1
    labels, in_dist, seen = [], [], {}
    for feed, _ in calls:
        seen[feed.name] = seen.get(feed.name, 0) + 1
        labels.append(feed.name if per_feed[feed.name] == 1 else f"{feed.name} #{seen[feed.name]}")
        in_dist.append(feed.in_distribution)
    return labels, in_dist


def _first_batched(calls) -> int:
    """Index of the first multi-row call (for latency per row and repeats), else 0."""
    for i, (feed, call) in enumerate(calls):
        if feed.batched and (feed_rows(call, feed.row_inputs) or 0) > 1:
            return i
    return 0


# -- kernels ------------------------------------------------------------------------
def kernel_spread(ran: list[Candidate], outputs: dict) -> list[dict]:
    """For each TFLite file run under several op resolvers, per output: the largest absolute
    difference between any two resolvers' answers (null when shapes or dtypes differ), and
    whether they are bit-identical. Reported, not judged: each resolver is judged on its own."""
    by_file: dict[str, list] = {}
    for c in ran:
        if getattr(c.runner, "resolver", None) is not None:
            by_file.setdefault(str(c.runner.path), []).append(c.runner)
    spread = []
    for path, runners in by_file.items():
        if len(runners) < 2:
            continue
        first = outputs[runners[0].name]
        for output in sorted(first[0]) if first else []:
            pairs = [
                _difference(outputs[a.name], outputs[b.name], output) for a, b in itertools.combinations(runners, 2)
            ]
            spread.append(
                {
                    "file": Path(path).name,
                    "output": output,
                    "runtimes": [r.name for r in runners],
                    "max_abs_difference": None if None in pairs else max(d for d, _ in pairs),
                    "bit_identical": None not in pairs and all(same for _, same in pairs),
                }
            )
    return spread


def _difference(a_calls: list[dict], b_calls: list[dict], output: str) -> tuple[float, bool] | None:
    """(max |a - b| over every call, bit-identical) of one output of two runtimes; None if incomparable."""
    worst, same = 0.0, True
    for a, b in zip(a_calls, b_calls, strict=True):
        a, b = np.asarray(a.get(output)), np.asarray(b.get(output))
        if a.shape != b.shape or a.dtype != b.dtype:
            return None
        if a.dtype.kind not in "fiu":
            same = same and bool(np.array_equal(a, b))
            continue
        with np.errstate(invalid="ignore"):
            gap = np.abs(a.astype(np.float64) - b.astype(np.float64))
        equal = (a == b) | (np.isnan(a) & np.isnan(b))  # equal infinities, NaN at the same place
        gap = np.where(equal, 0.0, np.where(np.isnan(gap), np.inf, gap))
        same = same and bool(equal.all())
        worst = max(worst, float(gap.max(initial=0.0)))
    return worst, same


# -- reproducibility ---------------------------------------------------------------
def reproducibility(version_dir: Path | None, files: list, inputs: Inputs) -> dict:
    """File hashes, library versions, seed and input hash: what makes the result repeatable.

    `files`: what was checked besides the version folder (TFLite files elsewhere, golden files).
    """
    hashes = {}
    if version_dir is not None:
        hashes = {
            str(p.relative_to(version_dir)): sha256_file(p) for p in sorted(version_dir.rglob("*")) if p.is_file()
        }
    hashes.update(
        {
            str(p): sha256_file(p)
            for p in files
            if version_dir is None or not Path(p).resolve().is_relative_to(version_dir.resolve())
        }
    )
    # A tfkit export records the seed its data, split and weights came from.
    manifest = version_dir / "manifest.json" if version_dir is not None else None
    training_seed = None
    if manifest is not None and manifest.is_file():
        try:
            training_seed = json.loads(manifest.read_text()).get("seed")
        except ValueError:
            training_seed = None
    return {
        "files": hashes,
        "training_seed": training_seed,
        "versions": library_versions(),
        "seed": inputs.seed,
        "input_sha256": inputs.sha256(),
    }
