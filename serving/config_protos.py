"""TF Serving config messages that the tensorflow-serving-api wheel lacks.

MonitoringConfig (config/monitoring_config.proto), SSLConfig
(config/ssl_config.proto) and BatchingParameters
(servables/tensorflow/session_bundle_config.proto) with their real package,
names, field numbers and types, so the same text-proto files that
tensorflow_model_server reads parse here unchanged.
"""

import contextlib

from google.protobuf import (
    descriptor_pb2,
    descriptor_pool,
    message_factory,
    text_format,
    wrappers_pb2,  # noqa: F401  (registers the wrapper types in the pool)
)

_F = descriptor_pb2.FieldDescriptorProto
_PACKAGE = "tensorflow.serving"

# message name -> [(field name, number, type, type name or None, repeated)]
_MESSAGES = {
    "PrometheusConfig": [
        ("enable", 1, _F.TYPE_BOOL, None, False),
        ("path", 2, _F.TYPE_STRING, None, False),
    ],
    "MonitoringConfig": [
        ("prometheus_config", 1, _F.TYPE_MESSAGE, ".tensorflow.serving.PrometheusConfig", False),
    ],
    "SSLConfig": [
        ("server_key", 1, _F.TYPE_STRING, None, False),
        ("server_cert", 2, _F.TYPE_STRING, None, False),
        ("custom_ca", 3, _F.TYPE_STRING, None, False),
        ("client_verify", 4, _F.TYPE_BOOL, None, False),
    ],
    "BatchingParameters": [
        ("max_batch_size", 1, _F.TYPE_MESSAGE, ".google.protobuf.Int64Value", False),
        ("batch_timeout_micros", 2, _F.TYPE_MESSAGE, ".google.protobuf.Int64Value", False),
        ("max_enqueued_batches", 3, _F.TYPE_MESSAGE, ".google.protobuf.Int64Value", False),
        ("num_batch_threads", 4, _F.TYPE_MESSAGE, ".google.protobuf.Int64Value", False),
        ("thread_pool_name", 5, _F.TYPE_MESSAGE, ".google.protobuf.StringValue", False),
        ("allowed_batch_sizes", 6, _F.TYPE_INT64, None, True),
        ("pad_variable_length_inputs", 7, _F.TYPE_BOOL, None, False),
        ("enable_large_batch_splitting", 8, _F.TYPE_MESSAGE, ".google.protobuf.BoolValue", False),
        ("max_execution_batch_size", 9, _F.TYPE_MESSAGE, ".google.protobuf.Int64Value", False),
    ],
}


def _build() -> dict:
    pool = descriptor_pool.Default()
    file_proto = descriptor_pb2.FileDescriptorProto(
        name="tfkit/serving/config_protos.proto",
        package=_PACKAGE,
        syntax="proto3",
        dependency=["google/protobuf/wrappers.proto"],
    )
    for message_name, fields in _MESSAGES.items():
        message = file_proto.message_type.add(name=message_name)
        for name, number, field_type, type_name, repeated in fields:
            field = message.field.add(
                name=name,
                number=number,
                type=field_type,
                label=_F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL,
            )
            if type_name:
                field.type_name = type_name
    with contextlib.suppress(TypeError):  # already added by an earlier import (e.g. after a module reload)
        pool.Add(file_proto)
    return {
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PACKAGE}.{name}")) for name in _MESSAGES
    }


_CLASSES = _build()
PrometheusConfig = _CLASSES["PrometheusConfig"]
MonitoringConfig = _CLASSES["MonitoringConfig"]
SSLConfig = _CLASSES["SSLConfig"]
BatchingParameters = _CLASSES["BatchingParameters"]


class ConfigFileError(ValueError):
    """A config file that cannot be read or parsed; the message names the file."""


def parse_text_file(path: str, message_class, flag: str):
    """Read a text-format proto file given with `flag`; ConfigFileError if unusable."""
    message = message_class()
    try:
        with open(path, encoding="utf-8") as f:
            text_format.Parse(f.read(), message)
    except OSError as err:
        raise ConfigFileError(f"cannot read {flag} {path}: {err.strerror}") from None
    except text_format.ParseError as err:
        raise ConfigFileError(f"invalid {message_class.DESCRIPTOR.name} in {flag} {path}: {err}") from None
    return message
