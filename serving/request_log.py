"""Request logging: TF Serving's ModelConfig.logging_config, working.

A model whose config has

    logging_config {
      log_collector_config { type: "file" filename_prefix: "/var/log/tfs/requests" }
      sampling_config { sampling_rate: 0.01 }
    }

gets a sample of its successful Predict, Classify, Regress and MultiInference
calls, over gRPC and REST alike, written with their responses as
PredictionLog records (predict_log, classify_log, regress_log,
multi_inference_log; log_metadata holds the answering model spec, the
sampling config and the server's --saved_model_tags) into TFRecord files:

    PREFIX-<UTC start time>-<pid>-<logger>-<part>.tfrecord

A file is closed and the next part begun once it holds ROTATE_BYTES
(TFKIT_REQUEST_LOG_ROTATE_BYTES overrides it). The records are the format
`tfkit check --inputs` replays and TF Serving's warmup file uses.

The one collector `type` is "file" (TF Serving's open-source build has none
and fails any logging_config with "No request-logger-creator provided");
another type fails the config as TF Serving's LogCollector::Create does
(NOT_FOUND). `per_task_sampling_configs` are matched as TF Serving matches
them for a server without a data-center or task index: the first entry with
neither replaces the rate. `custom_logging_config` is ignored.

Logging stays off the request path: a call that is sampled only puts its
request and response on a bounded queue, and one writer thread per logger
builds and writes the records. When the queue is full the record is dropped.
Records that cannot be written (unwritable prefix, full disk) are dropped
too: the file is cut back to its last flushed record, so it stays readable,
and writing resumes after RETRY_S. Neither ever fails a request: both are
counted (`:tensorflow:serving:request_log_count` by status, as TF Serving;
`:tfkit:serving:request_log_dropped_count` by reason) and reported once in
the log until logging works again.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import logging
import os
import random
import threading
import time
from collections.abc import Callable

import grpc
from tensorflow_serving.apis import model_pb2, prediction_log_pb2

from serving import metrics
from serving.errors import ServingError, invalid_argument

log = logging.getLogger("serving")

FILE_COLLECTOR = "file"
ROTATE_BYTES_ENV = "TFKIT_REQUEST_LOG_ROTATE_BYTES"
ROTATE_BYTES = 64 * 2**20
#: records (with their responses) waiting for the writer, per logger
QUEUE_RECORDS = 1000
#: how often the writer wakes to write what was queued (records are readable this soon)
WRITE_INTERVAL_S = 0.05
#: after a failed write, records are dropped for this long before the next attempt
RETRY_S = 1.0
#: how long closing waits for a logger's queued records to be written
CLOSE_TIMEOUT_S = 10.0
_TFRECORD_FRAMING = 16  # length (8), masked CRC of the length (4), masked CRC of the data (4)

_CODE_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}
_logger_ids = itertools.count()


def _status_name(exc: Exception) -> str:
    """A write error's canonical code name (TensorFlow's file errors carry one)."""
    return _CODE_NAMES.get(getattr(exc, "error_code", None), "UNKNOWN")


def _error_text(exc: Exception) -> str:
    return getattr(exc, "message", None) or str(exc)


def _tf_record_writer(path: str):
    """TensorFlow's TFRecord writer (length and masked-CRC32C framing) on a new file."""
    import tensorflow as tf

    tf.io.gfile.makedirs(os.path.dirname(path) or ".")
    return tf.io.TFRecordWriter(path)


def rotate_bytes() -> int:
    """The size at which a log file is closed and the next begun."""
    return int(os.environ.get(ROTATE_BYTES_ENV) or ROTATE_BYTES)


def effective_sampling(sampling_config):
    """The SamplingConfig with the rate that applies to this server (RequestLogger's constructor)."""
    effective = type(sampling_config)()
    effective.CopyFrom(sampling_config)
    for task in sampling_config.per_task_sampling_configs:
        if not task.dc and not task.HasField("task_index"):
            effective.sampling_rate = task.sampling_rate
            break
    return effective


