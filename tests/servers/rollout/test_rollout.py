"""A rolling update under continuous load loses nothing: every request is answered, each by a version
live at the time.

Each round replaces a fleet of two `python -m serving` replicas serving version v with two serving
v+1 (half_plus_two for odd versions, half_plus_three for even ones, so an answer tells its version
apart), one replica at a time and the new one first, as a Kubernetes RollingUpdate with
maxUnavailable 0 does: start the new replica, wait until the client gets answers from its version,
SIGTERM an old one and wait for it to exit 0; then the same for the second. Five rounds run in a row.

The client is gRPC's own: round_robin over four fixed addresses, with a retry policy on UNAVAILABLE
in its service config. Python's grpc offers no resolver a test can feed new addresses to, so the
address list is fixed and holds two port pairs: a round's new replicas take the pair the previous
round's old replicas left (round_robin skips an address with nothing listening). A few client
threads send paced batch-1 Predicts throughout, so the request count is bounded by the time a round
takes, and every wait is bounded.
"""

import json
import threading
import time

import grpc
import numpy as np
import pytest
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from serving.tensors import from_numpy, to_numpy

from support import free_port, wait_for
from tf_serving_testdata import HALF_PLUS_THREE, HALF_PLUS_TWO, copy_model

MODEL = "half"
ROUNDS = 5
CLIENT_THREADS = 4
PACE_S = 0.002  # between one thread's calls
DRAIN_GRACE_S = 0.3  # the replicas' grace period after SIGTERM (TFKIT_SERVING_DRAIN_GRACE_SECONDS)
SERVICE_CONFIG = {
    "loadBalancingConfig": [{"round_robin": {}}],
    "methodConfig": [
        {
            "name": [{"service": "tensorflow.serving.PredictionService"}],
            "retryPolicy": {
                "maxAttempts": 5,
                "initialBackoff": "0.05s",
                "maxBackoff": "0.5s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE"],
            },
        }
    ],
}
CLIENT_OPTIONS = [
    ("grpc.service_config", json.dumps(SERVICE_CONFIG)),
    # gRPC's default reconnect backoff (1 s, growing to 120 s) would leave a replacement on a
    # known address unused for seconds; a client behind a real resolver learns of it at once.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 500),
]


def offset(version: int) -> float:
    """y = 0.5 x + offset for `version`: half_plus_two for odd versions, half_plus_three for even ones."""
    return 2.0 if version % 2 else 3.0


class Load:
    """Client threads sending Predicts through one round_robin channel; every outcome recorded."""

    def __init__(self, target: str):
        self.channel = grpc.insecure_channel(target, options=CLIENT_OPTIONS)
        self.stub = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.answers = []  # (sent, answered, version, x, y), times from time.monotonic()
        self.failures = []  # (sent, failed, x, status)
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._send, args=(i,), daemon=True) for i in range(CLIENT_THREADS)]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)
        self.channel.close()

    def _send(self, index: int) -> None:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = MODEL
        calls = 0
        while not self._stop.is_set():
            x = float(index * 1000 + calls % 1000)
            calls += 1
            request.inputs["x"].CopyFrom(from_numpy(np.array([[x]], np.float32)))
            sent = time.monotonic()
            try:
                response = self.stub.Predict(request, timeout=10)
            except grpc.RpcError as err:
                self.failures.append((sent, time.monotonic(), x, f"{err.code().name}: {err.details()}"))
            else:
                y = to_numpy(response.outputs["y"]).item()
                self.answers.append((sent, time.monotonic(), response.model_spec.version.value, x, y))
            self._stop.wait(PACE_S)

    def count(self, version: int) -> int:
        return sum(1 for answer in self.answers if answer[2] == version)


class Fleet:
    """Two replicas serving one version; `roll` replaces them with the next version."""

    def __init__(self, launcher, models_root, ports: list[int]):
        self.launcher = launcher
        self.models_root = models_root
        self.pairs = [ports[:2], ports[2:]]
        self.pair = 0
        self.version = 1
        self.live = {1: [time.monotonic(), None]}  # version -> [first start, last exit]
        self.replicas = [self._start(port, 1) for port in self.pairs[0]]
        for replica in self.replicas:
            replica.wait_serving()

    def _start(self, port: int, version: int):
        base = self.models_root / f"v{version}"
        if not base.exists():
            model = HALF_PLUS_TWO if version % 2 else HALF_PLUS_THREE
            copy_model(model / "00000123", base / str(version))
        args = [f"--model_name={MODEL}", f"--model_base_path={base}", "--file_system_poll_wait_seconds=0"]
        return self.launcher.start(port, args, DRAIN_GRACE_S)

    def roll(self, load: Load) -> list[tuple]:
        """Replace both replicas, new one first; (replica, SIGTERM time, exit code) of each retired one."""
        old_version, new_version = self.version, self.version + 1
        self.live[new_version] = [time.monotonic(), None]
        retired, replacements = [], []
        for old, port in zip(self.replicas, self.pairs[1 - self.pair]):
            new = self._start(port, new_version)
            new.wait_serving()
            seen = load.count(new_version)
            wait_for(
                lambda seen=seen: load.count(new_version) > seen,
                timeout=30,
                what=f"the client's answers from version {new_version}",
            )
            sigterm_at = time.monotonic()
            old.terminate()
            retired.append((old, sigterm_at, old.wait_exit(30)))
            replacements.append(new)
        self.live[old_version][1] = time.monotonic()
        self.replicas, self.pair, self.version = replacements, 1 - self.pair, new_version
        return retired

    def stop(self) -> None:
        for replica in self.replicas:
            replica.terminate()
        for replica in self.replicas:
            replica.wait_exit(30)


@pytest.fixture(scope="module")
def rollout(launcher, tmp_path_factory):
    """A fleet at version 1 and the client load on it, both running across the rounds."""
    ports = [free_port() for _ in range(4)]
    fleet = Fleet(launcher, tmp_path_factory.mktemp("rollout-models"), ports)
    load = Load("ipv4:" + ",".join(f"127.0.0.1:{port}" for port in ports))
    load.start()
    wait_for(lambda: load.count(1) > 0, what="the client's first answers")
    yield fleet, load
    load.stop()
    fleet.stop()


@pytest.mark.parametrize("round_", range(1, ROUNDS + 1))
def test_rolling_update_under_load_answers_every_request_from_a_live_version(rollout, round_):
    fleet, load = rollout
    since = len(load.answers)
    old_version = fleet.version
    retired = fleet.roll(load)
    answers = load.answers[since:]

    assert not load.failures, load.failures[:10]
    for replica, _, code in retired:
        log = replica.log_text()
        assert code == 0 and "Server stopped" in log and "Traceback" not in log, log[-2000:]
    wrong = [a for a in answers if a[4] != 0.5 * a[3] + offset(a[2])]
    assert not wrong, wrong[:10]
    not_live = [a for a in answers if not _live_between(fleet.live, a[2], a[0], a[1])]
    assert not not_live, (not_live[:10], fleet.live)
    # The premise: the last old replica was still answering after its SIGTERM (its grace period),
    # so the drain happened under load, not after the traffic had moved away.
    last_sigterm = retired[-1][1]
    assert any(a[2] == old_version and a[1] > last_sigterm for a in answers), "no answer during the drain"
    assert {a[2] for a in answers} == {old_version, old_version + 1}


def _live_between(live: dict, version: int, sent: float, answered: float) -> bool:
    """Whether `version` was served by some replica at some time between `sent` and `answered`."""
    if version not in live:
        return False
    first_start, last_exit = live[version]
    return first_start <= answered and (last_exit is None or sent <= last_exit)
