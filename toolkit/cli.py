"""The `tfkit` command line: parse options, call the library, print, exit.

Only click and the standard library are imported at module level; TensorFlow
and the heavy library modules are imported inside the commands that need them
so `tfkit --help` stays instant. Library errors (`toolkit.errors`) become a
one-line `Error: ...` with their exit code in one place, `ToolkitGroup.invoke`.
A command that wants a non-zero exit without an error (a failed check)
calls `ctx.exit(code)`.
"""

import sys

import click

from toolkit import __version__
from toolkit.errors import ToolkitError


class _LibraryError(click.ClickException):
    def __init__(self, error: ToolkitError):
        super().__init__(str(error))
        self.exit_code = error.exit_code


class ToolkitGroup(click.Group):
    """A group that turns `ToolkitError` from any subcommand into a clean exit."""

    group_class = type  # subgroups (deploy) list their commands the same way

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ToolkitError as exc:
            raise _LibraryError(exc) from None

    def format_commands(self, ctx, formatter):
        """List each command with its whole first sentence, wrapped; click cuts it at ~45 characters."""
        rows = [(name, command.get_short_help_str(limit=1000)) for name, command in
                ((name, self.get_command(ctx, name)) for name in self.list_commands(ctx))
                if command is not None and not command.hidden]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=ToolkitGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tfkit")
def cli():
    """tfkit: train a TensorFlow model, export it for TF Serving and TFLite,
    serve it, and prove every runtime gives the same answers."""


# ---------------------------------------------------------------- deploy / promote (fleets)


def _deploy_models_options(command):
    """MODEL_DIR... plus --policy/--label, shared by every `deploy` subcommand."""
    command = click.option(
        "--label", "labels", multiple=True, metavar="[NAME:]LABEL=VERSION",
        help="Version label (stable or canary); NAME: is needed with several models. Repeatable.",
    )(command)
    command = click.option(
        "--policy", "policies", multiple=True, metavar="[NAME:]POLICY",
        help="Version policy: latest, latest=N, all or specific=V1,V2 (default latest). Repeatable.",
    )(command)
    return click.argument("model_dirs", nargs=-1, required=True, metavar="MODEL_DIR...")(command)


def _fleet_options(command):
    """Server flavour, image, replicas and resources, shared by `deploy compose` and `deploy k8s`."""
    for decorator in reversed([
        click.option("--server", type=click.Choice(["tf-serving", "python"]), default="tf-serving",
                     show_default=True,
                     help="tf-serving: the official tensorflow/serving image pinned to our "
                          "TensorFlow; python: our `python -m serving` with the same flags."),
        click.option("--image", help="Container image to run instead of the default for --server."),
        click.option("--replicas", type=int, default=2, show_default=True, help="TF Serving replicas to run."),
        click.option("--cpus", type=float, default=0.5, show_default=True,
                     help="CPU requested per replica."),
        click.option("--memory-mib", type=int, default=1024, show_default=True,
                     help="Memory requested (and, on Kubernetes, the limit) per replica."),
    ]):
        command = decorator(command)
    return command


def _echo_models(models):
    for m in models:
        labels = " ".join(f"{k}={v}" for k, v in sorted(m.labels.items())) or "-"
        served = ",".join(map(str, m.policy.served(m.versions)))
        click.echo(f"  {m.name}: {m.path}  policy {m.policy} (serves {served})  labels {labels}")


@cli.group()
def deploy():
    """Generate configs and manifests for a TF Serving fleet."""


@deploy.command("config")
@_deploy_models_options
@click.option("--models-root", metavar="DIR",
              help="Write base paths as DIR/NAME, where a container mounts the models "
                   "(default: this machine's absolute paths).")
@click.option("-o", "--out", default="models.config", show_default=True,
              type=click.Path(dir_okay=False), help="models.config to write.")
