"""The conformance suite's servers and test models, started and built the way
TF Serving's own Python integration suite does (its RunServer): picked free
ports, `--port --rest_api_port --rest_api_timeout_in_ms=5000 --grpc_socket_path`,
either `--model_name/--model_base_path` or `--model_config_file`, then
`--prefer_tflite_model=true`, `--monitoring_config_file`,
`--model_config_file_poll_wait_seconds`, `--enable_batching
--batching_parameters_file`, and always `--grpc_channel_arguments=...grpc.so_reuseaddr=1`.
Readiness is probed as that suite probes it: a Predict for a missing model
until the error names a "Servable".

A module of its own (not conftest.py), so that tests import its names
whichever conftest.py pytest loaded last.
"""

import os
import socket
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from support import free_port, wait_for  # free_port: the suite uses portpicker for the same purpose
from tf_serving_testdata import (  # noqa: F401  (re-exported to the tests)
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

RPC_TIMEOUT = 5.0
LABEL = "Version_Label"  # the label the REST handler suite adds by a config reload
# The models of the C++ handler/status suites' ServerCore: the REST handler's
# (version 123 only) and get_model_status_impl_test's (both versions).
HANDLER_MODELS = [
    ("saved_model_half_plus_two_2_versions", TWO_VERSIONS, "    model_version_policy { specific { versions: 123 } }\n"),
    ("both_versions", TWO_VERSIONS, "    model_version_policy { specific { versions: 123 versions: 124 } }\n"),
    # serving_config.md's version policies: latest 1 by default, latest N, all.
    ("latest", TWO_VERSIONS),
    ("latest_two", TWO_VERSIONS, "    model_version_policy { latest { num_versions: 2 } }\n"),
    ("all_versions", TWO_VERSIONS, "    model_version_policy { all {} }\n"),
]
READY_TIMEOUT = 240.0  # generous: a dozen servers load at once on a shared 2-core machine


def config_text(models) -> str:
    """A ModelServerConfig text proto serving (name, base_path[, extra]) entries."""
    body = "".join(
        f'  config {{\n    name: "{entry[0]}"\n    base_path: "{entry[1]}"\n'
        f'    model_platform: "tensorflow"\n{entry[2] if len(entry) > 2 else ""}  }}\n'
        for entry in models
    )
    return "model_config_list {\n" + body + "}\n"


class ModelServer:
    """One `python -m serving` process launched with the binary's command line."""

    def __init__(
        self,
        workdir: Path,
        model_name=None,
        model_path=None,
        *,
        model_type="tf",
        model_config_file=None,
        monitoring_config_file=None,
        batching_parameters_file=None,
        grpc_channel_arguments="",
        model_config_file_poll_period=None,
        stale_socket=False,
        extra_args=(),
    ):
        self.port, self.rest_port = free_port(), free_port()
        self.socket_path = workdir / f"tf-serving-{self.port}.sock"
        if stale_socket:  # what an earlier server leaves behind at the same path
            with socket.socket(socket.AF_UNIX) as sock:
                sock.bind(str(self.socket_path))
        args = [
            f"--port={self.port}",
            f"--rest_api_port={self.rest_port}",
            "--rest_api_timeout_in_ms=5000",
            f"--grpc_socket_path={self.socket_path}",
        ]
        if model_config_file:
            args.append(f"--model_config_file={model_config_file}")
        else:
            args += [f"--model_name={model_name}", f"--model_base_path={model_path}"]
        if model_type == "tflite":
            args.append("--prefer_tflite_model=true")
        if monitoring_config_file:
            args.append(f"--monitoring_config_file={monitoring_config_file}")
        if model_config_file_poll_period is not None:
            args.append(f"--model_config_file_poll_wait_seconds={model_config_file_poll_period}")
        if batching_parameters_file:
            args += ["--enable_batching", f"--batching_parameters_file={batching_parameters_file}"]
        channel_args = ",".join(a for a in (grpc_channel_arguments, "grpc.so_reuseaddr=1") if a)
        args.append(f"--grpc_channel_arguments={channel_args}")
        args += extra_args
        self.args = args
        self.log_path = workdir / f"server-{self.port}.log"
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
        # stdout too: the binary prints "Failed to start server" there.
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "serving", *args], env=env, stdout=log, stderr=subprocess.STDOUT
            )
        self._ready = False

    @property
    def grpc_address(self) -> str:
        return f"localhost:{self.port}"

    @property
    def rest_address(self) -> str:
        return f"localhost:{self.rest_port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_ready(self) -> "ModelServer":
        """The suite's WaitForServerReady: probe until a missing model is reported
        as a missing Servable (the real binary opens its port only after the
        initial loads)."""
        if self._ready:
            return self
        from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

        request = predict_pb2.PredictRequest()
        request.model_spec.name = "intentionally_missing_model"

        def answers_like_a_ready_server(stub) -> bool:
            if self.proc.poll() is not None:
                pytest.fail(f"server exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            try:
                stub.Predict(request, 1.0)
            except grpc.RpcError as error:
                return "Servable" in (error.details() or "")
            return False

        with grpc.insecure_channel(self.grpc_address) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            try:
                wait_for(lambda: answers_like_a_ready_server(stub), READY_TIMEOUT, "the server to be ready", 0.1)
            except AssertionError as timed_out:
                pytest.fail(f"{timed_out}:\n{self.log()[-3000:]}")
        self._ready = True
        return self

    def stop(self):
        """SIGTERM (the caller may signal several servers before waiting)."""
        if self.proc.poll() is None:
            self.proc.terminate()

    def wait_stopped(self):
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def saved_model_save_model(base: Path) -> Path:
    """test_tf_saved_model_save's model: unknown-rank x, y = v1 * v2 * x."""
    import tensorflow as tf

    root = tf.train.Checkpoint()
    root.v1, root.v2 = tf.Variable(3.0), tf.Variable(2.0)
    root.f = tf.function(lambda x: {"y": root.v1 * root.v2 * x})
    tf.saved_model.save(root, str(base / "00000123"), root.f.get_concrete_function(tf.TensorSpec(None, tf.float32)))
    return base


def multiple_signatures_model(base: Path) -> Path:
    """test_tf_saved_model_save_multiple_signatures's model: y = 1 (default), 2 (custom)."""
    import tensorflow as tf

    root = tf.train.Checkpoint()
    root.f = tf.function(lambda x: {"y": 1.0}, input_signature=[tf.TensorSpec(None, tf.float32)])
    root.g = tf.function(lambda x: {"y": 2.0}, input_signature=[tf.TensorSpec(None, tf.float32)])
    tf.saved_model.save(
        root, str(base / "00000123"), signatures={"serving_default": root.f, "custom_signature_key": root.g}
    )
    return base


def echo_model(base: Path) -> Path:
    """A model whose signatures hand their inputs back, to see the REST JSON
    encoding of every dtype json_tensor_test.cc covers (row and columnar,
    b64 for `_bytes` aliases, float formatting, non-finite values, batch errors)."""
    import tensorflow as tf

    spec = {
        "int_tensor": tf.TensorSpec([None, 3, 2], tf.int32),
        "str_tensor": tf.TensorSpec([None, 2], tf.string),
        "float_tensor": tf.TensorSpec([None, 1], tf.float32),
        "double_scalar_tensor": tf.TensorSpec([None], tf.float64),
        "str_tensor_bytes": tf.TensorSpec([None, 2], tf.string),
    }
    root = tf.Module()
    echo = tf.function(lambda **tensors: {k: tf.identity(v) for k, v in tensors.items()})
    floats = tf.function(lambda x: {"y": tf.identity(x)}, input_signature=[tf.TensorSpec([None, 3], tf.float32)])
    uneven = tf.function(
        lambda x: {"a": x, "b": tf.constant([["p", "q", "r"]])}, input_signature=[tf.TensorSpec([None, 3], tf.int32)]
    )
    complex_out = tf.function(lambda x: {"c": tf.complex(x, x)}, input_signature=[tf.TensorSpec([None], tf.float32)])
    tf.saved_model.save(
        root,
        str(base / "00000001"),
        signatures={
            "serving_default": echo.get_concrete_function(**spec),
            "floats": floats,
            "uneven": uneven,
            "complex": complex_out,
        },
    )
    return base


def with_warmup(base: Path, version: str, requests) -> Path:
    """Write `requests` (PredictRequests) as the version's warmup PredictionLogs."""
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    path = base / version / "assets.extra" / "tf_serving_warmup_requests"
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for request in requests:
            log = prediction_log_pb2.PredictionLog()
            log.predict_log.request.CopyFrom(request)
            writer.write(log.SerializeToString())
    return base


def predict_request(model, signature, inputs):
    """A PredictRequest of float tensors (name -> a scalar or a list of values)."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    for name, values in inputs.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(values, tf.float32))
    return request
