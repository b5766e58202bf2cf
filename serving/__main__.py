"""`python -m serving`: a drop-in for tensorflow_model_server (same flags)."""

import os
import sys

# Before TensorFlow or gRPC load: users should see the server's log, not theirs.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

from serving.server import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
