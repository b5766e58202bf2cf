"""serving.request_log: PredictionLog records, rotation, sampling, config updates, and the
failures (full disk, unwritable prefix, a writer that cannot keep up) that never fail a request."""

import logging
import math
import re
import threading

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import classification_pb2, inference_pb2, predict_pb2, prediction_log_pb2, regression_pb2
from tensorflow_serving.config import logging_config_pb2, model_server_config_pb2

from serving import metrics
from serving.errors import ServingError
from serving.request_log import PartlyWritten, RequestLogger, RotatingRecordFile, ServerRequestLogger
from serving.tensors import from_numpy

from support import wait_for

MODEL = "m"


def logging_config(prefix, rate=1.0, collector="file"):
    config = logging_config_pb2.LoggingConfig()
    config.log_collector_config.type = collector
    config.log_collector_config.filename_prefix = str(prefix)
    config.sampling_config.sampling_rate = rate
    return config


def predict_call(value: float, version: int = 7):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    from_numpy(np.array([[value, 1.0]], np.float32), out=request.inputs["x"])
    response = predict_pb2.PredictResponse()
    response.model_spec.name, response.model_spec.signature_name = MODEL, "serving_default"
    response.model_spec.version.value = version
    from_numpy(np.array([value * 2], np.float32), out=response.outputs["y"])
    return request, response


def read_logs(pattern) -> list:
    """Every PredictionLog in the files matching `pattern`, in file-name order."""
    return [
        prediction_log_pb2.PredictionLog.FromString(record.numpy())
        for path in sorted(tf.io.gfile.glob(str(pattern)))
        for record in tf.data.TFRecordDataset(path)
    ]


def metric(name: str, **labels) -> float:
    """One sample of serving.metrics' Prometheus page (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    match = re.search(rf"^{re.escape(name)}\{{{re.escape(wanted)}\}} (\S+)$", metrics.render(), re.MULTILINE)
    return float(match[1]) if match else 0.0


@pytest.fixture(autouse=True)
def fresh_metrics():
    metrics.reset()


class DiskError(Exception):
    """What TensorFlow's file errors look like: a canonical code and a message."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.error_code, self.message = code.value[0], message


class Disk:
    """A fake file system for RotatingRecordFile: files by path, and failures on demand."""

    def __init__(self):
        self.files: dict[str, list] = {}
        self.full = False  # writes fail with RESOURCE_EXHAUSTED
        self.unwritable = False  # opens fail with NOT_FOUND
        self.opens = 0
        self.entered = threading.Event()  # a write began
        self.release = threading.Event()  # writes may finish
        self.release.set()

    def open(self, path):
        self.opens += 1
        if self.unwritable:
            raise DiskError(grpc.StatusCode.NOT_FOUND, f"{path}; No such file or directory")
        self.files[path] = []
        disk = self

        class Writer:
            def write(self, record):
                disk.entered.set()
                disk.release.wait()
                if disk.full:
                    raise DiskError(grpc.StatusCode.RESOURCE_EXHAUSTED, f"{path}; No space left on device")
                disk.files[path].append(record)

            def flush(self):
                pass

            def close(self):
                pass

        return Writer()

    def records(self) -> list:
        return [record for path in sorted(self.files) for record in self.files[path]]


def disk_logger(disk: Disk, tmp_path, rate=1.0, **kwargs) -> RequestLogger:
    record_file = RotatingRecordFile(str(tmp_path / "log"), 1 << 20, disk.open, retry_s=0)
    return RequestLogger(logging_config(tmp_path / "log", rate), ["serve"], record_file=record_file, **kwargs)


