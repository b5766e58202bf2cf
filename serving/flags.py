"""tensorflow_model_server's command line: every flag of model_servers/main.cc.

Same names, types and defaults. Values are given as `--flag=value` or
`--flag value`; bool flags as `--flag`, `--flag=true|false|1|0`. A bad value or
an unknown argument prints the error and the usage text, and the process
exits with the binary's code (255).
"""

import dataclasses
import os
import re
import sys

_CPUS = os.cpu_count() or 1

# (name, type, default, help) in main.cc's order.
FLAGS = [
    ("port", "int32", 8500, "TCP port to listen on for gRPC/HTTP API. Disabled if port set to zero."),
    (
        "grpc_socket_path",
        "string",
        "",
        "If non-empty, listen to a UNIX socket for gRPC API on the given path. Can be either relative or absolute path.",
    ),
    (
        "rest_api_port",
        "int32",
        0,
        "Port to listen on for HTTP/REST API. If set to zero HTTP/REST API will not be exported. This port must be different than the one specified in --port.",
    ),
    (
        "rest_api_num_threads",
        "int32",
        4 * _CPUS,
        "Number of threads for HTTP/REST API processing. If not set, will be auto set based on number of CPUs.",
    ),
    ("rest_api_timeout_in_ms", "int32", 30000, "Timeout for HTTP/REST API calls."),
    ("rest_api_enable_cors_support", "bool", False, "Enable CORS headers in response"),
    ("enable_batching", "bool", False, "enable batching"),
    (
        "allow_version_labels_for_unavailable_models",
        "bool",
        False,
        "If true, allows assigning unused version labels to models that are not available yet.",
    ),
    (
        "batching_parameters_file",
        "string",
        "",
        "If non-empty, read an ascii BatchingParameters protobuf from the supplied file name and use the contained values instead of the defaults.",
    ),
    (
        "enable_per_model_batching_parameters",
        "bool",
        False,
        "Enables model specific batching params like batch sizes, timeouts, batching feature flags to be read from `batching_params.pbtxt` file present in SavedModel dir of the model.",
    ),
    (
        "model_config_file",
        "string",
        "",
        "If non-empty, read an ascii ModelServerConfig protobuf from the supplied file name, and serve the models in that file. (If used, --model_name, --model_base_path are ignored.)",
    ),
    (
        "model_config_file_poll_wait_seconds",
        "int32",
        0,
        "Interval in seconds between each poll of the filesystem for model_config_file. If unset or set to zero, poll will be done exactly once and not periodically.",
    ),
    ("model_name", "string", "default", "name of model (ignored if --model_config_file flag is set)"),
    (
        "model_base_path",
        "string",
        "",
        "path to export (ignored if --model_config_file flag is set, otherwise required)",
    ),
    ("num_load_threads", "int32", 0, "The number of threads in the thread-pool used to load servables. Default: 0"),
    ("num_unload_threads", "int32", 0, "The number of threads in the thread-pool used to unload servables. Default: 0"),
    (
        "max_num_load_retries",
        "int32",
        5,
        "maximum number of times it retries loading a model after the first failure, before giving up. If set to 0, a load is attempted only once. Default: 5",
    ),
    (
        "load_retry_interval_micros",
        "int64",
        60 * 1000 * 1000,
        "The interval, in microseconds, between each servable load retry. If set negative, it doesn't wait. Default: 1 minute",
    ),
    (
        "file_system_poll_wait_seconds",
        "int32",
        1,
        "Interval in seconds between each poll of the filesystem for new model version. If set to zero poll will be exactly done once and not periodically.",
    ),
    (
        "flush_filesystem_caches",
        "bool",
        True,
        "If true (the default), filesystem caches will be flushed after the initial load of all servables.",
    ),
    (
        "tensorflow_session_parallelism",
        "int64",
        0,
        "Number of threads to use for running a Tensorflow session. Auto-configured by default.",
    ),
    (
        "tensorflow_session_config_file",
        "string",
        "",
        "If non-empty, read an ascii TensorFlow Session ConfigProto protobuf from the supplied file name.",
    ),
    (
        "tensorflow_intra_op_parallelism",
        "int64",
        0,
        "Number of threads to use to parallelize the execution of an individual op. Auto-configured by default.",
    ),
    (
        "tensorflow_inter_op_parallelism",
        "int64",
        0,
        "Controls the number of operators that can be executed simultaneously. Auto-configured by default.",
    ),
    ("use_alts_credentials", "bool", False, "Use Google ALTS credentials"),
    (
        "ssl_config_file",
        "string",
        "",
        "If non-empty, read an ascii SSLConfig protobuf from the supplied file name and set up a secure gRPC channel",
    ),
    (
        "platform_config_file",
        "string",
        "",
        "If non-empty, read an ascii PlatformConfigMap protobuf from the supplied file name, and use that platform config instead of the Tensorflow platform.",
    ),
    (
        "per_process_gpu_memory_fraction",
        "float",
        0.0,
        "Fraction that each process occupies of the GPU memory space the value is between 0.0 and 1.0 (with 0.0 as the default).",
    ),
    (
        "saved_model_tags",
        "string",
        "serve",
        "Comma-separated set of tags corresponding to the meta graph def to load from SavedModel.",
    ),
    (
        "grpc_channel_arguments",
        "string",
        "",
        "A comma separated list of arguments to be passed to the grpc server. (e.g. grpc.max_connection_age_ms=2000)",
    ),
    ("grpc_max_threads", "int32", 4 * _CPUS, "Max grpc server threads to handle grpc messages."),
    (
        "enable_model_warmup",
        "bool",
        True,
        "Enables model warmup, which triggers lazy initializations (such as TF optimizations) at load time, to reduce first request latency.",
    ),
    (
        "num_request_iterations_for_warmup",
        "int32",
        0,
        "Number of times a request is iterated during warmup replay. This value is used only if > 0.",
    ),
    ("version", "bool", False, "Display version"),
    (
        "monitoring_config_file",
        "string",
        "",
        "If non-empty, read an ascii MonitoringConfig protobuf from the supplied file name",
    ),
    (
        "remove_unused_fields_from_bundle_metagraph",
        "bool",
        True,
        "Removes unused fields from MetaGraphDef proto message to save memory.",
    ),
    (
        "prefer_tflite_model",
        "bool",
        False,
        "EXPERIMENTAL; CAN BE REMOVED ANYTIME! Prefer TensorFlow Lite model from `model.tflite` file in SavedModel directory, instead of the TensorFlow model from `saved_model.pb` file. If no TensorFlow Lite model found, fallback to TensorFlow model.",
    ),
    (
        "num_tflite_pools",
        "int32",
        _CPUS,
        "EXPERIMENTAL; CAN BE REMOVED ANYTIME! Number of TFLite interpreters in an interpreter pool of TfLiteSession.",
    ),
    (
        "num_tflite_interpreters_per_pool",
        "int32",
        1,
        "EXPERIMENTAL; CAN BE REMOVED ANYTIME! Number of TFLite interpreters in an interpreter pool of TfLiteSession. If not set, will be 1.",
    ),
    (
        "enable_signature_method_name_check",
        "bool",
        False,
        "Enable method_name check for SignatureDef. Disable this if serving native TF2 regression/classification models.",
    ),
    (
        "xla_cpu_compilation_enabled",
        "bool",
        False,
        "EXPERIMENTAL; CAN BE REMOVED ANYTIME! Enable XLA:CPU JIT (default is disabled).",
    ),
    (
        "xla_gpu_compilation_enabled",
        "bool",
        False,
        "EXPERIMENTAL; CAN BE REMOVED ANYTIME! Enable both XLA:CPU JIT and XLA:GPU JIT (default is disabled).",
    ),
    ("enable_profiler", "bool", True, "Enable profiler service."),
    (
        "thread_pool_factory_config_file",
        "string",
        "",
        "If non-empty, read an ascii ThreadPoolConfig protobuf from the supplied file name.",
    ),
    ("mixed_precision", "string", "", "specify mixed_precision mode"),
    ("skip_initialize_tpu", "bool", False, "Whether to skip auto initializing TPU."),
    ("enable_grpc_healthcheck_service", "bool", False, "Enable the standard gRPC healthcheck service."),
    (
        "enable_serialization_as_tensor_content",
        "bool",
        False,
        "Enable serialization of predict response as tensor content.",
    ),
]

