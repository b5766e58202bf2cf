"""Orchestrate a parity check: resolve the model, start the runtimes, build the feeds, hand them
to `toolkit.parity.verdict` (run every runtime on identical batches, compare, measure batch
invariance, repeatability and device readiness), check signature consistency, and return one
`CheckResult`. The CLI only parses options, calls `check`, prints.

Stored outputs (`--load-outputs`: golden files, saved checks, device reports) are runtimes
like any other (`toolkit.parity.stored`); with no model they compare among themselves or
with remote servers, fed the inputs they recorded.
"""

from __future__ import annotations

import contextlib
import dataclasses
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from toolkit import policies
from toolkit.artifacts.golden import golden_path, read_model, saved_model_sha256, tflite_sha256
from toolkit.artifacts.layout import resolve_model, version_number
from toolkit.artifacts.tflite import ConversionError, convert
from toolkit.errors import InputError, ToolkitError
from toolkit.parity import stored
from toolkit.parity.compare import default_policies, signature_consistency
from toolkit.parity.inputs import Inputs, file_feeds, generated_feeds, heldout_features, tfkit_feeds
from toolkit.parity.runners.base import DEFAULT_TAGS, Runner
from toolkit.parity.verdict import (
    Candidate,
    CheckResult,
    judge_runtimes,
    reproducibility,
    tflite_candidates,
    without_name,
    without_not_run,
)
from toolkit.serve import BackgroundServer, serve_version
from toolkit.tfenv import import_tf


@dataclass
class CheckOptions:
    """Everything `tfkit check` can be told; defaults suit a float32 model."""

    signature: str | None = None  # None: the stored outputs' signature, else serving_default
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
    quantized_atol: float = policies.QUANTIZED_ATOL
    min_class_agreement: float = policies.MIN_CLASS_AGREEMENT
    max_ulps: int = policies.INVARIANCE_ULPS  # batch invariance and repeated calls
    session_ulps: int = policies.SESSION_ULPS
    float_ulps: int = policies.FLOAT_ULPS
    max_batch: int | None = None
    work_dir: str | None = None  # where converted files land (the report folder if any)
    load_outputs: list = field(default_factory=list)  # golden files, saved checks, device reports
    save_outputs: str | None = None  # write every runtime's outputs here, in the golden format
    allow_model_mismatch: bool = False  # judge stored outputs recorded for another SavedModel


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
        not_run.append(
            {
                "runtime": f"tflite:{target.name}",
                "reason": f"the TFLite converter failed: {exc.cause}; pass --tflite FILE to check your own conversion",
            }
        )
        return [], True
    kept = f"to {target}" if options.work_dir else "(not kept: pass --report DIR to keep it)"
    note(f"no TFLite file in {version_dir}: converted signature {options.signature!r} {kept}")
    return [target], True


