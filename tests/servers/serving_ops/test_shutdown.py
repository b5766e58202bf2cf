"""Clean operations: SIGTERM drains in-flight requests and exits 0; taken ports fail clearly."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import grpc
import numpy as np
import pytest
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from serving import rest_api as rest
from serving.tensors import from_numpy, to_numpy
from toolkit.serve import LocalServer

from support import MONITORING_FLAG, grpc_calls_in_flight, grpc_calls_in_flight_at_shutdown, unread_bytes, wait_for

HALF = "half"


# A three-second batching window keeps the test's gRPC calls queued in the
# server (accepted, waiting for their batch) across SIGTERM, however slowly a
# loaded machine gets there; the server counts them as in flight.
SLOW_BATCHING = "batch_timeout_micros { value: 3000000 } num_batch_threads { value: 1 } max_batch_size { value: 64 }"
CALLS = 5


def test_sigterm_finishes_in_flight_requests_and_exits_zero(half_base, tmp_path):
    batching = tmp_path / "batching.config"
    batching.write_text(SLOW_BATCHING)
    server = LocalServer(
        [
            f"--model_name={HALF}",
            f"--model_base_path={half_base}",
            "--enable_batching",
            f"--batching_parameters_file={batching}",
            MONITORING_FLAG,
        ],
        rest=True,
        timeout=120,
    )
    server.start()
    try:
        # A REST request whose body is still arriving when SIGTERM lands: the
        # server has read its start (so it took the connection) before the signal.
        rows = [[float(i)] for i in range(40)]
        body = json.dumps({"instances": rows}).encode()
        upload = socket.create_connection(("127.0.0.1", server.rest_port), timeout=30)
        upload.sendall(
            f"POST /v1/models/{HALF}:predict HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body[:10]
        )
        wait_for(lambda: unread_bytes(upload) == 0, what="the server to read the start of the upload")

        channel = grpc.insecure_channel(server.grpc_target)
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        calls = []
        for i in range(CALLS):
            request = predict_pb2.PredictRequest()
            request.model_spec.name = HALF
            x = np.full((i + 1, 1), i, np.float32)
            request.inputs["x"].CopyFrom(from_numpy(x))
            calls.append((x, stub.Predict.future(request, timeout=30)))
        wait_for(lambda: grpc_calls_in_flight(server.rest_url) == CALLS, what=f"{CALLS} calls queued for a batch")
        server.process.send_signal(signal.SIGTERM)
        wait_for(lambda: any("Shutting down" in line for line in server.log_lines()), what="the drain to begin")
        upload.sendall(body[10:])
        response = upload.makefile("rb").read()
        upload.close()
        answers = [(x, to_numpy(call.result().outputs["y"])) for x, call in calls]
        channel.close()
        exit_code = server.process.wait(30)
    finally:
        server.stop()

    assert grpc_calls_in_flight_at_shutdown(server.log_lines()) == CALLS
    head, _, payload = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), response[:300]
    assert json.loads(payload)["predictions"] == [[0.5 * r[0] + 2] for r in rows]
    for x, y in answers:
        np.testing.assert_array_equal(y, 0.5 * x + 2)
    assert exit_code == 0, "\n".join(server.log_lines()[-20:])
    assert not any("Traceback" in line for line in server.log_lines())


def test_grpc_port_in_use_fails_at_start_with_a_clear_message(half_base):
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "serving",
                f"--port={port}",
                f"--model_name={HALF}",
                f"--model_base_path={half_base}",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        )
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert f"0.0.0.0:{port}" in output and "Traceback" not in output, output[-2000:]


def test_rest_port_in_use_is_reported_with_the_port():
    with socket.socket(socket.AF_INET6) as taken:
        taken.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        taken.bind(("::", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(rest.RestStartError) as err:
            rest.create_http_server(core=None, port=port)
    assert str(err.value) == f"Failed to start HTTP Server at localhost:{port}: Address already in use"


def test_rest_stop_waits_for_in_flight_requests_then_refuses_new_ones():
    class SlowCore:
        started = threading.Event()

        def get_model_status(self, request):
            self.started.set()
            time.sleep(0.5)  # the work the stop waits for
            from tensorflow_serving.apis import get_model_status_pb2

            return get_model_status_pb2.GetModelStatusResponse()

    http_server = rest.create_http_server(SlowCore(), 0)
    http_server.start()
    port = http_server.port
    result = {}

    def call():
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/v1/models/m")
        response = conn.getresponse()
        result["status"] = response.status
        result["body"] = response.read()

    caller = threading.Thread(target=call)
    caller.start()
    assert SlowCore.started.wait(10)
    assert http_server.stop(grace_s=5) is True
    caller.join(10)
    assert result["status"] == 200 and json.loads(result["body"]) == {"model_version_status": []}
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_rest_timeout_answers_504():
    class StuckCore:
        def get_model_status(self, request):
            time.sleep(1.0)  # stuck beyond the 100 ms timeout

    class Options:
        rest_api_timeout_in_ms = 100

    http_server = rest.create_http_server(StuckCore(), 0, Options())
    http_server.start()
    try:
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", http_server.port, timeout=10)
        started = time.monotonic()
        conn.request("GET", "/v1/models/m")
        response = conn.getresponse()
        assert response.status == 504
        assert json.loads(response.read()) == {"error": "Timed out waiting for notification"}
        assert time.monotonic() - started < 0.9
    finally:
        http_server.stop()
