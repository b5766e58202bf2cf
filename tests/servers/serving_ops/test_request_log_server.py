"""Request logging on a real `python -m serving`: what gRPC and REST calls leave in the files,
a prefix that cannot be written, a full disk, and a config reload that moves the logs."""

import re
import subprocess

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    classification_pb2,
    inference_pb2,
    predict_pb2,
    prediction_log_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)
from tensorflow_serving.config import logging_config_pb2

from serving import metrics
from serving.request_log import RequestLogger
from serving.tensors import from_numpy
from toolkit.serve import LocalServer

from support import MONITORING_FLAG, Http, MetricsSnapshot, wait_for, wait_for_polls

HALF, LOGREG, BROKEN = "half", "logreg", "broken"
LOGGED_OK = ":tensorflow:serving:request_log_count"
REGRESS, CLASSIFY = "tensorflow/serving/regress", "tensorflow/serving/classify"


def model_config(entries) -> str:
    """A model_config_list of (name, base path, log file prefix or None), every call logged."""
    body = ""
    for name, base, prefix in entries:
        logging = (
            (
                f'    logging_config {{ log_collector_config {{ type: "file" filename_prefix: "{prefix}" }} '
                "sampling_config { sampling_rate: 1.0 } }\n"
            )
            if prefix
            else ""
        )
        body += f'  config {{\n    name: "{name}" base_path: "{base}" model_platform: "tensorflow"\n{logging}  }}\n'
    return "model_config_list {\n" + body + "}\n"


def read_logs(prefix) -> list:
    return [
        prediction_log_pb2.PredictionLog.FromString(record.numpy())
        for path in sorted(tf.io.gfile.glob(f"{prefix}-*.tfrecord"))
        for record in tf.data.TFRecordDataset(path)
    ]


@pytest.fixture(scope="module")
def logged(tmp_path_factory, half_base, exported_model):
    """A server logging every call of `half` and `logreg`, and of `broken` to a prefix under a file."""
    root = tmp_path_factory.mktemp("request_log")
    (root / "a-file").write_text("")
    prefixes = {HALF: root / "logs" / "half", LOGREG: root / "logs" / "logreg", BROKEN: root / "a-file" / "log"}
    models = [
        (HALF, half_base, prefixes[HALF]),
        (LOGREG, exported_model / LOGREG, prefixes[LOGREG]),
        (BROKEN, half_base, prefixes[BROKEN]),
    ]
    config = root / "models.config"
    config.write_text(model_config(models))
    args = [f"--model_config_file={config}", "--model_config_file_poll_wait_seconds=1", MONITORING_FLAG]
    with LocalServer(args, rest=True, timeout=120) as server, grpc.insecure_channel(server.grpc_target) as channel:
        yield {
            "server": server,
            "stub": prediction_service_pb2_grpc.PredictionServiceStub(channel),
            "rest": Http(server.rest_url),
            "prefixes": prefixes,
            "config": config,
            "models": models,
            "root": root,
        }


def logged_count(rest_url: str, model: str, status: str = "OK") -> int:
    return int(MetricsSnapshot(rest_url).value(LOGGED_OK, model_name=model, status_code=status))


def wait_logged(logged, model: str, count: int) -> None:
    """Until `count` records of `model` are in its files (the writer flushes every batch it writes)."""
    wait_for(lambda: logged_count(logged["server"].rest_url, model) >= count, 30, f"{count} logged {model} calls")


def predict_request(rows: np.ndarray) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = LOGREG
    from_numpy(rows, as_tensor_content=True, out=request.inputs["features"])
    return request


def example_request(request, *tasks):
    request.input.example_list.examples.add().features.feature["x"].float_list.value.append(2.0)
    for signature, method in tasks:
        task = request.tasks.add()
        task.model_spec.name, task.model_spec.signature_name, task.method_name = HALF, signature, method
    return request