_BY_NAME = {name: (kind, default) for name, kind, default, _ in FLAGS}
_INT_RANGES = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}

Options = dataclasses.make_dataclass(
    "Options", [(name, object, dataclasses.field(default=default)) for name, _, default, _ in FLAGS]
)
Options.__doc__ = "Every flag of tensorflow_model_server as an attribute, with its default."


class FlagError(Exception):
    """A command line the binary would reject; the message is what it prints."""


def usage(prog: str = "tensorflow_model_server") -> str:
    """The usage text, in TensorFlow's Flags::Usage layout."""
    lines = [f"usage: {prog}", "Flags:"]
    for name, kind, default, help_text in FLAGS:
        shown = (
            ("true" if default else "false") if kind == "bool" else (f'"{default}"' if kind == "string" else default)
        )
        lines.append(f"\t--{name}={shown}\t{kind}\t{help_text}")
    return "\n".join(lines) + "\n"


def _convert(name: str, kind: str, text: str):
    if kind == "bool":
        if text in ("true", "1"):
            return True
        if text in ("false", "0"):
            return False
    elif kind in _INT_RANGES:
        value = int(text) if re.fullmatch(r"[+-]?[0-9]+", text) else None
        low, high = _INT_RANGES[kind]
        if value is not None and low <= value <= high:
            return value
    elif kind == "float":
        try:
            return float(text)
        except ValueError:
            pass
    else:
        return text
    raise FlagError(f"Couldn't interpret value {text} for flag {name}.")