def validate(model_name: str, logging_config) -> None:
    """ServingError when a model's logging_config cannot be served."""
    collector = logging_config.log_collector_config
    if collector.type != FILE_COLLECTOR:
        raise ServingError(
            grpc.StatusCode.NOT_FOUND,
            f"Cannot find LogCollector::Factory for type: {collector.type} "
            f'(model {model_name}; this server has type "{FILE_COLLECTOR}")',
        )
    if not collector.filename_prefix:
        raise invalid_argument(
            f"logging_config of model {model_name}: log_collector_config.filename_prefix "
            "is empty; set the path prefix of the request log files"
        )


class PartlyWritten(Exception):
    """A batch of records failed: the first `durable` reached the file, the rest are lost."""

    def __init__(self, durable: int, cause: Exception):
        super().__init__(_error_text(cause))
        self.durable = durable
        self.cause = cause


class RotatingRecordFile:
    """TFRecord files PREFIX-<start>-<pid>-<logger>-<part>.tfrecord, each up to `max_bytes`.

    `open_writer(path)` returns an object with write(bytes), flush() and
    close(). A failure cuts the current part back to its last flushed record,
    so every file stays readable to its end, and nothing is written for
    `retry_s`: a full disk is not hammered with new files.
    """

    def __init__(
        self,
        prefix: str,
        max_bytes: int,
        open_writer: Callable = _tf_record_writer,
        retry_s: float = RETRY_S,
        clock: Callable[[], float] = time.monotonic,
    ):
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        self._stem = f"{prefix}-{stamp}-{os.getpid()}-{next(_logger_ids)}"
        self._max_bytes = max_bytes
        self._open_writer = open_writer
        self._retry_s = retry_s
        self._clock = clock
        self._parts = itertools.count()
        self._writer = None
        self._size = 0  # bytes of the current part, as written
        self._flushed = 0  # of which flushed
        self._error: Exception | None = None  # the last failure, repeated until retry_at
        self._retry_at = float("-inf")
        self.path: str | None = None

    def write_batch(self, records: list) -> None:
        """Append `records` and flush; PartlyWritten when they did not all reach the file."""
        durable = written = 0
        try:
            if self._error is not None and self._clock() < self._retry_at:
                raise self._error.with_traceback(None)  # not retried yet; no piled-up tracebacks
            for record in records:
                framed = len(record) + _TFRECORD_FRAMING
                if self._writer is not None and self._size and self._size + framed > self._max_bytes:
                    self.close()
                    durable = written
                if self._writer is None:
                    self._open()
                self._writer.write(record)
                self._size += framed
                written += 1
            if self._writer is not None:
                self._writer.flush()
                self._flushed = self._size
        except Exception as exc:
            self._fail(exc)
            raise PartlyWritten(durable, exc) from None
        self._error = None

    def close(self) -> None:
        """Close the current part (errors propagate); the next write begins another."""
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()

    def _open(self) -> None:
        path = f"{self._stem}-{next(self._parts):05d}.tfrecord"
        self._writer = self._open_writer(path)
        self.path, self._size, self._flushed = path, 0, 0

    def _fail(self, exc: Exception) -> None:
        """Close the failed part, cut back to its flushed records (removed if none), wait retry_s."""
        self._error, self._retry_at = exc, self._clock() + self._retry_s
        writer, self._writer = self._writer, None
        if writer is None:
            return
        with contextlib.suppress(Exception):  # the file already failed; its close error adds nothing
            writer.close()
        try:
            if self._flushed:
                os.truncate(self.path, self._flushed)
            else:
                os.remove(self.path)
        except OSError:  # not a local file, or already gone: nothing to tidy
            pass


