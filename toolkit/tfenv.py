"""Lazy TensorFlow import (its start-up banner captured with `toolkit.stderr.captured_stderr`).

Import TensorFlow only through `import_tf()` inside the functions that need it, so
`tfkit --help` and other light paths never pay the ~3 s import.
"""

import os
import sys

# Re-exported: callers that already import TensorFlow take both from here.
from toolkit.stderr import captured_stderr


def quiet_tf_logs() -> None:
    """Silence TensorFlow's C++ and absl logging unless the user chose a level."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")


def import_tf():
    """Return the `tensorflow` module, imported quietly on first use.

    The banner TensorFlow 2.21 prints before absl is initialised ignores
    TF_CPP_MIN_LOG_LEVEL, so it is captured, and shown only if the import fails
    (or when the user asked for TensorFlow's logs with TF_CPP_MIN_LOG_LEVEL<3).
    """
    if "tensorflow" not in sys.modules:
        quiet_tf_logs()
        failure = None
        with captured_stderr() as log:
            try:
                import tensorflow  # noqa: F401
            except BaseException as exc:  # re-raised below, once stderr is back
                failure = exc
        if failure is not None or os.environ["TF_CPP_MIN_LOG_LEVEL"] != "3":
            sys.stderr.write("".join(log))
        if failure is not None:
            raise failure
        sys.modules["tensorflow"].get_logger().setLevel("ERROR")
    return sys.modules["tensorflow"]
