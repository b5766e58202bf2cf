"""Start a TF-Serving-compatible model server on free local ports and wait for it.

`LocalServer` launches `python -m serving` (ours) or a real
`tensorflow_model_server` binary with the binary's own flags, picks free
127.0.0.1 ports itself (retrying when a port turns out to be taken between
picking and binding), waits for the `Running gRPC ModelServer at` log line and
for every expected model to report an AVAILABLE version through
GetModelStatus, and raises `ServerNotReady` with the server's last log lines
if that does not happen in time.

    with LocalServer(["--model_name=m", "--model_base_path=/models/m"]) as s:
        stub_target = s.grpc_target     # "127.0.0.1:PORT"
        s.rest_url                      # "http://127.0.0.1:PORT" (rest=True)
"""

import collections
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from serving import DRAIN_GRACE_ENV, LISTEN_HOST_ENV
from toolkit.errors import InputError, ServerNotReady
from toolkit.status import model_versions

READY_LINE = "Running gRPC ModelServer at"
REST_READY_LINE = "Exporting HTTP/REST API at"
# Log fragments meaning "the port we picked was grabbed by someone else".
_PORT_TAKEN = (
    "Address already in use",
    "Failed to BuildAndStart gRPC server",
    "Failed to start HTTP Server",
    "Failed to add port",
)
# TensorFlow's start-up chatter that TF_CPP_MIN_LOG_LEVEL does not silence.
_NOISE = (
    "WARNING: All log messages before absl::InitializeLog()",
    "I0000 ",
    "W0000 ",
    "To enable the following instructions",
)
_PORT_ATTEMPTS = 3
_PORT_PICKS = 100
_LOWEST_PICKED_PORT = 15000
_RANDOM = random.SystemRandom()  # not the caller's seeded `random`
_ports_given: set[int] = set()
_LOG_LINES_KEPT = 400
_LOG_LINES_SHOWN = 15


def free_port() -> int:
    """A TCP port free on every interface a moment ago, never the same twice in one process.

    As portpicker does, it is picked at random below the kernel's ephemeral
    range when it can be: ports the kernel hands out for port 0 are the ones it
    also gives outgoing connections, and a dozen servers started at once could
    otherwise be handed the same one before any of them binds it.
    """
    low = _ephemeral_range_start()
    for _ in range(_PORT_PICKS):
        port = _bindable(_RANDOM.randrange(_LOWEST_PICKED_PORT, low) if low > _LOWEST_PICKED_PORT else 0)
        if port and port not in _ports_given:
            _ports_given.add(port)
            return port
    raise OSError("no free TCP port found")


