"""Hot swap under load: versions published while 16 clients send requests."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from reliability.models import VersionPublisher
from reliability.reference import ModelReference, read_weights
from reliability.soak import run_soak
from toolkit.serve import LocalServer

from reliability_helpers import MODEL


@pytest.fixture(scope="module")
def swap_setup(exported_version, tmp_path_factory):
    base = tmp_path_factory.mktemp("swap-models")
    shutil.copytree(exported_version, base / MODEL / "1")
    reference = ModelReference.from_model_dir(base / MODEL)
    # Seeds 1, 2, ...: weights different from version 1 (seed 0), so every answer names its version.
    publisher = VersionPublisher(base, MODEL, tmp_path_factory.mktemp("swap-runs"), reference, first_seed=1)
    args = [f"--model_name={MODEL}", f"--model_base_path={base / MODEL}", "--file_system_poll_wait_seconds=1"]
    with LocalServer(args, rest=True, timeout=120) as server:
        yield server, publisher, reference


def test_versions_swapped_in_under_load_lose_no_request(swap_setup):
    server, publisher, reference = swap_setup
    result = run_soak(
        server.grpc_target,
        server.rest_url,
        MODEL,
        reference,
        duration_s=14,
        clients=16,
        swap=publisher.publish,
        swap_every=3.5,
    )
    print(result.summary())
    assert result.broken() == [], result.summary()
    assert len(result.swaps) >= 2
    # Old and new versions both answered, each checked against its own weights.
    assert 1 in result.versions_seen and len(result.versions_seen) >= 2, result.summary()
    assert result.versions_seen == sorted(set(result.versions_seen) & set(reference.versions()))


def test_published_versions_are_distinguishable_and_registered_faithfully(swap_setup):
    """Each version on disk has its own weights, and the ones the clients checked against are those."""
    _, publisher, reference = swap_setup
    versions = reference.versions()
    assert len(versions) >= 3
    eye = np.eye(reference.num_features, dtype=np.float32)
    on_disk = {}
    for version in versions:
        w, b = read_weights(publisher.base_path / MODEL / str(version))
        on_disk[version] = tuple(w) + (b,)
        assert reference.mismatch(version, eye, {"logits": eye @ w[:, None] + b}) is None
    assert len(set(on_disk.values())) == len(versions)


def test_soak_command_hot_swaps_into_a_running_server(swap_setup):
    """`python -m reliability soak --target ... --swap-every S` exports into the server's base path."""
    server, publisher, _ = swap_setup
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "reliability",
            "soak",
            "--duration",
            "8",
            "--clients",
            "4",
            "--swap-every",
            "3",
            "--target",
            server.grpc_target,
            "--rest-url",
            server.rest_url,
            "--model-base-path",
            str(publisher.base_path),
            "--server-pid",
            str(server.process.pid),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "errors        0" in done.stdout and "hot-swapped in" in done.stdout