# -- the check ----------------------------------------------------------------------
def check(
    model,
    options: CheckOptions | None = None,
    progress=lambda msg: None,
    in_memory=None,
    server: BackgroundServer | None = None,
) -> CheckResult:
    """Check every runtime against the reference; see the module docstring.

    `model`: a version folder or model folder; None compares `options.load_outputs` among themselves
    and with `options.targets`/`rest_targets`. `in_memory`: a `tf.function` endpoint of the trained
    module; it becomes the reference ("eager") and the reloaded SavedModel a candidate ("savedmodel").
    `server`: an already starting local server serving this model (tfkit run).
    """
    options = options or CheckOptions()
    started = time.monotonic()
    loaded = [stored.read(path) for path in options.load_outputs]
    options = dataclasses.replace(options, signature=_signature_name(options.signature, loaded))
    if model is None and not loaded:
        raise InputError("nothing to check: give MODEL, or --load-outputs FILE to compare stored outputs")
    if loaded and options.inputs:
        raise InputError(
            "--inputs and --load-outputs: stored outputs answer only the inputs they recorded; drop --inputs"
        )
    if model is not None or options.targets or options.rest_targets or options.tflite:
        import_tf()
    version_dir = resolve_model(model) if model is not None else None
    if version_dir is not None:
        stored.check_model(version_dir, loaded, options.allow_model_mismatch)
    name = _model_name(version_dir, options, loaded)
    judging = default_policies(
        options.atol,
        options.rtol,
        options.quantized_atol,
        options.min_class_agreement,
        options.session_ulps,
        options.float_ulps,
    )
    notes: list[str] = []
    errors: list[str] = []
    edge: list[dict] = []
    not_run: list[dict] = []

    note = notes.append  # printed once, with the verdict (not also as progress)

    with contextlib.ExitStack() as stack, _also_not_run(not_run):
        if (
            server is None
            and version_dir is not None
            and options.local_server
            and not options.targets
            and not options.rest_targets
        ):
            flags = [] if options.tags == DEFAULT_TAGS else [f"--saved_model_tags={','.join(options.tags)}"]
            server = serve_version(
                version_dir,
                name,
                stack,
                flags,
                binary=options.server_binary,
                timeout=options.timeout,
                host=options.host,
            )
        reference, candidates = _open_runtimes(
            version_dir, name, options, stack, in_memory, server, loaded, progress, note, errors, edge, not_run
        )
        inputs = stored.inputs_of(loaded[0]) if loaded else build_inputs(version_dir, reference, options, name)
        candidates += _logged_runtime(inputs, reference, stack)
        if not candidates and not errors:
            raise InputError(_nothing_to_compare(version_dir, reference, options, not_run))
        judged = judge_runtimes(
            reference, candidates, inputs, judging, options.max_batch, options.max_ulps, errors, not_run, progress
        )
        signatures = _signatures(version_dir, options, reference, in_memory, judged.candidates)
        tflite = [c.runner.path for c in judged.candidates if c.edge is not None]
        for runner in [reference] + [c.runner for c in judged.candidates]:
            served = getattr(runner, "served_version", None)
            if version_dir is not None and served not in (None, version_number(version_dir)):
                note(
                    f"{runner.name} answered with model version {served}, "
                    f"the checked folder is version {version_dir.name}"
                )
        for text in _tflite_changes(version_dir, options.signature, loaded, tflite):
            note(text)
        # Hash while converted files still exist (a temporary folder goes with the stack).
        recorded = [path for g in loaded for path in (g.path, g.path.with_suffix(".npz"))]
        repro = reproducibility(version_dir, tflite + recorded, inputs)
        model_record = {
            "name": name,
            "version": version_dir.name if version_dir else loaded[0].model.get("version"),
            "saved_model_sha256": saved_model_sha256(version_dir)
            if version_dir
            else loaded[0].model.get("saved_model_sha256"),
            "tflite": tflite_sha256(tflite),
        }
        result = judged.result(
            model={
                "path": str(version_dir) if version_dir else None,
                "name": name,
                "version": str(model_record["version"]),
                "signature": options.signature,
                "notes": notes,
            },
            signatures=signatures,
            errors=errors,
            reproducibility=repro,
            policies=judging,
            not_run=not_run,
            seconds=time.monotonic() - started,
            edge=edge,
        )
    if options.save_outputs:
        result.saved_outputs = str(stored.save(result, options.save_outputs, model=model_record))
    return result


def _nothing_to_compare(version_dir, reference: Runner, options: CheckOptions, not_run: list) -> str:
    if version_dir is None:
        return (
            f"nothing to compare {reference.name} with: give another --load-outputs file, --target, "
            "--rest-target or MODEL"
        )
    tflite = "no TFLite runtime can run" if not_run else f"no TFLite file has signature {options.signature!r}"
    return f"nothing to compare {version_dir} with: {tflite} and no server was asked for"


def _signature_name(given: str | None, loaded: list) -> str:
    """--signature, else the stored outputs' signature, else serving_default; they must agree."""
    recorded = {g.signature: g.path for g in loaded}
    name = given or next(iter(recorded), "serving_default")
    other = {s: p for s, p in recorded.items() if s != name}
    if other:
        signature, path = next(iter(other.items()))
        raise InputError(
            f"{path} recorded signature {signature!r}, the check calls {name!r}; pass --signature "
            f"{signature} or give stored outputs of {name!r}"
        )
    return name


def _model_name(version_dir: Path | None, options: CheckOptions, loaded: list) -> str:
    """The model's name on servers: --model-name, the model folder's name, or the one recorded."""
    if version_dir is not None:
        return model_name_of(version_dir, options.model_name)
    recorded = next((g.model.get("name") for g in loaded if g.model.get("name")), None)
    if options.model_name or recorded:
        return options.model_name or recorded
    if options.targets or options.rest_targets:
        raise InputError(f"{loaded[0].path} records no model name: pass --model-name, the name the servers use")
    return "stored"


