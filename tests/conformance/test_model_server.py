"""End-to-end behaviour TF Serving's tensorflow_model_server_test.py checks on
the binary, checked here on `python -m serving` started with the same flags."""

import json
import subprocess
import sys
import time
import urllib.request

import grpc
import pytest
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from conformance_helpers import HALF_PLUS_THREE, RPC_TIMEOUT, TESTDATA, config_text
from support import poll_count, wait_for, wait_for_polls

VERSION = 123  # the only version folder of every test model used here


def prediction_stub(channel, address):
    return prediction_service_pb2_grpc.PredictionServiceStub(channel(address))


def assert_model_spec(spec, name, signature, version=VERSION):
    assert (spec.name, spec.signature_name, spec.version.value) == (name, signature, version)


def verify_predict(
    stub,
    expected,
    model="default",
    signature="serving_default",
    specify_output=True,
    batch_input=False,
    version=VERSION,
):
    """Predict x = [2.0] (a float_val tensor) and check y and the model_spec."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    request.inputs["x"].dtype = types_pb2.DT_FLOAT
    request.inputs["x"].float_val.append(2.0)
    request.inputs["x"].tensor_shape.dim.add().size = 1
    if batch_input:
        request.inputs["x"].tensor_shape.dim.add().size = 1
    if specify_output:
        request.output_filter.append("y")
    result = stub.Predict(request, RPC_TIMEOUT)
    assert "y" in result.outputs
    assert result.outputs["y"].dtype == types_pb2.DT_FLOAT
    assert list(result.outputs["y"].float_val) == [expected]
    assert_model_spec(result.model_spec, model, signature, version)


def call_rest(url, body=None):
    """The suite's CallREST: POST JSON when there is a body, else GET; the body."""
    data = json.dumps(body).encode() if body is not None else None
    with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=10) as resp:
        return json.loads(resp.read().decode())


