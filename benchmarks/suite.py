"""Every measurement of `scripts/bench`, each beside its ceiling, in one run.

Groups run one after another, never overlapping, because the machine has two
cores and every process on it competes for them:

1. in process (benchmarks.inproc, its own TensorFlow process): trains and exports
   the model everything else serves, then TFLite / eager / signature rates;
2. the CLI: `tfkit --help` vs `python -c "import click"`;
3. serving: our server (`python -m serving` with REST), the same with
   --enable_batching, and the null server, all on ephemeral 127.0.0.1 ports;
   client processes (benchmarks.load) drive them, value and ceiling measured back
   to back in every repeat so a busy moment on the shared machine hits both;
4. `tfkit run` vs `python -c "import tensorflow"`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Iterable, Optional

import numpy as np

from benchmarks import inproc
from benchmarks.harness import Result, result
from benchmarks.load import ClientPool, Window

ROOT = Path(__file__).resolve().parent.parent
MODEL = inproc.MODEL_NAME
CONCURRENCY = (1, 8, 32)
# Client processes: one per core. More would only take turns on the same two
# cores; fewer would let one client interpreter bound the server's figure.
CLIENT_PROCESSES = 2
# Batching tuned for 32 batch-1 clients: a batch closes when full or after 1 ms.
BATCHING_PARAMETERS = """\
max_batch_size { value: 32 }
batch_timeout_micros { value: 1000 }
max_enqueued_batches { value: 100 }
num_batch_threads { value: 1 }
"""
TARGETS = {  # minimum ratio, from the issue
    "grpc_predict_c1": 0.7, "grpc_predict_c8": 0.7, "grpc_predict_c32": 0.7,
    "grpc_predict_c8_p99_ms": 0.5,
    "grpc_predict_rows_10k": 0.5, "grpc_predict_rows_100k": 0.5,
    "batching_c32": 1.5,
    "tflite_rows_b10k": 0.5,
    "cli_help_s": 0.5,
    "run_s": 1 / 6,
}


class BenchError(Exception):
    """A measurement could not be made (a failed command, failed requests)."""


@dataclasses.dataclass(frozen=True)
class Budget:
    """How long each measurement runs and how often it is repeated."""

    warmup_s: float  # clients running before a window opens
    window_s: float  # one serving measurement
    repeats: int
    inproc_window_s: float
    cli_repeats: int
    run_repeats: int


FULL = Budget(warmup_s=0.5, window_s=2.0, repeats=3, inproc_window_s=1.0, cli_repeats=5, run_repeats=2)
QUICK = Budget(warmup_s=0.25, window_s=0.6, repeats=2, inproc_window_s=0.3, cli_repeats=3, run_repeats=1)

GROUPS = {
    "inproc": ("tflite_rows_b1", "tflite_rows_b10k", "eager_rows_b1"),
    "cli": ("cli_help_s",),
    "serving": tuple(
        [name for c in CONCURRENCY for name in (f"grpc_predict_c{c}", f"grpc_predict_c{c}_p50_ms",
                                                f"grpc_predict_c{c}_p99_ms")]
        + ["grpc_predict_rows_10k", "grpc_predict_rows_100k", "rest_predict_c8", "batching_c32"]),
    "run": ("run_s",),
}
NAMES = tuple(name for names in GROUPS.values() for name in names)


def _env() -> dict:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", GRPC_VERBOSITY="ERROR")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def _command(args: list, what: str, ok_codes=(0,)) -> subprocess.CompletedProcess:
    done = subprocess.run(args, capture_output=True, text=True, env=_env(), cwd=ROOT)
    if done.returncode not in ok_codes:
        tail = "\n  ".join((done.stdout + done.stderr).strip().splitlines()[-10:])
        raise BenchError(f"{what} exited with code {done.returncode}:\n  {tail}")
    return done


def _wall_time(args: list, what: str, ok_codes=(0,)) -> float:
    began = time.perf_counter()
    _command(args, what, ok_codes)
    return time.perf_counter() - began


def _tfkit() -> str:
    beside = Path(sys.executable).with_name("tfkit")
    found = str(beside) if beside.exists() else shutil.which("tfkit")
    if not found:
        raise BenchError("the tfkit command is not installed (run scripts/bench, which installs it)")
    return found


def _interleaved(repeats: int, commands: dict) -> dict:
    """Wall times of each named (args, what, ok_codes) command, alternating, `repeats` times."""
    times = {name: [] for name in commands}
    for _ in range(repeats):
        for name, spec in commands.items():
            times[name].append(_wall_time(*spec))
    return times


# -- groups ------------------------------------------------------------------------------
class Suite:
    """One benchmark run: a work folder, a budget and the measurements asked for."""

    def __init__(self, budget: Budget, names: Iterable[str], workdir: Path,
                 progress: Callable[[str], None] = lambda msg: None):
        self.budget = budget
        self.names = set(names)
        self.workdir = workdir
        self.progress = progress
        self.inproc: Optional[dict] = None

    def run(self) -> list[Result]:
        """Run the groups the names need; their results in NAMES order."""
        wanted = {group for group, names in GROUPS.items() if self.names & set(names)}
        results = []
        if wanted & {"inproc", "serving"}:
            results += self._inproc()
        if "cli" in wanted:
            results += self._cli()
        if "serving" in wanted:
            results += self._serving()
        if "run" in wanted:
            results += self._run()
        by_name = {r.name: r for r in results}
        return [by_name[name] for name in NAMES if name in self.names]

    def _result(self, name: str, values, unit: str, ceilings, ceiling_of: str) -> Result:
        return result(name, values, unit, ceilings, ceiling_of, TARGETS.get(name))

    def _inproc(self) -> list[Result]:
        self.progress("training and exporting the model; in-process TFLite, eager, signature rates")
        _command([sys.executable, "-m", "benchmarks.inproc", str(self.workdir), "--window",
                  str(self.budget.inproc_window_s), "--repeats", str(self.budget.repeats)], "benchmarks.inproc")
        self.inproc = json.loads((self.workdir / "inproc.json").read_text())
        s = self.inproc["series"]
        return [
            self._result("tflite_rows_b1", s["tflite_rows_b1"], "rows/s", s["numpy_rows_b1"], "numpy b1"),
            self._result("tflite_rows_b10k", s["tflite_rows_b10k"], "rows/s", s["numpy_rows_b10k"], "numpy b10k"),
            self._result("eager_rows_b1", s["eager_rows_b1"], "rows/s", s["numpy_rows_b1"], "numpy b1"),
        ]

    def _cli(self) -> list[Result]:
        self.progress("timing tfkit --help")
        times = _interleaved(self.budget.cli_repeats, {
            "help": ([_tfkit(), "--help"], "tfkit --help"),
            "click": ([sys.executable, "-c", "import click"], "python -c 'import click'"),
        })
        return [self._result("cli_help_s", times["help"], "s", times["click"], "import click")]

    def _run(self) -> list[Result]:
        self.progress("timing tfkit run")
        times = {"run": [], "tf": []}
        for repeat in range(self.budget.run_repeats):
            out = self.workdir / f"tfkit-run-{repeat}"
            # Exit 1 (a parity mismatch) still ran every step; its time counts.
            times["run"].append(_wall_time([_tfkit(), "run", "--out", str(out)], "tfkit run", (0, 1)))
            times["tf"].append(_wall_time([sys.executable, "-c", "import tensorflow"], "import tensorflow"))
        return [self._result("run_s", times["run"], "s", times["tf"], "import tensorflow")]

    def _serving(self) -> list[Result]:
        requests = {rows: inproc.request_file(self.workdir, rows).read_bytes() for rows in inproc.REQUEST_ROWS}
        with contextlib.ExitStack() as stack:
            self.progress("starting our server (gRPC + REST), a batching one and the null server")
            ours, batching = self._start_servers(stack)
            null = stack.enter_context(self._null_server(self._response_bytes(ours.grpc_target, requests[1])))
            pool = stack.enter_context(ClientPool(CLIENT_PROCESSES))
            rest_body = inproc.rest_body_file(self.workdir).read_bytes()
            rest_url = f"{ours.rest_url}/v1/models/{MODEL}:predict"
            b = self.budget

            def grpc_window(target, payload, concurrency, window_s=b.window_s):
                return pool.measure("grpc", target, payload, concurrency, b.warmup_s, window_s)

            plan = {}
            for c in CONCURRENCY:
                plan[f"ours_c{c}"] = lambda c=c: grpc_window(ours.grpc_target, requests[1], c)
                plan[f"null_c{c}"] = lambda c=c: grpc_window(null.grpc_target, requests[1], c)
            plan["rest_c8"] = lambda: pool.measure("rest", rest_url, rest_body, 8, b.warmup_s, b.window_s)
            plan["batching_c32"] = lambda: grpc_window(batching.grpc_target, requests[1], 32)
            for rows in inproc.REQUEST_ROWS[1:]:
                # Large requests take long: a longer window counts enough of them.
                plan[f"rows_{rows}"] = lambda rows=rows: grpc_window(ours.grpc_target, requests[rows], 1,
                                                                     max(b.window_s, 1.0))
            windows = {name: [] for name in plan}
            for repeat in range(b.repeats):
                self.progress(f"serving measurements, repeat {repeat + 1}/{b.repeats}")
                for name, measure in plan.items():
                    windows[name].append(_checked(name, measure()))
        return self._serving_results(windows)

    def _serving_results(self, windows: dict) -> list[Result]:
        def rates(name):
            return [w.rate for w in windows[name]]

        def latency(name, q):
            return [w.percentile_ms(q) for w in windows[name]]

        def rows_rates(name, rows):
            # One client, one request at a time: throughput is rows over mean latency.
            return [rows * len(w.latencies) / float(np.sum(w.latencies)) for w in windows[name]]

        out = []
        for c in CONCURRENCY:
            ours, null = f"ours_c{c}", f"null_c{c}"
            out.append(self._result(f"grpc_predict_c{c}", rates(ours), "req/s", rates(null), "null server"))
            for q in (50, 99):
                out.append(self._result(f"grpc_predict_c{c}_p{q}_ms", latency(ours, q), "ms", latency(null, q),
                                        "null server"))
        series = self.inproc["series"]
        for rows, label in ((10_000, "10k"), (100_000, "100k")):
            out.append(self._result(f"grpc_predict_rows_{label}", rows_rates(f"rows_{rows}", rows), "rows/s",
                                    series[f"signature_rows_{label}"], "in-process signature"))
        out.append(self._result("rest_predict_c8", rates("rest_c8"), "req/s", rates("ours_c8"), "our gRPC c8"))
        out.append(self._result("batching_c32", rates("batching_c32"), "req/s", rates("ours_c32"),
                                "unbatched c32"))
        return out

    def _start_servers(self, stack: contextlib.ExitStack) -> tuple:
        from toolkit.local_server import LocalServer

        base = ["--model_name=" + MODEL, f"--model_base_path={self.workdir / 'models' / MODEL}"]
        params = self.workdir / "batching.config"
        params.write_text(BATCHING_PARAMETERS)
        servers = [LocalServer(base, rest=True, env=_env()),
                   LocalServer(base + ["--enable_batching", f"--batching_parameters_file={params}"], env=_env())]
        for server in servers:
            stack.callback(server.stop)
        # Their TensorFlow imports overlap; nothing is being measured yet.
        errors = []
        threads = [threading.Thread(target=lambda s=s: _collect(errors, s.start)) for s in servers]
        for thread in threads:
            thread.start()
        _import_quietly("tensorflow_serving.apis.get_model_status_pb2")  # LocalServer's readiness check needs it
        for thread in threads:
            thread.join()
        if errors:
            raise BenchError(str(errors[0]))
        return tuple(servers)

    def _response_bytes(self, target: str, request: bytes) -> bytes:
        """A real batch-1 PredictResponse of our server, as bytes."""
        import grpc

        from benchmarks.load import PREDICT_METHOD

        with grpc.insecure_channel(target) as channel:
            return channel.unary_unary(PREDICT_METHOD)(request, timeout=30)

    @contextlib.contextmanager
    def _null_server(self, response: bytes):
        from toolkit.local_server import LocalServer

        response_file = self.workdir / "null_response.bin"
        response_file.write_bytes(response)
        # LocalServer launches an executable with the server's flags; this one
        # is the null server, so it gets the same ports and readiness checks.
        launcher = self.workdir / "null-model-server"
        launcher.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m benchmarks.nullserver '
                            f'--response="{response_file}" "$@"\n')
        launcher.chmod(0o755)
        with LocalServer([], models=[], binary=str(launcher), env=_env()) as server:
            yield server


def _import_quietly(module: str) -> None:
    """Import a module that pulls in TensorFlow, whose C++ start-up banner ignores
    TF_CPP_MIN_LOG_LEVEL, with file descriptor 2 pointed at /dev/null meanwhile."""
    import importlib

    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            importlib.import_module(module)
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _collect(errors: list, fn) -> None:
    try:
        fn()
    except Exception as exc:  # re-raised by the caller, in its own thread
        errors.append(exc)


def _checked(name: str, window: Window) -> Window:
    if window.errors:
        raise BenchError(f"{name}: {window.errors} request(s) failed; first: {window.first_error}")
    if not len(window.latencies):
        raise BenchError(f"{name}: no request completed within {window.duration:g}s")
    return window


def run(budget: Budget, names: Iterable[str], progress=lambda msg: None,
        keep: Optional[Path] = None) -> list[Result]:
    """Run the named measurements in a temporary work folder (or `keep`)."""
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        return Suite(budget, names, keep, progress).run()
    with tempfile.TemporaryDirectory(prefix="tfkit-bench-") as workdir:
        return Suite(budget, names, Path(workdir), progress).run()
