"""serving.flags: tensorflow_model_server's flags, defaults and spelling rules."""

import pytest

from serving import flags


def test_every_binary_flag_with_its_default():
    options = flags.parse([])
    expected = {
        "port": 8500,
        "rest_api_port": 0,
        "rest_api_timeout_in_ms": 30000,
        "model_name": "default",
        "model_base_path": "",
        "model_config_file": "",
        "model_config_file_poll_wait_seconds": 0,
        "file_system_poll_wait_seconds": 1,
        "max_num_load_retries": 5,
        "load_retry_interval_micros": 60_000_000,
        "enable_model_warmup": True,
        "saved_model_tags": "serve",
        "prefer_tflite_model": False,
        "enable_batching": False,
        "enable_grpc_healthcheck_service": False,
        "enable_profiler": True,
        "enable_serialization_as_tensor_content": False,
        "flush_filesystem_caches": True,
        "num_tflite_interpreters_per_pool": 1,
        "grpc_socket_path": "",
    }
    assert {k: getattr(options, k) for k in expected} == expected
    assert len(flags.FLAGS) == 48  # every tensorflow::Flag in main.cc


def test_both_spellings_and_bool_forms():
    options = flags.parse(
        [
            "--port",
            "9000",
            "--model_name=m",
            "--enable_batching",
            "--prefer_tflite_model=true",
            "--enable_model_warmup=0",
            "--load_retry_interval_micros=-1",
            "--per_process_gpu_memory_fraction=0.5",
        ]
    )
    assert (
        options.port,
        options.model_name,
        options.enable_batching,
        options.prefer_tflite_model,
        options.enable_model_warmup,
        options.load_retry_interval_micros,
        options.per_process_gpu_memory_fraction,
    ) == (9000, "m", True, True, False, -1, 0.5)


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--nope"], "unknown argument: --nope"),
        (["--port=1_000"], "Couldn't interpret value 1_000 for flag port."),
        (["--port=99999999999"], "Couldn't interpret value 99999999999 for flag port."),
        (["--enable_batching=yes"], "Couldn't interpret value yes for flag enable_batching."),
        (["--enable_batching", "true"], "unknown argument: true"),
        (["-port=1"], "unknown argument: -port=1"),
    ],
)
def test_rejections(argv, message):
    with pytest.raises(flags.FlagError) as info:
        flags.parse(argv)
    assert str(info.value) == message


def test_grpc_channel_arguments():
    assert flags.grpc_channel_arguments("grpc.max_connection_age_ms=2000,grpc.lb_policy_name=grpclb") == [
        ("grpc.max_connection_age_ms", 2000),
        ("grpc.lb_policy_name", "grpclb"),
    ]
    with pytest.raises(flags.FlagError):
        flags.grpc_channel_arguments("novalue")


@pytest.mark.parametrize("value,expected", [(None, 5.0), ("0", 0.0), ("2.5", 2.5)])
def test_drain_grace_comes_from_the_environment(monkeypatch, value, expected):
    from serving import DRAIN_GRACE_ENV, server

    if value is None:
        monkeypatch.delenv(DRAIN_GRACE_ENV, raising=False)
    else:
        monkeypatch.setenv(DRAIN_GRACE_ENV, value)
    assert server.drain_grace_seconds() == expected


@pytest.mark.parametrize("value", ["-1", "soon", "nan", "inf"])
def test_a_bad_drain_grace_is_a_start_error(monkeypatch, value):
    from serving import DRAIN_GRACE_ENV, server

    monkeypatch.setenv(DRAIN_GRACE_ENV, value)
    with pytest.raises(server.StartError) as err:
        server.drain_grace_seconds()
    assert str(err.value) == f"INVALID_ARGUMENT: {DRAIN_GRACE_ENV} must be a number of seconds >= 0, got '{value}'"