# -- records ------------------------------------------------------------------------------------
def test_every_kind_of_call_becomes_its_prediction_log_with_metadata(tmp_path):
    logger = RequestLogger(logging_config(tmp_path / "logs" / "requests"), ["serve", "gpu"])
    predict = predict_call(3.0)
    classify = (classification_pb2.ClassificationRequest(), classification_pb2.ClassificationResponse())
    classify[0].model_spec.name = MODEL
    classify[1].model_spec.name, classify[1].model_spec.version.value = MODEL, 7
    classify[1].result.classifications.add().classes.add(label="a", score=0.25)
    regress = (regression_pb2.RegressionRequest(), regression_pb2.RegressionResponse())
    regress[1].model_spec.name, regress[1].model_spec.version.value = MODEL, 7
    regress[1].result.regressions.add(value=1.5)
    multi = (inference_pb2.MultiInferenceRequest(), inference_pb2.MultiInferenceResponse())
    multi[0].tasks.add().model_spec.name = MODEL
    answer = multi[1].results.add()
    answer.model_spec.name, answer.model_spec.signature_name, answer.model_spec.version.value = MODEL, "r", 7
    calls = [
        ("predict_log", *predict),
        ("classify_log", *classify),
        ("regress_log", *regress),
        ("multi_inference_log", *multi),
    ]
    for kind, request, response in calls:
        logger.log(MODEL, kind, request, response)
    # REST hands numpy arrays and a converter that runs on the writer thread.
    logger.log(MODEL, "predict_log", 5.0, 7, lambda value, version: predict_call(value, version))
    logger.close()

    logs = read_logs(tmp_path / "logs" / "requests-*.tfrecord")
    calls.append(("predict_log", *predict_call(5.0)))
    assert [entry.WhichOneof("log_type") for entry in logs] == [kind for kind, _, _ in calls]
    for entry, (kind, request, response) in zip(logs, calls):
        assert getattr(entry, kind).request == request
        assert getattr(entry, kind).response == response
        spec = response.results[0].model_spec if kind == "multi_inference_log" else response.model_spec
        assert entry.log_metadata.model_spec == spec
        assert entry.log_metadata.sampling_config.sampling_rate == 1.0
        assert list(entry.log_metadata.saved_model_tags) == ["serve", "gpu"]
        assert entry.log_metadata.timestamp_secs > 0
    assert metric(":tensorflow:serving:request_log_count", model_name=MODEL, status_code="OK") == len(calls)


def test_a_record_is_the_bytes_of_the_filled_prediction_log(tmp_path):
    """The writer assembles records from serialized parts; a parser sees the ordinary message."""
    logger = disk_logger(Disk(), tmp_path)
    request, response = predict_call(2.5)
    expected = prediction_log_pb2.PredictionLog()
    expected.log_metadata.model_spec.CopyFrom(response.model_spec)
    expected.log_metadata.sampling_config.sampling_rate = 1.0
    expected.log_metadata.saved_model_tags.append("serve")
    expected.log_metadata.timestamp_secs = 1_800_000_000
    expected.predict_log.request.CopyFrom(request)
    expected.predict_log.response.CopyFrom(response)
    assert logger.record("predict_log", request, response, None, 1_800_000_000) == expected.SerializeToString()
    logger.close()


def test_files_rotate_by_size_and_keep_every_record_in_order(tmp_path):
    record_file = RotatingRecordFile(str(tmp_path / "log"), 600)
    logger = RequestLogger(logging_config(tmp_path / "log"), ["serve"], record_file=record_file, write_interval_s=0.001)
    sent = [predict_call(float(i)) for i in range(20)]
    for request, response in sent:
        logger.log(MODEL, "predict_log", request, response)
    logger.close()
    paths = sorted(tf.io.gfile.glob(str(tmp_path / "log-*.tfrecord")))
    assert len(paths) > 2
    assert all(tf.io.gfile.stat(path).length <= 600 for path in paths)
    assert [entry.predict_log.request for entry in read_logs(tmp_path / "log-*.tfrecord")] == [r for r, _ in sent]


# -- sampling -----------------------------------------------------------------------------------
def test_sampling_keeps_about_the_rate(tmp_path):
    disk = Disk()
    logger = disk_logger(disk, tmp_path, rate=0.25)
    request, response = predict_call(1.0)
    calls = 4000
    for _ in range(calls):
        logger.log(MODEL, "predict_log", request, response)
    logger.close()
    kept, expected = len(disk.records()), calls * 0.25
    assert abs(kept - expected) < 5 * math.sqrt(calls * 0.25 * 0.75)


