"""Every measurement of `scripts/bench`, each beside its ceiling, in one run.

Groups run one after another, never overlapping, because the machine has two
cores and every process on it competes for them:

1. in process: a TensorFlow process (benchmarks.inproc) trains and exports
   the model everything else serves, then stays up to measure TFLite, eager
   and numpy rates, and later the in-process signature ceilings, each right
   after the server measurement it bounds;
2. the CLI: `tfkit --help` vs `python -c "import click"`;
3. serving: our server (`python -m serving` with REST), the same with
   --enable_batching, one serving the model under several names, logged at
   each LOG_RATES rate and not logged, and the null server, all on ephemeral
   127.0.0.1 ports;
   client processes (benchmarks.load) drive them, value and ceiling measured back
   to back in every repeat so a busy moment on the shared machine hits both;
4. `tfkit run` vs `python -c "import tensorflow"`;
5. the device checker (`tfkit-edge check`, start to verdict on the demo export:
   four TFLite files, three op resolvers each) vs `python -c` importing numpy and
   loading the interpreter;
6. training at scale (benchmarks.training): `tfkit train --data` on generated CSV
   shards: peak memory on 20M vs 200k rows, training rows/s vs a bare tf.data
   read+parse pass, two workers vs one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from benchmarks import inproc, training
from benchmarks.harness import BenchError, Result, result
from benchmarks.load import ClientPool, Window

ROOT = Path(__file__).resolve().parent.parent
MODEL = inproc.MODEL_NAME
CONCURRENCY = (1, 8, 32)
# Request logging's cost: grpc_predict_c8 to the model logged at each rate, beside the same model not logged
# in the same server process (separate processes differed by up to 40% on the shared machine, logging or not).
LOG_RATES = ("1", "0.01")
# Client processes: one per core. More would only take turns on the same two
# cores; fewer would let one client interpreter bound the server's figure.
CLIENT_PROCESSES = 2
# Batching for 32 batch-1 clients. At most --grpc_max_threads (default 4 per
# core: 8 here) requests are inside the server at once, so a batch closes when
# those 8 have joined, or after 1 ms.
BATCHING_PARAMETERS = """\
max_batch_size { value: 32 }
batch_timeout_micros { value: 1000 }
max_enqueued_batches { value: 100 }
num_batch_threads { value: 1 }
"""
TARGETS = {  # minimum ratio, from the issue
    "grpc_predict_c1": 0.7,
    "grpc_predict_c8": 0.7,
    "grpc_predict_c32": 0.7,
    "grpc_predict_c8_p99_ms": 0.5,
    "grpc_predict_rows_10k": 0.5,
    "grpc_predict_rows_100k": 0.5,
    "batching_c32": 1.5,
    # Logging costs at most 10%: of the throughput, and of the server's CPU per request.
    **{f"grpc_predict_c8_log_rate_{rate}{cpu}": 0.9 for rate in LOG_RATES for cpu in ("", "_cpu_us")},
    "tflite_rows_b10k": 0.5,
    "cli_help_s": 0.5,
    "run_s": 1 / 6,
    "train_peak_rss_mb": 1 / 1.25,
    "train_rows_per_s": 0.5,
    "train_scaleout_2w": 1.3,
}


@dataclasses.dataclass(frozen=True)
class Budget:
    """How long each measurement runs and how often it is repeated."""

    warmup_s: float  # clients running before a window opens
    window_s: float  # one serving measurement
    rows_window_s: float  # one large-request measurement (long enough to count several)
    repeats: int
    inproc_window_s: float
    cli_repeats: int
    run_repeats: int
    training: training.TrainingBudget = training.FULL


FULL = Budget(
    warmup_s=0.4, window_s=1.5, rows_window_s=1.5, repeats=3, inproc_window_s=0.7, cli_repeats=5, run_repeats=2
)
QUICK = Budget(
    warmup_s=0.15,
    window_s=0.35,
    rows_window_s=0.45,
    repeats=2,
    inproc_window_s=0.2,
    cli_repeats=3,
    run_repeats=1,
    training=training.QUICK,
)

GROUPS = {
    "inproc": ("tflite_rows_b1", "tflite_rows_b10k", "eager_rows_b1"),
    "cli": ("cli_help_s",),
    "serving": tuple(
        [
            name
            for c in CONCURRENCY
            for name in (f"grpc_predict_c{c}", f"grpc_predict_c{c}_p50_ms", f"grpc_predict_c{c}_p99_ms")
        ]
        + ["grpc_predict_rows_10k", "grpc_predict_rows_100k", "rest_predict_c8", "batching_c32"]
        + [f"grpc_predict_c8_log_rate_{rate}{cpu}" for rate in LOG_RATES for cpu in ("", "_cpu_us")]
    ),
    "run": ("run_s",),
    "edge": ("edge_check_s",),
    "training": ("train_peak_rss_mb", "train_rows_per_s", "train_scaleout_2w"),
}
NAMES = tuple(name for names in GROUPS.values() for name in names)


def logged_model(rate: str) -> str:
    """The name the logging server serves the model under, logged at `rate`."""
    return f"{MODEL}_logged_{rate}"


def _log_rate(name: str) -> str:
    """The rate of a grpc_predict_c8_log_rate_R[_cpu_us] name."""
    return name.removeprefix("grpc_predict_c8_log_rate_").removesuffix("_cpu_us")


def _windows_of(name: str) -> tuple:
    """The serving windows a result needs: its value's, then its ceiling's (if measured here).

    Windows are named SERVER_cN (N concurrent batch-1 clients on "ours",
    "null", "batching", "rest", or the logging server: "lograteR" for the
    model logged at rate R, "lognone" for it unlogged), rows_N (one client
    sending N-row requests to ours) or signature_N (the same rows through the
    signature in process).
    """
    if name.startswith("grpc_predict_rows_"):
        rows = name.rsplit("_", 1)[1].replace("k", "000")
        return (f"rows_{rows}", f"signature_{rows}")
    if name.startswith("grpc_predict_c8_log_rate_"):
        return (f"lograte{_log_rate(name)}_c8", "lognone_c8")
    if name.startswith("grpc_predict_c"):
        c = name.split("_")[2]
        return (f"ours_{c}", f"null_{c}")
    if name == "rest_predict_c8":
        return ("rest_c8", "ours_c8")
    if name == "batching_c32":
        return ("batching_c32", "ours_c32")
    raise KeyError(name)


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

    def __init__(
        self, budget: Budget, names: Iterable[str], workdir: Path, progress: Callable[[str], None] = lambda msg: None
    ):
        self.budget = budget
        self.names = set(names)
        self.workdir = workdir
        self.progress = progress
        self.inproc: inproc.InProcess | None = None

    def run(self) -> list[Result]:
        """Run the groups the names need; their results in NAMES order."""
        wanted = {group for group, names in GROUPS.items() if self.names & set(names)}
        results = []
        with contextlib.ExitStack() as stack:
            servers = None
            if wanted & {"inproc", "serving"}:
                # Preparation, not measured: the servers' start-up overlaps the
                # training and export; they load the version once it is published.
                (self.workdir / "models" / MODEL).mkdir(parents=True, exist_ok=True)
                self.progress(
                    "training and exporting the model (benchmarks.inproc)"
                    + (", starting the servers" if "serving" in wanted else "")
                )
                log_rates = [
                    r
                    for r in LOG_RATES
                    if any(_log_rate(n) == r for n in self.names if n.startswith("grpc_predict_c8_log_rate_"))
                ]
                if "serving" in wanted:
                    servers = self._start_servers(stack, any(n.startswith("batching") for n in self.names), log_rates)
                self.inproc = inproc.InProcess(self.workdir, _env(), ROOT, tuple(map(logged_model, log_rates)))
                stack.callback(self.inproc.close)
            if "inproc" in wanted:
                results += self._inproc()
            if "cli" in wanted:
                results += self._cli()
            if servers is not None:
                results += self._serving(stack, *servers())
        if "run" in wanted:
            results += self._run()
        if "edge" in wanted:
            results += self._edge()
        if "training" in wanted:
            results += self._training()
        by_name = {r.name: r for r in results}
        return [by_name[name] for name in NAMES if name in self.names]

    def _result(self, name: str, values, unit: str, ceilings, ceiling_of: str) -> Result:
        return result(name, values, unit, ceilings, ceiling_of, TARGETS.get(name))

    def _inproc(self) -> list[Result]:
        self.progress("TFLite, eager and numpy rates in process")
        s = {
            name: []
            for name in ("tflite_rows_b1", "numpy_rows_b1", "eager_rows_b1", "tflite_rows_b10k", "numpy_rows_b10k")
        }
        for _ in range(self.budget.repeats):
            for name, values in s.items():
                values.append(self.inproc.rate(name, self.budget.inproc_window_s))
        return [
            self._result("tflite_rows_b1", s["tflite_rows_b1"], "rows/s", s["numpy_rows_b1"], "numpy b1"),
            self._result("tflite_rows_b10k", s["tflite_rows_b10k"], "rows/s", s["numpy_rows_b10k"], "numpy b10k"),
            self._result("eager_rows_b1", s["eager_rows_b1"], "rows/s", s["numpy_rows_b1"], "numpy b1"),
        ]

    def _cli(self) -> list[Result]:
        self.progress("timing tfkit --help")
        times = _interleaved(
            self.budget.cli_repeats,
            {
                "help": ([_tfkit(), "--help"], "tfkit --help"),
                "click": ([sys.executable, "-c", "import click"], "python -c 'import click'"),
            },
        )
        return [self._result("cli_help_s", times["help"], "s", times["click"], "import click")]

    def _run(self) -> list[Result]:
        self.progress("timing tfkit run")
        # Exit 1 (a parity mismatch) still ran every step; its time counts.
        times = _interleaved(
            self.budget.run_repeats,
            {
                "run": ([_tfkit(), "run", "--force", "--out", str(self.workdir / "tfkit-run")], "tfkit run", (0, 1)),
                "tf": ([sys.executable, "-c", "import tensorflow"], "python -c 'import tensorflow'"),
            },
        )
        return [self._result("run_s", times["run"], "s", times["tf"], "import tensorflow")]

    def _edge(self) -> list[Result]:
        version = self._demo_export()
        self.progress("timing tfkit-edge check on the demo export")
        # Exit 1 (a mismatch) still reached the verdict; its time counts.
        times = _interleaved(
            self.budget.run_repeats + 2,
            {
                "edge": (
                    [
                        sys.executable,
                        "-m",
                        "toolkit.edge",
                        "check",
                        str(version),
                        "--report",
                        str(self.workdir / "edge-report"),
                    ],
                    "tfkit-edge check",
                    (0, 1),
                ),
                "litert": (
                    [
                        sys.executable,
                        "-c",
                        "import numpy; from ai_edge_litert.interpreter import Interpreter; "
                        f"Interpreter(model_path={str(version / 'model.tflite')!r})",
                    ],
                    "python -c 'import numpy; Interpreter(model.tflite)'",
                ),
            },
        )
        return [self._result("edge_check_s", times["edge"], "s", times["litert"], "numpy + LiteRT load")]

    def _demo_export(self) -> Path:
        """The demo's version folder (float32 and every quantized TFLite file): tfkit run's when the run group
        made it, else trained and exported here (not measured)."""
        version = self.workdir / "tfkit-run" / "models" / MODEL / "1"
        if version.is_dir():
            return version
        self.progress("training and exporting the demo model for tfkit-edge (not measured)")
        run = self.workdir / "edge-run"
        _command([_tfkit(), "train", "--out", str(run), "--no-plots", "--force"], "tfkit train")
        _command(
            [
                _tfkit(),
                "export",
                str(run),
                "--model-base-path",
                str(self.workdir / "edge-models"),
                "--name",
                MODEL,
                "--version",
                "1",
                "--force",
                "--quantize",
                "dynamic,float16,int8",
            ],
            "tfkit export",
        )
        return self.workdir / "edge-models" / MODEL / "1"

    def _training(self) -> list[Result]:
        b = self.budget.training
        trainer = training.Trainer(_tfkit(), _env(), ROOT, b)
        s = training.measure(trainer, self.workdir / "training", self.progress)
        return [
            self._result("train_peak_rss_mb", s["rss_big"], "MB", s["rss_small"], f"{b.small_rows:,}-row CSV"),
            self._result("train_rows_per_s", s["rows_big"], "rows/s", s["bare_big"], "bare read+parse"),
            self._result(
                "train_scaleout_2w",
                s["rows_2w"],
                "rows/s",
                s["rows_1w"],
                "1 worker" + (", 1 core each" if trainer.cores else ""),
            ),
        ]

    def _serving(self, stack: contextlib.ExitStack, ours, batching, logging) -> list[Result]:
        b = self.budget
        requests = {rows: inproc.request_file(self.workdir, rows).read_bytes() for rows in inproc.REQUEST_ROWS}
        # Each value's window right before its ceiling's, in the table's order.
        needed = list(dict.fromkeys(w for name in GROUPS["serving"] if name in self.names for w in _windows_of(name)))
        targets = {"ours": ours.grpc_target, "batching": batching and batching.grpc_target}
        batch1 = {}  # the batch-1 request of each server that is not sent the model's own
        if logging is not None:
            targets["lognone"] = logging.grpc_target
            for rate in (w.removeprefix("lograte").removesuffix("_c8") for w in needed if w.startswith("lograte")):
                targets[f"lograte{rate}"] = logging.grpc_target
                batch1[f"lograte{rate}"] = inproc.request_file(self.workdir, 1, logged_model(rate)).read_bytes()
        if any(w.startswith("null") for w in needed):
            response = self._response_bytes(ours.grpc_target, requests[1])
            targets["null"] = stack.enter_context(self._null_server(response)).grpc_target
        pool = stack.enter_context(ClientPool(CLIENT_PROCESSES))
        rest_url = f"{ours.rest_url}/v1/models/{MODEL}:predict"
        rest_body = inproc.rest_body_file(self.workdir).read_bytes()

        def measure(window: str):
            server, _, what = window.partition("_")
            if server == "signature":  # the in-process ceiling of rows_N
                label = f"{int(what) // 1000}k"
                return self.inproc.rate(f"signature_rows_{label}", b.rows_window_s)
            if server == "rest":
                return pool.measure("rest", rest_url, rest_body, int(what[1:]), b.warmup_s, b.window_s)
            if server == "rows":
                return pool.measure("grpc", ours.grpc_target, requests[int(what)], 1, b.warmup_s, b.rows_window_s)
            if server.startswith("log"):
                return self._with_server_cpu(
                    logging.process.pid,
                    lambda: pool.measure(
                        "grpc", targets[server], batch1.get(server, requests[1]), int(what[1:]), b.warmup_s, b.window_s
                    ),
                )
            return pool.measure("grpc", targets[server], requests[1], int(what[1:]), b.warmup_s, b.window_s)

        windows = {name: [] for name in needed}
        for repeat in range(b.repeats):
            self.progress(f"serving measurements, repeat {repeat + 1}/{b.repeats}")
            for name in needed:
                windows[name].append(_checked(name, measure(name)))
        return [self._serving_result(name, windows) for name in GROUPS["serving"] if name in self.names]

    def _serving_result(self, name: str, windows: dict) -> Result:
        value, *ceiling = (windows[w] for w in _windows_of(name))
        ceiling = ceiling[0] if ceiling else None
        if name.endswith("_ms"):
            q = float(name.rsplit("_p", 1)[1][:-3])
            return self._result(
                name, [w.percentile_ms(q) for w in value], "ms", [w.percentile_ms(q) for w in ceiling], "null server"
            )
        if name.endswith("_cpu_us"):
            # Warm-up CPU is counted over the window's requests alike for value and ceiling.
            return self._result(
                name,
                [w.server_cpu_s / len(w.latencies) * 1e6 for w in value],
                "us",
                [w.server_cpu_s / len(w.latencies) * 1e6 for w in ceiling],
                "unlogged c8",
            )
        if name.startswith("grpc_predict_rows_"):
            rows = int(_windows_of(name)[0].removeprefix("rows_"))
            # One client, one request at a time: throughput is rows over mean latency.
            rates = [rows * len(w.latencies) / float(np.sum(w.latencies)) for w in value]
            return self._result(name, rates, "rows/s", ceiling, "in-process signature")
        ceiling_of = {
            "rest_predict_c8": "our gRPC c8",
            "batching_c32": "unbatched c32",
            **{f"grpc_predict_c8_log_rate_{r}": "unlogged c8" for r in LOG_RATES},
        }.get(name, "null server")
        return self._result(name, [w.rate for w in value], "req/s", [w.rate for w in ceiling], ceiling_of)

    def _start_servers(self, stack: contextlib.ExitStack, with_batching: bool, log_rates: list) -> Callable[[], tuple]:
        """Launch our server with REST, (with_batching) one with --enable_batching and (with
        `log_rates`) one serving the model unlogged and logged at each rate; returns a function
        that waits for them: (ours, batching or None, logging server or None)."""
        from toolkit.serve import LocalServer

        base = ["--model_name=" + MODEL, f"--model_base_path={self.workdir / 'models' / MODEL}"]
        # models=[]: like tensorflow_model_server, ours only listens once its
        # models are loaded, so the log line is readiness enough, and this
        # process need not import TensorFlow for a GetModelStatus check.
        servers = [LocalServer(base, [], rest=True, env=_env())]
        if with_batching:
            params = self.workdir / "batching.config"
            params.write_text(BATCHING_PARAMETERS)
            servers.append(
                LocalServer(base + ["--enable_batching", f"--batching_parameters_file={params}"], [], env=_env())
            )
        if log_rates:
            servers.append(LocalServer([f"--model_config_file={self._logging_config(log_rates)}"], [], env=_env()))
        for server in servers:
            stack.callback(server.stop)
        # Their TensorFlow imports overlap; nothing is being measured yet.
        errors = []
        threads = [threading.Thread(target=_collect, args=(errors, s.start)) for s in servers]
        for thread in threads:
            thread.start()

        def ready() -> tuple:
            for thread in threads:
                thread.join()
            if errors:
                raise BenchError(str(errors[0]))
            return servers[0], (servers[1] if with_batching else None), (servers[-1] if log_rates else None)

        return ready

    @staticmethod
    def _with_server_cpu(pid: int, measure) -> Window:
        """measure()'s Window with the server process's CPU seconds meanwhile (Linux /proc)."""
        before = _process_cpu_s(pid)
        window = measure()
        window.server_cpu_s = _process_cpu_s(pid) - before
        return window

    def _logging_config(self, log_rates: list) -> Path:
        """A model config serving the model unlogged, and as logged_model(rate) with every request logged
        at each rate (files under workdir/request-logs)."""
        base = self.workdir / "models" / MODEL
        entries = [f'config {{ name: "{MODEL}" base_path: "{base}" model_platform: "tensorflow" }}']
        for rate in log_rates:
            entries.append(
                f'config {{ name: "{logged_model(rate)}" base_path: "{base}" model_platform: "tensorflow"\n'
                f'  logging_config {{ log_collector_config {{ type: "file" '
                f'filename_prefix: "{self.workdir / "request-logs" / rate}" }}\n'
                f"                   sampling_config {{ sampling_rate: {rate} }} }} }}"
            )
        config = self.workdir / "logging.config"
        config.write_text("model_config_list {\n" + "\n".join(entries) + "\n}\n")
        return config

    def _response_bytes(self, target: str, request: bytes) -> bytes:
        """A real batch-1 PredictResponse of our server, as bytes."""
        import grpc

        from benchmarks.load import PREDICT_METHOD

        with grpc.insecure_channel(target) as channel:
            try:
                return channel.unary_unary(PREDICT_METHOD)(request, timeout=30)
            except grpc.RpcError as exc:
                raise BenchError(
                    f"Predict on our server at {target} failed: {exc.code().name}: {exc.details()}"
                ) from None

    @contextlib.contextmanager
    def _null_server(self, response: bytes):
        from toolkit.serve import LocalServer

        response_file = self.workdir / "null_response.bin"
        response_file.write_bytes(response)
        # LocalServer launches an executable with the server's flags; this one
        # is the null server, so it gets the same ports and readiness checks.
        launcher = self.workdir / "null-model-server"
        launcher.write_text(
            f'#!/bin/sh\nexec "{sys.executable}" -m benchmarks.nullserver --response="{response_file}" "$@"\n'
        )
        launcher.chmod(0o755)
        with LocalServer([], models=[], binary=str(launcher), env=_env()) as server:
            yield server


def _process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (fields 14 and 15 of /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _collect(errors: list, fn, *args) -> None:
    try:
        fn(*args)
    except Exception as exc:  # re-raised by the caller, in its own thread
        errors.append(exc)


def _checked(name: str, window):
    if not isinstance(window, Window):  # an in-process rate
        return window
    if window.errors:
        raise BenchError(f"{name}: {window.errors} request(s) failed; first: {window.first_error}")
    if not len(window.latencies):
        raise BenchError(f"{name}: no request completed within {window.duration:g}s")
    return window


def run(budget: Budget, names: Iterable[str], progress=lambda msg: None, keep: Path | None = None) -> list[Result]:
    """Run the named measurements in a temporary work folder (or `keep`)."""
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        return Suite(budget, names, keep, progress).run()
    with tempfile.TemporaryDirectory(prefix="tfkit-bench-") as workdir:
        return Suite(budget, names, Path(workdir), progress).run()
