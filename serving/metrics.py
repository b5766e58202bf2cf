"""Server metrics, rendered as Prometheus text like TF Serving's exporter.

Metric names, label names and bucket layouts are TF Serving's own
(servables/tensorflow/util.cc, batching/batching_session.cc,
batching/batching_util.h, TensorFlow's saved_model loader), so dashboards
written for `tensorflow_model_server` work unchanged. The few metrics TF
Serving has no equivalent for live under `/tfkit/serving/`.

Recording is a dict lookup and an add under one lock: cheap enough for every
request. Rendering follows util/prometheus_exporter.cc: metrics sorted by
their TensorFlow name ("/a/b" becomes ":a:b"), a `# TYPE` line each, counters
as `NAME{labels} N`, histograms as cumulative `_bucket{...,le="L"}` lines,
the last one `le="+Inf"`, then `_sum` and `_count`.
"""

from __future__ import annotations

import bisect
import re
import threading

__all__ = [
    "record_request",
    "record_load",
    "record_batch",
    "record_poll",
    "record_request_log",
    "record_request_log_drop",
    "watch_grpc_calls_in_flight",
    "render",
    "reset",
]

_lock = threading.Lock()


def _exponential(scale: float, growth: float, count: int) -> list[float]:
    # TensorFlow's monitoring::Buckets::Exponential: `count` finite limits,
    # then an implicit last bucket up to DBL_MAX (rendered as +Inf).
    return [scale * growth**i for i in range(count)]


class _Metric:
    """One TensorFlow monitoring metric: a fixed name, label names, cells."""

    kind = "counter"

    def __init__(self, name: str, label_names: tuple[str, ...]):
        self.name = name
        self.label_names = label_names
        self.cells: dict[tuple[str, ...], object] = {}


class _Counter(_Metric):
    def add(self, labels: tuple[str, ...], n: int = 1) -> None:
        self.cells[labels] = self.cells.get(labels, 0) + n

    def lines(self, prom_name: str, out: list[str]) -> None:
        out.append(f"# TYPE {prom_name} counter")
        for labels, value in sorted(self.cells.items()):
            out.append(f"{prom_name}{{{self._labels(labels)}}} {value}")

    def _labels(self, values) -> str:
        return ",".join(f'{_label_name(n)}="{_label_value(v)}"' for n, v in zip(self.label_names, values))


class _Histogram(_Counter):
    kind = "histogram"

    def __init__(self, name, label_names, limits: list[float]):
        super().__init__(name, label_names)
        self.limits = limits

    def add(self, labels: tuple[str, ...], value: float) -> None:
        cell = self.cells.get(labels)
        if cell is None:
            # Per-bucket counts (len(limits) + 1 for the +Inf bucket) and sum.
            cell = self.cells[labels] = [[0] * (len(self.limits) + 1), 0.0]
        # TensorFlow's histogram puts a value equal to a limit in the next
        # bucket up (upper_bound), which bisect_right reproduces.
        cell[0][bisect.bisect_right(self.limits, value)] += 1
        cell[1] += value

    def lines(self, prom_name: str, out: list[str]) -> None:
        out.append(f"# TYPE {prom_name} histogram")
        for labels, (buckets, total) in sorted(self.cells.items()):
            label_text = self._labels(labels)
            prefix = f"{prom_name}_bucket{{{label_text}{',' if label_text else ''}"
            cumulative = 0
            for i, count in enumerate(buckets):
                cumulative += count
                limit = _number(self.limits[i]) if i < len(self.limits) else "+Inf"
                out.append(f'{prefix}le="{limit}"}} {cumulative}')
            out.append(f"{prom_name}_sum{{{label_text}}} {_number(total)}")
            out.append(f"{prom_name}_count{{{label_text}}} {cumulative}")


class _Gauge(_Metric):
    """A value read from its source when the page is rendered (no labels)."""

    kind = "gauge"

    def __init__(self, name: str):
        super().__init__(name, ())
        self.source = None  # a callable returning the current value, once a server sets it

    def lines(self, prom_name: str, out: list[str]) -> None:
        if self.source is not None:
            out.append(f"# TYPE {prom_name} gauge")
            out.append(f"{prom_name}{{}} {self.source()}")


def _number(x: float) -> str:
    # absl::StrCat(double) prints six significant digits, like C's %g.
    return "%g" % x


