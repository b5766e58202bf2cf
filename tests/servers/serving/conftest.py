"""Session-scoped `python -m serving` processes, one per configuration.

TF Serving's own test models live in ../shared/testdata/tf_serving (read-only);
tests that change a model folder work on copies under tmp_path_factory.
"""

import grpc
import pytest

from serving_helpers import (
    COUNTER,
    HALF_PLUS_THREE,
    HALF_PLUS_TWO,
    HALF_PLUS_TWO_TF2,
    TFLITE,
    TFLITE_SIGDEF,
    TWO_VERSIONS,
    Client,
    model_entry,
    start,
    write_config,
)


@pytest.fixture(scope="session")
def multi_server(tmp_path_factory):
    """TF Serving's test models under every version policy, with version labels."""
    config = write_config(
        tmp_path_factory.mktemp("multi") / "models.config",
        [
            model_entry("half_plus_two", HALF_PLUS_TWO),
            model_entry("half_plus_two_tf2", HALF_PLUS_TWO_TF2),
            model_entry("half_plus_three", f"file://{HALF_PLUS_THREE}"),  # a URI base path
            model_entry("two_latest", TWO_VERSIONS),
            model_entry(
                "two_all",
                TWO_VERSIONS,
                "    model_version_policy { all {} }\n"
                '    version_labels { key: "stable" value: 123 }\n'
                '    version_labels { key: "canary" value: 124 }\n',
            ),
            model_entry("two_specific", TWO_VERSIONS, "    model_version_policy { specific { versions: 123 } }\n"),
            model_entry("counter", COUNTER),
        ],
    )
    server = start(
        [
            f"--model_config_file={config}",
            "--allow_version_labels_for_unavailable_models",
            "--enable_grpc_healthcheck_service",
        ]
    )
    yield server
    server.stop()


@pytest.fixture(scope="session")
def tflite_server(tmp_path_factory):
    """--prefer_tflite_model with the TFLite test models (and a SavedModel-only one),
    answering with tensor_content."""
    config = write_config(
        tmp_path_factory.mktemp("tflite") / "models.config",
        [
            model_entry("tflite", TFLITE),
            model_entry("tflite_sigdef", TFLITE_SIGDEF),
            model_entry("saved_model", HALF_PLUS_TWO),
        ],
    )
    server = start(
        [f"--model_config_file={config}", "--prefer_tflite_model=true", "--enable_serialization_as_tensor_content"]
    )
    yield server
    server.stop()


@pytest.fixture(scope="session")
def channel_of():
    """channel_of(server) -> a cached grpc channel to it."""
    channels = {}

    def get(server):
        if server.grpc_target not in channels:
            channels[server.grpc_target] = grpc.insecure_channel(server.grpc_target)
        return channels[server.grpc_target]

    yield get
    for channel in channels.values():
        channel.close()


@pytest.fixture(scope="session")
def client_of(channel_of):
    """client_of(server) -> Client over a cached channel."""
    return lambda server: Client(channel_of(server))