def sorted_object(obj):
    """Order-free form of a JSON value (the suite's SortedObject)."""
    if isinstance(obj, dict):
        return sorted((k, sorted_object(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return sorted(sorted_object(x) for x in obj)
    return obj


def one_example(request):
    request.input.example_list.examples.add().features.feature["x"].float_list.value.append(2.0)


def test_get_model_status(server, channel):
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "default"
    stub = model_service_pb2_grpc.ModelServiceStub(channel(server("default").grpc_address))
    result = stub.GetModelStatus(request, RPC_TIMEOUT)
    assert len(result.model_version_status) == 1
    assert result.model_version_status[0].version == VERSION
    assert result.model_version_status[0].state == get_model_status_pb2.ModelVersionStatus.AVAILABLE
    assert result.model_version_status[0].status.error_code == 0
    assert result.model_version_status[0].status.error_message == ""


def test_get_model_metadata(server, channel):
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = "default"
    request.metadata_field.append("signature_def")
    result = prediction_stub(channel, server("default").grpc_address).GetModelMetadata(request, RPC_TIMEOUT)
    assert result.model_spec.name == "default"
    assert result.model_spec.version.value == VERSION
    assert list(result.metadata) == ["signature_def"]
    signatures = get_model_metadata_pb2.SignatureDefMap()
    result.metadata["signature_def"].Unpack(signatures)
    assert {"serving_default", "classify_x_to_y", "regress_x_to_y"} <= set(signatures.signature_def)


@pytest.mark.parametrize("name", ["default", "tf2"])
def test_classify(server, channel, name):
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "default"
    request.model_spec.signature_name = "classify_x_to_y"
    one_example(request)
    result = prediction_stub(channel, server(name).grpc_address).Classify(request, RPC_TIMEOUT)
    assert len(result.result.classifications) == 1
    assert len(result.result.classifications[0].classes) == 1
    assert result.result.classifications[0].classes[0].score == 3.0
    assert_model_spec(result.model_spec, "default", "classify_x_to_y")


@pytest.mark.parametrize("name", ["default", "tf2"])
def test_regress(server, channel, name):
    request = regression_pb2.RegressionRequest()
    request.model_spec.name = "default"
    request.model_spec.signature_name = "regress_x_to_y"
    one_example(request)
    result = prediction_stub(channel, server(name).grpc_address).Regress(request, RPC_TIMEOUT)
    assert len(result.result.regressions) == 1
    assert result.result.regressions[0].value == 3.0
    assert_model_spec(result.model_spec, "default", "regress_x_to_y")


@pytest.mark.parametrize("name", ["default", "tf2"])
def test_multi_inference(server, channel, name):
    request = inference_pb2.MultiInferenceRequest()
    for signature, method in (
        ("regress_x_to_y", "tensorflow/serving/regress"),
        ("classify_x_to_y", "tensorflow/serving/classify"),
    ):
        task = request.tasks.add()
        task.model_spec.name = "default"
        task.model_spec.signature_name = signature
        task.method_name = method
    one_example(request)
    result = prediction_stub(channel, server(name).grpc_address).MultiInference(request, RPC_TIMEOUT)
    assert len(result.results) == 2
    assert result.results[0].regression_result.regressions[0].value == 3.0
    assert result.results[1].classification_result.classifications[0].classes[0].score == 3.0
    for task, answer in zip(request.tasks, result.results):
        assert_model_spec(answer.model_spec, "default", task.model_spec.signature_name)


CLASSIFY_CHECK = (
    "Expected classification signature method_name to be tensorflow/serving/classify. Was: tensorflow/serving/predict"
)
REGRESS_CHECK = (
    "Expected regression signature method_name to be tensorflow/serving/regress. Was: tensorflow/serving/predict"
)


def method_check_request(call, model):
    """A Classify, Regress or MultiInference request (one example, x = 2.0) for `model`."""
    if call == "MultiInference":
        request = inference_pb2.MultiInferenceRequest()
        for signature, method in (
            ("classify_x_to_y", "tensorflow/serving/classify"),
            ("regress_x_to_y", "tensorflow/serving/regress"),
        ):
            task = request.tasks.add()
            task.model_spec.name, task.model_spec.signature_name, task.method_name = model, signature, method
    else:
        request = (
            classification_pb2.ClassificationRequest() if call == "Classify" else regression_pb2.RegressionRequest()
        )
        request.model_spec.name = model
        request.model_spec.signature_name = "classify_x_to_y" if call == "Classify" else "regress_x_to_y"
    one_example(request)
    return request


@pytest.mark.parametrize(
    "call,message", [("Classify", CLASSIFY_CHECK), ("Regress", REGRESS_CHECK), ("MultiInference", CLASSIFY_CHECK)]
)
def test_method_name_check_refuses_predict_method_signatures(server, channel, call, message):
    """--enable_signature_method_name_check: a TF2 signature (method tensorflow/serving/predict)
    is refused by Classify, Regress and every MultiInference task alike (multi_inference.cc runs
    the same PreProcessClassification/PreProcessRegression); test_classify & co. show the same
    calls answered without the flag."""
    stub = prediction_stub(channel, server("method_check").grpc_address)
    with pytest.raises(grpc.RpcError) as info:
        getattr(stub, call)(method_check_request(call, "default"), RPC_TIMEOUT)
    assert (info.value.code(), info.value.details()) == (grpc.StatusCode.INVALID_ARGUMENT, message)


def test_method_name_check_refuses_a_regress_task_on_a_predict_method_signature(server, channel):
    request = method_check_request("MultiInference", "default")
    del request.tasks[0]  # only the regress task is left
    stub = prediction_stub(channel, server("method_check").grpc_address)
    with pytest.raises(grpc.RpcError) as info:
        stub.MultiInference(request, RPC_TIMEOUT)
    assert (info.value.code(), info.value.details()) == (grpc.StatusCode.INVALID_ARGUMENT, REGRESS_CHECK)


def answered_values(call, response) -> list:
    """The score or value of each answer to a method_check_request."""
    if call == "Classify":
        return [response.result.classifications[0].classes[0].score]
    if call == "Regress":
        return [response.result.regressions[0].value]
    return [
        response.results[0].classification_result.classifications[0].classes[0].score,
        response.results[1].regression_result.regressions[0].value,
    ]


@pytest.mark.parametrize("call", ["Classify", "Regress", "MultiInference"])
def test_method_name_check_answers_signatures_of_the_right_method(server, channel, call):
    stub = prediction_stub(channel, server("method_check").grpc_address)
    response = getattr(stub, call)(method_check_request(call, "tf1"), RPC_TIMEOUT)
    assert answered_values(call, response) == [3.0] * (2 if call == "MultiInference" else 1)


@pytest.mark.parametrize("name", ["default", "batching"])
@pytest.mark.parametrize("specify_output", [True, False])
def test_predict_saved_model(server, channel, name, specify_output):
    """Plain, and with --enable_batching, the suite's batching_config.txt and
    --grpc_channel_arguments (testGoodGrpcChannelArgs)."""
    verify_predict(prediction_stub(channel, server(name).grpc_address), 3.0, specify_output=specify_output)


def test_predict_over_the_unix_socket_replacing_a_stale_one(server, channel):
    default = server("default")
    verify_predict(prediction_stub(channel, f"unix:{default.socket_path}"), 3.0, specify_output=False)


@pytest.mark.parametrize("specify_output", [True, False])
def test_good_model_config(server, channel, specify_output):
    stub = prediction_stub(channel, server("good_config").grpc_address)
    verify_predict(stub, 3.0, model="half_plus_two", specify_output=specify_output)
    verify_predict(stub, 4.0, model="half_plus_three", specify_output=specify_output)


def test_model_config_reload(server, channel, workdir):
    """--model_config_file_poll_wait_seconds=1: a rewritten config is applied
    (the suite allows 10 s)."""
    reload = server("reload")
    stub = prediction_stub(channel, reload.grpc_address)
    verify_predict(stub, 3.0, model="half_plus_two", specify_output=False)
    config = next(a.split("=", 1)[1] for a in reload.args if a.startswith("--model_config_file="))
    with open(config, "w") as handle:
        handle.write(config_text([("half_plus_three", HALF_PLUS_THREE)]))

    def serves_half_plus_three():
        try:
            verify_predict(stub, 4.0, model="half_plus_three", specify_output=False)
            return True
        except grpc.RpcError:
            return False

    wait_for(serves_half_plus_three, 10, "half_plus_three served from the rewritten config")


def test_model_config_not_reloaded_with_zero_poll_period(server, channel):
    frozen = server("no_reload")
    rest_url = f"http://{frozen.rest_address}"
    stub = prediction_stub(channel, frozen.grpc_address)
    config = next(a.split("=", 1)[1] for a in frozen.args if a.startswith("--model_config_file="))
    seen = poll_count(rest_url, "file_system")
    with open(config, "w") as handle:
        handle.write(config_text([("half_plus_three", HALF_PLUS_THREE)]))
    # The server's periodic work goes on (two file-system polls since the
    # edit), yet it never polls the config file.
    wait_for_polls(rest_url, "file_system", seen)
    assert poll_count(rest_url, "config_file") == 0
    verify_predict(stub, 3.0, model="half_plus_two", specify_output=False)


def rest(server, path):
    return f"http://{server.rest_address}{path}"


@pytest.mark.parametrize("name", ["default", "tf2"])
def test_classify_rest(server, name):
    body = {"signature_name": "classify_x_to_y", "examples": [{"x": 2.0}]}
    assert call_rest(rest(server(name), "/v1/models/default:classify"), body) == {"results": [[["", 3.0]]]}


@pytest.mark.parametrize("name", ["default", "tf2"])
def test_regress_rest(server, name):
    body = {"signature_name": "regress_x_to_y", "examples": [{"x": 2.0}]}
    assert call_rest(rest(server(name), "/v1/models/default:regress"), body) == {"results": [3.0]}


def test_predict_rest(server):
    assert call_rest(rest(server("default"), "/v1/models/default:predict"), {"instances": [2.0, 3.0, 4.0]}) == {
        "predictions": [3.0, 3.5, 4.0]
    }


def test_predict_columnar_rest(server):
    assert call_rest(rest(server("default"), "/v1/models/default:predict"), {"inputs": [2.0, 3.0, 4.0]}) == {
        "outputs": [3.0, 3.5, 4.0]
    }


def test_get_status_rest(server):
    assert call_rest(rest(server("default"), "/v1/models/default")) == {
        "model_version_status": [
            {"version": "123", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
        ]
    }


def test_get_model_metadata_rest(server):
    expected = json.loads((TESTDATA / "half_plus_two_model_metadata.json").read_text())
    answer = call_rest(rest(server("default"), "/v1/models/default/metadata"))
    assert sorted_object(answer) == sorted_object(expected)


def test_prometheus_endpoint(server):
    url = rest(server("default"), "/monitoring/prometheus/metrics")
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert "# TYPE" in resp.read().decode("utf-8")


@pytest.mark.parametrize("name", ["tflite", "tflite_sigdef"])
def test_predict_on_tflite(server, channel, name):
    verify_predict(prediction_stub(channel, server(name).grpc_address), 3.0, specify_output=False)


def test_tf_saved_model_save(server, channel):
    verify_predict(
        prediction_stub(channel, server("generated").grpc_address), 12.0, model="saved_model_save", specify_output=False
    )


def test_tf_saved_model_save_multiple_signatures(server, channel):
    stub = prediction_stub(channel, server("generated").grpc_address)
    verify_predict(stub, 2.0, model="multiple_signatures", signature="custom_signature_key")
    verify_predict(stub, 1.0, model="multiple_signatures")


def test_profiler_service_traces_the_server(server, workdir):
    """test_profiler_service_with_valid_trace_request: a trace over the gRPC
    port while REST predictions run."""
    default = server("default")
    logdir = workdir / "profile"
    code = (
        "import sys, tensorflow as tf\ntf.profiler.experimental.client.trace(sys.argv[1], sys.argv[2], 1000, '', 10)\n"
    )
    tracer = subprocess.Popen(
        [sys.executable, "-c", code, default.grpc_address, str(logdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"},
    )
    while tracer.poll() is None:
        call_rest(rest(default, "/v1/models/default:predict"), {"instances": [2.0, 3.0, 4.0]})
        time.sleep(0.05)  # pacing the load the trace records
    assert tracer.returncode == 0, tracer.stderr.read()[-2000:]
    assert any(logdir.rglob("*.xplane.pb"))


def test_batching_gives_each_concurrent_caller_its_own_rows(server, channel):
    """Concurrent requests merged by --enable_batching are split back per caller."""
    from concurrent.futures import ThreadPoolExecutor

    stub = prediction_stub(channel, server("batching").grpc_address)

    def call(i):
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "default"
        values = [float(i), float(i) + 0.5][: 1 + i % 2]
        request.inputs["x"].dtype = types_pb2.DT_FLOAT
        request.inputs["x"].float_val.extend(values)
        request.inputs["x"].tensor_shape.dim.add().size = len(values)
        return values, list(stub.Predict(request, RPC_TIMEOUT).outputs["y"].float_val)

    with ThreadPoolExecutor(16) as pool:
        for values, answer in pool.map(call, range(64)):
            assert answer == [v / 2 + 2 for v in values]
