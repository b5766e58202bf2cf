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

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ToolkitError as exc:
            raise _LibraryError(exc) from None


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
        click.option("--replicas", type=int, default=2, show_default=True),
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
    click.echo(f"start: docker compose -f {compose_path} up -d\ncheck: tfkit check ... {targets}")


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
@click.option("--learning-rate", type=float, default=0.1, show_default=True)
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


def main():
    """Console-script entry point."""
    cli(prog_name="tfkit")
