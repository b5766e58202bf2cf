"""TF Serving's own test models: ../shared/testdata/tf_serving beside the repository (read-only)."""

import os
import shutil
from pathlib import Path

TESTDATA = Path(__file__).resolve().parents[2] / "shared" / "testdata" / "tf_serving"

HALF_PLUS_TWO = TESTDATA / "saved_model_half_plus_two_cpu"
HALF_PLUS_TWO_TF2 = TESTDATA / "saved_model_half_plus_two_tf2_cpu"
HALF_PLUS_THREE = TESTDATA / "saved_model_half_plus_three"
TWO_VERSIONS = TESTDATA / "saved_model_half_plus_two_2_versions"
COUNTER = TESTDATA / "saved_model_counter"
BAD = TESTDATA / "bad_half_plus_two"
TFLITE = TESTDATA / "saved_model_half_plus_two_tflite"
TFLITE_SIGDEF = TESTDATA / "saved_model_half_plus_two_tflite_with_sigdef"


def copy_model(source: Path, dest: Path) -> Path:
    """A writable copy of a read-only test model folder."""
    shutil.copytree(source, dest)
    for root, dirs, files in os.walk(dest):
        for name in dirs + files:
            os.chmod(os.path.join(root, name), 0o755)
    return dest