class RequestLogger:
    """One logging_config: sampling, a bounded queue and the writer thread.

    TF Serving's RequestLogger plus its LogCollector. Models with identical
    configs share one (ServerRequestLogger keys loggers by config).

    The queue is a deque the writer empties every WRITE_INTERVAL_S: appending
    takes no lock and wakes no thread, and the writer takes the interpreter
    lock once per batch rather than once per request. Logging every request
    of a busy server costs the writer ~2.5% of the server's CPU (docs/server.md).
    """

    def __init__(
        self,
        logging_config,
        saved_model_tags,
        *,
        record_file: RotatingRecordFile | None = None,
        queue_records: int = QUEUE_RECORDS,
        write_interval_s: float = WRITE_INTERVAL_S,
    ):
        self.sampling = effective_sampling(logging_config.sampling_config)
        self.rate = self.sampling.sampling_rate
        self.prefix = logging_config.log_collector_config.filename_prefix
        # LogMetadata's fields after the model spec are the same in every record.
        self._metadata_tail = _log_metadata_tail(self.sampling, saved_model_tags)
        self._file = record_file or RotatingRecordFile(self.prefix, rotate_bytes())
        self._queue: collections.deque = collections.deque()
        self._queue_records = queue_records
        self._interval = write_interval_s
        self._closing = threading.Event()
        self._failing = False  # a drop was reported and logging has not worked since
        self._thread = threading.Thread(target=self._write_loop, name="request-log", daemon=True)
        self._thread.start()

    def log(self, model_name: str, kind: str, request, response, to_protos=None) -> None:
        """Sample one answered call and queue it; never raises, never blocks.

        `kind` is the PredictionLog field (predict_log, ...). `request` and
        `response` are protos, or anything `to_protos(request, response)`
        turns into them on the writer thread (REST's numpy arrays).
        """
        if self.rate < 1.0 and random.random() >= self.rate:
            return
        if len(self._queue) >= self._queue_records:  # may overshoot by a call per thread: a bound, not a count
            metrics.record_request_log_drop(model_name, "queue_full")
            self._report_failure(f"its queue of {self._queue_records} records is full (the writer cannot keep up)")
            return
        self._queue.append((model_name, kind, request, response, to_protos, int(time.time())))

    def close(self, timeout: float | None = CLOSE_TIMEOUT_S) -> None:
        """Write what is queued, close the file and end the thread (waits up to `timeout`)."""
        self._closing.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning(
                "Request log %s: still writing %d queued records after %gs", self.prefix, len(self._queue), timeout
            )

    # -- writer thread -----------------------------------------------------------
    def _write_loop(self) -> None:
        while not self._closing.wait(self._interval):
            self._write_queued()
        self._write_queued()
        try:
            self._file.close()
        except Exception as exc:
            self._report_failure(f"closing {self._file.path} failed: {_error_text(exc)}")

    def _write_queued(self) -> None:
        """Write what is queued now as one batch (a steady stream is still flushed every interval)."""
        built = [self._build(self._queue.popleft()) for _ in range(len(self._queue))]
        built = [entry for entry in built if entry is not None]
        if not built:
            return
        try:
            self._file.write_batch([record for _, record in built])
        except PartlyWritten as failure:
            self._count(built[: failure.durable], "OK")
            self._count(built[failure.durable :], _status_name(failure.cause), dropped=True)
            self._report_failure(str(failure))
            return
        self._count(built, "OK")
        if self._failing:
            self._failing = False
            log.info("Request log %s: writing again, to %s", self.prefix, self._file.path)

    def _build(self, item) -> tuple | None:
        """(model name, serialized record) of a queued call; None (counted, logged) if it cannot be built."""
        model_name = item[0]
        try:
            return model_name, self.record(*item[1:])
        except Exception:  # a bug, not the disk: say so loudly, still never fail a request
            log.exception("Request log %s: cannot build the record of a %s call", self.prefix, model_name)
            metrics.record_request_log_drop(model_name, "write_error")
            return None

    @staticmethod
    def _count(built: list, status_code: str, dropped: bool = False) -> None:
        per_model: dict[str, int] = {}
        for model_name, _ in built:
            per_model[model_name] = per_model.get(model_name, 0) + 1
        for model_name, count in per_model.items():
            metrics.record_request_log(model_name, status_code, count)
            if dropped:
                metrics.record_request_log_drop(model_name, "write_error", count)

    def _report_failure(self, reason: str) -> None:
        if not self._failing:
            self._failing = True
            log.error(
                "Request log %s: records dropped, requests still served: %s (counted in "
                ":tfkit:serving:request_log_dropped_count; reported once until logging works again)",
                self.prefix,
                reason,
            )

    def record(self, kind: str, request, response, to_protos, timestamp_secs: int) -> bytes:
        """One serialized PredictionLog.

        Written field by field in protobuf's wire format from the request's and
        response's own serializations: the same bytes as filling a
        PredictionLog and serializing it, without copying both messages into
        it first (a third of the writer's time).
        """
        if to_protos is not None:
            request, response = to_protos(request, response)
        spec = _answering_spec(kind, request, response).SerializeToString()
        metadata = _field(_MODEL_SPEC, spec) + self._metadata_tail + _TIMESTAMP_TAG + _varint(timestamp_secs)
        call = _field(_REQUEST, request.SerializeToString()) + _field(_RESPONSE, response.SerializeToString())
        return _field(_LOG_METADATA, metadata) + _field(_LOG_TYPES[kind], call)


