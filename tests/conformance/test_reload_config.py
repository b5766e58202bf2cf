"""ModelService.HandleReloadConfigRequest as model_service_impl.cc and
ServerCore::ReloadConfig answer it: config validation errors with their codes
and messages, version labels only for available versions, the deprecated
model_type, and a swap that unloads the models left out."""

import grpc
import pytest
from google.protobuf import text_format
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from conformance_helpers import HALF_PLUS_THREE, HANDLER_MODELS, RPC_TIMEOUT, TWO_VERSIONS, config_text

MODEL = HANDLER_MODELS[0][0]
SPECIFIC_123 = "    model_version_policy { specific { versions: 123 } }\n"


@pytest.fixture(scope="module")
def admin(server, channel):
    address = server("admin").grpc_address
    return (
        model_service_pb2_grpc.ModelServiceStub(channel(address)),
        prediction_service_pb2_grpc.PredictionServiceStub(channel(address)),
    )


def reload(stub, text):
    request = model_management_pb2.ReloadConfigRequest()
    text_format.Parse(text, request.config)
    return stub.HandleReloadConfigRequest(request, 30)


def entry(name, base_path, body):
    return f'  config {{\n    name: "{name}"\n    base_path: "{base_path}"\n{body}  }}\n'


def config_list(*entries):
    return "model_config_list {\n" + "".join(entries) + "}\n"


@pytest.mark.parametrize(
    "text,code,message",
    [
        (
            config_text([(MODEL, TWO_VERSIONS, SPECIFIC_123 + '    version_labels { key: "x" value: 124 }\n')]),
            grpc.StatusCode.FAILED_PRECONDITION,
            f"Request to assign label to version 124 of model {MODEL}, which is not currently available for inference",
        ),
        (
            config_text([(MODEL, TWO_VERSIONS), (MODEL, TWO_VERSIONS)]),
            grpc.StatusCode.INVALID_ARGUMENT,
            f"Illegal to list model {MODEL} multiple times in config list",
        ),
        (
            config_text([(MODEL, "relative/path")]),
            grpc.StatusCode.INVALID_ARGUMENT,
            f"Expected model {MODEL} to have an absolute path or URI; got base_path()=relative/path",
        ),
        (
            config_list(entry(MODEL, TWO_VERSIONS, "")),
            grpc.StatusCode.INVALID_ARGUMENT,
            "Illegal setting neither ModelServerConfig::model_type (deprecated) nor "
            f"ModelServerConfig::model_platform, model name is {MODEL}",
        ),
        (
            config_list(entry("other", TWO_VERSIONS, '    model_platform: "foo"\n')),
            grpc.StatusCode.INVALID_ARGUMENT,
            "Model other requests unsupported platform foo",
        ),
        (
            "",
            grpc.StatusCode.INVALID_ARGUMENT,
            "ServerModelConfig type not supported by HandleReloadConfigRequest. "
            "Only ModelConfigList is currently supported",
        ),
    ],
)
def test_rejected_configs(admin, text, code, message):
    with pytest.raises(grpc.RpcError) as info:
        reload(admin[0], text)
    assert (info.value.code(), info.value.details()) == (code, message)


def test_deprecated_model_type_is_the_same_platform(admin):
    # The first model (MODEL) switches to the deprecated spelling of its platform.
    text = config_text(HANDLER_MODELS).replace('model_platform: "tensorflow"', "model_type: TENSORFLOW", 1)
    response = reload(admin[0], text)
    assert (response.status.error_code, response.status.error_message) == (0, "")


def test_swap_unloads_the_models_left_out(admin):
    models, predictions = admin
    response = reload(models, config_text([("half_plus_three", HALF_PLUS_THREE)]))
    assert response.status.error_code == 0

    def status(name):
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = name
        return [
            (s.version, s.state, s.status.error_code)
            for s in models.GetModelStatus(request, RPC_TIMEOUT).model_version_status
        ]

    state = get_model_status_pb2.ModelVersionStatus
    assert status("half_plus_three") == [(123, state.AVAILABLE, 0)]
    assert status(MODEL) == [(123, state.END, 0)]
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    request.inputs["x"].float_val.append(1.0)
    with pytest.raises(grpc.RpcError) as info:
        predictions.Predict(request, RPC_TIMEOUT)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