def deploy_config(model_dirs, policies, labels, models_root, out):
    """Write a models.config (ModelServerConfig) for one or many exported models.

    MODEL_DIR is a model base path, BASE/NAME as written by `tfkit export`.
    """
    from toolkit import deploy as lib

    models = lib.plan_models(model_dirs, policies, labels)
    path = lib.write_atomic(out, lib.render_config(lib.build_config(models, models_root)))
    click.echo(f"wrote {path}")
    _echo_models(models)
    if not models_root:
        flags = " ".join(lib.server_flags(models, str(path.resolve())))
        click.echo(f"serve it: python -m serving {flags}")


@deploy.command("compose")
@_deploy_models_options
@_fleet_options
@click.option("--host-port", type=int, default=8500, show_default=True,
              help="Host gRPC port of replica 0; replica i uses HOST_PORT+10*i (REST: +1).")
@click.option("-o", "--out", default="compose", show_default=True,
              type=click.Path(file_okay=False),
              help="Folder for docker-compose.yaml and config/models.config.")
def deploy_compose(model_dirs, policies, labels, server, image, replicas, cpus, memory_mib,
                   host_port, out):
    """Write a docker-compose fleet: one service per replica, models mounted read-only."""
    from toolkit import deploy as lib

    models = lib.plan_models(model_dirs, policies, labels)
    options = lib.FleetOptions(server, image, replicas, cpus, memory_mib)
    compose_path, config_path = lib.write_compose(models, options, out, host_port)
    click.echo(f"wrote {compose_path} and {config_path} ({options.resolved_image})")
    _echo_models(models)
    targets = " ".join(f"--target 127.0.0.1:{g}"
                       for g, _ in lib.replica_host_ports(replicas, host_port))
    click.echo(f"start: docker compose -f {compose_path} up -d --wait\n"
               f"check: tfkit check {models[0].path} {targets}")


@deploy.command("k8s")
@_deploy_models_options
@_fleet_options
@click.option("--app", default="tfserving", show_default=True,
              help="Name of the Deployment, Service and ConfigMap (<app>-config).")
@click.option("--namespace", help="Namespace for every manifest (default: kubectl's).")
@click.option("--models-volume", default="pvc:tfkit-models", show_default=True,
              metavar="pvc:CLAIM|host:/PATH",
              help="Volume holding NAME/VERSION folders, mounted read-only at /models.")
@click.option("-o", "--out", default="k8s.yaml", show_default=True,
              type=click.Path(dir_okay=False), help="Multi-document manifest file to write.")
def deploy_k8s(model_dirs, policies, labels, server, image, replicas, cpus, memory_mib, app,
               namespace, models_volume, out):
    """Write Kubernetes manifests: ConfigMap with models.config, Deployment, Service."""
    from toolkit import deploy as lib

    models = lib.plan_models(model_dirs, policies, labels)
    options = lib.FleetOptions(server, image, replicas, cpus, memory_mib)
    docs = lib.k8s_manifests(models, options, app, namespace, models_volume)
    path = lib.write_atomic(out, lib.dump_yaml(docs))
    click.echo(f"wrote {path}: ConfigMap {app}-config, Deployment {app} "
               f"({replicas} replicas of {options.resolved_image}), Service {app}")
    _echo_models(models)
    click.echo(f"apply: kubectl apply -f {path}")


@cli.command()
@click.argument("name")
@click.option("--version", "version", type=int, required=True, help="Version to label.")
@click.option("--label", required=True, help="stable or canary.")
@click.option("--target", "targets", multiple=True, required=True, metavar="HOST:PORT",
              help="gRPC address of a replica to apply the label on. Repeatable.")
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False),
              help="The models.config the servers run with; rewritten atomically.")
@click.option("--timeout", type=float, default=10.0, show_default=True,
              help="Seconds per status request.")