def _varint(value: int) -> bytes:
    """Protobuf's base-128 varint of a non-negative integer."""
    if value < 0x80:  # most lengths: one byte
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _tag(number: int) -> bytes:
    """The key of length-delimited field `number` (wire type 2)."""
    return _varint(number << 3 | 2)


def _field(tag: bytes, payload: bytes) -> bytes:
    return tag + _varint(len(payload)) + payload


# Keys of the PredictionLog, LogMetadata and *Log fields written (apis/prediction_log.proto, apis/logging.proto).
_LOG_METADATA = _tag(1)
_LOG_TYPES = {
    name: _tag(prediction_log_pb2.PredictionLog.DESCRIPTOR.fields_by_name[name].number)
    for name in ("predict_log", "classify_log", "regress_log", "multi_inference_log")
}
_MODEL_SPEC, _SAMPLING_CONFIG, _SAVED_MODEL_TAGS = _tag(1), _tag(2), _tag(3)
_TIMESTAMP_TAG = _varint(4 << 3)  # timestamp_secs: field 4, a varint
_REQUEST, _RESPONSE = _tag(1), _tag(2)


def _log_metadata_tail(sampling, tags) -> bytes:
    """LogMetadata's sampling_config and saved_model_tags, serialized once per logger."""
    tail = _field(_SAMPLING_CONFIG, sampling.SerializeToString())
    return tail + b"".join(_field(_SAVED_MODEL_TAGS, tag.encode()) for tag in tags)


def _answering_spec(kind: str, request, response):
    """The model spec of the answer: name, version and signature that served the call."""
    if kind != "multi_inference_log":
        return response.model_spec
    if response.results:
        return response.results[0].model_spec
    return request.tasks[0].model_spec if request.tasks else model_pb2.ModelSpec()


class ServerRequestLogger:
    """The loggers of every configured model (TF Serving's ServerRequestLogger)."""

    def __init__(self, saved_model_tags=("serve",)):
        self._tags = tuple(saved_model_tags)
        self._by_model: dict[str, RequestLogger] = {}
        self._by_config: dict[bytes, RequestLogger] = {}
        self._lock = threading.Lock()

    def update(self, model_configs) -> None:
        """Apply the logging_config of each ModelConfig (ServingError if one is unusable).

        A logger whose config did not change keeps running (and writing to its
        file); loggers no longer configured write what they hold and close.
        """
        for config in model_configs:
            if config.HasField("logging_config"):
                validate(config.name, config.logging_config)
        with self._lock:
            by_model, by_config = {}, {}
            for config in model_configs:
                if not config.HasField("logging_config"):
                    continue
                key = config.logging_config.SerializeToString(deterministic=True)
                logger = by_config.get(key) or self._by_config.get(key)
                if logger is None:
                    logger = RequestLogger(config.logging_config, self._tags)
                    log.info(
                        "Request log of model %s: sampling rate %g, files %s-*.tfrecord",
                        config.name,
                        logger.rate,
                        logger.prefix,
                    )
                by_config[key] = by_model[config.name] = logger
            retired = [logger for key, logger in self._by_config.items() if key not in by_config]
            self._by_model, self._by_config = by_model, by_config  # one swap: readers never lock
        for logger in retired:  # closing waits for the writer: not on the reload's thread
            threading.Thread(target=logger.close, name="request-log-close", daemon=True).start()

    def log(self, model_name: str, kind: str, request, response, to_protos=None) -> None:
        """Hand an answered call to its model's logger, if the model has one (see RequestLogger.log)."""
        logger = self._by_model.get(model_name)
        if logger is not None:
            logger.log(model_name, kind, request, response, to_protos)

    def close(self) -> None:
        """Write every queued record and close the files (at shutdown)."""
        with self._lock:
            loggers, self._by_model, self._by_config = list(self._by_config.values()), {}, {}
        for logger in loggers:
            logger.close()
