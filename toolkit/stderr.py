"""Capture what native libraries print straight to file descriptor 2.

Standard library only: the device checker (toolkit.edge) uses it without TensorFlow.
"""

import contextlib
import os
import sys
import tempfile


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