def test_rate_zero_writes_nothing(tmp_path):
    disk = Disk()
    logger = disk_logger(disk, tmp_path, rate=0.0)
    for _ in range(100):
        logger.log(MODEL, "predict_log", *predict_call(1.0))
    logger.close()  # the barrier: close() writes everything queued
    assert (disk.opens, disk.records()) == (0, [])


def test_a_per_task_sampling_config_without_dc_or_task_replaces_the_rate(tmp_path):
    config = logging_config(tmp_path / "log", rate=1.0)
    config.sampling_config.per_task_sampling_configs.add(dc="elsewhere", sampling_rate=0.5)
    config.sampling_config.per_task_sampling_configs.add(sampling_rate=0.0)
    logger = RequestLogger(config, ["serve"])
    logger.close()
    assert logger.rate == 0.0


# -- failures -----------------------------------------------------------------------------------
def test_a_full_disk_drops_and_counts_records_reports_once_and_recovers(tmp_path, caplog):
    disk = Disk()
    disk.full = True
    logger = disk_logger(disk, tmp_path, write_interval_s=0.001)
    caplog.set_level(logging.INFO, logger="serving")
    lost = 5
    for i in range(lost):
        logger.log(MODEL, "predict_log", *predict_call(float(i)))
    wait_for(
        lambda: metric(":tfkit:serving:request_log_dropped_count", model_name=MODEL, reason="write_error") == lost,
        10,
        "the failed writes",
    )
    disk.full = False
    kept = [predict_call(float(i)) for i in range(3)]
    for call in kept:
        logger.log(MODEL, "predict_log", *call)
    logger.close()

    assert [prediction_log_pb2.PredictionLog.FromString(r).predict_log.request for r in disk.records()] == [
        request for request, _ in kept
    ]
    assert metric(":tensorflow:serving:request_log_count", model_name=MODEL, status_code="RESOURCE_EXHAUSTED") == lost
    assert metric(":tensorflow:serving:request_log_count", model_name=MODEL, status_code="OK") == 3
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "No space left on device" in errors[0] and "requests still served" in errors[0]
    assert any("writing again" in r.getMessage() for r in caplog.records if r.levelno == logging.INFO)


def test_a_failed_part_is_cut_back_to_its_flushed_records(tmp_path):
    """A real file: after a failure mid-batch the part ends at its last whole record."""

    class FailingAfter:
        """TensorFlow's writer on a real file, failing on its Nth write."""

        def __init__(self, path, fail_at):
            self.inner, self.count, self.fail_at = tf.io.TFRecordWriter(path), 0, fail_at

        def write(self, record):
            self.count += 1
            if self.count == self.fail_at:
                self.inner.write(record[:10])  # a cut record reaches the file, as on ENOSPC
                self.inner.flush()
                raise DiskError(grpc.StatusCode.RESOURCE_EXHAUSTED, "No space left on device")
            self.inner.write(record)

        def flush(self):
            self.inner.flush()

        def close(self):
            self.inner.close()

    record_file = RotatingRecordFile(str(tmp_path / "log"), 1 << 20, lambda path: FailingAfter(path, 4))
    record_file.write_batch([b"one", b"two"])
    with pytest.raises(PartlyWritten) as failure:
        record_file.write_batch([b"three", b"four"])
    assert failure.value.durable == 0
    assert [r.numpy() for r in tf.data.TFRecordDataset(record_file.path)] == [b"one", b"two"]


def test_an_unwritable_prefix_is_retried_only_after_the_pause(tmp_path):
    disk = Disk()
    disk.unwritable = True
    now = [0.0]
    record_file = RotatingRecordFile(str(tmp_path / "log"), 1 << 20, disk.open, retry_s=1.0, clock=lambda: now[0])
    for _ in range(3):
        with pytest.raises(PartlyWritten) as failure:
            record_file.write_batch([b"record"])
        assert "No such file or directory" in str(failure.value)
    assert disk.opens == 1
    disk.unwritable = False
    now[0] = 1.5
    record_file.write_batch([b"record"])
    assert (disk.opens, disk.records()) == (2, [b"record"])


