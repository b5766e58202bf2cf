"""What a rollout-test replica process runs: `python -m serving`'s main(), logging to a file."""

import os
import sys

from serving import server

# Imported once by the forkserver that forks the replicas: the server and, with it, TensorFlow.
# (Python 3.11's forkserver ignores the parent's sys.path, so it can preload the installed
# `serving` but not this test module, which each replica imports after the fork, cheaply.)
PRELOAD = ["serving.grpc_service", "serving.rest_api", "serving.servable", "serving.server"]


def run(argv: list, log_path: str, env: dict) -> None:
    """Be the server, with `env` added to the environment and stdout/stderr going to `log_path`."""
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    os.environ.update(env)
    sys.exit(server.main(argv))
