"""Lazy TensorFlow import with the log spam turned down.

Import TensorFlow only through `tf()` inside the functions that need it, so
`tfkit --help` and other light paths never pay the ~3 s import.
"""

import contextlib
import os
import sys


def quiet_tf_logs() -> None:
    """Silence TensorFlow's C++ and absl logging unless the user chose a level."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")


@contextlib.contextmanager
def native_stderr_silenced():
    """Send file descriptor 2 to /dev/null for the duration of the block.

    TensorFlow 2.21 writes its oneDNN/CUDA banners from C++ before absl's
    logging is initialised, so TF_CPP_MIN_LOG_LEVEL cannot hide them; only
    redirecting the descriptor does. Python exceptions still propagate and are
    printed after the descriptor is restored. Skipped when the user asked for
    TensorFlow's logs (TF_CPP_MIN_LOG_LEVEL below 3).
    """
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3") != "3":
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def tf():
    """Return the `tensorflow` module, imported quietly on first use."""
    if "tensorflow" not in sys.modules:
        quiet_tf_logs()
        with native_stderr_silenced():
            import tensorflow
        tensorflow.get_logger().setLevel("ERROR")
    return sys.modules["tensorflow"]
