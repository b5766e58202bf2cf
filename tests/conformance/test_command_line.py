"""Start-up of `python -m serving` run exactly like tensorflow_model_server:
--version and --help, bad flags (usage, exit 255), the flag combinations and
configs main.cc and Server::BuildAndStart refuse (`Failed to start server.
Error: ...` on stdout, exit 255 since main returns -1), and models that
cannot load."""

import os
import subprocess
import sys

import pytest

from support import free_port
from tf_serving_testdata import BAD, HALF_PLUS_TWO, TESTDATA

BAD_PROTO = TESTDATA / "bad_model_config.txt"


def run_server(*args, timeout=120):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run(
        [sys.executable, "-m", "serving", *args], capture_output=True, text=True, timeout=timeout, env=env
    )


def test_version():
    result = run_server("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("TensorFlow ModelServer: ")
    assert "\nTensorFlow Library: " in result.stdout


def test_help_prints_usage_and_exits_like_the_binary():
    result = run_server("--help")
    assert result.returncode == 255
    assert "--model_config_file_poll_wait_seconds" in result.stdout


@pytest.mark.parametrize(
    "args,message",
    [
        (["--nope=1"], "unknown argument: --nope=1"),
        (["--port=abc"], "Couldn't interpret value abc for flag port."),
        (["--enable_batching=maybe"], "Couldn't interpret value maybe for flag enable_batching."),
        (["--model_base_path=/m", "stray"], "unknown argument: stray"),
        (["--enable_batching=True"], "Couldn't interpret value True for flag enable_batching."),
        (
            ["--file_system_poll_wait_seconds=soon"],
            "Couldn't interpret value soon for flag file_system_poll_wait_seconds.",
        ),
    ],
)
def test_bad_command_line_exits_255_with_usage(args, message):
    result = run_server(*args)
    assert result.returncode == 255
    assert message in result.stderr
    assert "--model_config_file_poll_wait_seconds" in result.stdout  # the usage text, as the binary prints


@pytest.mark.parametrize(
    "args,message",
    [
        (
            ["--model_name=m"],
            "INVALID_ARGUMENT: Both server_options.model_base_path and server_options.model_config_file are empty!",
        ),
        (
            ["--port=0", f"--model_base_path={HALF_PLUS_TWO}"],
            "INVALID_ARGUMENT: At least one of server_options.grpc_port or "
            "server_options.grpc_socket_path must be set.",
        ),
        (
            [f"--model_base_path={HALF_PLUS_TWO}", f"--batching_parameters_file={TESTDATA / 'batching_config.txt'}"],
            "INVALID_ARGUMENT: server_options.batching_parameters_file is set without setting "
            "server_options.enable_batching to true.",
        ),
        (
            [
                f"--model_base_path={HALF_PLUS_TWO}",
                "--tensorflow_intra_op_parallelism=1",
                "--tensorflow_inter_op_parallelism=1",
                "--tensorflow_session_parallelism=1",
            ],
            "INVALID_ARGUMENT: Either configure server_options.tensorflow_session_parallelism or "
            "(server_options.tensorflow_intra_op_parallelism, "
            "server_options.tensorflow_inter_op_parallelism) separately. You cannot configure all.",
        ),
        ([f"--model_config_file={BAD_PROTO}"], f"INVALID_ARGUMENT: Invalid protobuf file: '{BAD_PROTO}'"),
        (
            [f"--model_base_path={HALF_PLUS_TWO}", "--enable_batching", f"--batching_parameters_file={BAD_PROTO}"],
            f"INVALID_ARGUMENT: Invalid protobuf file: '{BAD_PROTO}'",
        ),
        (
            [
                f"--model_base_path={HALF_PLUS_TWO}",
                f"--rest_api_port={free_port()}",
                f"--monitoring_config_file={BAD_PROTO}",
            ],
            f"INVALID_ARGUMENT: Invalid protobuf file: '{BAD_PROTO}'",
        ),
    ],
    ids=[
        "no model",
        "no port",
        "batching file without batching",
        "all three parallelisms",
        "bad model config",
        "bad batching file",
        "bad monitoring config",
    ],
)
def test_bad_options_fail_to_start(args, message):
    port = [] if args[0].startswith("--port") else [f"--port={free_port()}"]
    result = run_server(*port, *args)
    assert result.returncode == 255
    assert result.stdout.strip() == f"Failed to start server. Error: {message}"


def test_bad_config_file_logs_the_parse_error():
    result = run_server(f"--port={free_port()}", f"--model_config_file={BAD_PROTO}")
    assert result.returncode == 255
    assert "Error parsing text-format tensorflow.serving.ModelServerConfig: 1:1: " in result.stderr


def test_labels_at_start_need_the_unavailable_models_flag(tmp_path):
    # TF Serving assigns labels before loading, so at start-up no version is
    # AVAILABLE yet and a labelled config is refused without the flag.
    config = tmp_path / "labels.config"
    config.write_text(
        f'model_config_list {{ config {{ name: "m" base_path: "{HALF_PLUS_TWO}" '
        'model_platform: "tensorflow" version_labels { key: "stable" value: 123 } } }'
    )
    result = run_server(f"--port={free_port()}", f"--model_config_file={config}")
    assert result.returncode == 255
    assert result.stdout.strip() == (
        "Failed to start server. Error: FAILED_PRECONDITION: Request to assign label to version "
        "123 of model m, which is not currently available for inference"
    )


def test_unloadable_only_model_fails_start_after_retries():
    # "--flag value" and "--flag=value" spellings mixed
    result = run_server(
        "--port",
        str(free_port()),
        "--model_name=bad",
        "--model_base_path",
        str(BAD),
        "--max_num_load_retries",
        "2",
        "--load_retry_interval_micros=10000",
    )
    assert result.returncode == 255
    assert result.stdout.startswith(
        "Failed to start server. Error: UNKNOWN: 1 model(s) did not become available: "
        "{{{name: bad version: 123} due to error: NOT_FOUND: Could not find SavedModel .pb or "
        f".pbtxt at supplied export directory path: {BAD}/00000123."
    )
    # a first attempt and two retries: two retry lines, then the final error
    assert result.stderr.count("Loading servable version {name: bad version: 123} failed") == 2
    assert "Encountered an error for servable version {name: bad version: 123}" in result.stderr


def test_saved_model_tags_must_match_a_meta_graph():
    result = run_server(
        f"--port={free_port()}",
        f"--model_base_path={HALF_PLUS_TWO}",
        "--saved_model_tags=gpu",
        "--max_num_load_retries=0",
    )
    assert result.returncode == 255
    assert "NOT_FOUND: Could not find meta graph def matching supplied tags: { gpu }." in result.stdout
