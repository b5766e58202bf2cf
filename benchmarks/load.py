"""Load generation from separate client processes.

The client's own interpreter must not be what limits a server measurement, so
requests come from a pool of worker processes (spawned once, reused for every
measurement). gRPC clients send prebuilt request bytes and keep the response
bytes unparsed (`unary_unary` without (de)serializers), so a request costs the
client as little as grpcio allows; REST clients are threads holding one
keep-alive HTTP/1.1 connection each.

A measurement is two-phase: every worker gets the job and connects, then the
parent sends one shared window in `time.monotonic()` seconds (a clock common
to every process on Linux). Clients run from then on (warm-up) until the
window ends, and only requests that complete inside the window count.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import http.client
import multiprocessing
import threading
import time
import urllib.parse

import numpy as np

PREDICT_METHOD = "/tensorflow.serving.PredictionService/Predict"
# No message-size cap: the large-request measurements send and receive megabytes.
CHANNEL_OPTIONS = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]
REQUEST_TIMEOUT_S = 60.0


@dataclasses.dataclass
class Job:
    """One worker's share of a measurement.

    kind: "grpc" (target "host:port", payload: serialized PredictRequest) or
        "rest" (target "http://host:port/v1/models/...:predict", payload: JSON body).
    concurrency: requests this worker keeps in flight.
    start, end: the counted window, in time.monotonic() seconds (sent once
        every worker is connected).
    """

    kind: str
    target: str
    payload: bytes
    concurrency: int
    start: float = 0.0
    end: float = 0.0


@dataclasses.dataclass
class Window:
    """What the clients saw in one window: latencies (s) of the requests that
    completed inside it, and the errors; and, when the caller measured it, the
    server process's CPU seconds over warm-up and window."""

    duration: float
    latencies: np.ndarray
    errors: int = 0
    first_error: str = ""
    server_cpu_s: float | None = None

    @property
    def rate(self) -> float:
        """Completed requests per second."""
        return len(self.latencies) / self.duration

    def percentile_ms(self, q: float) -> float:
        """The q-th latency percentile in milliseconds."""
        return float(np.percentile(self.latencies, q) * 1e3) if len(self.latencies) else float("nan")


class _Tally:
    """Latencies and errors collected by one worker's clients."""

    def __init__(self, job: Job):
        self.job = job
        self.latencies: list = []
        self.errors = 0
        self.first_error = ""
        self.lock = threading.Lock()

    def record(self, began: float, error: str = "") -> None:
        ended = time.monotonic()
        with self.lock:
            if error:
                self.errors += 1
                self.first_error = self.first_error or error
            elif self.job.start <= ended < self.job.end:
                self.latencies.append(ended - began)

    def result(self) -> dict:
        return {"latencies": self.latencies, "errors": self.errors, "first_error": self.first_error}


async def _grpc_clients(job: Job, connection) -> dict:
    import grpc

    async with grpc.aio.insecure_channel(job.target, options=CHANNEL_OPTIONS) as channel:
        predict = channel.unary_unary(PREDICT_METHOD)  # bytes in, bytes out
        await asyncio.wait_for(channel.channel_ready(), REQUEST_TIMEOUT_S)
        job.start, job.end = _window(connection)
        tally = _Tally(job)

        async def client():
            while (began := time.monotonic()) < job.end:
                try:
                    await predict(job.payload, timeout=REQUEST_TIMEOUT_S)
                    tally.record(began)
                except grpc.RpcError as exc:
                    tally.record(began, f"{exc.code().name}: {exc.details()}")

        await asyncio.gather(*(client() for _ in range(job.concurrency)))
    return tally.result()


def _rest_clients(job: Job, connection) -> dict:
    url = urllib.parse.urlsplit(job.target)
    job.start, job.end = _window(connection)
    tally = _Tally(job)
    headers = {"Content-Type": "application/json"}

    def client():
        http_connection = http.client.HTTPConnection(url.hostname, url.port, timeout=REQUEST_TIMEOUT_S)
        try:
            while (began := time.monotonic()) < job.end:
                try:
                    http_connection.request("POST", url.path, job.payload, headers)
                    response = http_connection.getresponse()
                    body = response.read()
                    tally.record(began, "" if response.status == 200 else f"HTTP {response.status}: {body[:200]!r}")
                except (OSError, http.client.HTTPException) as exc:
                    tally.record(began, f"{type(exc).__name__}: {exc}")
                    http_connection.close()  # reconnects on the next request
        finally:
            http_connection.close()

    threads = [threading.Thread(target=client, daemon=True) for _ in range(job.concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return tally.result()


def _window(connection) -> tuple:
    """Say "connected", then wait for the parent's (start, end)."""
    connection.send("connected")
    return connection.recv()


def _serve_jobs(connection) -> None:
    """A worker process: run jobs from the pipe until it sends None."""
    import grpc  # noqa: F401  (imported before saying ready: the first job must not wait for it)

    connection.send("ready")
    while (job := connection.recv()) is not None:
        try:
            if job.kind == "grpc":
                result = asyncio.run(_grpc_clients(job, connection))
            else:
                result = _rest_clients(job, connection)
        except Exception as exc:  # report to the parent instead of dying silently
            result = {"latencies": [], "errors": 1, "first_error": f"{type(exc).__name__}: {exc}"}
        connection.send(result)


class ClientPool:
    """`size` client processes; `measure` spreads concurrent clients over them."""

    def __init__(self, size: int):
        context = multiprocessing.get_context("spawn")  # no inherited gRPC state
        self._pipes = []
        self._processes = []
        for index in range(size):
            parent_end, child_end = context.Pipe()
            process = context.Process(target=_serve_jobs, args=(child_end,), name=f"bench-client-{index}", daemon=True)
            process.start()
            self._pipes.append(parent_end)
            self._processes.append(process)
        for pipe in self._pipes:
            pipe.recv()  # "ready"

    def measure(
        self, kind: str, target: str, payload: bytes, concurrency: int, warmup_s: float, window_s: float
    ) -> Window:
        """Keep `concurrency` requests in flight (split over the workers) through
        a warm-up, then count the ones completing in a `window_s` window."""
        pipes = self._pipes[: min(concurrency, len(self._pipes))]
        for index, pipe in enumerate(pipes):
            share = concurrency // len(pipes) + (index < concurrency % len(pipes))
            pipe.send(Job(kind, target, payload, share))
        replies = [pipe.recv() for pipe in pipes]
        start = time.monotonic() + warmup_s
        # A worker that could not connect has already answered with its error.
        connected = [pipe for pipe, reply in zip(pipes, replies) if reply == "connected"]
        for pipe in connected:
            pipe.send((start, start + window_s))
        results = [reply for reply in replies if reply != "connected"] + [pipe.recv() for pipe in connected]
        errors = [r for r in results if r["errors"]]
        return Window(
            duration=window_s,
            latencies=np.concatenate([np.asarray(r["latencies"], dtype=np.float64) for r in results]),
            errors=sum(r["errors"] for r in results),
            first_error=errors[0]["first_error"] if errors else "",
        )

    def close(self) -> None:
        """Stop the workers."""
        for pipe in self._pipes:
            with contextlib.suppress(OSError):
                pipe.send(None)
        for process in self._processes:
            process.join(5)
            if process.is_alive():
                process.kill()

    def __enter__(self) -> ClientPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
