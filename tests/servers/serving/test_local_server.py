"""toolkit.serve.LocalServer: readiness, failure reporting, port retry, and the
real tensorflow_model_server binary when this machine has one."""

import socket

import grpc
import numpy as np
import pytest

from toolkit import serve as local_server
from toolkit.errors import InputError, ServerNotReady
from toolkit.serve import LocalServer, find_server_binary, models_in_args

from serving_helpers import BAD, HALF_PLUS_TWO, Client


def test_models_in_args(tmp_path):
    assert models_in_args(["--model_base_path=/m"]) == ["default"]
    assert models_in_args(["--model_name", "m", "--model_base_path", "/m"]) == ["m"]
    config = tmp_path / "c.config"
    config.write_text('model_config_list { config { name: "a" base_path: "/a" } config { name: "b" base_path: "/b" } }')
    assert models_in_args([f"--model_config_file={config}"]) == ["a", "b"]


def test_port_flags_are_the_launchers():
    with pytest.raises(InputError, match="--port"):
        LocalServer(["--port=8500", "--model_base_path=/m"])


def test_unloadable_model_raises_with_the_servers_own_message():
    server = LocalServer(["--model_name=bad", f"--model_base_path={BAD}", "--max_num_load_retries=0"], timeout=90)
    with pytest.raises(ServerNotReady) as info:
        server.start()
    message = str(info.value)
    assert "exited with code 255" in message
    assert "Could not find SavedModel .pb or .pbtxt" in message
    assert "I0000" not in message  # TensorFlow's start-up chatter is left out


@pytest.mark.parametrize("taken_index", [0, 1], ids=["grpc-port", "rest-port"])
def test_retries_when_a_picked_port_is_taken(monkeypatch, taken_index):
    taken = socket.socket()
    taken.bind(("0.0.0.0", 0))
    taken.listen()
    taken_port = taken.getsockname()[1]
    real_free_port = local_server.free_port
    calls = []

    def picker():
        calls.append(None)
        return taken_port if len(calls) - 1 == taken_index else real_free_port()

    monkeypatch.setattr(local_server, "free_port", picker)
    try:
        with LocalServer(["--model_name=hp", f"--model_base_path={HALF_PLUS_TWO}"], rest=True, timeout=120) as s:
            assert taken_port not in (s.grpc_port, s.rest_port)
            assert len(calls) == 4  # two ports per attempt, two attempts
    finally:
        taken.close()


def test_real_binary_when_installed():
    binary = find_server_binary()
    if binary is None:
        pytest.skip("the real tensorflow_model_server binary is not installed on this machine")
    with (
        LocalServer(["--model_name=hp", f"--model_base_path={HALF_PLUS_TWO}"], binary=binary, timeout=120) as server,
        grpc.insecure_channel(server.grpc_target) as channel,
    ):
        y = Client(channel).predict("hp", {"x": np.array([[2.0]], np.float32)})["y"]
    assert y.tolist() == [[3.0]]
