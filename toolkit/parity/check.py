"""Orchestrate a parity check: resolve the model, start the runtimes, build
the feeds, run every runtime on identical batches, compare, measure batch
invariance, signature consistency and device readiness, and return one
`CheckResult`. The CLI only parses options, calls `check`, prints.
"""

from __future__ import annotations

import contextlib
import json
import platform
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from toolkit import __version__
from toolkit.parity.compare import (BatchInvariance, ClassifierSpec, Comparator, PairComparison, Policy,
                             SignatureConsistency, default_policies, signature_consistency)
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
    inputs: str | None = None
    samples: int = 64
    seed: int = 0
    value_range: tuple | None = None  # None: a range per dtype (see inputs.generated_feeds)
    atol: dict = field(default_factory=dict)
    rtol: dict = field(default_factory=dict)
    quantized_atol: float = 0.05
    min_class_agreement: float = 0.99
    max_ulps: int = 16
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
    batch_invariance: list[BatchInvariance]
    signatures: list[SignatureConsistency]
    edge: list[dict]
    errors: list[str]
    reproducibility: dict
    policies: dict[str, Policy]
    row_labels: list[str]
    outputs: dict[str, dict]  # runtime -> output -> all rows, for plots
    seconds: float = 0.0
    #: runtimes tfkit added on its own that cannot run this model: {"runtime", "reason"}; the rest is judged
    not_run: list[dict] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return (not self.errors and all(self.pairs) and all(self.batch_invariance) and all(self.signatures))

    def __bool__(self):
        return self.passed

    def runtime_names(self) -> list[str]:
        return [r["name"] for r in self.runtimes]


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
    policies = default_policies(options.atol, options.rtol, options.quantized_atol, options.min_class_agreement)
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
        inputs = build_inputs(version_dir, reference, options)
        if not candidates and not errors:
            tflite = "no TFLite runtime can run" if not_run else f"no TFLite file has signature {options.signature!r}"
            raise InputError(f"nothing to compare {version_dir} with: {tflite} and no server was asked for")
        progress(f"running {inputs.rows} rows through {1 + len(candidates)} runtimes")
        calls = uniform_calls(inputs, [reference] + [c.runner for c in candidates], options.max_batch)
        outputs, counts = _run_all(reference, candidates, calls, inputs, errors, not_run)
        candidates = _without_not_run(candidates, not_run)
        runners = [reference] + [c.runner for c in candidates]
        row_labels, in_dist = _row_labels(calls, counts)
        comparator = Comparator(ClassifierSpec.detect(reference.signature.outputs))
        ran = [c for c in candidates if c.runner.name in outputs]
        pairs = []
        for c in ran:
            pairs += _compare_candidate(comparator, reference.name, outputs, c, policies[c.policy], in_dist)

        # Every runtime's view of the signature against the SignatureDef in saved_model.pb.
        signature_def = saved_model_signature(version_dir, options.signature, options.tags) or reference.signature
        viewed = ([reference] if in_memory is not None else []) + [c.runner for c in candidates]
        signatures = [signature_consistency(r.name, signature_def, r.signature) for r in viewed]

        invariance = []
        for runner, policy in [(reference, "exact")] + [(c.runner, c.policy) for c in ran]:
            invariance += batch_invariance(runner, calls, counts, outputs[runner.name], options.max_ulps,
                                           judged=not policies[policy].quantized, comparator=comparator)

        from toolkit.parity.device import edge_report

        sample = _first_batched(calls)
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
        reference=reference.name, runtimes=runtimes, inputs=inputs, pairs=pairs, batch_invariance=invariance,
        signatures=signatures, edge=edge, errors=errors, reproducibility=repro, policies=policies,
        row_labels=row_labels, outputs=outputs, seconds=time.monotonic() - started, not_run=not_run)


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
        # Our own server runs the same TensorFlow build: it must be bit-exact.
        remote += [Candidate(GrpcRunner(local.grpc_target, name, sig, timeout, batch, name="grpc"), "exact"),
                   Candidate(RestRunner(local.rest_url, name, sig, timeout, batch, name="rest"), "exact")]
    for c in remote:
        # A remote target may still be loading: say how long we wait, not just that we do.
        progress(f"connecting to {c.runner.name} (waiting up to {timeout:g}s for the model; --timeout)")
        stack.enter_context(c.runner)
    return reference, candidates + remote


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


