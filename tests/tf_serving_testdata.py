"""TF Serving's own test models: ../shared/testdata/tf_serving beside the repository (read-only)."""

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
