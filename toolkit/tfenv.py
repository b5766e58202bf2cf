"""Lazy TensorFlow import, and capture of what native libraries print.

Import TensorFlow only through `import_tf()` inside the functions that need it, so
`tfkit --help` and other light paths never pay the ~3 s import.
"""

import contextlib
import os
import sys
import tempfile


def quiet_tf_logs() -> None:
    """Silence TensorFlow's C++ and absl logging unless the user chose a level."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")


@contextlib.contextmanager
def captured_stderr():
    """Redirect file descriptor 2 into a temp file; the yielded list receives the text when the block ends.

    Native code (TensorFlow's pre-absl start-up banner, the converter's MLIR
    dump, LiteRT's delegate notice) writes straight to the descriptor, which
    no Python-level logging setting reaches.
    """
    captured: list[str] = []
    with tempfile.TemporaryFile(mode="w+") as sink:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            yield captured
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            captured.append(sink.read())


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