def test_grpc_and_rest_calls_are_logged_with_their_answers(logged, exported_version):
    stub, rest = logged["stub"], logged["rest"]
    with np.load(exported_version / "assets.extra" / "heldout.npz") as data:
        features = data["features"].astype(np.float32)
    # A small Predict is served on the event loop, a large one (> 16 KiB) on the pool: both are logged.
    small, large = predict_request(features[:3]), predict_request(np.resize(features, (5000, features.shape[1])))
    grpc_predicts = [(request, stub.Predict(request, timeout=30)) for request in (small, large)]
    status, answer = rest.json("POST", f"/v1/models/{LOGREG}:predict", {"instances": features[:2].tolist()})
    assert status == 200
    wait_logged(logged, LOGREG, 3)

    logs = read_logs(logged["prefixes"][LOGREG])
    assert [entry.WhichOneof("log_type") for entry in logs] == ["predict_log"] * 3
    for entry, (request, response) in zip(logs, grpc_predicts):
        assert (entry.predict_log.request, entry.predict_log.response) == (request, response)
        assert entry.log_metadata.model_spec == response.model_spec
        assert list(entry.log_metadata.saved_model_tags) == ["serve"]
        assert entry.log_metadata.sampling_config.sampling_rate == 1.0
    rest_log = logs[2].predict_log
    assert (rest_log.request.model_spec.name, rest_log.response.model_spec.version.value) == (LOGREG, 1)
    np.testing.assert_array_equal(tf.make_ndarray(rest_log.request.inputs["features"]), features[:2])
    predictions = {name: tf.make_ndarray(tensor) for name, tensor in rest_log.response.outputs.items()}
    for row, prediction in enumerate(answer["predictions"]):
        for name, value in prediction.items():
            np.testing.assert_allclose(predictions[name][row], value, rtol=1e-6)


def test_classify_regress_and_multi_inference_are_logged_over_both_apis(logged):
    stub, rest = logged["stub"], logged["rest"]
    classify = example_request(classification_pb2.ClassificationRequest())
    classify.model_spec.name, classify.model_spec.signature_name = HALF, "classify_x_to_y"
    regress = example_request(regression_pb2.RegressionRequest())
    regress.model_spec.name, regress.model_spec.signature_name = HALF, "regress_x_to_y"
    multi = example_request(
        inference_pb2.MultiInferenceRequest(), ("regress_x_to_y", REGRESS), ("classify_x_to_y", CLASSIFY)
    )
    start = logged_count(logged["server"].rest_url, HALF)
    answers = [
        ("classify_log", classify, stub.Classify(classify, timeout=30)),
        ("regress_log", regress, stub.Regress(regress, timeout=30)),
        ("multi_inference_log", multi, stub.MultiInference(multi, timeout=30)),
    ]
    # The gRPC calls' records first: the writer thread logs them after the answers went out.
    wait_logged(logged, HALF, start + len(answers))
    for verb, signature in (("classify", "classify_x_to_y"), ("regress", "regress_x_to_y")):
        body = {"signature_name": signature, "examples": [{"x": 2.0}]}
        assert rest.json("POST", f"/v1/models/{HALF}:{verb}", body)[0] == 200
    wait_logged(logged, HALF, start + len(answers) + 2)

    logs = read_logs(logged["prefixes"][HALF])
    by_kind = {}
    for entry in logs:
        by_kind.setdefault(entry.WhichOneof("log_type"), []).append(getattr(entry, entry.WhichOneof("log_type")))
    for kind, request, response in answers:
        assert (by_kind[kind][0].request, by_kind[kind][0].response) == (request, response)
    rest_classify, rest_regress = by_kind["classify_log"][1], by_kind["regress_log"][1]
    assert rest_classify.request.model_spec.signature_name == "classify_x_to_y"
    assert rest_classify.response.result.classifications[0].classes[0].score == 3.0
    assert rest_regress.response.result.regressions[0].value == 3.0


