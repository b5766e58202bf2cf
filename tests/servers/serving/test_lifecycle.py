"""Versions appearing and disappearing under a running server: a hot swap under
concurrent requests, a bad version that never disturbs serving, and config
reloads through HandleReloadConfigRequest. The tests run in file order on one
server started from TF Serving's good_model_config.txt."""

import os
import shutil
import threading

import grpc
import numpy as np
import pytest

from serving_helpers import (
    BAD,
    HALF_PLUS_THREE,
    HALF_PLUS_TWO,
    TESTDATA,
    Client,
    copy_model,
    model_entry,
    rpc_error,
    start,
)
from support import MONITORING_FLAG, poll_count, wait_for, wait_for_polls

X = np.array([[1.0], [3.0]], dtype=np.float32)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("lifecycle")
    return {"root": root, "hp": copy_model(HALF_PLUS_TWO, root / "hp")}


@pytest.fixture(scope="module")
def server(models):
    config = (TESTDATA / "good_model_config.txt").read_text()
    config = config.replace("${TEST_HALF_PLUS_TWO_DIR}", str(models["hp"]))
    config = config.replace("${TEST_HALF_PLUS_THREE_DIR}", str(HALF_PLUS_THREE))
    path = models["root"] / "good_model_config.txt"
    path.write_text(config)
    # REST and Prometheus: tests wait on the server's poll counter.
    server = start(
        [
            f"--model_config_file={path}",
            "--file_system_poll_wait_seconds=1",
            "--max_num_load_retries=1",
            "--load_retry_interval_micros=100000",
            MONITORING_FLAG,
        ],
        rest=True,
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(server, client_of):
    return client_of(server)


def add_version(source_version_dir, base, version: int) -> None:
    """Make a version folder appear atomically, as an exporter should."""
    staging = base.parent / f".staging-{base.name}-{version}"
    shutil.copytree(source_version_dir, staging)
    os.rename(staging, base / str(version))


def failed_status(client, version):
    """The version's ModelVersionStatus once it has ended with an error, else None."""
    statuses = {v.version: v for v in client.status("half_plus_two").model_version_status}
    status = statuses.get(version)
    return status if status is not None and status.state == 50 and status.status.error_code else None


def test_good_model_config_serves_both_models(client):
    np.testing.assert_allclose(client.predict("half_plus_two", {"x": X})["y"], 0.5 * X + 2)
    np.testing.assert_allclose(client.predict("half_plus_three", {"x": X})["y"], 0.5 * X + 3)


def test_hot_swap_under_concurrent_requests_fails_nothing(server, client, channel_of, models):
    failures, versions, stop = [], [], threading.Event()

    def hammer():
        own = Client(grpc.insecure_channel(server.grpc_target))
        while not stop.is_set():
            try:
                response = own.predict_response("half_plus_two", {"x": X})
                y = response.outputs["y"].float_val
                versions.append((response.model_spec.version.value, tuple(y)))
            except grpc.RpcError as exc:
                failures.append(f"{exc.code().name}: {exc.details()}")

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda: len(versions) > 20, what="traffic before the swap")
        # version 124 answers 0.5x + 3, so every answer tells which version gave it
        add_version(HALF_PLUS_THREE / "00000123", models["hp"], 124)
        wait_for(
            lambda: client.states("half_plus_two") == {123: "END", 124: "AVAILABLE"},
            what="123 unloaded after 124 became available",
        )
        seen = len(versions)
        wait_for(lambda: len(versions) > seen + 20, what="traffic after the swap")
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert failures == []
    assert any(
        line.endswith(
            "Done unloading servable version {name: half_plus_two version: 123} (the version policy now serves 124)"
        )
        for line in server.log_lines()
    )
    answered = {version for version, _ in versions}
    assert answered == {123, 124}
    for version, y in versions:
        offset = 2.0 if version == 123 else 3.0
        assert y == tuple((0.5 * X + offset).ravel()), (version, y)


def test_bad_version_is_reported_and_never_disturbs_serving(client, models):
    add_version(BAD / "00000123", models["hp"], 200)
    status = wait_for(lambda: failed_status(client, 200), what="version 200 to fail")
    assert status.status.error_code == grpc.StatusCode.NOT_FOUND.value[0]
    assert "Could not find SavedModel .pb or .pbtxt" in status.status.error_message
    assert client.states("half_plus_two")[124] == "AVAILABLE"
    response = client.predict_response("half_plus_two", {"x": X})
    assert response.model_spec.version.value == 124
    error = rpc_error(client.predict, "half_plus_two", {"x": X}, version=200)
    assert (error.code(), error.details()) == (
        grpc.StatusCode.NOT_FOUND,
        "Servable not found for request: Specific(half_plus_two, 200)",
    )
    shutil.rmtree(models["hp"] / "200")


