"""SIGTERM with large requests in flight: every request sent before the signal is answered, in full.

Six gRPC clients send 200 000-row Predicts and two REST clients 100 000-row ones, one after another
from 100 ms down to 25 ms before SIGTERM, each on a connection opened beforehand, to a replica whose
grace period after SIGTERM is 1 s. Every one must be answered OK with its own rows' results, and the
server must exit 0. The premise, requests in flight when the signal lands, is the server's own count
at SIGTERM (its "Draining: ..." log line), not the clients' timing.
"""

import http.client
import json
import threading
import time

import grpc
import numpy as np
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from serving.tensors import from_numpy, to_numpy

from support import free_port, in_flight_at_sigterm
from tf_serving_testdata import HALF_PLUS_TWO, copy_model

MODEL = "half"
GRPC_ROWS = 200_000
REST_ROWS = 100_000
# Send order: gRPC (G) and REST (R) clients, spread evenly from FIRST_S to LAST_S before SIGTERM.
ORDER = "GGRGGGRG"
FIRST_S, LAST_S = 0.100, 0.025
DRAIN_GRACE_S = 1.0


def rows(count: int, index: int) -> np.ndarray:
    """A client's own inputs (integers, so 0.5 x + 2 is exact in float32)."""
    return (np.arange(count, dtype=np.float32) % 4096 + 10_000 * index).reshape(-1, 1)


class Client(threading.Thread):
    """Opens its connection now, sends its request at `send_at`, records when the send returned and the outcome."""

    def __init__(self, index: int, send_at: float):
        super().__init__(daemon=True)
        self.index = index
        self.send_at = send_at
        self.sent = None  # time.monotonic() when the request had been handed to the connection
        self.outcome = "no answer"

    def run(self):
        time.sleep(max(0.0, self.send_at - time.monotonic()))  # scheduling the send, not waiting for an outcome
        try:
            self.outcome = self.call()
        except Exception as err:  # any failure is an outcome the test reports
            self.outcome = f"{type(err).__name__}: {err}"


class GrpcClient(Client):
    def __init__(self, index: int, send_at: float, target: str):
        super().__init__(index, send_at)
        self.x = rows(GRPC_ROWS, index)
        self.channel = grpc.insecure_channel(target)
        grpc.channel_ready_future(self.channel).result(timeout=30)
        self.request = predict_pb2.PredictRequest()
        self.request.model_spec.name = MODEL
        self.request.inputs["x"].CopyFrom(from_numpy(self.x))

    def call(self) -> str:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        future = stub.Predict.future(self.request, timeout=60)
        self.sent = time.monotonic()
        try:
            y = to_numpy(future.result().outputs["y"])
        except grpc.RpcError as err:
            return f"{err.code().name}: {err.details()}"
        finally:
            self.channel.close()
        return "OK" if np.array_equal(y, 0.5 * self.x + 2) else "wrong values"


class RestClient(Client):
    def __init__(self, index: int, send_at: float, port: int):
        super().__init__(index, send_at)
        self.x = rows(REST_ROWS, index)
        self.body = json.dumps({"instances": self.x.tolist()})
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.connection.connect()

    def call(self) -> str:
        self.connection.request("POST", f"/v1/models/{MODEL}:predict", self.body)
        self.sent = time.monotonic()
        response = self.connection.getresponse()
        payload = response.read()
        self.connection.close()
        if response.status != 200:
            return f"HTTP {response.status}: {payload[:200]!r}"
        y = np.asarray(json.loads(payload)["predictions"], np.float32)
        return "OK" if np.array_equal(y, 0.5 * self.x + 2) else "wrong values"


def test_sigterm_answers_every_large_request_sent_before_it(launcher, tmp_path):
    base = tmp_path / MODEL
    copy_model(HALF_PLUS_TWO / "00000123", base / "1")
    port, rest_port = free_port(), free_port()
    replica = launcher.start(
        port, [f"--model_name={MODEL}", f"--model_base_path={base}"], DRAIN_GRACE_S, rest_port=rest_port
    )
    try:
        replica.wait_serving()
        sigterm_at = time.monotonic() + 2.0  # time to build the requests and open the connections
        step = (FIRST_S - LAST_S) / (len(ORDER) - 1)
        clients = [
            GrpcClient(i, sigterm_at - FIRST_S + i * step, f"127.0.0.1:{port}")
            if kind == "G"
            else RestClient(i, sigterm_at - FIRST_S + i * step, rest_port)
            for i, kind in enumerate(ORDER)
        ]
        assert time.monotonic() < clients[0].send_at, "building the clients took too long"
        for client in clients:
            client.start()
        time.sleep(max(0.0, sigterm_at - time.monotonic()))  # scheduling the signal
        signalled = time.monotonic()
        replica.terminate()
        exit_code = replica.wait_exit(60)
        for client in clients:
            client.join(60)
    finally:
        replica.kill()

    log = replica.log_text()
    assert exit_code == 0 and "Traceback" not in log, log[-3000:]
    outcomes = {f"{type(c).__name__} {c.index}": c.outcome for c in clients}
    assert all(outcome == "OK" for outcome in outcomes.values()), outcomes
    # The premise: every request was on its connection before the signal, and the server was
    # still working on some of them when it arrived.
    late = {c.index: round(c.sent - signalled, 3) for c in clients if c.sent is None or c.sent >= signalled}
    assert not late, f"sent after SIGTERM (s): {late}"
    grpc_calls, http_requests = in_flight_at_sigterm(log)
    assert grpc_calls + http_requests >= 1, log[-3000:]