def _label_value(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"')


def _label_name(name: str) -> str:
    name = re.sub(r"[^a-zA-Z0-9]", "_", name)
    return "_" + name if name[:1].isdigit() else name


def _prometheus_name(name: str) -> str:
    name = re.sub(r"[^a-zA-Z0-9_]", ":", name)
    return "_" + name if name[:1].isdigit() else name


_registry: dict[str, _Metric] = {}


def _register(metric: _Metric) -> _Metric:
    _registry[metric.name] = metric
    return metric


# TF Serving: servables/tensorflow/util.cc.
_request_count = _register(_Counter("/tensorflow/serving/request_count", ("model_name", "status")))
_request_latency = _register(
    _Histogram(
        "/tensorflow/serving/request_latency",
        ("model_name", "API", "entrypoint"),
        _exponential(10, 1.8, 33),
    )
)
# TensorFlow's SavedModel loader (cc/saved_model/loader.cc).
_load_attempt_count = _register(_Counter("/tensorflow/cc/saved_model/load_attempt_count", ("model_path", "status")))
# TF Serving: batching/batching_session.cc and batching/batching_util.h.
_wrapped_run_count = _register(_Counter("/tensorflow/serving/batching_session/wrapped_run_count", ()))
_queuing_latency = _register(
    _Histogram(
        "/tensorflow/serving/batching_session/queuing_latency",
        ("thread_pool_name",),
        _exponential(100, 1.2, 52),
    )
)
_input_batch_size = _register(
    _Histogram(
        "/tensorflow/serving/batching_session/input_batch_size",
        (),
        _exponential(1, 2, 14),
    )
)
_processed_batch_size = _register(
    _Histogram(
        "/tensorflow/serving/batching_session/processed_batch_size",
        (),
        _exponential(1, 2, 14),
    )
)
_padding_size = _register(
    _Histogram(
        "/tensorflow/serving/batching_session/padding_size",
        ("execution_batch_size",),
        _exponential(1, 2, 14),
    )
)
# No TF Serving equivalent: per-signature breakdown, and load outcomes by
# model name and version rather than by path.
_signature_request_count = _register(
    _Counter(
        "/tfkit/serving/signature_request_count",
        ("model_name", "signature_name", "API", "entrypoint", "status"),
    )
)
_model_load_count = _register(_Counter("/tfkit/serving/model_load_count", ("model_name", "version", "status")))
# Completed polling passes, by source: "file_system" (the version folders of
# every base path) or "config_file" (--model_config_file). A test waits until
# two more passes than it saw before a change have run, so that at least one
# began after the change, before asserting what the server made of it.
_poll_count = _register(_Counter("/tfkit/serving/poll_count", ("source",)))
# TF Serving: core/request_logger.cc. Sampled requests handed to the log file,
# by outcome: "OK", or the write error's code (RESOURCE_EXHAUSTED for a full
# disk, NOT_FOUND or PERMISSION_DENIED for an unusable prefix, ...).
_request_log_count = _register(_Counter("/tensorflow/serving/request_log_count", ("model_name", "status_code")))
# Sampled requests whose record was lost, by reason: "queue_full" (the writer
# could not keep up) or "write_error". The requests themselves were answered.
_request_log_dropped_count = _register(_Counter("/tfkit/serving/request_log_dropped_count", ("model_name", "reason")))
# gRPC calls accepted and not yet answered (queued for a worker or a batch, or running).
_grpc_calls_in_flight = _register(_Gauge("/tfkit/serving/grpc_calls_in_flight"))


_GRPC_APIS_COUNTED = frozenset({"Predict", "Classify", "Regress"})


def record_request(
    model: str,
    signature: str,
    api: str,
    code_name: str,
    latency_s: float,
    entrypoint: str = "GRPC",
) -> None:
    """Count one finished request; its latency too when it succeeded.

    `api` is TF Serving's API label ("Predict", "Classify", "Regress",
    "GetModelMetadata", ... for gRPC; "predict", "classify", "regress" for
    REST, "" for REST GETs), `code_name` a grpc.StatusCode name ("OK",
    "INVALID_ARGUMENT", ...), `entrypoint` "GRPC" or "REST". As in TF
    Serving, only successful requests enter the latency histogram, and over
    gRPC only Predict, Classify and Regress enter TF Serving's two metrics.
    """
    model = model or ""
    # TF Serving's own counters see every REST request but, over gRPC, only
    # the three inference APIs (prediction_service_impl.cc); tfkit's
    # per-signature counter sees everything.
    tf_counted = entrypoint != "GRPC" or api in _GRPC_APIS_COUNTED
    with _lock:
        _signature_request_count.add((model, signature or "", api, entrypoint, code_name))
        if tf_counted:
            _request_count.add((model, code_name))
            if code_name == "OK":
                _request_latency.add((model, api, entrypoint), int(latency_s * 1e6))


def record_load(model: str, version: int, ok: bool, path: str | None = None) -> None:
    """Count one servable load attempt; with `path`, TF's load_attempt_count too."""
    status = "success" if ok else "fail"
    with _lock:
        _model_load_count.add((model, str(version), status))
        if path is not None:
            _load_attempt_count.add((str(path), status))


def record_batch(
    thread_pool_name: str,
    input_sizes: list[int],
    processed_size: int,
    queuing_latencies_s: list[float],
) -> None:
    """Account one merged model call of the batch scheduler.

    `input_sizes` are the callers' batch sizes merged into this call,
    `processed_size` the size actually run (after padding to an allowed size).
    """
    padding = processed_size - sum(input_sizes)
    with _lock:
        _wrapped_run_count.add(())
        _processed_batch_size.add((), processed_size)
        _padding_size.add((str(processed_size),), padding)
        for size in input_sizes:
            _input_batch_size.add((), size)
        for latency in queuing_latencies_s:
            _queuing_latency.add((thread_pool_name,), int(latency * 1e6))


def record_poll(source: str) -> None:
    """Count one completed polling pass of `source` ("file_system" or "config_file")."""
    with _lock:
        _poll_count.add((source,))


def record_request_log(model: str, status_code: str, n: int = 1) -> None:
    """Count `n` sampled requests' records handed to the log file, by outcome ("OK" or an error code)."""
    with _lock:
        _request_log_count.add((model, status_code), n)


def record_request_log_drop(model: str, reason: str, n: int = 1) -> None:
    """Count `n` sampled requests whose log records were lost ("queue_full" or "write_error")."""
    with _lock:
        _request_log_dropped_count.add((model, reason), n)


def watch_grpc_calls_in_flight(source) -> None:
    """Render the gRPC in-flight gauge from `source()` (an int), e.g. the worker pool's count."""
    with _lock:
        _grpc_calls_in_flight.source = source


def render() -> str:
    """The Prometheus text page: every registered metric, sorted by name."""
    lines: list[str] = []
    with _lock:
        for name in sorted(_registry):
            _registry[name].lines(_prometheus_name(name), lines)
    return "\n".join(lines) + "\n"


def reset() -> None:
    """Forget every recorded value (for in-process tests)."""
    with _lock:
        for metric in _registry.values():
            metric.cells.clear()