def _signatures(version_dir, options: CheckOptions, reference: Runner, in_memory, candidates: list) -> list:
    """Every runtime's view of the signature against the SignatureDef in saved_model.pb
    (without a model: against the reference's)."""
    signature_def = None
    if version_dir is not None:
        from toolkit.parity.runners.protos import saved_model_signature

        signature_def = saved_model_signature(version_dir, options.signature, options.tags)
    viewed = ([reference] if in_memory is not None else []) + [c.runner for c in candidates]
    return [signature_consistency(r.name, signature_def or reference.signature, r.signature) for r in viewed]


def _tflite_changes(version_dir, signature: str, loaded: list, files: list) -> list[str]:
    """Notes for TFLite files changed since the export recorded their sha256 (its golden file, or loaded ones)."""
    recorded = [(g.path, g.model) for g in loaded]
    exported = golden_path(version_dir, signature) if version_dir is not None else None
    if exported is not None and exported.is_file():
        recorded.append((exported, read_model(exported)))
    return stored.tflite_changes(recorded, files)


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


def _open_runtimes(
    version_dir: Path | None,
    name: str,
    options: CheckOptions,
    stack,
    in_memory,
    server,
    loaded,
    progress,
    note,
    errors: list,
    edge: list,
    not_run: list,
) -> tuple[Runner, list[Candidate]]:
    """Start the reference and every candidate (SavedModel, TFLite files, stored outputs, servers).

    The reference is eager TensorFlow on the model, else the first stored file's reference. TFLite
    files run under every op resolver (`verdict.tflite_candidates` says what happens to files that
    cannot run).
    """
    from toolkit.parity.runners.eager import EagerRunner
    from toolkit.parity.runners.grpc import GrpcRunner
    from toolkit.parity.runners.rest import RestRunner

    candidates = []
    recorded = [Candidate(runner, policy) for runner, policy in stored.recorded_runtimes(loaded)]
    if version_dir is None:
        reference = recorded.pop(0).runner
    elif in_memory is not None:
        reference = EagerRunner(in_memory, options.signature, name="eager")
        candidates.append(
            Candidate(EagerRunner(version_dir, options.signature, "savedmodel", "savedmodel", options.tags), "exact")
        )
    else:
        reference = EagerRunner(version_dir, options.signature, name="eager", tags=options.tags)
    progress(f"loading {version_dir or reference.name}")
    # Load the reference first: a bad model or signature is reported before any conversion.
    stack.enter_context(reference)
    if version_dir is not None:
        paths, converted = tflite_files(version_dir, options, note, stack, not_run)
    else:
        paths, converted = [Path(p) for p in options.tflite], False
    candidates += tflite_candidates(
        paths, options.signature, bool(options.tflite), converted, note, errors, edge, not_run
    )
    candidates += recorded

    timeout, batch, sig = options.timeout, options.max_batch, options.signature
    remote = [Candidate(GrpcRunner(t, name, sig, timeout, batch), "float") for t in options.targets]
    remote += [Candidate(RestRunner(t, name, sig, timeout, batch), "float") for t in options.rest_targets]
    for c in candidates:
        try:
            stack.enter_context(c.runner)
        except ToolkitError as exc:
            if not c.made_here:
                raise
            not_run.append({"runtime": c.runner.name, "reason": without_name(exc, c.runner.name)})
    candidates = without_not_run(candidates, not_run)
    if server is not None:
        progress("waiting for the local model server")
        local = server.wait()
        # Our own server runs the same TensorFlow build, but in a Session whose Grappler rewrites differ by ULPs.
        remote += [
            Candidate(GrpcRunner(local.grpc_target, name, sig, timeout, batch, name="grpc"), "session"),
            Candidate(RestRunner(local.rest_url, name, sig, timeout, batch, name="rest"), "session"),
        ]
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

    runner = RecordedRunner(
        f"logged:{inputs.logged_from}",
        reference.signature,
        inputs.logged,
        kind="logged",
        details={"source": inputs.source, "records": len(inputs.logged)},
    )
    stack.enter_context(runner)
    return [Candidate(runner, "float")]


def build_inputs(version_dir: Path, reference, options: CheckOptions, model_name: str | None = None) -> Inputs:
    """--inputs FILE..., else tfkit's held-out split with boundary cases, else generated values.
    Logged requests are those of `model_name` (toolkit.parity.replay.read_replay)."""
    signature = reference.signature
    if options.inputs:
        return file_feeds(
            options.inputs, signature, options.signature, model_name, explicit_model=options.model_name is not None
        )
    features = heldout_features(version_dir, signature)
    if features is not None:
        return tfkit_feeds(features, signature, reference)
    return generated_feeds(signature, options.samples, options.seed, options.value_range)
