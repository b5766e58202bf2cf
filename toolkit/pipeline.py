"""`tfkit run`: train (or take a user's model) -> export -> serve on an ephemeral local port -> check every runtime."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from toolkit.errors import InputError
from toolkit.parity.check import CheckOptions, CheckResult, check
from toolkit.serve import BackgroundServer, find_server_binary
from toolkit.tfenv import import_tf

RUN_MODEL_NAME = "logreg"


@dataclass
class RunResult:
    """What `run` made and where, plus the check's result."""

    run_dir: Path | None  # None: a user's model was exported, nothing trained
    version_dir: Path
    grpc_target: str
    rest_url: str
    check: CheckResult


def run(
    out,
    seed: int = 0,
    quantize=None,
    options: CheckOptions | None = None,
    force: bool = False,
    progress=lambda msg: None,
    on_step=None,
    on_trained=lambda record: None,
    model=None,
    calibration=None,
) -> RunResult:
    """Train -> export (with quantized variants) -> serve locally -> check everything.

    `model`: a user's model to export instead of training one (anything `tfkit export` takes),
    fed `options.inputs` if given and calibrated on `calibration` if given.
    `on_step` receives each training step's metrics (as `tfkit train` prints
    them); `on_trained` the run's training record, before the export.

    The model server starts first, on a background thread, watching the still
    empty model folder: its TensorFlow import overlaps training and export, and
    it loads the version as soon as the export publishes it.
    """
    import_tf()
    from toolkit.artifacts.sources import open_source
    from toolkit.artifacts.tflite import QUANTIZATIONS

    options = options or CheckOptions()
    quantize = QUANTIZATIONS if quantize is None else quantize
    if options.server_binary:
        find_server_binary(options.server_binary)  # a bad path fails before anything is written
    source = open_source(model) if model is not None else None  # a bad model too
    out = Path(out).absolute()  # TF Serving accepts only absolute base paths
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: exists and is not a directory")
    name = source.default_name() if source is not None else RUN_MODEL_NAME
    model_dir = out / "models" / name
    if model_dir.exists() and any(model_dir.iterdir()):
        if not force:
            raise InputError(f"--out {out}: already holds models; pass --force or choose another --out")
        # The server must not load the old version 1: it would keep serving it
        # after the export replaces the folder (TF Serving never reloads a version).
        shutil.rmtree(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    server = BackgroundServer(
        [f"--model_name={name}", f"--model_base_path={model_dir}", "--file_system_poll_wait_seconds=1"],
        binary=options.server_binary,
        timeout=options.timeout,
        host=options.host,
    )
    try:
        if source is None:
            run_dir, version_dir, trained = _train_and_export(
                out, model_dir, seed, quantize, force, progress, on_step, on_trained
            )
        else:
            from toolkit.exporting import export_any

            progress(f"exporting {source.kind} {source.path} -> {model_dir}")
            run_dir, trained = None, None
            version_dir = export_any(
                source,
                out / "models",
                name,
                version=1,
                force=force,
                quantize=quantize,
                inputs=options.inputs,
                calibration=calibration,
            ).folder
        in_memory = trained.serving_default if trained is not None else None
        result = check(version_dir, options, progress=progress, in_memory=in_memory, server=server)
        local = server.server
        return RunResult(run_dir, version_dir, local.grpc_target, local.rest_url, result)
    finally:
        server.stop()


def _train_and_export(out: Path, model_dir: Path, seed: int, quantize, force: bool, progress, on_step, on_trained):
    """The tutorial: train into OUT/run, export version 1; (run folder, version folder, the trained module)."""
    from toolkit.artifacts.export import export_model
    from toolkit.training.rundir import load_run, train_to_dir

    run_dir = out / "run"
    progress(f"training -> {run_dir}")
    on_trained(train_to_dir(run_dir, seed=seed, force=force, on_step=on_step))
    progress(f"exporting -> {model_dir}")
    version_dir = export_model(run_dir, model_dir.parent, model_dir.name, version=1, force=force, quantize=quantize)
    return run_dir, version_dir, load_run(run_dir).model