def promote(name, version, label, targets, config_path, timeout):
    """Point LABEL of model NAME at VERSION in models.config and on running servers.

    Refuses (exit 2) unless VERSION is AVAILABLE on every --target; an
    unreachable target exits 3.
    """
    from toolkit import deploy as lib

    done = lib.promote(config_path, name, version, label, list(targets), timeout)
    moved = f"{done.previous} -> {done.version}" if done.previous is not None else f"-> {done.version}"
    click.echo(f"{done.model}: label {done.label} {moved}; wrote {done.config_path}; "
               f"applied on {', '.join(done.targets)}")


# ---------------------------------------------------------------- train / export / inspect

# Above this many steps `train` shows a progress bar instead of one line per step.
STEP_LINES_MAX = 50


def _step_line(step: int, loss: float, accuracy: float) -> str:
    return f"Loss at step {step}: {loss:.4f}, Accuracy: {accuracy:.4f}"


@cli.command()
@click.option("--out", "out", required=True, type=click.Path(file_okay=False),
              help="Run folder to write (training.json, checkpoint, heldout.npz, plots/).")
@click.option("--data", "data_path", type=click.Path(dir_okay=False),
              help="Your own data: a .csv (numeric feature columns plus a label column) or a "
                   ".npz (features [N, D], labels [N]). Default: the tutorial's two Gaussians.")
@click.option("--label-column", default="label", show_default=True, help="CSV column holding the 0/1 labels.")
@click.option("--num-per-class", type=int, default=2000, show_default=True,
              help="Samples per class of the generated data (ignored with --data).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seeds the data, the split, the initial weights and the batch shuffling.")
@click.option("--steps", type=int, default=10, show_default=True, help="Training steps.")
@click.option("--learning-rate", type=float, default=0.1, show_default=True, help="Gradient descent step size.")
@click.option("--batch-size", type=int, default=None,
              help="Mini-batch size over a shuffled tf.data pipeline. Default: the full training set.")
@click.option("--test-fraction", type=float, default=0.2, show_default=True,
              help="Share of the data held out for evaluation (and later for parity checks).")
@click.option("--plots/--no-plots", default=True, show_default=True, help="Write PNG plots into RUN/plots/.")
@click.option("--force", is_flag=True, help="Overwrite a run already in --out.")
def train(out, data_path, label_column, num_per_class, seed, steps, learning_rate, batch_size,
          test_fraction, plots, force):
    """Train the tutorial's logistic regression and write a run folder for `tfkit export`."""
    from toolkit.rundir import train_to_dir

    options = dict(out=out, data_path=data_path, label_column=label_column, num_per_class=num_per_class,
                   seed=seed, steps=steps, learning_rate=learning_rate, batch_size=batch_size,
                   test_fraction=test_fraction, plots=plots, force=force)
    if steps <= STEP_LINES_MAX:
        record = train_to_dir(**options, on_step=lambda m: click.echo(_step_line(m.step, m.loss, m.accuracy)))
    else:
        # The bar goes to stderr so stdout keeps only results.
        with click.progressbar(length=steps, label="Training", file=sys.stderr) as bar:
            record = train_to_dir(**options, on_step=lambda m: bar.update(1))
        click.echo(_step_line(**record["steps"][-1]))
    held = record["heldout"]
    click.echo(f"Held-out ({held['samples']} samples): loss {held['loss']:.4f}, accuracy {held['accuracy']:.4f}")
    made = ["training.json", "checkpoint/", "heldout.npz", "train.npz"] + sorted(record.get("plots", {}).values())
    click.echo(f"Wrote {out}: {', '.join(made)}")


@cli.command()
@click.argument("run_dir", metavar="RUN", type=click.Path(file_okay=False))
@click.option("--model-base-path", required=True, type=click.Path(file_okay=False),
              help="TF Serving's model base path; the model goes to BASE/NAME/VERSION/.")
@click.option("--name", required=True, help="Model name (the folder under --model-base-path).")
@click.option("--version", "version", type=int, default=None,
              help="Version number. Default: one more than the highest existing version (1 if none).")
