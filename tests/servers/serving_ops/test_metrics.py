"""The Prometheus page counts exactly the requests the test sends, by API and entrypoint."""

import numpy as np
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from serving.tensors import from_numpy

from support import PROMETHEUS_PATH

HALF = "half"


def test_request_counts_and_latencies(rest, channel, scrape):
    before = scrape()
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = HALF
    request.inputs["x"].CopyFrom(from_numpy(np.array([[1.0]], dtype=np.float32)))
    for _ in range(3):
        stub.Predict(request, timeout=30)
    for _ in range(5):
        assert rest.request("POST", f"/v1/models/{HALF}:predict", {"instances": [1.0]})[0] == 200
    assert rest.request("POST", f"/v1/models/{HALF}:predict", {"instances": ["bad"]})[0] == 400
    assert rest.request("GET", f"/v1/models/{HALF}")[0] == 200
    after = scrape()

    def delta(name, **labels):
        return after.value(name, **labels) - before.value(name, **labels)

    count = ":tensorflow:serving:request_count"
    assert delta(count, model_name=HALF, status="OK") == 3 + 5 + 1
    assert delta(count, model_name=HALF, status="INVALID_ARGUMENT") == 1
    latency = ":tensorflow:serving:request_latency_count"
    assert delta(latency, model_name=HALF, API="Predict", entrypoint="GRPC") == 3
    assert delta(latency, model_name=HALF, API="predict", entrypoint="REST") == 5
    # As in TF Serving, failed requests count but stay out of the latency histogram.
    per_signature = ":tfkit:serving:signature_request_count"
    assert (
        delta(
            per_signature,
            model_name=HALF,
            signature_name="",
            API="predict",
            entrypoint="REST",
            status="INVALID_ARGUMENT",
        )
        == 1
    )


def test_grpc_metadata_and_status_calls_stay_out_of_tf_servings_counters(channel, scrape):
    from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2, model_service_pb2_grpc

    before = scrape()
    status_request = get_model_status_pb2.GetModelStatusRequest()
    status_request.model_spec.name = HALF
    model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(status_request, timeout=30)
    metadata_request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    metadata_request.model_spec.name = HALF
    prediction_service_pb2_grpc.PredictionServiceStub(channel).GetModelMetadata(metadata_request, timeout=30)
    after = scrape()
    count = ":tensorflow:serving:request_count"
    assert after.value(count, model_name=HALF, status="OK") == before.value(count, model_name=HALF, status="OK")
    per_signature = ":tfkit:serving:signature_request_count"
    labels = dict(model_name=HALF, signature_name="", API="GetModelMetadata", entrypoint="GRPC", status="OK")
    assert after.value(per_signature, **labels) - before.value(per_signature, **labels) == 1


def test_page_layout_matches_tf_servings_exporter(rest):
    rest.request("POST", f"/v1/models/{HALF}:predict", {"instances": [1.0]})
    status, _, body = rest.request("GET", PROMETHEUS_PATH)
    text = body.decode()
    assert "# TYPE :tensorflow:serving:request_count counter\n" in text
    assert "# TYPE :tensorflow:serving:request_latency histogram\n" in text
    lines = [
        line
        for line in text.splitlines()
        if line.startswith(
            ':tensorflow:serving:request_latency_bucket{model_name="half",API="predict",entrypoint="REST",'
        )
    ]
    # Exponential(10, 1.8, 33) buckets, cumulative, closed by +Inf.
    assert len(lines) == 34
    assert lines[0].split("le=")[1].startswith('"10"}') and lines[-1].split("le=")[1].startswith('"+Inf"}')
    counts = [float(line.rsplit(" ", 1)[1]) for line in lines]
    assert counts == sorted(counts) and counts[-1] >= 1
    assert text.endswith("\n")


def test_model_loads_are_counted(scrape):
    assert scrape().value(":tfkit:serving:model_load_count", model_name=HALF, version="123", status="success") == 1


def test_metrics_path_with_query_is_rejected_like_tf_serving(rest):
    status, _, body = rest.request("GET", PROMETHEUS_PATH + "?x=1")
    assert status == 400
    assert body.decode() == f"Unexpected path: {PROMETHEUS_PATH}?x=1. Should be {PROMETHEUS_PATH}"
