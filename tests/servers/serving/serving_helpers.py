"""Helpers for the serving tests: test-model paths, config files, a numpy gRPC client."""

from pathlib import Path

import grpc
import pytest

from toolkit.serve import LocalServer

from tf_serving_testdata import (  # noqa: F401  (re-exported to the tests)
    BAD,
    COUNTER,
    HALF_PLUS_THREE,
    HALF_PLUS_TWO,
    HALF_PLUS_TWO_TF2,
    TESTDATA,
    TFLITE,
    TFLITE_SIGDEF,
    TWO_VERSIONS,
    copy_model,
)


def model_entry(name: str, base_path, extra: str = "") -> str:
    """One ModelConfig in text format."""
    return (
        f'  config {{\n    name: "{name}"\n    base_path: "{base_path}"\n'
        f'    model_platform: "tensorflow"\n{extra}  }}\n'
    )


def write_config(path: Path, entries: list) -> Path:
    """A ModelServerConfig file holding the given model entries."""
    path.write_text("model_config_list {\n" + "".join(entries) + "}\n")
    return path


def start(args, **kwargs) -> LocalServer:
    """A started LocalServer (the caller stops it)."""
    return LocalServer(args, timeout=kwargs.pop("timeout", 90), **kwargs).start()


class Client:
    """Thin gRPC client for TF Serving's APIs; numpy in, numpy out."""

    def __init__(self, channel):
        from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

        self.prediction = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        self.models = model_service_pb2_grpc.ModelServiceStub(channel)

    @staticmethod
    def spec(target, model, signature="", version=None, label=None):
        target.name = model
        target.signature_name = signature
        if version is not None:
            target.version.value = version
        if label is not None:
            target.version_label = label

    def predict_response(self, model, inputs, signature="", version=None, label=None, output_filter=()):
        import numpy as np
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2

        request = predict_pb2.PredictRequest()
        self.spec(request.model_spec, model, signature, version, label)
        for alias, value in inputs.items():
            proto = value if not isinstance(value, (np.ndarray, list, float, int)) else tf.make_tensor_proto(value)
            request.inputs[alias].CopyFrom(proto)
        request.output_filter.extend(output_filter)
        return self.prediction.Predict(request, timeout=30)

    def predict(self, model, inputs, **kwargs):
        """Predict -> {alias: ndarray}."""
        import tensorflow as tf

        response = self.predict_response(model, inputs, **kwargs)
        return {k: tf.make_ndarray(v) for k, v in response.outputs.items()}

    def status(self, model, version=None):
        from tensorflow_serving.apis import get_model_status_pb2

        request = get_model_status_pb2.GetModelStatusRequest()
        self.spec(request.model_spec, model, version=version)
        return self.models.GetModelStatus(request, timeout=30)

    def states(self, model) -> dict:
        """version -> state name (e.g. 'AVAILABLE')."""
        from tensorflow_serving.apis import get_model_status_pb2

        names = get_model_status_pb2.ModelVersionStatus.State.Name
        return {v.version: names(v.state) for v in self.status(model).model_version_status}

    def metadata(self, model, version=None, fields=("signature_def",)):
        from tensorflow_serving.apis import get_model_metadata_pb2

        request = get_model_metadata_pb2.GetModelMetadataRequest()
        self.spec(request.model_spec, model, version=version)
        request.metadata_field.extend(fields)
        return self.prediction.GetModelMetadata(request, timeout=30)

    def signature_defs(self, model, version=None):
        from tensorflow_serving.apis import get_model_metadata_pb2

        response = self.metadata(model, version)
        defs = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(defs)
        return response, defs

    @staticmethod
    def examples(target, rows):
        for row in rows:
            example = target.add()
            for key, values in row.items():
                example.features.feature[key].float_list.value.extend(values)

    def classify(self, model, signature, rows, version=None):
        from tensorflow_serving.apis import classification_pb2

        request = classification_pb2.ClassificationRequest()
        self.spec(request.model_spec, model, signature, version)
        self.examples(request.input.example_list.examples, rows)
        return self.prediction.Classify(request, timeout=30)

    def regress(self, model, signature, rows, version=None):
        from tensorflow_serving.apis import regression_pb2

        request = regression_pb2.RegressionRequest()
        self.spec(request.model_spec, model, signature, version)
        self.examples(request.input.example_list.examples, rows)
        return self.prediction.Regress(request, timeout=30)

    def reload(self, config_text: str):
        from google.protobuf import text_format
        from tensorflow_serving.apis import model_management_pb2

        request = model_management_pb2.ReloadConfigRequest()
        text_format.Parse(config_text, request.config)
        return self.models.HandleReloadConfigRequest(request, timeout=120)


def rpc_error(call, *args, **kwargs) -> grpc.RpcError:
    """The RpcError a call raises (AssertionError if it succeeds)."""
    with pytest.raises(grpc.RpcError) as info:
        call(*args, **kwargs)
    return info.value
