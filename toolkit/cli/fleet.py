"""`tfkit deploy` and `tfkit promote`: configs and manifests for a TF Serving fleet, label moves."""

import click

from toolkit.cli.group import cli


def _deploy_models_options(command):
    """MODEL_DIR... plus --policy/--label, shared by every `deploy` subcommand."""
    command = click.option(
        "--label",
        "labels",
        multiple=True,
        metavar="[NAME:]LABEL=VERSION",
        help="Version label (stable or canary); NAME: is needed with several models. Repeatable.",
    )(command)
    command = click.option(
        "--policy",
        "policies",
        multiple=True,
        metavar="[NAME:]POLICY",
        help="Version policy: latest, latest=N, all or specific=V1,V2 (default latest). Repeatable.",
    )(command)
    return click.argument("model_dirs", nargs=-1, required=True, metavar="MODEL_DIR...")(command)


def _fleet_options(command):
    """Server flavour, image, replicas and resources, shared by `deploy compose` and `deploy k8s`."""
    for decorator in reversed(
        [
            click.option(
                "--server",
                type=click.Choice(["tf-serving", "python"]),
                default="tf-serving",
                show_default=True,
                help="tf-serving: the official tensorflow/serving image pinned to our "
                "TensorFlow; python: our `python -m serving` with the same flags.",
            ),
            click.option("--image", help="Container image to run instead of the default for --server."),
            click.option("--replicas", type=int, default=2, show_default=True, help="TF Serving replicas to run."),
            click.option("--cpus", type=float, default=0.5, show_default=True, help="CPU requested per replica."),
            click.option(
                "--memory-mib",
                type=int,
                default=1024,
                show_default=True,
                help="Memory requested (and, on Kubernetes, the limit) per replica.",
            ),
        ]
    ):
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
@click.option(
    "--models-root",
    metavar="DIR",
    help="Write base paths as DIR/NAME, where a container mounts the models (default: this machine's absolute paths).",
)
@click.option(
    "-o",
    "--out",
    default="models.config",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="models.config to write.",
)
def deploy_config(model_dirs, policies, labels, models_root, out):
    """Write a models.config (ModelServerConfig) for one or many exported models.

    MODEL_DIR is a model base path, BASE/NAME as written by `tfkit export`.
    """
    from toolkit.artifacts import layout
    from toolkit.fleet import plan

    models = plan.plan_models(model_dirs, policies, labels)
    path = layout.write_atomic(out, plan.render_config(plan.build_config(models, models_root)))
    click.echo(f"wrote {path}")
    _echo_models(models)
    if not models_root:
        flags = " ".join(plan.server_flags(models, str(path.resolve())))
        click.echo(f"serve it: python -m serving {flags}")


@deploy.command("compose")
@_deploy_models_options
@_fleet_options
@click.option(
    "--host-port",
    type=int,
    default=8500,
    show_default=True,
    help="Host gRPC port of replica 0; replica i uses HOST_PORT+10*i (REST: +1).",
)
@click.option(
    "-o",
    "--out",
    default="compose",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Folder for docker-compose.yaml and config/models.config.",
)
def deploy_compose(model_dirs, policies, labels, server, image, replicas, cpus, memory_mib, host_port, out):
    """Write a docker-compose fleet: one service per replica, models mounted read-only."""
    from toolkit.fleet import manifests, plan

    models = plan.plan_models(model_dirs, policies, labels)
    options = manifests.FleetOptions(server, image, replicas, cpus, memory_mib)
    compose_path, config_path = manifests.write_compose(models, options, out, host_port)
    click.echo(f"wrote {compose_path} and {config_path} ({options.resolved_image})")
    _echo_models(models)
    targets = " ".join(f"--target 127.0.0.1:{g}" for g, _ in manifests.replica_host_ports(replicas, host_port))
    click.echo(f"start: docker compose -f {compose_path} up -d --wait\ncheck: tfkit check {models[0].path} {targets}")


@deploy.command("k8s")
@_deploy_models_options
@_fleet_options
@click.option(
    "--app",
    default="tfserving",
    show_default=True,
    help="Name of the Deployment, Service and ConfigMap (<app>-config).",
)
@click.option("--namespace", help="Namespace for every manifest (default: kubectl's).")
@click.option(
    "--models-volume",
    default="pvc:tfkit-models",
    show_default=True,
    metavar="pvc:CLAIM|host:/PATH",
    help="Volume holding NAME/VERSION folders, mounted read-only at /models.",
)
@click.option(
    "-o",
    "--out",
    default="k8s.yaml",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="Multi-document manifest file to write.",
)
def deploy_k8s(
    model_dirs, policies, labels, server, image, replicas, cpus, memory_mib, app, namespace, models_volume, out
):
    """Write Kubernetes manifests: ConfigMap with models.config, Deployment, Service, PodDisruptionBudget."""
    from toolkit.artifacts import layout
    from toolkit.fleet import manifests, plan

    models = plan.plan_models(model_dirs, policies, labels)
    options = manifests.FleetOptions(server, image, replicas, cpus, memory_mib)
    docs = manifests.k8s_manifests(models, options, app, namespace, models_volume)
    path = layout.write_atomic(out, manifests.dump_yaml(docs))
    click.echo(
        f"wrote {path}: ConfigMap {app}-config, Deployment {app} "
        f"({replicas} replicas of {options.resolved_image}), Service {app}, "
        f"PodDisruptionBudget {app}"
    )
    _echo_models(models)
    click.echo(f"apply: kubectl apply -f {path}")


@cli.command()
@click.argument("name")
@click.option("--version", "version", type=int, required=True, help="Version to label.")
@click.option("--label", required=True, help="stable or canary.")
@click.option(
    "--target",
    "targets",
    multiple=True,
    required=True,
    metavar="HOST:PORT",
    help="gRPC address of a replica to apply the label on. Repeatable.",
)
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="The models.config the servers run with; rewritten atomically.",
)
@click.option("--timeout", type=float, default=10.0, show_default=True, help="Seconds per status request.")
def promote(name, version, label, targets, config_path, timeout):
    """Point LABEL of model NAME at VERSION in models.config and on running servers.

    Refuses (exit 2) unless VERSION is AVAILABLE on every --target; an
    unreachable target exits 3.
    """
    from toolkit.fleet import promote

    done = promote.promote(config_path, name, version, label, list(targets), timeout)
    moved = f"{done.previous} -> {done.version}" if done.previous is not None else f"-> {done.version}"
    click.echo(
        f"{done.model}: label {done.label} {moved}; wrote {done.config_path}; applied on {', '.join(done.targets)}"
    )