def test_an_unwritable_prefix_on_a_real_file_system_counts_its_code(tmp_path, caplog):
    (tmp_path / "a-file").write_text("")
    logger = RequestLogger(logging_config(tmp_path / "a-file" / "log"), ["serve"], write_interval_s=0.001)
    caplog.set_level(logging.ERROR, logger="serving")
    for i in range(3):
        logger.log(MODEL, "predict_log", *predict_call(float(i)))
    logger.close()
    failed = sum(
        metric(":tensorflow:serving:request_log_count", model_name=MODEL, status_code=code)
        for code in ("FAILED_PRECONDITION", "NOT_FOUND", "PERMISSION_DENIED")
    )
    assert failed == 3
    assert len([r for r in caplog.records if "Request log" in r.getMessage()]) == 1


def test_a_full_queue_drops_without_blocking_the_caller(tmp_path):
    disk = Disk()
    disk.release.clear()  # the writer blocks in its first write
    logger = disk_logger(disk, tmp_path, queue_records=3, write_interval_s=0.001)
    logger.log(MODEL, "predict_log", *predict_call(0.0))
    assert disk.entered.wait(10), "the writer never began writing"
    for i in range(10):
        logger.log(MODEL, "predict_log", *predict_call(float(i)))  # returns at once: the test would hang otherwise
    assert metric(":tfkit:serving:request_log_dropped_count", model_name=MODEL, reason="queue_full") == 7
    disk.release.set()
    logger.close()
    assert len(disk.records()) == 1 + 3


# -- configuration ------------------------------------------------------------------------------
def model_configs(*entries):
    """ModelConfigs from (name, LoggingConfig or None)."""
    configs = []
    for name, log_config in entries:
        config = model_server_config_pb2.ModelConfig(name=name, base_path="/models/" + name)
        if log_config is not None:
            config.logging_config.CopyFrom(log_config)
        configs.append(config)
    return configs


@pytest.mark.parametrize(
    "collector,prefix,code,message",
    [
        ("kafka", "/logs/x", grpc.StatusCode.NOT_FOUND, "Cannot find LogCollector::Factory for type: kafka"),
        ("", "/logs/x", grpc.StatusCode.NOT_FOUND, "Cannot find LogCollector::Factory for type: "),
        ("file", "", grpc.StatusCode.INVALID_ARGUMENT, "filename_prefix is empty"),
    ],
)
def test_an_unusable_logging_config_fails_the_update(collector, prefix, code, message):
    loggers = ServerRequestLogger()
    with pytest.raises(ServingError) as error:
        loggers.update(
            model_configs(("ok", logging_config("/logs/ok")), ("bad", logging_config(prefix, collector=collector)))
        )
    assert error.value.code == code and message in error.value.message and "bad" in error.value.message
    loggers.close()


def test_updates_keep_unchanged_loggers_share_equal_configs_and_retire_the_rest(tmp_path):
    loggers = ServerRequestLogger()
    same, other = logging_config(tmp_path / "same"), logging_config(tmp_path / "other")
    loggers.update(model_configs(("a", same), ("b", same), ("c", other), ("d", None)))
    first = dict(loggers._by_model)
    assert first["a"] is first["b"] and first["a"] is not first["c"] and "d" not in first
    loggers.update(model_configs(("a", same), ("b", None), ("c", logging_config(tmp_path / "moved"))))
    second = loggers._by_model
    assert second["a"] is first["a"] and set(second) == {"a", "c"} and second["c"] is not first["c"]
    first["c"]._thread.join(10)  # retired: it ends on its own
    assert not first["c"]._thread.is_alive()
    loggers.log("c", "predict_log", *predict_call(1.0))
    loggers.log("b", "predict_log", *predict_call(1.0))  # no longer logged
    loggers.close()
    assert len(read_logs(tmp_path / "moved-*.tfrecord")) == 1
    assert read_logs(tmp_path / "same-*.tfrecord") == []