@click.option("--force", is_flag=True, help="Replace an existing version (atomically).")
@click.option("--quantize", default="", metavar="LIST",
              help="Comma-separated quantized TFLite variants to add: dynamic, float16, int8.")
def export(run_dir, model_base_path, name, version, force, quantize):
    """Export a training run as a SavedModel in TF Serving's layout, plus TFLite files."""
    from toolkit.export import export_model

    folder = export_model(run_dir, model_base_path, name, version=version, force=force, quantize=quantize)
    click.echo(f"Exported {folder}")
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        click.echo(f"  {str(path.relative_to(folder)):45} {path.stat().st_size:>9} bytes")


@cli.command("inspect")
@click.argument("path", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def inspect_cmd(path, as_json):
    """Show the signatures of a SavedModel folder (and the .tflite files in it) or a .tflite file."""
    from toolkit import inspect_model

    info = inspect_model.inspect_path(path)
    if as_json:
        click.echo(inspect_model.to_json(info))
    else:
        click.echo(inspect_model.to_text(info), nl=False)


# -- check / run / serve / predict (parity) ------------------------------------------
def _parity_options(command):
    """Tolerance, input and server options shared by `check` and `run`."""
    for decorator in reversed([
        click.option("--atol", "atol", multiple=True, metavar="[OUTPUT=]VALUE",
                     help="Absolute tolerance for float candidates, for all outputs or one (repeatable)."),
        click.option("--rtol", "rtol", multiple=True, metavar="[OUTPUT=]VALUE",
                     help="Relative tolerance for float candidates, for all outputs or one (repeatable)."),
        click.option("--quantized-atol", type=float, default=0.05, show_default=True,
                     help="Max score-output error allowed for quantized TFLite variants."),
        click.option("--min-class-agreement", type=click.FloatRange(0, 1), default=0.99, show_default=True,
                     help="Share of rows whose class a quantized variant must keep (flips near the threshold excluded)."),
        click.option("--max-ulps", type=click.IntRange(0), default=16, show_default=True,
                     help="Bound on batch-1 vs batch-N differences within one runtime, in ULPs."),
        click.option("--max-batch", type=click.IntRange(1), help="At most this many rows per request."),
        click.option("--timeout", type=float, default=60.0, show_default=True,
                     help="Seconds to wait for a server and its model to be AVAILABLE."),
        click.option("--server-binary", metavar="PATH",
                     help="Run the local server with this tensorflow_model_server instead of python -m serving."),
        click.option("--host", default="127.0.0.1", show_default=True,
                     help="Address the local python -m serving listens on (the real binary: every interface)."),
        click.option("--report", "report_dir", type=click.Path(file_okay=False),
                     help="Write report.json, report.md and plots here "
                          "[check: ./tfkit-report; run: OUT/report]."),
        click.option("--junit", type=click.Path(dir_okay=False), help="Write a JUnit XML file for CI."),
    ]):
        command = decorator(command)
    return command


def _check_options(atol, rtol, quantized_atol, min_class_agreement, max_ulps, max_batch, timeout,
                   server_binary, **fields):
    from toolkit.check import CheckOptions
    from toolkit.compare import parse_overrides

    return CheckOptions(atol=parse_overrides(atol, "--atol"), rtol=parse_overrides(rtol, "--rtol"),
                        quantized_atol=quantized_atol, min_class_agreement=min_class_agreement, max_ulps=max_ulps,
                        max_batch=max_batch, timeout=timeout, server_binary=server_binary, **fields)


def _progress(message: str) -> None:
    click.echo(f"tfkit: {message}", err=True)


DEFAULT_CHECK_REPORT = "tfkit-report"


def _finish_check(ctx, result, report_dir, junit) -> None:
    """Print the verdict, write the requested reports, exit 1 on a mismatch."""
    from toolkit import report

    click.echo(report.summary(result))
    paths = report.write_report(result, report_dir)
    click.echo(f"report: {paths['markdown']} and {paths['json']} ({len(paths['plots'])} plots)")
    if junit:
        click.echo(f"junit: {report.write_junit(result, junit)}")
    if not result.passed:
        ctx.exit(1)


@cli.command()
@click.argument("model", type=click.Path())
@click.option("--tflite", "tflite", multiple=True, type=click.Path(), metavar="FILE",
              help="TFLite file(s) to check (default: model*.tflite in the version, else convert).")
@click.option("--no-convert", is_flag=True, help="Do not convert the SavedModel when it has no .tflite file.")
@click.option("--target", "targets", multiple=True, metavar="HOST:PORT",
              help="A running TF Serving's gRPC address (repeatable: each replica is checked).")
@click.option("--rest-target", "rest_targets", multiple=True, metavar="URL",
              help="A running TF Serving's REST address, e.g. http://host:8501 (repeatable).")
@click.option("--no-server", is_flag=True, help="Do not start a local server when no --target is given.")
@click.option("--model-name", help="Model name on the server (default: the model folder's name).")
@click.option("--signature", default="serving_default", show_default=True,
              help="Signature to call (the SavedModel's signature key).")
@click.option("--inputs", type=click.Path(dir_okay=False), help=".npz with one array per input name.")
@click.option("--samples", type=int, default=64, show_default=True, help="Generated rows (foreign models).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of generated inputs.")
@click.option("--value-range", type=(float, float), default=(-1.0, 1.0), show_default=True,
              metavar="LOW HIGH", help="Range of generated values.")
@_parity_options
@click.pass_context
def check(ctx, model, tflite, no_convert, targets, rest_targets, no_server, model_name, signature, inputs,
          samples, seed, value_range, report_dir, junit, **tolerances):
    """Prove eager TF, TF Serving (gRPC, REST) and TFLite agree on MODEL.

    MODEL is a SavedModel version folder or a model folder of versions (the
    latest is checked). Exit 0 all pass, 1 a mismatch, 2 usage or input error,
    3 a server never became ready.
    """
    from toolkit.check import check as run_check

    report_dir = report_dir or DEFAULT_CHECK_REPORT
    options = _check_options(
        **tolerances, signature=signature, tflite=list(tflite), convert=not no_convert, targets=list(targets),
        rest_targets=list(rest_targets), local_server=not no_server, model_name=model_name, inputs=inputs,
        samples=samples, seed=seed, value_range=value_range, work_dir=report_dir)
    result = run_check(model, options, progress=_progress)
    _finish_check(ctx, result, report_dir, junit)


@cli.command("run")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder for everything made.")
@click.option("--seed", type=int, default=0, show_default=True, help="Training seed (as tfkit train --seed).")
@click.option("--quantize", default="dynamic,float16,int8", show_default=True, metavar="LIST",
              help="TFLite variants to export and check besides float32.")
@click.option("--force", is_flag=True, help="Overwrite a previous run in --out.")
@_parity_options
@click.pass_context
def run_cmd(ctx, out, seed, quantize, force, report_dir, junit, **tolerances):
    """Train, export, serve on a free local port and check every runtime.

    The report lands in OUT/report/ (override with --report).
    """
    from pathlib import Path

    from toolkit.check import run
    from toolkit.export import parse_quantize

    options = _check_options(**tolerances)
    report_dir = report_dir or str(Path(out) / "report")
    options.work_dir = report_dir
    made = run(out, seed=seed, quantize=parse_quantize(quantize), options=options, force=force, progress=_progress)
    click.echo(f"trained:  {made.run_dir}")
    click.echo(f"exported: {made.version_dir} "
               f"({', '.join(sorted(p.name for p in made.version_dir.glob('*.tflite')))})")
    click.echo(f"served:   gRPC {made.grpc_target}, REST {made.rest_url} (stopped)")
    _finish_check(ctx, made.check, report_dir, junit)


@cli.command(context_settings={"ignore_unknown_options": True})
@click.argument("model", required=False, type=click.Path())
@click.option("--name", help="Model name (default: the model folder's name).")
@click.option("--port", type=int, default=8500, show_default=True, help="gRPC port.")
@click.option("--rest-port", type=int, default=8501, show_default=True, help="REST port (0: no REST).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; 0.0.0.0 for every interface (tensorflow_model_server "
                   "always listens on every interface).")
@click.option("--server-binary", metavar="PATH", help="Run this tensorflow_model_server instead of ours.")
@click.option("--prefer-binary", is_flag=True, help="Use tensorflow_model_server from PATH when there is one.")
@click.argument("server_flags", nargs=-1, type=click.UNPROCESSED)
def serve(model, name, port, rest_port, host, server_binary, prefer_binary, server_flags):
    """Serve MODEL with our TF-Serving-compatible server (python -m serving) or
    the real tensorflow_model_server.

    MODEL is a model folder of versions or one version folder (served pinned).
    Further flags are passed to the server unchanged, spelled as for
    tensorflow_model_server, e.g. `tfkit serve models/logreg --enable_batching`.
    Our server listens on 127.0.0.1 unless --host says otherwise; the real
    tensorflow_model_server always listens on every interface.
    """
    import os

    from toolkit.check import serve_command
    from toolkit.local_server import find_server_binary

    binary = find_server_binary(server_binary) if server_binary or prefer_binary else None
    command = serve_command(model, name, port, rest_port, binary, server_flags)
    click.echo(f"tfkit: exec {' '.join(command)}", err=True)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if binary:
        click.echo(f"tfkit: {binary} listens on every interface (--host applies to python -m serving)", err=True)
    else:
        from serving import LISTEN_HOST_ENV

        os.environ[LISTEN_HOST_ENV] = host
    os.execvp(command[0], command)


@cli.command()
@click.argument("source", required=False, type=click.Path())
@click.option("--target", metavar="HOST:PORT", help="Send to a running TF Serving over gRPC.")
@click.option("--rest-target", metavar="URL", help="Send to a running TF Serving over REST.")
@click.option("--model-name", help="Model name on the server (required with --target/--rest-target).")
@click.option("--signature", default="serving_default", show_default=True,
              help="Signature to call (the SavedModel's signature key).")
@click.option("--inputs", type=click.Path(dir_okay=False), help=".npz with one array per input name.")
@click.option("--json", "json_text", metavar="JSON", help='e.g. \'{"features": [[1.0, 2.0]]}\' or \'[[1.0, 2.0]]\'.')
@click.option("--csv", "csv_text", metavar="ROWS", help="One input's rows, e.g. '1,2;3,4'.")
@click.option("--timeout", type=float, default=30.0, show_default=True,
              help="Seconds to wait for the server to connect and for each answer.")
def predict(source, target, rest_target, model_name, signature, inputs, json_text, csv_text, timeout):
    """Send a few rows to a SavedModel, a .tflite file or a server; print the outputs as JSON."""
    import json

    import numpy as np

    from toolkit.check import predict_runner
    from toolkit.errors import InputError
    from toolkit.inputs import literal_feed, npz_feeds

    if sum(x is not None for x in (inputs, json_text, csv_text)) != 1:
        raise InputError("give exactly one of --inputs, --json or --csv")
    with predict_runner(source, target, rest_target, model_name, signature, timeout) as runner:
        if inputs:
            feeds = npz_feeds(inputs, runner.signature).feeds[0].calls
        else:
            feeds = [literal_feed(runner.signature, json_text, csv_text)]
        for feed in feeds:
            outputs = runner.infer(feed)
            click.echo(json.dumps({k: np.vectorize(lambda b: b.decode(errors="replace"), otypes=[object])(v).tolist()
                                   if v.dtype.kind in "OS" else v.tolist() for k, v in sorted(outputs.items())}))


def main():
    """Console-script entry point."""
    cli(prog_name="tfkit")
