"""The grace period after SIGTERM: the health service answers NOT_SERVING at once while every API
still serves, new connections included; HTTP responses close their connections; a second signal
ends the grace period early and the server exits 0."""

import http.client
import json

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from serving.tensors import from_numpy, to_numpy

from support import free_port, wait_for
from tf_serving_testdata import HALF_PLUS_TWO, copy_model

MODEL = "half"
LONG_GRACE_S = 120  # never waited out: the second signal must end it


def health_statuses(channel) -> set:
    stub = health_pb2_grpc.HealthStub(channel)
    return {
        stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10).status
        for service in ("", "ModelService", "PredictionService")
    }


def predict(channel, x: float) -> float:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    request.inputs["x"].CopyFrom(from_numpy(np.array([[x]], np.float32)))
    response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=10)
    return to_numpy(response.outputs["y"]).item()


def test_grace_period_reports_not_serving_but_serves_until_a_second_signal(launcher, tmp_path):
    copy_model(HALF_PLUS_TWO / "00000123", tmp_path / MODEL / "1")
    port, rest_port = free_port(), free_port()
    replica = launcher.start(
        port,
        [f"--model_name={MODEL}", f"--model_base_path={tmp_path / MODEL}", "--enable_grpc_healthcheck_service"],
        LONG_GRACE_S,
        rest_port=rest_port,
    )
    target = f"127.0.0.1:{port}"
    try:
        replica.wait_serving()
        with grpc.insecure_channel(target) as channel:
            assert health_statuses(channel) == {health_pb2.HealthCheckResponse.SERVING}
            replica.terminate()
            wait_for(lambda: "Draining:" in replica.log_text(), what="the drain to begin")
            assert health_statuses(channel) == {health_pb2.HealthCheckResponse.NOT_SERVING}
            assert predict(channel, 1.0) == 2.5
        with grpc.insecure_channel(target) as fresh:  # a connection opened during the grace period
            assert predict(fresh, 3.0) == 3.5
        rest = http.client.HTTPConnection("127.0.0.1", rest_port, timeout=10)
        rest.request("POST", f"/v1/models/{MODEL}:predict", json.dumps({"instances": [[5.0]]}))
        response = rest.getresponse()
        assert (response.status, json.loads(response.read())) == (200, {"predictions": [[4.5]]})
        assert response.getheader("Connection") == "close"  # keep-alive clients reconnect elsewhere
        rest.close()
        assert "Shutting down" not in replica.log_text()  # still in the grace period
        replica.terminate()
        exit_code = replica.wait_exit(30)  # well before the grace period would end
    finally:
        replica.kill()
    log = replica.log_text()
    assert exit_code == 0 and "Traceback" not in log, log[-2000:]
    assert log.index("Draining:") < log.index("Shutting down:") < log.index("Server stopped")
