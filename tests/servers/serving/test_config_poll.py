"""--model_config_file_poll_wait_seconds: the config file is re-read while serving;
a broken rewrite is logged and ignored; SIGTERM then stops the server with exit 0."""

import numpy as np

from serving_helpers import HALF_PLUS_THREE, HALF_PLUS_TWO, Client, model_entry, start, write_config
from support import wait_for

X = np.array([[2.0]], dtype=np.float32)


def test_config_file_is_polled_and_sigterm_exits_zero(tmp_path, client_of):
    config = write_config(tmp_path / "models.config", [model_entry("a", HALF_PLUS_TWO)])
    server = start([f"--model_config_file={config}", "--model_config_file_poll_wait_seconds=1"])
    try:
        client: Client = client_of(server)
        assert client.predict("a", {"x": X})["y"].item() == 3.0
        write_config(config, [model_entry("a", HALF_PLUS_TWO), model_entry("b", HALF_PLUS_THREE)])
        wait_for(lambda: "Finished reloading config" in "".join(server.log_lines()[-3:]) and _available(client, "b"))
        assert client.predict("b", {"x": X})["y"].item() == 4.0
        config.write_text("model_config_list { config { name: ")
        wait_for(lambda: any("Failed to read ModelServerConfig file" in line for line in server.log_lines()))
        assert client.predict("b", {"x": X})["y"].item() == 4.0
    finally:
        code = server.stop()
    assert code == 0
    assert "Server stopped" in server.log_lines()[-1]


def _available(client, model) -> bool:
    try:
        return "AVAILABLE" in client.states(model).values()
    except Exception:  # NOT_FOUND until the new config is applied
        return False