def _compare_candidate(comparator, reference: str, outputs: dict, c: Candidate, policy: Policy,
                       in_dist: np.ndarray) -> list[PairComparison]:
    """One comparison; quantized variants are judged on in-distribution rows and
    reported, unjudged, on the rest."""
    ref_out, cand_out = outputs[reference], outputs[c.runner.name]
    if not policy.quantized or in_dist.all():
        return [comparator.compare(reference, ref_out, c.runner.name, cand_out, policy)]
    inside = comparator.compare(reference, _rows(ref_out, in_dist), c.runner.name, _rows(cand_out, in_dist), policy)
    _remap_rows(inside, np.flatnonzero(in_dist))
    outside = comparator.compare(reference, _rows(ref_out, ~in_dist), f"{c.runner.name} (outside data range)",
                                 _rows(cand_out, ~in_dist), policy)
    _remap_rows(outside, np.flatnonzero(~in_dist))
    _mark_informational(outside)
    return [inside, outside]


def build_inputs(version_dir: Path, reference, options: CheckOptions) -> Inputs:
    """--inputs FILE, else tfkit's held-out split with boundary cases, else generated values."""
    signature = reference.signature
    if options.inputs:
        return file_feeds(options.inputs, signature, options.signature)
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


def run_calls(runner: Runner, calls) -> tuple[dict, list[int]]:
    """Run every call; concatenate each output over all calls (rows in feed order).

    Also returns how many output rows each call contributed.
    """
    parts: dict[str, list] = {}
    counts = []
    for _, call in calls:
        result = runner.infer(call)
        for name, value in result.items():
            parts.setdefault(name, []).append(np.atleast_1d(value))
        counts.append(len(np.atleast_1d(next(iter(result.values())))) if result else 0)
    return {name: np.concatenate(values) for name, values in parts.items()}, counts


def batch_invariance(runner, calls, counts, outputs: dict, bound: int, judged: bool,
                     comparator) -> list[BatchInvariance]:
    """Re-run the first rows of the first batched call one at a time."""
    offset = 0
    for (feed, call), rows in zip(calls, counts):
        if feed.batched and rows > 1:
            take = min(rows, INVARIANCE_ROWS)
            alone, _ = run_calls(runner, [(feed, take_rows(call, feed.row_inputs, i, i + 1)) for i in range(take)])
            batched = {k: v[offset:offset + take] for k, v in outputs.items()}
            return comparator.batch_invariance(runner.name, alone, batched, bound, judged)
        offset += rows
    return []


def _row_labels(calls, counts) -> tuple[list[str], np.ndarray]:
    """`feed[row]` for every concatenated row, and which rows are in-distribution."""
    labels, in_dist, counters = [], [], {}
    for (feed, _), rows in zip(calls, counts):
        start = counters.get(feed.name, 0)
        labels += [f"{feed.name}[{start + i}]" for i in range(rows)]
        counters[feed.name] = start + rows
        in_dist += [feed.in_distribution] * rows
    return labels, np.array(in_dist, dtype=bool)


def _rows(outputs: dict, mask: np.ndarray) -> dict:
    return {k: v[mask] if len(v) == len(mask) else v for k, v in outputs.items()}


def _remap_rows(pair: PairComparison, rows: np.ndarray) -> None:
    """Map row numbers of a comparison on a subset of rows back to all rows."""
    for out in pair.outputs:
        out.failed_rows = [int(rows[r]) for r in out.failed_rows]
        out.near_threshold_rows = [int(rows[r]) for r in out.near_threshold_rows]
        for worst in out.worst_rows:
            worst["row"] = worst["index"][0] = int(rows[worst["row"]])
    if pair.classes is not None:
        pair.classes.flipped_rows = [int(rows[r]) for r in pair.classes.flipped_rows]
        pair.classes.near_threshold_rows = [int(rows[r]) for r in pair.classes.near_threshold_rows]


def _mark_informational(pair: PairComparison) -> None:
    """Report a comparison without judging it."""
    for out in pair.outputs:
        out.judged = False
    if pair.classes is not None:
        pair.classes.min_agreement = 0.0
        pair.classes.passed = True


def _first_batched(calls) -> dict | None:
    """The first multi-row call (for latency per row), else the first call."""
    for feed, call in calls:
        if feed.batched and (feed_rows(call, feed.row_inputs) or 0) > 1:
            return call
    return calls[0][1] if calls else None


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