def parse(argv: list) -> Options:
    """Parse the arguments after the program name; FlagError on a bad command line."""
    options = Options()
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--":
            if i < len(argv):
                raise FlagError(f"unknown argument: {argv[i]}")
            break
        if not arg.startswith("--") or arg == "--":
            raise FlagError(f"unknown argument: {arg}")
        name, has_value, value = arg[2:].partition("=")
        if name not in _BY_NAME:
            raise FlagError(f"unknown argument: {arg}")
        kind, _ = _BY_NAME[name]
        if not has_value:
            if kind == "bool":
                value = "true"
            elif i < len(argv):
                value = argv[i]
                i += 1
            else:
                raise FlagError(f"Couldn't interpret value  for flag {name}.")
        setattr(options, name, _convert(name, kind, value))
    return options


def parse_or_exit(argv: list, prog: str = "tensorflow_model_server") -> Options:
    """parse(); on error (or --help) print the usage text and exit 255 like the binary."""
    if argv[:1] == ["--help"]:
        sys.stdout.write(usage(prog))
        sys.exit(255)
    try:
        return parse(argv)
    except FlagError as exc:
        sys.stderr.write(f"{exc}\n")
        sys.stdout.write(usage(prog))
        sys.exit(255)


def grpc_channel_arguments(text: str) -> list:
    """`k=v,k2=v2` -> gRPC server options; integers pass as ints (as the binary does)."""
    result = []
    for item in filter(None, text.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise FlagError(f"Invalid --grpc_channel_arguments entry {item!r}: expected key=value")
        try:
            result.append((key, int(value)))
        except ValueError:
            result.append((key, value))
    return result
