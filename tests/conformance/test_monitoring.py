"""The Prometheus endpoint of --monitoring_config_file as TF Serving's
http_server.cc, prometheus_exporter and servables/tensorflow/util.cc write it:
`:tensorflow:serving:request_count{model_name,status}` for gRPC and REST,
`:tensorflow:serving:request_latency` histograms per API and entrypoint for
successful requests, `# TYPE` lines, SavedModel load attempts."""

import json
import re
import urllib.error
import urllib.request

import grpc
import pytest
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from conformance_helpers import HALF_PLUS_TWO, RPC_TIMEOUT

PATH = "/monitoring/prometheus/metrics"  # monitoring_config.txt's path


@pytest.fixture(scope="module")
def monitored(server, channel):
    ready = server("default")
    return ready, prediction_service_pb2_grpc.PredictionServiceStub(channel(ready.grpc_address))


def scrape(server) -> str:
    with urllib.request.urlopen(f"http://{server.rest_address}{PATH}", timeout=10) as resp:
        assert resp.status == 200
        return resp.read().decode()


def sample(text, metric, **labels):
    """The value of the sample `metric{labels}` (labels in the exporter's order), or 0."""
    label_text = ",".join(f'{k}="{v}"' for k, v in labels.items())
    match = re.search(rf"^{re.escape(metric)}\{{{re.escape(label_text)}\}} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def grpc_predict(stub, model):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.inputs["x"].dtype = types_pb2.DT_FLOAT
    request.inputs["x"].float_val.append(2.0)
    request.inputs["x"].tensor_shape.dim.add().size = 1
    return stub.Predict(request, RPC_TIMEOUT)


def rest_predict(server, model):
    request = urllib.request.Request(
        f"http://{server.rest_address}/v1/models/{model}:predict", data=json.dumps({"instances": [2.0]}).encode()
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as error:
        return error.code


def test_request_counts_by_model_and_status(monitored):
    server, stub = monitored
    before = scrape(server)
    grpc_predict(stub, "default")
    grpc_predict(stub, "default")
    assert rest_predict(server, "default") == 200
    with pytest.raises(grpc.RpcError):
        grpc_predict(stub, "unknown_for_metrics")
    assert rest_predict(server, "unknown_for_metrics") == 404
    after = scrape(server)
    count = ":tensorflow:serving:request_count"
    assert "# TYPE :tensorflow:serving:request_count counter" in after
    assert (
        sample(after, count, model_name="default", status="OK")
        - sample(before, count, model_name="default", status="OK")
        == 3
    )
    assert sample(after, count, model_name="unknown_for_metrics", status="NOT_FOUND") == 2


def test_request_latency_per_api_and_entrypoint(monitored):
    server, stub = monitored
    before = scrape(server)
    grpc_predict(stub, "default")
    assert rest_predict(server, "default") == 200
    after = scrape(server)
    latency = ":tensorflow:serving:request_latency_count"
    assert "# TYPE :tensorflow:serving:request_latency histogram" in after
    for api, entrypoint in (("Predict", "GRPC"), ("predict", "REST")):
        labels = dict(model_name="default", API=api, entrypoint=entrypoint)
        assert sample(after, latency, **labels) - sample(before, latency, **labels) == 1
        assert sample(after, ":tensorflow:serving:request_latency_bucket", **labels, le="+Inf") == sample(
            after, latency, **labels
        )


def test_saved_model_load_attempts(monitored):
    text = scrape(monitored[0])
    assert (
        sample(
            text,
            ":tensorflow:cc:saved_model:load_attempt_count",
            model_path=f"{HALF_PLUS_TWO}/00000123",
            status="success",
        )
        == 1
    )


def test_no_metrics_page_without_a_monitoring_config(server):
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"http://{server('tf2').rest_address}{PATH}", timeout=10)
    assert info.value.code == 404
