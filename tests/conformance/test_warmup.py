"""SavedModel warmup as saved_model_warmup.md and saved_model_warmup_util.cc
describe it: the records in assets.extra/tf_serving_warmup_requests run once
before the version is AVAILABLE, and a failing record fails the load."""

import grpc
import pytest
from google.protobuf import text_format
from tensorflow_serving.apis import model_management_pb2, model_service_pb2_grpc, prediction_service_pb2_grpc

from conformance_helpers import (
    HALF_PLUS_TWO,
    HANDLER_MODELS,
    RPC_TIMEOUT,
    config_text,
    copy_model,
    predict_request,
    with_warmup,
)


def test_warmup_requests_ran_before_serving(server, channel):
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel(server("generated").grpc_address))
    response = stub.Predict(predict_request("warm_counter", "get_counter", {}), RPC_TIMEOUT)
    assert list(response.outputs["output"].float_val) == [5.0]


def test_failing_warmup_record_fails_the_load(server, channel, workdir):
    """Added by a config reload, the model never becomes available and the
    reload answers UNKNOWN naming it and the warmup error."""
    base = with_warmup(
        copy_model(HALF_PLUS_TWO, workdir / "bad_warmup"),
        "00000123",
        [predict_request("bad_warmup", "serving_default", {"nope": [1.0]})],
    )
    request = model_management_pb2.ReloadConfigRequest()
    text_format.Parse(config_text([*HANDLER_MODELS, ("bad_warmup", base)]), request.config)
    stub = model_service_pb2_grpc.ModelServiceStub(channel(server("admin").grpc_address))
    with pytest.raises(grpc.RpcError) as info:
        stub.HandleReloadConfigRequest(request, 60)
    assert info.value.code() == grpc.StatusCode.UNKNOWN
    message = info.value.details()
    assert message.startswith(
        "1 model(s) did not become available: {{{name: bad_warmup version: 123} due to error: "
        "INVALID_ARGUMENT: input tensor alias not found in signature: nope."
    )
