"""Server-side request batching, as TF Serving's BatchingSession does it.

One queue per key (a model version's signature and outputs), all served by
one shared pool of `num_batch_threads` threads, like SharedBatchScheduler:

- a request joins the queue's open batch if it fits (`max_batch_size` rows,
  or `max_execution_batch_size` with `enable_large_batch_splitting`), else
  the open batch closes and a new one opens; with `max_enqueued_batches`
  batches already waiting the request is refused with UNAVAILABLE;
- a free thread takes the oldest batch once it is full or its first request
  has waited `batch_timeout_micros`;
- the batch's inputs are concatenated along dimension 0 (padded to the next
  of `allowed_batch_sizes` with copies of the last request's first row, and,
  with `pad_variable_length_inputs`, every other dimension padded to the
  batch's largest with the tensor's first element), run once, and the
  outputs split back so each caller gets exactly its own rows.

Errors carry TF Serving's (and TensorFlow's batch scheduler's) messages.
"""

from __future__ import annotations

import collections
import os
import threading
import time
from collections.abc import Callable, Hashable, Mapping

import grpc
import numpy as np

from serving import metrics
from serving.config_protos import BatchingParameters, parse_text_file
from serving.errors import ServingError, failed_precondition, invalid_argument, unavailable

# SharedBatchScheduler's defaults for fields a BatchingParameters leaves unset.
DEFAULT_MAX_BATCH_SIZE = 1000
DEFAULT_BATCH_TIMEOUT_MICROS = 0
DEFAULT_MAX_ENQUEUED_BATCHES = 10
DEFAULT_THREAD_POOL_NAME = "batch_threads"

Outputs = dict[str, np.ndarray]


def load_parameters(path: str | None) -> BatchingParameters:
    """BatchingParameters from --batching_parameters_file, or the server's defaults.

    Without a file tensorflow_model_server only names the thread pool.
    Raises ConfigFileError for an unreadable or invalid file.
    """
    if not path:
        params = BatchingParameters()
        params.thread_pool_name.value = "model_server_batch_threads"
        return params
    return parse_text_file(path, BatchingParameters, "--batching_parameters_file")


class _Task:
    """One caller's rows (or one piece of a split caller) waiting in a queue."""

    __slots__ = ("inputs", "size", "enqueued", "parent", "index")

    def __init__(self, inputs: Outputs, size: int, parent: _Request, index: int):
        self.inputs = inputs
        self.size = size
        self.enqueued = time.monotonic()
        self.parent = parent
        self.index = index


class Done:
    """A model run that has already finished: `result()` is `outputs`."""

    __slots__ = ("outputs",)

    def __init__(self, outputs: Outputs):
        self.outputs = outputs

    def result(self) -> Outputs:
        return self.outputs

    def add_done_callback(self, fn: Callable[[], None]) -> None:
        fn()


class _Request:
    """What a caller waits on: the outputs of all its pieces (see `Done` for
    the same interface on a run that needed no waiting)."""

    def __init__(self, pieces: int):
        self.remaining = pieces
        self.parts: list[Outputs | None] = [None] * pieces
        self.error: BaseException | None = None
        self.done = threading.Event()
        self._callbacks: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    def finish(self, index: int, outputs: Outputs | None, error: BaseException | None) -> None:
        with self._lock:
            if error is not None and self.error is None:
                self.error = error
            self.parts[index] = outputs
            self.remaining -= 1
            if self.remaining:
                return
            self.done.set()
            callbacks, self._callbacks = self._callbacks, []
        for fn in callbacks:
            fn()

    def add_done_callback(self, fn: Callable[[], None]) -> None:
        """Call fn() (on a batch thread) once result() would not block; now if it would not."""
        with self._lock:
            if not self.done.is_set():
                self._callbacks.append(fn)
                return
        fn()

    def result(self) -> Outputs:
        """This caller's outputs, once every piece has run (blocks until then)."""
        self.done.wait()
        if self.error is not None:
            raise self.error
        if len(self.parts) == 1:
            return self.parts[0]
        return {name: np.concatenate([p[name] for p in self.parts]) for name in self.parts[0]}


