"""The conformance suite's session servers (conformance_helpers.ModelServer):
every server of the session is spawned at once (they load in parallel) and
each test waits only for the one it uses.
"""

from pathlib import Path

import grpc
import pytest
from google.protobuf import text_format
from tensorflow_serving.apis import model_management_pb2, model_service_pb2_grpc

from conformance_helpers import (
    COUNTER,
    HALF_PLUS_THREE,
    HALF_PLUS_TWO,
    HALF_PLUS_TWO_TF2,
    HANDLER_MODELS,
    LABEL,
    RPC_TIMEOUT,
    TESTDATA,
    TFLITE,
    TFLITE_SIGDEF,
    ModelServer,
    config_text,
    copy_model,
    echo_model,
    multiple_signatures_model,
    predict_request,
    saved_model_save_model,
    with_warmup,
)


@pytest.fixture(scope="session")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("conformance")


@pytest.fixture(scope="session")
def fleet(workdir):
    """name -> ModelServer, all spawned together; use `server(name)` to wait for one."""
    good_config = workdir / "good_model_config.conf"
    good_config.write_text(
        (TESTDATA / "good_model_config.txt")
        .read_text()
        .replace("${TEST_HALF_PLUS_TWO_DIR}", str(HALF_PLUS_TWO))
        .replace("${TEST_HALF_PLUS_THREE_DIR}", str(HALF_PLUS_THREE))
    )
    reload_config = workdir / "reload_model_config.txt"
    reload_config.write_text(config_text([("half_plus_two", HALF_PLUS_TWO)]))
    frozen_config = workdir / "frozen_model_config.txt"
    frozen_config.write_text(config_text([("half_plus_two", HALF_PLUS_TWO)]))
    # The REST handler suite's model: two versions, only 123 aspired (a label
    # is added later by a config reload, as that suite does).
    handler_config = workdir / "handler_model_config.txt"
    handler_config.write_text(config_text(HANDLER_MODELS))
    generated = config_text(
        [
            ("saved_model_save", saved_model_save_model(workdir / "tf_saved_model_save")),
            ("multiple_signatures", multiple_signatures_model(workdir / "multiple_signatures")),
            ("echo", echo_model(workdir / "echo")),
            # saved_model_warmup.md: the warmup record runs once before the version serves.
            (
                "warm_counter",
                with_warmup(
                    copy_model(COUNTER, workdir / "warm_counter"),
                    "00000123",
                    [predict_request("warm_counter", "incr_counter_by", {"delta": 5.0})],
                ),
            ),
        ]
    )
    (workdir / "generated.config").write_text(generated)
    # The TF2 model's classify/regress signatures carry the predict method name; the TF1 model's their own.
    method_check_config = workdir / "method_check.config"
    method_check_config.write_text(config_text([("default", HALF_PLUS_TWO_TF2), ("tf1", HALF_PLUS_TWO)]))

    specs = {
        "default": dict(
            model_name="default",
            model_path=HALF_PLUS_TWO,
            monitoring_config_file=TESTDATA / "monitoring_config.txt",
            stale_socket=True,
        ),
        "tf2": dict(
            model_name="default", model_path=HALF_PLUS_TWO_TF2, extra_args=["--rest_api_enable_cors_support=true"]
        ),
        "method_check": dict(
            model_config_file=method_check_config, extra_args=["--enable_signature_method_name_check=true"]
        ),
        "good_config": dict(model_config_file=good_config),
        "reload": dict(model_config_file=reload_config, model_config_file_poll_period=1),
        # Prometheus on: its poll counters show the server never re-reads the config.
        "no_reload": dict(
            model_config_file=frozen_config,
            model_config_file_poll_period=0,
            monitoring_config_file=TESTDATA / "monitoring_config.txt",
        ),
        # testGoodGrpcChannelArgs' arguments, on the batching server (one process less).
        "batching": dict(
            model_name="default",
            model_path=HALF_PLUS_TWO,
            batching_parameters_file=TESTDATA / "batching_config.txt",
            grpc_channel_arguments="grpc.max_connection_age_ms=2000,grpc.lb_policy_name=grpclb",
        ),
        "tflite": dict(model_name="default", model_path=TFLITE, model_type="tflite"),
        "tflite_sigdef": dict(model_name="default", model_path=TFLITE_SIGDEF, model_type="tflite"),
        "generated": dict(model_config_file=workdir / "generated.config"),
        "handler": dict(model_config_file=handler_config),
        # Loads that fail are not retried for a minute each (the default).
        "admin": dict(model_config_file=handler_config, extra_args=["--max_num_load_retries=0"]),
    }
    servers = {name: ModelServer(workdir, **spec) for name, spec in specs.items()}
    yield servers
    for server in servers.values():
        server.stop()
    for server in servers.values():
        server.wait_stopped()


@pytest.fixture(scope="session")
def server(fleet):
    """server(name) -> the ready ModelServer of that name."""
    return lambda name: fleet[name].wait_ready()


@pytest.fixture(scope="session")
def channel():
    """channel(address) -> a cached insecure gRPC channel."""
    channels = {}

    def get(address):
        if address not in channels:
            channels[address] = grpc.insecure_channel(address)
        return channels[address]

    yield get
    for value in channels.values():
        value.close()


@pytest.fixture(scope="session")
def handler(server, channel):
    """The handler suite's server, after the reload that adds the version label."""
    ready = server("handler")
    request = model_management_pb2.ReloadConfigRequest()
    name, base_path, policy = HANDLER_MODELS[0]
    labelled = (name, base_path, policy + f'    version_labels {{ key: "{LABEL}" value: 123 }}\n')
    text_format.Parse(config_text([labelled, *HANDLER_MODELS[1:]]), request.config)
    stub = model_service_pb2_grpc.ModelServiceStub(channel(ready.grpc_address))
    response = stub.HandleReloadConfigRequest(request, RPC_TIMEOUT)
    assert response.status.error_code == 0, response.status.error_message
    return ready
