"""Server replicas for the rollout tests: processes running `python -m serving`'s own main().

Every replica is a process of its own, with its own ports, signal handlers, log
file and exit code, running `serving.server.main(argv)` exactly as `python -m
serving` does. They are forked from a multiprocessing forkserver that imported
the server (and so TensorFlow) once: importing TensorFlow takes ~5 s of CPU,
15-25 s on a loaded 2-core machine, and the rollout test starts a dozen
replicas; forked, each serves within a second.
"""

import multiprocessing
import os
import signal
from pathlib import Path

import replica_main

from serving import DRAIN_GRACE_ENV, LISTEN_HOST_ENV

from support import wait_for

_READY_LINE = "Running gRPC ModelServer at"


class Replica:
    """One started server process."""

    def __init__(self, process, log_path: Path, port: int):
        self.process = process
        self.log_path = log_path
        self.port = port

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_serving(self, timeout: float = 60.0) -> None:
        """Until the server listens (it loads its models first)."""
        wait_for(
            lambda: _READY_LINE in self.log_text() or self.process.exitcode is not None,
            timeout,
            what=f"the replica on port {self.port} to listen",
        )
        assert self.process.exitcode is None, f"replica on port {self.port} exited:\n{self.log_text()[-2000:]}"

    def terminate(self) -> None:
        os.kill(self.process.pid, signal.SIGTERM)

    def wait_exit(self, timeout: float = 30.0) -> int:
        """The exit code; AssertionError if the process is still running after `timeout`."""
        self.process.join(timeout)
        assert self.process.exitcode is not None, (
            f"replica on port {self.port} still running:\n{self.log_text()[-2000:]}"
        )
        return self.process.exitcode

    def kill(self) -> None:
        if self.process.exitcode is None:
            self.process.kill()
            self.process.join(10)


class Launcher:
    """Starts replicas; `drain_grace_s` is their grace period after SIGTERM."""

    def __init__(self, log_dir: Path):
        self._context = multiprocessing.get_context("forkserver")
        self._context.set_forkserver_preload(replica_main.PRELOAD)
        self._log_dir = log_dir
        self._started: list[Replica] = []

    def start(self, port: int, args: list, drain_grace_s: float, rest_port: int = 0) -> Replica:
        """A replica serving gRPC on 127.0.0.1:`port` (and REST on `rest_port`), not yet waited for."""
        argv = [f"--port={port}", *args] + ([f"--rest_api_port={rest_port}"] if rest_port else [])
        env = {LISTEN_HOST_ENV: "127.0.0.1", DRAIN_GRACE_ENV: str(drain_grace_s), "TF_CPP_MIN_LOG_LEVEL": "3"}
        log_path = self._log_dir / f"replica-{len(self._started)}-port{port}.log"
        process = self._context.Process(target=replica_main.run, args=(argv, str(log_path), env), daemon=True)
        process.start()
        replica = Replica(process, log_path, port)
        self._started.append(replica)
        return replica

    def kill_all(self) -> None:
        """Kill every replica still running (test teardown)."""
        for replica in self._started:
            replica.kill()
