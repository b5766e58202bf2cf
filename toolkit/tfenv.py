"""Lazy TensorFlow import with the log spam turned down.

Import TensorFlow only through `tf()` inside the functions that need it, so
`tfkit --help` and other light paths never pay the ~3 s import.
"""

import os


def quiet_tf_logs() -> None:
    """Silence TensorFlow's C++ and absl logging unless the user chose a level."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")


def tf():
    """Return the `tensorflow` module, imported quietly on first use."""
    quiet_tf_logs()
    import tensorflow

    tensorflow.get_logger().setLevel("ERROR")
    return tensorflow
