"""The benchmark's model and its in-process measurements, in one TensorFlow process.

    python -m benchmarks.inproc WORKDIR [--models NAME,...]

Trains and exports the logreg model (WORKDIR/run, WORKDIR/models/logreg/1),
writes the serialized PredictRequests the gRPC clients send
(WORKDIR/requests/rows_<N>.bin, encoded by `tf.make_tensor_proto` as a
TensorFlow client would; the batch-1 one also for each model name of
--models, the same model served under other names) and the REST body of
the batch-1 one, prints
`@ready`, then measures on demand so the parent can interleave these with
its server measurements: each stdin line `SERIES SECONDS` is answered with
`@rate SERIES ROWS_PER_SECOND`. Series (SERIES_NAMES): the SavedModel
signature called in process, the TFLite interpreter, the trained tf.Module
called eagerly, and numpy computing sigmoid(x.w + b) with the trained weights.
`InProcess` is the parent's handle on this process.
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.harness import BenchError

MODEL_NAME = "logreg"
REQUEST_ROWS = (1, 10_000, 100_000)
WARMUP_CALLS = 3


def request_file(workdir: Path, rows: int, model: str = MODEL_NAME) -> Path:
    """Where the serialized PredictRequest of `rows` rows for `model` is written."""
    return workdir / "requests" / (f"rows_{rows}.bin" if model == MODEL_NAME else f"{model}_rows_{rows}.bin")


def rest_body_file(workdir: Path) -> Path:
    """Where the REST predict body for the batch-1 request is written."""
    return workdir / "requests" / "rows_1.json"


def rows_per_second(fn, rows: int, window_s: float) -> float:
    """Call fn() repeatedly for about window_s seconds (at least once); rows/s."""
    calls = 0
    began = time.perf_counter()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - began
        if elapsed >= window_s:
            return calls * rows / elapsed


def _prepare(workdir: Path) -> tuple:
    """Train and export; the version folder and the run."""
    from toolkit.artifacts.export import export_model
    from toolkit.training.rundir import load_run, train_to_dir

    train_to_dir(workdir / "run", plots=False, force=True)
    version_dir = export_model(workdir / "run", workdir / "models", MODEL_NAME, version=1, force=True)
    return version_dir, load_run(workdir / "run")


def _rows(features: np.ndarray, count: int) -> np.ndarray:
    """`count` real held-out rows (tiled when asked for more than there are)."""
    reps = -(-count // len(features))
    return np.ascontiguousarray(np.tile(features, (reps, 1))[:count], dtype=np.float32)


def _write_requests(workdir: Path, features: np.ndarray, models: tuple) -> None:
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    wanted = [(MODEL_NAME, count) for count in REQUEST_ROWS] + [(model, 1) for model in models]
    for model, count in wanted:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = model
        request.model_spec.signature_name = "serving_default"
        request.inputs["features"].CopyFrom(tf.make_tensor_proto(_rows(features, count)))
        path = request_file(workdir, count, model)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(request.SerializeToString())
    body = {"instances": _rows(features, 1).tolist()}
    rest_body_file(workdir).write_text(json.dumps(body))


def _tflite_call(model_path: Path, x: np.ndarray):
    """invoke() on a LiteRT interpreter resized to x's batch, fetching every output."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(model_path))
    index = interpreter.get_input_details()[0]["index"]
    interpreter.resize_tensor_input(index, x.shape, strict=False)
    interpreter.allocate_tensors()
    outputs = [d["index"] for d in interpreter.get_output_details()]

    def call():
        interpreter.set_tensor(index, x)
        interpreter.invoke()
        return [interpreter.get_tensor(i) for i in outputs]

    return call


def _numpy_call(w: np.ndarray, b: float, x: np.ndarray):
    def call():
        return 1.0 / (1.0 + np.exp(-(x @ w + b)))

    return call