def test_an_unwritable_prefix_never_fails_a_request_and_is_reported_once(logged):
    rest = logged["rest"]
    for _ in range(5):
        status, answer = rest.json("POST", f"/v1/models/{BROKEN}:predict", {"instances": [1.0]})
        assert (status, answer) == (200, {"predictions": [2.5]})
    url = logged["server"].rest_url
    # makedirs below a regular file: TensorFlow says FAILED_PRECONDITION ("Not a directory").
    wait_for(lambda: logged_count(url, BROKEN, "FAILED_PRECONDITION") == 5, 30, "5 failed log writes")
    dropped = MetricsSnapshot(url).value(
        ":tfkit:serving:request_log_dropped_count", model_name=BROKEN, reason="write_error"
    )
    assert dropped == 5
    reports = [
        line
        for line in logged["server"].log_lines()
        if str(logged["prefixes"][BROKEN]) in line and "records dropped" in line
    ]
    assert len(reports) == 1, reports


def test_a_config_reload_moves_and_stops_logging(logged):
    """Runs last: it rewrites the module server's config, then stops the server."""
    url, rest = logged["server"].rest_url, logged["rest"]
    moved = logged["root"] / "moved" / "half"
    (half, half_base, _), (logreg, logreg_base, _), _ = logged["models"]
    seen = int(MetricsSnapshot(url).value(":tfkit:serving:poll_count", source="config_file"))
    logged["config"].write_text(model_config([(half, half_base, moved), (logreg, logreg_base, None)]))
    wait_for_polls(url, "config_file", seen)
    before = {model: len(read_logs(logged["prefixes"][model])) for model in (HALF, LOGREG)}
    assert rest.json("POST", f"/v1/models/{LOGREG}:predict", {"instances": [[0.5, 0.5]]})[0] == 200
    assert rest.json("POST", f"/v1/models/{HALF}:predict", {"instances": [4.0]})[0] == 200
    # Stopping writes every queued record: after it, files hold everything they ever will.
    assert logged["server"].stop() == 0
    assert [entry.predict_log.response.outputs["y"].float_val for entry in read_logs(moved)] == [[4.0]]
    assert {model: len(read_logs(logged["prefixes"][model])) for model in (HALF, LOGREG)} == before


@pytest.fixture
def tiny_disk(tmp_path):
    """A 64 KiB tmpfs (skipped where mounting is not allowed)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_a_full_disk_keeps_every_file_readable_to_its_last_whole_record(tiny_disk):
    config = logging_config_pb2.LoggingConfig()
    config.log_collector_config.type = "file"
    config.log_collector_config.filename_prefix = str(tiny_disk / "log")
    config.sampling_config.sampling_rate = 1.0
    metrics.reset()
    logger = RequestLogger(config, ["serve"], write_interval_s=0.001)
    request = predict_request(np.ones((100, 2), np.float32))  # ~1 KiB a record: the disk fills after ~60
    response = predict_pb2.PredictResponse()

    def outcomes() -> dict:
        found = re.findall(
            rf'^:tensorflow:serving:request_log_count{{model_name="{LOGREG}",status_code="(\w+)"}} '
            r"(\d+)$",
            metrics.render(),
            re.MULTILINE,
        )
        return {code: int(count) for code, count in found}

    for sent in range(1, 200):
        logger.log(LOGREG, "predict_log", request, response)  # one at a time: each its own write
        wait_for(lambda sent=sent: sum(outcomes().values()) == sent, 10, f"record {sent} written or counted lost")
        if "RESOURCE_EXHAUSTED" in outcomes():
            break
    logger.close()
    assert outcomes()["OK"] > 20 and outcomes()["RESOURCE_EXHAUSTED"] == 1
    logs = read_logs(tiny_disk / "log")  # a cut record would fail the read
    assert len(logs) == outcomes()["OK"]
    assert all(entry.predict_log.request == request for entry in logs)
