"""Shared fixtures for the deploy tests: a models folder built from TF Serving's test models."""

import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def logreg_store(exported_version, tmp_path_factory) -> Path:
    """BASE/logreg with version 1 (the shared export) and version 2 (trained with another
    seed, so its answers differ): a rollout of version 2."""
    from toolkit.artifacts.export import export_model
    from toolkit.training.rundir import train_to_dir

    base = tmp_path_factory.mktemp("logreg_store")
    shutil.copytree(exported_version, base / "logreg" / "1")
    run = tmp_path_factory.mktemp("run_seed1")
    train_to_dir(run, seed=1, plots=False, force=True)
    export_model(run, base, "logreg", version=2)
    return base


@pytest.fixture(scope="session")
def fleet_plan(models_dir, logreg_store):
    """The deployment the live server runs: `plus` with all versions, stable=1 and canary=2;
    `two`; `logreg` at its latest version (2)."""
    from toolkit.fleet.plan import plan_models

    return plan_models(
        [models_dir / "plus", models_dir / "two", logreg_store / "logreg"],
        ["plus:all"],
        ["plus:stable=1", "plus:canary=2"],
    )


@pytest.fixture(scope="session")
def live_server(fleet_plan, tmp_path_factory):
    """`python -m serving` started with a generated models.config and the generated flags
    (ports aside, which LocalServer picks). Yields (server, config_path)."""
    from toolkit.artifacts.layout import write_atomic
    from toolkit.fleet.plan import build_config, render_config, server_flags
    from toolkit.serve import LocalServer

    config_path = write_atomic(
        tmp_path_factory.mktemp("live") / "models.config", render_config(build_config(fleet_plan))
    )
    flags = server_flags(fleet_plan, str(config_path), grpc_port=None, rest_port=None)
    with LocalServer(flags, rest=True, timeout=120) as server:
        yield server, config_path


@pytest.fixture(scope="session")
def stale_replica(logreg_server):
    """A second replica that never received version 2 of logreg: it serves version 1
    (the shared `logreg_server`)."""
    return logreg_server