class _Batch:
    __slots__ = ("tasks", "size", "created", "fn")

    def __init__(self, fn):
        self.tasks: list[_Task] = []
        self.size = 0
        self.created = time.monotonic()
        self.fn = fn


class BatchScheduler:
    """Merges concurrent `run` calls with the same key into one model call."""

    def __init__(self, params=None):
        """`params`: a BatchingParameters, or the server's parsed flags (whose
        --batching_parameters_file is read, defaults without one), or None."""
        if params is None:
            params = BatchingParameters()
        elif not isinstance(params, BatchingParameters):
            params = load_parameters(getattr(params, "batching_parameters_file", ""))
        self.max_batch_size = (
            params.max_batch_size.value if params.HasField("max_batch_size") else DEFAULT_MAX_BATCH_SIZE
        )
        self.batch_timeout_s = (
            params.batch_timeout_micros.value
            if params.HasField("batch_timeout_micros")
            else DEFAULT_BATCH_TIMEOUT_MICROS
        ) / 1e6
        self.max_enqueued_batches = (
            params.max_enqueued_batches.value
            if params.HasField("max_enqueued_batches")
            else DEFAULT_MAX_ENQUEUED_BATCHES
        )
        self.num_batch_threads = (
            params.num_batch_threads.value if params.HasField("num_batch_threads") else (os.cpu_count() or 1)
        )
        self.thread_pool_name = (
            params.thread_pool_name.value if params.HasField("thread_pool_name") else DEFAULT_THREAD_POOL_NAME
        )
        self.splitting = params.HasField("enable_large_batch_splitting") and params.enable_large_batch_splitting.value
        self.max_execution_batch_size = self.max_batch_size
        if self.splitting and params.HasField("max_execution_batch_size"):
            self.max_execution_batch_size = params.max_execution_batch_size.value
        self.allowed_batch_sizes = list(params.allowed_batch_sizes)
        self.pad_variable_length_inputs = params.pad_variable_length_inputs
        self._validate()

        self._cond = threading.Condition()
        self._queues: dict[Hashable, collections.deque[_Batch]] = {}
        self._order: collections.deque[Hashable] = collections.deque()  # round-robin over queues
        self._threads: list[threading.Thread] = []
        self._stopped = False

    def _validate(self) -> None:
        for name in ("max_batch_size", "max_enqueued_batches", "num_batch_threads"):
            if getattr(self, name) <= 0:
                raise invalid_argument(f"BatchingParameters.{name} must be positive; was {getattr(self, name)}")
        if self.batch_timeout_s < 0:
            raise invalid_argument("BatchingParameters.batch_timeout_micros must be non-negative")
        sizes = self.allowed_batch_sizes
        if not sizes:
            return
        if self.splitting:
            if any(b <= a for a, b in zip(sizes, sizes[1:])):
                raise invalid_argument("allowed_batch_sizes entries must be monotonically increasing")
            if sizes[-1] > self.max_batch_size:
                raise invalid_argument(
                    "Last entry in allowed_batch_sizes must be less than or equal to max_batch_size; "
                    f"last entry was {sizes[-1]}; expected {self.max_batch_size}"
                )
            if sizes[-1] != self.max_execution_batch_size:
                raise invalid_argument(
                    "Last entry in allowed_batch_sizes must be equal to max_execution_batch_size; "
                    f"last entry was {sizes[-1]}; expected {self.max_execution_batch_size}"
                )
        elif sizes[-1] != self.max_batch_size:
            raise invalid_argument(
                "Last entry in allowed_batch_sizes must match max_batch_size; "
                f"last entry was {sizes[-1]}; expected {self.max_batch_size}"
            )

    # -- callers ---------------------------------------------------------------
    def run(self, key: Hashable, inputs: Mapping[str, np.ndarray], fn: Callable[[Outputs], Outputs]) -> Outputs:
        """Run `fn` on `inputs`, merged with concurrent calls of the same `key`.

        `fn(merged_inputs) -> outputs` must return arrays whose dimension 0
        matches its inputs'. Returns this caller's rows of the outputs.
        """
        return self.submit(key, inputs, fn).result()

    def submit(
        self, key: Hashable, inputs: Mapping[str, np.ndarray], fn: Callable[[Outputs], Outputs]
    ) -> _Request | Done:
        """`run` without the wait: queue the call (ServingError if it cannot be
        queued) and return what `result()` gives its outputs."""
        size = _batch_size(inputs)
        if size > self.max_batch_size:
            raise invalid_argument(f"Task size {size} is larger than maximum input batch size {self.max_batch_size}")
        if size == 0:
            return Done(fn(dict(inputs)))  # nothing to merge; padding needs a real row
        with self._cond:
            if self._stopped:
                raise unavailable("The batch scheduler is shutting down")
            self._ensure_threads()
            queue = self._queues.get(key)
            if queue is None:
                queue = self._queues[key] = collections.deque()
                self._order.append(key)
            capacity = self.max_execution_batch_size
            # TF's queue always holds an open batch (an empty one after a
            # thread took the last); an empty deque here stands for that.
            room = capacity - queue[-1].size if queue else capacity
            enqueued = max(len(queue), 1)
            if size <= room:
                pieces, new_batches = [(dict(inputs), size)], 0
            elif self.splitting:
                pieces = _cut(inputs, size, room, capacity)
                new_batches = -(-(size - room) // capacity)
            else:
                pieces, new_batches = [(dict(inputs), size)], 1
            if enqueued + new_batches > self.max_enqueued_batches:
                raise unavailable("The batch scheduling queue to which this task was submitted is full")
            request = _Request(len(pieces))
            for index, (piece, piece_size) in enumerate(pieces):
                if not queue or queue[-1].size + piece_size > capacity:
                    queue.append(_Batch(fn))
                batch = queue[-1]
                batch.tasks.append(_Task(piece, piece_size, request, index))
                batch.size += piece_size
            self._cond.notify_all()
        return request

    # -- batch threads ---------------------------------------------------------
    def _ensure_threads(self) -> None:
        if self._threads:
            return
        for i in range(self.num_batch_threads):
            thread = threading.Thread(target=self._worker, name=f"{self.thread_pool_name}_{i}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _next_batch(self) -> _Batch | None:
        """The oldest schedulable batch, round-robin across queues; None on stop."""
        while True:
            if self._stopped and not any(self._queues.values()):
                return None
            now = time.monotonic()
            wait = None
            for _ in range(len(self._order)):
                key = self._order[0]
                self._order.rotate(-1)
                queue = self._queues[key]
                if not queue:
                    continue
                batch = queue[0]
                due = batch.created + self.batch_timeout_s
                if len(queue) > 1 or batch.size >= self.max_execution_batch_size or now >= due or self._stopped:
                    return queue.popleft()
                wait = due - now if wait is None else min(wait, due - now)
            self._cond.wait(wait)

    def _worker(self) -> None:
        while True:
            with self._cond:
                batch = self._next_batch()
            if batch is None:
                return
            self._process(batch)

    def _process(self, batch: _Batch) -> None:
        started = time.monotonic()
        padded = _round_up(self.allowed_batch_sizes, batch.size)
        try:
            merged = self._merge(batch, padded - batch.size)
            outputs = batch.fn(merged)
            parts = _split_outputs(outputs, [t.size for t in batch.tasks], padded)
        except BaseException as err:  # every caller of the batch gets the failure
            error = err if isinstance(err, Exception) else ServingError(grpc.StatusCode.CANCELLED, str(err))
            for task in batch.tasks:
                task.parent.finish(task.index, None, error)
            return
        finally:
            metrics.record_batch(
                self.thread_pool_name,
                [t.size for t in batch.tasks],
                padded,
                [started - t.enqueued for t in batch.tasks],
            )
        for task, part in zip(batch.tasks, parts):
            task.parent.finish(task.index, part, None)

    def _merge(self, batch: _Batch, padding: int) -> Outputs:
        tasks = batch.tasks
        merged = {}
        for name in tasks[0].inputs:
            arrays = [t.inputs[name] for t in tasks]
            if self.pad_variable_length_inputs:
                arrays = _pad_to_common_shape(arrays)
            else:
                reference = arrays[0].shape[1:]
                if any(a.shape[1:] != reference for a in arrays[1:]):
                    raise failed_precondition(
                        f"Tensors with name '{name}' from different tasks have different shapes and padding "
                        "is turned off. Set pad_variable_length_inputs to true, or ensure that all tensors "
                        "with the same name have equal dimensions starting with the first dim."
                    )
            if padding:
                arrays.append(np.repeat(arrays[-1][:1], padding, axis=0))
            merged[name] = arrays[0] if len(arrays) == 1 else np.concatenate(arrays)
        return merged

    def stop(self) -> None:
        """Refuse new calls, run what is queued, and end the batch threads."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join()


def _batch_size(inputs: Mapping[str, np.ndarray]) -> int:
    """ComputeTensorBatchSize: the shared dimension-0 size of all inputs."""
    if not inputs:
        raise invalid_argument("Batching Run() must have at least one input tensor")
    size = None
    for array in inputs.values():
        if np.ndim(array) == 0:
            raise invalid_argument("Batching Run() input tensors must have at least one dimension")
        if size is None:
            size = array.shape[0]
        elif array.shape[0] != size:
            raise invalid_argument("Batching Run() input tensors must have equal 0th-dimension size")
    return size


def _cut(inputs: Mapping[str, np.ndarray], size: int, room: int, capacity: int) -> list[tuple[Outputs, int]]:
    """Large batch splitting: `room` rows for the open batch, then full batches."""
    bounds = ([0, room] if room else [0]) + list(range(room + capacity, size, capacity)) + [size]
    return [
        ({name: array[start:end] for name, array in inputs.items()}, end - start)
        for start, end in zip(bounds, bounds[1:])
    ]


def _round_up(allowed: list[int], size: int) -> int:
    """RoundToLowestAllowedBatchSize."""
    for candidate in allowed:
        if candidate >= size:
            return candidate
    return size


def _pad_to_common_shape(arrays: list[np.ndarray]) -> list[np.ndarray]:
    """Pad dims 1.. of each array to the largest in the batch, with its first element."""
    rank = arrays[0].ndim
    target = [max(a.shape[d] for a in arrays) for d in range(rank)]
    out = []
    for a in arrays:
        widths = [(0, 0)] + [(0, target[d] - a.shape[d]) for d in range(1, rank)]
        if not any(w for _, w in widths):
            out.append(a)
            continue
        if not 1 <= rank <= 6:
            raise invalid_argument("Only tensors with rank from 1 to 6 can be padded.")
        if a.size == 0:
            raise invalid_argument("Got empty tensor in batch of non-empty tensors.")
        out.append(np.pad(a, widths, mode="constant", constant_values=a.flat[0]))
    return out


def _split_outputs(outputs: Outputs, sizes: list[int], padded: int) -> list[Outputs]:
    """Each task's rows of the merged outputs (SplitOutputTensors)."""
    for array in outputs.values():
        if np.ndim(array) == 0:
            raise failed_precondition("Batched output tensor has 0 dimensions")
        if array.shape[0] != padded:
            raise failed_precondition(
                "Batched output tensor's 0th dimension does not equal the sum of the 0th dimension "
                "sizes of the input tensors"
            )
    parts = []
    start = 0
    for size in sizes:
        parts.append({name: array[start : start + size] for name, array in outputs.items()})
        start += size
    return parts
