"""Start-up argument errors and --version as tensorflow_model_server's main.cc
and Server::BuildAndStart report them: `Failed to start server. Error: ...`
on stdout and exit status 255 (main returns -1), usage for bad flag values."""

import os
import subprocess
import sys

import pytest
from conftest import HALF_PLUS_TWO, TESTDATA


def run(*args):
    result = subprocess.run([sys.executable, "-m", "serving", *args], capture_output=True,
                            text=True, timeout=60, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    return result.returncode, result.stdout, result.stderr


@pytest.mark.parametrize("args,message", [
    (["--port=8500"], "INVALID_ARGUMENT: Both server_options.model_base_path and "
                      "server_options.model_config_file are empty!"),
    (["--port=0", f"--model_base_path={HALF_PLUS_TWO}"],
     "INVALID_ARGUMENT: At least one of server_options.grpc_port or "
     "server_options.grpc_socket_path must be set."),
    (["--port=8500", f"--model_base_path={HALF_PLUS_TWO}",
      f"--batching_parameters_file={TESTDATA / 'batching_config.txt'}"],
     "INVALID_ARGUMENT: server_options.batching_parameters_file is set without setting "
     "server_options.enable_batching to true."),
    (["--port=8500", f"--model_base_path={HALF_PLUS_TWO}", "--tensorflow_intra_op_parallelism=1",
      "--tensorflow_inter_op_parallelism=1", "--tensorflow_session_parallelism=1"],
     "INVALID_ARGUMENT: Either configure server_options.tensorflow_session_parallelism or "
     "(server_options.tensorflow_intra_op_parallelism, "
     "server_options.tensorflow_inter_op_parallelism) separately. You cannot configure all."),
    (["--port=8500", f"--model_config_file={TESTDATA / 'bad_model_config.txt'}"],
     f"INVALID_ARGUMENT: Invalid protobuf file: '{TESTDATA / 'bad_model_config.txt'}'"),
])
def test_start_failures(args, message):
    code, stdout, _ = run(*args)
    assert code == 255
    assert stdout.strip() == f"Failed to start server. Error: {message}"


def test_bad_flag_value_prints_the_usage():
    code, stdout, stderr = run("--file_system_poll_wait_seconds=soon")
    assert code == 255
    assert "--model_config_file_poll_wait_seconds" in stdout
    assert "file_system_poll_wait_seconds" in stderr


def test_version():
    code, stdout, _ = run("--version")
    assert code == 0
    assert stdout.startswith("TensorFlow ModelServer: ")
    assert "\nTensorFlow Library: " in stdout
