"""Orchestrate a parity check: resolve the model, start the runtimes, build
the feeds, run every runtime on identical batches, compare, measure batch
invariance, repeatability, signature consistency and device readiness, and
return one `CheckResult`. The CLI only parses options, calls `check`, prints.
"""

from __future__ import annotations

import contextlib
import json
import platform
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from toolkit import __version__
from toolkit.parity import bounds
from toolkit.parity.compare import (ClassifierSpec, Comparator, Layout, PairComparison, Policy, SignatureConsistency,
                                    WithinRuntime, default_policies, signature_consistency)
from toolkit.artifacts.layout import resolve_model, sha256_file, version_number
from toolkit.artifacts.tflite import ConversionError, convert
from toolkit.errors import InputError, ServerNotReady, ToolkitError
from toolkit.serve import BackgroundServer, serve_version
from toolkit.parity.inputs import Feed, Inputs, file_feeds, generated_feeds, heldout_path, tfkit_feeds
from toolkit.parity.runners.base import DEFAULT_TAGS, Runner, feed_rows, take_rows
from toolkit.tfenv import import_tf

#: rows of the first batched feed re-run one at a time for batch invariance
INVARIANCE_ROWS = 16


@dataclass
class CheckOptions:
    """Everything `tfkit check` can be told; defaults suit a float32 model."""

    signature: str = "serving_default"
    tags: tuple = DEFAULT_TAGS  # the SavedModel MetaGraph to load, as TF Serving's --saved_model_tags
    tflite: list = field(default_factory=list)
    convert: bool = True
    targets: list = field(default_factory=list)
    rest_targets: list = field(default_factory=list)
    local_server: bool = True
    server_binary: str | None = None
    host: str = "127.0.0.1"  # where the local server listens (python -m serving only)
    model_name: str | None = None
    timeout: float = 60.0
    inputs: list = field(default_factory=list)  # --inputs: one .npz, or PredictionLog files and globs
    samples: int = 64
    seed: int = 0
    value_range: tuple | None = None  # None: a range per dtype (see inputs.generated_feeds)
    atol: dict = field(default_factory=dict)
    rtol: dict = field(default_factory=dict)
    quantized_atol: float = bounds.QUANTIZED_ATOL
    min_class_agreement: float = bounds.MIN_CLASS_AGREEMENT
    max_ulps: int = bounds.INVARIANCE_ULPS  # batch invariance and repeated calls
    session_ulps: int = bounds.SESSION_ULPS
    float_ulps: int = bounds.FLOAT_ULPS
    max_batch: int | None = None
    work_dir: str | None = None  # where converted files land (the report folder if any)


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

    @property
    def passed(self) -> bool:
        return (not self.errors and all(self.pairs) and all(self.batch_invariance) and all(self.repeatability)
                and all(self.signatures))

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


# -- model resolution ---------------------------------------------------------------
def model_name_of(version_dir: Path, explicit: str | None) -> str:
    return explicit or version_dir.resolve().parent.name