def _bindable(port: int) -> int | None:
    """`port` (0: any) if a listening socket may bind it on every interface now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("", port))
        except OSError:
            return None
        return sock.getsockname()[1]


def _ephemeral_range_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default; other kernels pick elsewhere, which costs only a retry


def find_server_binary(path: str | None = None) -> str | None:
    """The real `tensorflow_model_server`: `path` if given, else the one on PATH."""
    if path:
        resolved = shutil.which(path) if os.sep not in path else path
        if not resolved or not os.access(resolved, os.X_OK):
            raise InputError(f"server binary not found or not executable: {path}")
        return resolved
    return shutil.which("tensorflow_model_server")


def _flag_value(args: Sequence[str], name: str) -> str | None:
    """The value of `--name=value` or `--name value` in a flag list (last wins)."""
    value = None
    for i, arg in enumerate(args):
        if arg.startswith(f"--{name}="):
            value = arg.split("=", 1)[1]
        elif arg == f"--{name}" and i + 1 < len(args):
            value = args[i + 1]
    return value


def models_in_args(args: Sequence[str]) -> list[str]:
    """Names of the models a server started with `args` is expected to serve."""
    config_file = _flag_value(args, "model_config_file")
    if config_file:
        from google.protobuf import text_format
        from tensorflow_serving.config import model_server_config_pb2

        try:
            text = Path(config_file).read_text()
            config = text_format.Parse(text, model_server_config_pb2.ModelServerConfig())
        except (OSError, text_format.ParseError) as exc:
            raise InputError(f"cannot read model config file {config_file}: {exc}") from None
        return [model.name for model in config.model_config_list.config]
    if _flag_value(args, "model_base_path"):
        return [_flag_value(args, "model_name") or "default"]
    return []


class LocalServer:
    """A model server process on free 127.0.0.1 ports; a context manager.

    args: the server's flags, spelled as for `tensorflow_model_server`
        (without --port/--rest_api_port, which the launcher picks).
    models: names that must be AVAILABLE before start() returns; by default
        the ones named by --model_name/--model_base_path or --model_config_file.
    binary: path of a real `tensorflow_model_server`; None runs `python -m serving`.
    rest: also export the REST API on a free port (sets .rest_url).
    timeout: seconds to wait for readiness.
    log_path: also append the server's output to this file.
    host: the address `python -m serving` listens on (default 127.0.0.1, so a
        launched server is not reachable from other machines; None: every
        interface, as tensorflow_model_server, which always listens on all).
    """

    def __init__(
        self,
        args: Iterable[str] = (),
        models: Iterable[str] | None = None,
        *,
        binary: str | None = None,
        rest: bool = False,
        timeout: float = 60.0,
        log_path: os.PathLike | None = None,
        env: dict | None = None,
        host: str | None = "127.0.0.1",
    ):
        self.args = list(args)
        for reserved in ("port", "rest_api_port"):
            if _flag_value(self.args, reserved) is not None:
                raise InputError(f"LocalServer picks --{reserved} itself; remove it from the flags")
        self.models = list(models) if models is not None else models_in_args(self.args)
        self.binary = binary
        self.rest = rest
        self.timeout = timeout
        self.log_path = Path(log_path) if log_path else None
        self.env = env
        self.host = host
        self.grpc_port: int | None = None
        self.rest_port: int | None = None
        self.process: subprocess.Popen | None = None
        self._lines: collections.deque = collections.deque(maxlen=_LOG_LINES_KEPT)
        self._lines_lock = threading.Lock()
        self._reader: threading.Thread | None = None

    # -- public ---------------------------------------------------------------
    @property
    def grpc_target(self) -> str:
        """`127.0.0.1:PORT` of the gRPC API."""
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def rest_url(self) -> str | None:
        """`http://127.0.0.1:PORT` of the REST API, or None without rest=True."""
        return f"http://127.0.0.1:{self.rest_port}" if self.rest_port else None

    def log_lines(self) -> list[str]:
        """Everything the server printed so far (the last few hundred lines)."""
        with self._lines_lock:
            return list(self._lines)

    def start(self) -> "LocalServer":
        """Launch and wait until ready; ServerNotReady otherwise.

        Each attempt gets the full timeout: a server only binds its ports after
        loading its models, so a taken port shows up late.
        """
        attempt = 1
        while True:
            self._launch()
            try:
                self._wait_ready(time.monotonic() + self.timeout)
                return self
            except ServerNotReady:
                retry = self._port_taken() and attempt < _PORT_ATTEMPTS
                self.stop()
                if not retry:
                    raise
            attempt += 1

    def stop(self, grace: float = 10.0) -> int | None:
        """SIGTERM, wait up to `grace` seconds, then SIGKILL; returns the exit code."""
        proc = self.process
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._reader is not None:
            self._reader.join(5)
        return proc.returncode

    def __enter__(self) -> "LocalServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- internals ------------------------------------------------------------
    def command(self) -> list[str]:
        """The command line for the current ports."""
        exe = [self.binary] if self.binary else [sys.executable, "-m", "serving"]
        ports = [f"--port={self.grpc_port}"]
        if self.rest:
            ports.append(f"--rest_api_port={self.rest_port}")
        return exe + ports + self.args

    def _launch(self) -> None:
        self.grpc_port = free_port()
        self.rest_port = free_port() if self.rest else None
        env = dict(os.environ if self.env is None else self.env)
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        env.setdefault("GRPC_VERBOSITY", "ERROR")
        if self.host and not self.binary:
            env[LISTEN_HOST_ENV] = self.host
        if not self.binary:
            env.setdefault(DRAIN_GRACE_ENV, "0")  # no load balancer routes here: stop() drains at once
        with self._lines_lock:
            self._lines.clear()
        self.process = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            text=True,
            errors="replace",
            bufsize=1,
        )
        self._reader = threading.Thread(
            target=self._read_output, args=(self.process,), name="local-server-log", daemon=True
        )
        self._reader.start()

    def _read_output(self, proc: subprocess.Popen) -> None:
        log = open(self.log_path, "a") if self.log_path else None
        try:
            for line in proc.stdout:
                with self._lines_lock:
                    self._lines.append(line.rstrip("\n"))
                if log:
                    log.write(line)
                    log.flush()
        finally:
            if log:
                log.close()

    def _not_ready(self, why: str) -> ServerNotReady:
        lines = [line for line in self.log_lines() if not line.startswith(_NOISE)]
        tail = lines[-_LOG_LINES_SHOWN:]
        shown = ("; server log:\n  " + "\n  ".join(tail)) if tail else "; the server printed nothing"
        return ServerNotReady(f"model server {' '.join(self.command())} {why}{shown}")

    def _port_taken(self) -> bool:
        return any(marker in line for line in self.log_lines() for marker in _PORT_TAKEN)

    def _wait_for_line(self, marker: str, deadline: float) -> None:
        while not any(marker in line for line in self.log_lines()):
            if self.process.poll() is not None:
                raise self._not_ready(f"exited with code {self.process.returncode}")
            if self._port_taken():
                # e.g. the REST port: the server keeps running without it
                raise self._not_ready("could not bind a port it was given")
            if time.monotonic() > deadline:
                raise self._not_ready(f"did not log {marker!r} within {self.timeout:g}s")
            time.sleep(0.05)

    def _wait_ready(self, deadline: float) -> None:
        self._wait_for_line(READY_LINE, deadline)
        if self.rest:
            self._wait_for_line(REST_READY_LINE, deadline)
        if self.models:
            self._wait_models_available(deadline)

    def _wait_models_available(self, deadline: float) -> None:
        import grpc

        pending = list(self.models)
        last_error = ""
        with grpc.insecure_channel(self.grpc_target) as channel:
            while pending:
                if self.process.poll() is not None:
                    raise self._not_ready(f"exited with code {self.process.returncode}")
                if time.monotonic() > deadline:
                    raise self._not_ready(
                        f"did not make model(s) {', '.join(pending)} AVAILABLE within "
                        f"{self.timeout:g}s ({last_error or 'no AVAILABLE version'})"
                    )
                try:
                    versions = model_versions(channel, pending[0], timeout=5)
                    if any(state == "AVAILABLE" for _, state, _ in versions):
                        pending.pop(0)
                        continue
                    last_error = "; ".join(f"version {v}: {error}" for v, _, error in versions if error)
                except grpc.RpcError as exc:
                    last_error = f"{exc.code().name}: {exc.details()}"
                time.sleep(0.1)


class BackgroundServer:
    """A LocalServer started on a thread, so its TensorFlow import and model load
    overlap with our own work; `wait()` returns it or raises its error."""

    def __init__(self, args: list, binary: str | None = None, timeout: float = 60.0, host: str = "127.0.0.1"):
        # Resolve --server-binary here: a bad path is a one-line InputError, not a thread's traceback.
        binary = find_server_binary(binary) if binary else None
        self.server = LocalServer(args, binary=binary, rest=True, timeout=timeout, host=host)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._start, name="tfkit-server", daemon=True)
        self._thread.start()

    def _start(self):
        try:
            self.server.start()
        except BaseException as exc:  # re-raised in the caller's thread by wait()
            self._error = exc

    def wait(self):
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self.server

    def stop(self):
        """Stop the server, also while it is still starting (e.g. training failed)."""
        while self._thread.is_alive():
            # Killing the process makes start() give up instead of waiting out its timeout.
            self.server.stop(grace=2)
            self._thread.join(0.2)
        self.server.stop()


def serve_version(version_dir: Path, name: str, stack, flags: Iterable[str] = (), **server_options) -> BackgroundServer:
    """Serve exactly `version_dir` (a private base path links to it) in the background.

    `flags`: further server flags (e.g. --saved_model_tags); `server_options` go to
    `BackgroundServer` (binary, timeout, host).
    """
    base = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tfkit-serve-")))
    (base / name).mkdir()
    (base / name / version_dir.name).symlink_to(version_dir.resolve(), target_is_directory=True)
    server = BackgroundServer([f"--model_name={name}", f"--model_base_path={base / name}", *flags], **server_options)
    stack.callback(server.stop)
    return server


def serve_command(
    model=None, name: str | None = None, port: int = 8500, rest_port: int = 8501, binary: str | None = None, extra=()
) -> list[str]:
    """The server command line for `tfkit serve` (tensorflow_model_server's flags).

    MODEL is a model folder of versions (all served per the default policy:
    latest) or one version folder (that exact version is served).
    """
    command = [binary] if binary else [sys.executable, "-m", "serving"]
    command += [f"--port={port}", f"--rest_api_port={rest_port}"]
    if model is not None:
        path = Path(model)
        if not path.exists():
            raise InputError(f"model path not found: {path}")
        if not path.is_dir():
            raise InputError(
                f"{path}: not a folder; serve a model folder (BASE/NAME) or a version folder (BASE/NAME/VERSION)"
            )
        if (path / "saved_model.pb").is_file() or (path / "model.tflite").is_file():
            if not path.name.isdigit():
                raise InputError(f"{path}: a version folder must have an integer name")
            base, name = path.resolve().parent, name or path.resolve().parent.name
            # Pin the version with a config file: the default policy would serve the latest.
            from toolkit.fleet.plan import ModelEntry, VersionPolicy, build_config, render_config

            version = int(path.name)
            entry = ModelEntry(name, base, (version,), VersionPolicy("specific", versions=(version,)))
            fd, config = tempfile.mkstemp(prefix="tfkit-serve-", suffix=".config")
            with os.fdopen(fd, "w") as f:
                f.write(render_config(build_config([entry])))
            command.append(f"--model_config_file={config}")
        else:
            command += [f"--model_name={name or path.resolve().name}", f"--model_base_path={path.resolve()}"]
    return command + list(extra)