def _tf_call(fn, x: np.ndarray, keyword: bool):
    """fn on a tensor made from x (numpy in), outputs as numpy (numpy out)."""
    import tensorflow as tf

    def call():
        tensor = tf.constant(x)
        outputs = fn(features=tensor) if keyword else fn(tensor)
        return {k: v.numpy() for k, v in outputs.items()}

    return call


SERIES_NAMES = (
    "signature_rows_10k",
    "signature_rows_100k",
    "tflite_rows_b1",
    "tflite_rows_b10k",
    "numpy_rows_b1",
    "numpy_rows_b10k",
    "eager_rows_b1",
)


def series(workdir: Path, models: tuple = ()) -> dict:
    """Prepare the model and requests (batch-1 ones also for `models`); {series name: (warmed-up call, rows
    per call)}."""
    import tensorflow as tf

    version_dir, run = _prepare(workdir)
    features = run.heldout.features
    _write_requests(workdir, features, models)
    weights = run.record["weights"]
    w = np.asarray(weights["w"], dtype=np.float32).reshape(-1, 1)
    b = np.float32(weights["b"])
    signature = tf.saved_model.load(str(version_dir)).signatures["serving_default"]
    x1, x10k, x100k = (_rows(features, n) for n in REQUEST_ROWS)
    calls = {
        "signature_rows_10k": (_tf_call(signature, x10k, keyword=True), 10_000),
        "signature_rows_100k": (_tf_call(signature, x100k, keyword=True), 100_000),
        "tflite_rows_b1": (_tflite_call(version_dir / "model.tflite", x1), 1),
        "tflite_rows_b10k": (_tflite_call(version_dir / "model.tflite", x10k), 10_000),
        "numpy_rows_b1": (_numpy_call(w, b, x1), 1),
        "numpy_rows_b10k": (_numpy_call(w, b, x10k), 10_000),
        "eager_rows_b1": (_tf_call(run.model.serving_default, x1, keyword=False), 1),
    }
    assert tuple(calls) == SERIES_NAMES
    for fn, _ in calls.values():
        for _ in range(WARMUP_CALLS):  # tracing, allocation, caches
            fn()
    return calls


def main(argv: list) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.inproc", description=__doc__.split("\n\n")[0])
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--models", default="", help="also write the batch-1 request for these model names")
    args = parser.parse_args(argv)
    calls = series(args.workdir, tuple(filter(None, args.models.split(","))))
    print("@ready", flush=True)
    for line in sys.stdin:
        name, seconds = line.split()
        fn, rows = calls[name]
        print(f"@rate {name} {rows_per_second(fn, rows, float(seconds))!r}", flush=True)
    return 0


class InProcess:
    """The parent's handle on `python -m benchmarks.inproc`: start it (it
    prepares the model), then `rate(series, seconds)` as often as needed."""

    def __init__(self, workdir: Path, env: dict, cwd: Path, models: tuple = ()):
        self._log_path = workdir / "inproc.log"
        self._log = open(self._log_path, "w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.inproc", str(workdir), f"--models={','.join(models)}"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            env=env,
            cwd=cwd,
        )
        self._reply("@ready")

    def rate(self, name: str, seconds: float) -> float:
        """Rows per second of a series, measured for about `seconds`."""
        self.process.stdin.write(f"{name} {seconds}\n")
        self.process.stdin.flush()
        return float(self._reply(f"@rate {name}").split()[-1])

    def _reply(self, prefix: str) -> str:
        # Our lines start with "@"; TensorFlow and LiteRT may print others.
        for line in self.process.stdout:
            if line.startswith(prefix):
                return line.strip()
        self.close()
        tail = "\n  ".join(self._log_path.read_text().strip().splitlines()[-10:])
        raise BenchError(
            f"benchmarks.inproc did not answer {prefix!r} (exit code {self.process.returncode}); its log:\n  {tail}"
        )

    def close(self) -> None:
        """End the process (closing its stdin ends its loop)."""
        if self.process.stdin and not self.process.stdin.closed:
            self.process.stdin.close()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