# -- TFLite files ------------------------------------------------------------------
def tflite_files(version_dir: Path, options: CheckOptions, note, stack, not_run: list) -> tuple[list[Path], bool]:
    """--tflite files, else model*.tflite in the version, else a fresh conversion
    (kept in options.work_dir, else in a temporary folder removed afterwards);
    and whether the files are that conversion.

    A failed conversion goes to `not_run`: TFLite was not asked for, so the other runtimes are still judged.
    """
    if options.tflite:
        return [Path(p) for p in options.tflite], False
    found = sorted(version_dir.glob("model*.tflite"), key=lambda p: (p.name != "model.tflite", p.name))
    if found or not options.convert:
        return found, False
    if options.work_dir:
        out_dir = Path(options.work_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
    else:
        out_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tfkit-convert-")))
    target = out_dir / "converted.tflite"
    try:
        target.write_bytes(convert(version_dir, [options.signature], tags=options.tags))
    except ConversionError as exc:
        not_run.append({"runtime": f"tflite:{target.name}",
                        "reason": f"the TFLite converter failed: {exc.cause}; pass --tflite FILE to check your own "
                                  "conversion"})
        return [], True
    kept = f"to {target}" if options.work_dir else "(not kept: pass --report DIR to keep it)"
    note(f"no TFLite file in {version_dir}: converted signature {options.signature!r} {kept}")
    return [target], True


# -- the check ----------------------------------------------------------------------
@dataclass
class Candidate:
    runner: Runner
    policy: str
    edge: dict | None = None
    #: tfkit's own on-the-fly conversion: if it cannot run, it is "not run", not a failure of the check
    made_here: bool = False


def check(model, options: CheckOptions | None = None, progress=lambda msg: None,
          in_memory=None, server: BackgroundServer | None = None) -> CheckResult:
    """Check every runtime against the reference; see the module docstring.

    `in_memory`: a `tf.function` endpoint of the trained module; it becomes the
    reference ("eager") and the reloaded SavedModel a candidate ("savedmodel").
    `server`: an already starting local server serving this model (tfkit run).
    """
    from toolkit.parity.runners.protos import saved_model_signature

    options = options or CheckOptions()
    started = time.monotonic()
    import_tf()
    version_dir = resolve_model(model)
    name = model_name_of(version_dir, options.model_name)
    policies = default_policies(options.atol, options.rtol, options.quantized_atol, options.min_class_agreement,
                                options.session_ulps, options.float_ulps)
    notes: list[str] = []
    errors: list[str] = []
    edge: list[dict] = []
    not_run: list[dict] = []

    note = notes.append  # printed once, with the verdict (not also as progress)

    with contextlib.ExitStack() as stack, _also_not_run(not_run):
        if server is None and options.local_server and not options.targets and not options.rest_targets:
            flags = [] if options.tags == DEFAULT_TAGS else [f"--saved_model_tags={','.join(options.tags)}"]
            server = serve_version(version_dir, name, stack, flags, binary=options.server_binary,
                                   timeout=options.timeout, host=options.host)
        reference, candidates = _open_runtimes(version_dir, name, options, stack, in_memory, server,
                                               progress, note, errors, edge, not_run)
        inputs = build_inputs(version_dir, reference, options, name)
        candidates += _logged_runtime(inputs, reference, stack)
        if not candidates and not errors:
            tflite = "no TFLite runtime can run" if not_run else f"no TFLite file has signature {options.signature!r}"
            raise InputError(f"nothing to compare {version_dir} with: {tflite} and no server was asked for")
        calls = uniform_calls(inputs, [reference] + [c.runner for c in candidates], options.max_batch)
        counted = [feed_rows(call, feed.row_inputs) for feed, call in calls]
        progress(f"running {extent_text(None if None in counted else sum(counted), len(calls))} "
                 f"through {1 + len(candidates)} runtimes")
        outputs, counts = _run_all(reference, candidates, calls, inputs, errors, not_run)
        candidates = _without_not_run(candidates, not_run)
        runners = [reference] + [c.runner for c in candidates]
        layout = Layout.detect(outputs[reference.name], counts, _declared_batch_outputs(reference.signature))
        row_labels, _ = _row_labels(calls, [rows or 0 for rows in counts])
        call_labels, in_dist = _call_labels(calls)
        ran = [c for c in candidates if c.runner.name in outputs]
        judged = _judge(reference, ran, policies, calls, counts, outputs, layout, in_dist, options.max_ulps, errors)

        # Every runtime's view of the signature against the SignatureDef in saved_model.pb.
        signature_def = saved_model_signature(version_dir, options.signature, options.tags) or reference.signature
        viewed = ([reference] if in_memory is not None else []) + [c.runner for c in candidates]
        signatures = [signature_consistency(r.name, signature_def, r.signature) for r in viewed]

        from toolkit.parity.device import edge_report

        sample = calls[_first_batched(calls)][1] if calls else None
        edge += [{**edge_report(c.runner, sample), "policy": c.policy} for c in ran if c.edge is not None]
        for runner in runners:
            if getattr(runner, "served_version", None) not in (None, version_number(version_dir)):
                note(f"{runner.name} answered with model version {runner.served_version}, "
                     f"the checked folder is version {version_dir.name}")
        runtimes = [reference.describe()] + [{**c.runner.describe(), "policy": c.policy} for c in candidates]
        # Hash while converted files still exist (a temporary folder goes with the stack).
        repro = reproducibility(version_dir, [c.runner.path for c in candidates if c.edge is not None], inputs)

    return CheckResult(
        model={"path": str(version_dir), "name": name, "version": version_dir.name, "signature": options.signature,
               "notes": notes},
        reference=reference.name, runtimes=runtimes, inputs=inputs, pairs=judged.pairs,
        batch_invariance=judged.invariance, repeatability=judged.repeats, signatures=signatures, edge=edge,
        errors=errors, reproducibility=repro, policies=policies, layout=layout, row_labels=row_labels,
        call_labels=call_labels, rows=None if None in counts else sum(counts), outputs=outputs,
        not_judged=judged.not_judged, seconds=time.monotonic() - started, not_run=not_run)


@contextlib.contextmanager
def _also_not_run(not_run: list):
    """A check that ends with an error also names the runtimes found unable to run, so every
    problem is reported at once (not one per attempt)."""
    try:
        yield
    except ToolkitError as exc:
        if not not_run:
            raise
        also = "; ".join(f"{n['runtime']} not run: {n['reason']}" for n in not_run)
        raise type(exc)(f"{exc} (also: {also})") from None


def _open_runtimes(version_dir: Path, name: str, options: CheckOptions, stack, in_memory, server,
                   progress, note, errors: list, edge: list, not_run: list) -> tuple[Runner, list[Candidate]]:
    """Start the reference and every candidate (SavedModel, TFLite files, servers).

    A TFLite file that needs Flex ops cannot run in LiteRT: its facts go to
    `edge`, and it goes to `errors` when the user named it (--tflite), else to
    `not_run`, so it is reported, never silently skipped.
    """
    from toolkit.parity.device import model_facts
    from toolkit.parity.runners.eager import EagerRunner
    from toolkit.parity.runners.grpc import GrpcRunner
    from toolkit.parity.runners.rest import RestRunner
    from toolkit.parity.runners.tflite import TFLiteRunner

    progress(f"loading {version_dir}")
    candidates = []
    if in_memory is not None:
        reference = EagerRunner(in_memory, options.signature, name="eager")
        candidates.append(Candidate(EagerRunner(version_dir, options.signature, "savedmodel", "savedmodel",
                                                options.tags), "exact"))
    else:
        reference = EagerRunner(version_dir, options.signature, name="eager", tags=options.tags)
    # Load the SavedModel first: a bad model or signature is reported before any conversion.
    stack.enter_context(reference)
    paths, converted = tflite_files(version_dir, options, note, stack, not_run)
    for path in paths:
        runner = TFLiteRunner(path, options.signature)
        facts = model_facts(path)
        if facts["signatures"] and options.signature not in facts["signatures"] and not options.tflite:
            # A file found in the version folder was converted from another signature.
            note(f"{path.name} has no signature {options.signature!r} (it has: "
                 f"{', '.join(facts['signatures'])}): not compared")
            continue
        if facts["needs_flex"]:
            reason = (f"needs the Flex delegate (ops {', '.join(facts['flex_ops'])}), "
                      "which LiteRT and most edge runtimes lack")
            if options.tflite:
                errors.append(f"{runner.name} {reason}")
            else:
                not_run.append({"runtime": runner.name, "reason": reason})
            edge.append({**facts, "latency": None, "policy": None})
            continue
        candidates.append(Candidate(runner, "float" if facts["quantization"] == "float32" else "quantized", facts,
                                    made_here=converted))

    timeout, batch, sig = options.timeout, options.max_batch, options.signature
    remote = [Candidate(GrpcRunner(t, name, sig, timeout, batch), "float") for t in options.targets]
    remote += [Candidate(RestRunner(t, name, sig, timeout, batch), "float") for t in options.rest_targets]
    for c in candidates:
        try:
            stack.enter_context(c.runner)
        except ToolkitError as exc:
            if not c.made_here:
                raise
            not_run.append({"runtime": c.runner.name, "reason": _without_name(exc, c.runner.name)})
    candidates = _without_not_run(candidates, not_run)
    if server is not None:
        progress("waiting for the local model server")
        local = server.wait()
        # Our own server runs the same TensorFlow build, but in a Session whose Grappler rewrites differ by ULPs.
        remote += [Candidate(GrpcRunner(local.grpc_target, name, sig, timeout, batch, name="grpc"), "session"),
                   Candidate(RestRunner(local.rest_url, name, sig, timeout, batch, name="rest"), "session")]
    for c in remote:
        # A remote target may still be loading: say how long we wait, not just that we do.
        progress(f"connecting to {c.runner.name} (waiting up to {timeout:g}s for the model; --timeout)")
        stack.enter_context(c.runner)
    return reference, candidates + remote


def _logged_runtime(inputs: Inputs, reference: Runner, stack) -> list[Candidate]:
    """The responses logged with replayed requests, as one more runtime: what production answered then.

    Judged like a remote server of another build (the float policy): the
    logging server may have run another TensorFlow build, or another version.
    """
    if inputs.logged is None:
        return []
    from toolkit.parity.runners.recorded import RecordedRunner

    runner = RecordedRunner(f"logged:{inputs.logged_from}", reference.signature, inputs.logged, kind="logged",
                            details={"source": inputs.source, "records": len(inputs.logged)})
    stack.enter_context(runner)
    return [Candidate(runner, "float")]


def _run_all(reference: Runner, candidates: list, calls, inputs: Inputs, errors: list,
             not_run: list) -> tuple[dict, list[int]]:
    """Outputs of the reference and of every candidate that could run the calls.

    A failing reference or an unreachable server ends the check (exit 2 / 3); a
    failing on-the-fly conversion goes to `not_run`, any other failing candidate to `errors`.
    """
    outputs, counts = {}, []
    for runner, made_here in [(reference, False)] + [(c.runner, c.made_here) for c in candidates]:
        try:
            outputs[runner.name], rows = run_calls(runner, calls)
            counts = counts or rows
        except ToolkitError as exc:
            if runner is reference and inputs.source == "generated":
                raise InputError(f"{exc}; {_generated_inputs_hint(inputs, reference.signature)}") from None
            if runner is reference or isinstance(exc, ServerNotReady):
                raise
            if made_here:
                not_run.append({"runtime": runner.name, "reason": _without_name(exc, runner.name)})
            else:
                errors.append(str(exc) if runner.name in str(exc) else f"{runner.name}: {exc}")
    return outputs, counts


def _without_name(exc: Exception, name: str) -> str:
    """An error's message without the runtime name it starts with (reports put the name beside it)."""
    return str(exc).removeprefix(name).lstrip(": ")


def _without_not_run(candidates: list, not_run: list) -> list:
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


def _judge(reference: Runner, ran: list[Candidate], policies: dict, calls, counts, outputs: dict, layout: Layout,
           in_dist: list[bool], max_ulps: float, errors: list) -> _Judgement:
    """Repeat one call in every runtime, compare every candidate, measure batch invariance.

    A runtime whose answers change between identical calls (state or
    randomness) is its own finding: its comparisons and batch invariance are
    reported but not judged, since they would blame whichever runtime ran later.
    """
    runners = [(reference, True)] + [(c.runner, not policies[c.policy].quantized) for c in ran]
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
        invariance += batch_invariance(runner, calls, outputs[runner.name], layout, max_ulps,
                                       judged=judged and runner.name not in unstable)
    return _Judgement(pairs, invariance, repeats, _not_judged(layout, reference.signature, counts, invariance,
                                                               unstable))


def _compare_candidate(comparator, reference: str, outputs: dict, c: Candidate, policy: Policy, layout: Layout,
                       in_dist: list[bool]) -> list[PairComparison]:
    """One comparison; quantized variants are judged on in-distribution calls and
    reported, unjudged, on the rest."""
    ref_out, cand_out = outputs[reference], outputs[c.runner.name]
    if not policy.quantized or all(in_dist):
        return [comparator.compare(reference, ref_out, c.runner.name, cand_out, policy, layout)]
    pairs = []
    for inside, candidate in ((True, c.runner.name), (False, f"{c.runner.name} (outside data range)")):
        picked = [i for i, flag in enumerate(in_dist) if flag == inside]
        pairs.append(comparator.compare(reference, [ref_out[i] for i in picked], candidate,
                                        [cand_out[i] for i in picked], policy, layout.subset(picked)))
    pairs[1].mark_informational()
    return pairs


def build_inputs(version_dir: Path, reference, options: CheckOptions, model_name: str | None = None) -> Inputs:
    """--inputs FILE..., else tfkit's held-out split with boundary cases, else generated values.
    Logged requests are those of `model_name` (toolkit.parity.replay.read_replay)."""
    signature = reference.signature
    if options.inputs:
        return file_feeds(options.inputs, signature, options.signature, model_name,
                          explicit_model=options.model_name is not None)
    heldout = heldout_path(version_dir)
    single = next(iter(signature.inputs.values())) if len(signature.inputs) == 1 else None
    if heldout is not None and single is not None and single.batch_dynamic and np.dtype(single.dtype).kind == "f":
        with np.load(heldout, allow_pickle=False) as data:
            features = data["features"]
        return tfkit_feeds(features, signature, reference)
    return generated_feeds(signature, options.samples, options.seed, options.value_range)


def uniform_calls(inputs: Inputs, runners: list, max_batch: int | None) -> list[tuple[Feed, dict]]:
    """Split every batchable call under the smallest limit of all runtimes, so each
    runtime sees exactly the same batches (the precondition for bit-exactness).
    Inputs without rows (a scalar) go whole with every part."""
    calls = []
    for feed in inputs.feeds:
        for call in feed.calls:
            rows = feed_rows(call, feed.row_inputs) if feed.batched else None
            limits = [r.max_rows(call) for r in runners] + [max_batch]
            limit = min((l for l in limits if l), default=None)
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


def batch_invariance(runner, calls, outputs: list[dict], layout: Layout, bound: float,
                     judged: bool) -> list[WithinRuntime]:
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


def repeatability(runner, calls, outputs: list[dict], layout: Layout, bound: float,
                  errors: list) -> list[WithinRuntime]:
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


def _not_judged(layout: Layout, signature, counts, invariance: list, unstable: set) -> list[str]:
    """What the verdict does not cover, each with its reason, for the verdict line and the report."""
    notes = []
    per_call = sorted(set(signature.outputs) - layout.batch_outputs)
    if None in counts:
        notes.append("batch invariance: the signature has no batch dimension (outputs compared per call)")
    elif per_call:
        notes.append(f"batch invariance of {', '.join(per_call)}: "
                     f"{'it does' if len(per_call) == 1 else 'they do'} not follow the batch (compared per call)")
    if layout.batch_outputs and not invariance:
        notes.append("batch invariance: no call has two or more rows")
    quantized = sorted({b.runtime for b in invariance if not b.judged and b.runtime not in unstable})
    if quantized:
        notes.append(f"batch invariance of {', '.join(quantized)}: quantized (reported only)")
    if unstable:
        notes.append(f"comparisons and batch invariance of {', '.join(sorted(unstable))}: "
                     "answers change between identical calls")
    return notes


def _row_labels(calls, counts) -> tuple[list[str], np.ndarray]:
    """`feed[row]` for every concatenated row, and which rows are in-distribution."""
    labels, in_dist, counters = [], [], {}
    for (feed, _), rows in zip(calls, counts):
        start = counters.get(feed.name, 0)
        labels += [f"{feed.name}[{start + i}]" for i in range(rows)]
        counters[feed.name] = start + rows
        in_dist += [feed.in_distribution] * rows
    return labels, np.array(in_dist, dtype=bool)


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


# -- reproducibility ---------------------------------------------------------------
def reproducibility(version_dir: Path, tflite: list, inputs: Inputs) -> dict:
    """File hashes, library versions, seed and input hash: what makes the result repeatable."""
    import importlib.metadata as md

    files = sorted(p for p in version_dir.rglob("*") if p.is_file())
    hashes = {str(p.relative_to(version_dir)): sha256_file(p) for p in files}
    hashes.update({str(p): sha256_file(p) for p in tflite if not str(p).startswith(str(version_dir))})

    def version(dist):
        try:
            return md.version(dist)
        except md.PackageNotFoundError:
            return None

    # A tfkit export records the seed its data, split and weights came from.
    manifest = version_dir / "manifest.json"
    training_seed = None
    if manifest.is_file():
        try:
            training_seed = json.loads(manifest.read_text()).get("seed")
        except ValueError:
            training_seed = None
    return {
        "files": hashes,
        "training_seed": training_seed,
        "versions": {"tfkit": __version__, "tensorflow": version("tensorflow"),
                     "litert": version("ai-edge-litert"), "tensorflow_serving_api": version("tensorflow-serving-api"),
                     "numpy": np.__version__, "python": platform.python_version()},
        "seed": inputs.seed,
        "input_sha256": inputs.sha256(),
    }


