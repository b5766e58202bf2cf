"""Shared fixtures for the REST / batching / monitoring / TLS / shutdown tests.

One `python -m serving` process per session serves the operational surface
(REST with CORS, Prometheus, batching) for TF Serving's half_plus_two test
model and tfkit's exported logreg model; the tests talk to it only through
real HTTP and gRPC clients.
"""

import http.client
import json
import re
import shutil
from pathlib import Path

import grpc
import pytest

from toolkit.serve import LocalServer

from tf_serving_testdata import TESTDATA
HALF = "half"
LOGREG = "logreg"
PROMETHEUS_PATH = "/monitoring/prometheus/metrics"  # what testdata/monitoring_config.txt says

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
            f"--monitoring_config_file={TESTDATA / 'monitoring_config.txt'}",
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


class Http:
    """A tiny HTTP client that returns (status, headers, body) and never raises on 4xx/5xx."""

    def __init__(self, base_url: str):
        host, port = base_url.removeprefix("http://").split(":")
        self.host, self.port = host, int(port)

    def request(self, method: str, path: str, body=None, headers=None):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        try:
            if isinstance(body, (dict, list)):
                body = json.dumps(body)
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            conn.close()

    def json(self, method: str, path: str, body=None, headers=None):
        status, headers, data = self.request(method, path, body, headers)
        return status, json.loads(data)


@pytest.fixture(scope="session")
def rest(ops_server):
    return Http(ops_server.rest_url)


_SAMPLE = re.compile(r"^(?P<name>[^{\s]+)\{(?P<labels>[^}]*)\} (?P<value>\S+)$")


class MetricsSnapshot:
    """One scrape of the Prometheus page: `snapshot.value(name, **labels)`."""

    def __init__(self, rest: Http):
        status, headers, body = rest.request("GET", PROMETHEUS_PATH)
        assert status == 200 and headers["Content-Type"] == "text/plain"
        self.text = body.decode()
        self.samples = {}
        for line in self.text.splitlines():
            if line.startswith("#"):
                continue
            match = _SAMPLE.match(line)
            assert match, f"not Prometheus text: {line!r}"
            labels = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match["labels"]))
            self.samples[(match["name"], labels)] = float(match["value"])

    def value(self, name: str, **labels) -> float:
        return self.samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
def scrape(rest):
    """Call to take a MetricsSnapshot of the session server."""
    return lambda: MetricsSnapshot(rest)


@pytest.fixture(scope="session")
def metrics_of():
    """metrics_of(rest_url): a MetricsSnapshot of another server (one a test started)."""
    return lambda rest_url: MetricsSnapshot(Http(rest_url))


@pytest.fixture(scope="session")
def half_base(tmp_path_factory):
    """A model base path with TF Serving's half_plus_two (version 123), for one-off servers."""
    return copy_half(tmp_path_factory.mktemp("half"))
