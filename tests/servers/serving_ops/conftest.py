"""Shared fixtures for the REST / batching / monitoring / TLS / shutdown tests.

One `python -m serving` process per session serves the operational surface
(REST with CORS, Prometheus, batching) for TF Serving's half_plus_two test
model and tfkit's exported logreg model; the tests talk to it only through
real HTTP and gRPC clients.
"""

import shutil
from pathlib import Path

import grpc
import pytest

from toolkit.serve import LocalServer

from support import MONITORING_FLAG, Http, MetricsSnapshot
from tf_serving_testdata import TESTDATA

HALF = "half"
LOGREG = "logreg"

# Batching that visibly merges: one batch thread, a 20 ms window, padding to
# allowed sizes, a small maximum so oversized requests can be tested.
BATCHING = """
max_batch_size { value: 16 }
batch_timeout_micros { value: 20000 }
max_enqueued_batches { value: 100 }
num_batch_threads { value: 1 }
allowed_batch_sizes: 4
allowed_batch_sizes: 8
allowed_batch_sizes: 16
"""
MAX_BATCH = 16


def copy_half(dest: Path) -> Path:
    """A writable copy of TF Serving's half_plus_two test model (TF1 SavedModel)."""
    target = dest / HALF
    shutil.copytree(TESTDATA / "saved_model_half_plus_two_cpu", target)
    return target


@pytest.fixture(scope="session")
def ops_models(tmp_path_factory, exported_model):
    """A model config file serving `half` and tfkit's `logreg`."""
    root = tmp_path_factory.mktemp("ops_models")
    half = copy_half(root)
    config = root / "models.config"
    config.write_text(
        "model_config_list {\n"
        f'  config {{ name: "{HALF}" base_path: "{half}" model_platform: "tensorflow" }}\n'
        f'  config {{ name: "{LOGREG}" base_path: "{exported_model / LOGREG}" model_platform: "tensorflow" }}\n'
        "}\n"
    )
    batching = root / "batching.config"
    batching.write_text(BATCHING)
    return {"config": config, "batching": batching, "root": root}


@pytest.fixture(scope="session")
def ops_server(ops_models):
    """The session's server: REST (CORS on), Prometheus, batching."""
    server = LocalServer(
        [
            f"--model_config_file={ops_models['config']}",
            MONITORING_FLAG,
            "--enable_batching",
            f"--batching_parameters_file={ops_models['batching']}",
            "--rest_api_enable_cors_support=true",
            "--rest_api_num_threads=8",
        ],
        rest=True,
        timeout=120,
    )
    with server:
        yield server


@pytest.fixture(scope="session")
def channel(ops_server):
    with grpc.insecure_channel(ops_server.grpc_target) as ch:
        yield ch


@pytest.fixture(scope="session")
def rest(ops_server):
    return Http(ops_server.rest_url)


@pytest.fixture
def scrape(ops_server):
    """Call to take a MetricsSnapshot of the session server."""
    return lambda: MetricsSnapshot(ops_server.rest_url)


@pytest.fixture(scope="session")
def half_base(tmp_path_factory):
    """A model base path with TF Serving's half_plus_two (version 123), for one-off servers."""
    return copy_half(tmp_path_factory.mktemp("half"))
