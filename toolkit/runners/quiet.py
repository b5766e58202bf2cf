"""Capture what native libraries print on file descriptor 2 (TensorFlow's
start-up banner, the converter's MLIR dump, LiteRT's delegate notice), which
Python-level logging settings cannot silence."""

import contextlib
import os
import sys
import tempfile


@contextlib.contextmanager
def captured_stderr():
    """Redirect fd 2 into a temp file; the yielded list receives the text when the block ends."""
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