def corrupt_warmup(folder):
    (folder / "assets.extra").mkdir()
    (folder / "assets.extra" / "tf_serving_warmup_requests").write_bytes(b"not a TFRecord file")


def corrupt_saved_model(folder):
    (folder / "saved_model.pb").write_bytes(b"\x0a\xff\xff not a SavedModel")


@pytest.mark.parametrize(
    "version,spoil,code,message",
    [
        (300, corrupt_warmup, grpc.StatusCode.DATA_LOSS, "Please verify your warmup data is in TFRecord format."),
        (301, corrupt_saved_model, grpc.StatusCode.DATA_LOSS, "saved_model.pb as binary proto"),
    ],
)
def test_a_broken_version_fails_its_load(client, models, version, spoil, code, message):
    staging = models["root"] / "broken-staging"
    shutil.copytree(HALF_PLUS_TWO / "00000123", staging)
    spoil(staging)
    os.rename(staging, models["hp"] / str(version))
    status = wait_for(lambda: failed_status(client, version), what=f"version {version} to fail")
    assert status.status.error_code == code.value[0]
    assert status.status.error_message.endswith(message)
    assert client.predict_response("half_plus_two", {"x": X}).model_spec.version.value == 124
    shutil.rmtree(models["hp"] / str(version))


def test_only_integer_version_folders_count(server, client, models):
    seen = poll_count(server.rest_url, "file_system")
    shutil.copytree(HALF_PLUS_TWO / "00000123", models["hp"] / "999x")
    wait_for_polls(server.rest_url, "file_system", seen)
    assert 999 not in client.states("half_plus_two")
    assert client.predict_response("half_plus_two", {"x": X}).model_spec.version.value == 124


def config_text(*entries) -> str:
    return "model_config_list {\n" + "".join(entries) + "}\n"


def test_reload_config_adds_and_removes_models(server, client, models):
    client.reload(config_text(model_entry("half_plus_two", models["hp"]), model_entry("three", HALF_PLUS_THREE)))
    np.testing.assert_allclose(client.predict("three", {"x": X})["y"], 0.5 * X + 3)
    assert client.states("half_plus_three") == {123: "END"}
    assert any(
        line.endswith("{name: half_plus_three version: 123} (the model left the config)") for line in server.log_lines()
    )
    error = rpc_error(client.predict, "half_plus_three", {"x": X})
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert client.predict_response("half_plus_two", {"x": X}).model_spec.version.value == 124


def test_reload_config_version_policy_and_labels(client, models):
    entry = model_entry("half_plus_two", models["hp"], "    model_version_policy { all {} }\n")
    client.reload(config_text(entry))
    wait_for(lambda: client.states("half_plus_two").get(123) == "AVAILABLE", what="123 reloaded")
    labelled = model_entry(
        "half_plus_two",
        models["hp"],
        '    model_version_policy { all {} }\n    version_labels { key: "old" value: 123 }\n',
    )
    client.reload(config_text(labelled))
    assert client.predict_response("half_plus_two", {"x": X}, label="old").model_spec.version.value == 123


def test_reload_adding_an_unloadable_model(client, models):
    error = rpc_error(client.reload, config_text(model_entry("half_plus_two", models["hp"]), model_entry("bad", BAD)))
    assert error.code() == grpc.StatusCode.UNKNOWN
    assert error.details().startswith(
        "1 model(s) did not become available: {{{name: bad version: 123} due to error: NOT_FOUND: "
    )
    error = rpc_error(client.predict, "bad", {"x": X})
    assert (error.code(), error.details()) == (grpc.StatusCode.NOT_FOUND, "Servable not found for request: Latest(bad)")
    (status,) = client.status("bad").model_version_status
    assert (status.state, status.status.error_code) == (50, grpc.StatusCode.NOT_FOUND.value[0])
    assert client.predict_response("half_plus_two", {"x": X}).model_spec.name == "half_plus_two"


@pytest.mark.parametrize(
    "entries,code,message",
    [
        (
            [model_entry("a", "relative/path")],
            grpc.StatusCode.INVALID_ARGUMENT,
            "Expected model a to have an absolute path or URI; got base_path()=relative/path",
        ),
        (
            [model_entry("a", "/x"), model_entry("a", "/y")],
            grpc.StatusCode.INVALID_ARGUMENT,
            "Illegal to list model a multiple times in config list",
        ),
        (
            [model_entry("half_plus_two", "/x", '    version_labels { key: "l" value: 7 }\n')],
            grpc.StatusCode.FAILED_PRECONDITION,
            "Request to assign label to version 7 of model half_plus_two, which is not currently "
            "available for inference",
        ),
    ],
)
def test_reload_config_rejects_bad_configs(client, entries, code, message):
    error = rpc_error(client.reload, config_text(*entries))
    assert (error.code(), error.details()) == (code, message)
    # the models already serving keep serving
    assert client.predict_response("half_plus_two", {"x": X}).model_spec.name == "half_plus_two"
