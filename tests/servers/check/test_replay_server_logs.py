"""Production traffic replayed: our server logs every gRPC and REST call of tfkit's model, then
`tfkit check VERSION --inputs 'PREFIX*'` feeds the logged requests to every runtime and judges
each against the logged responses, which must match our own server's answers bit for bit."""

import json

import grpc
import numpy as np
import pytest
from tensorflow_serving.apis import classification_pb2, predict_pb2, prediction_service_pb2_grpc, regression_pb2

from serving.tensors import from_numpy
from toolkit.serve import LocalServer

from support import Http

MODEL = "logreg"


def config_text(base, prefix) -> str:
    return (
        "model_config_list { config {\n"
        f'  name: "{MODEL}" base_path: "{base}" model_platform: "tensorflow"\n'
        f'  logging_config {{ log_collector_config {{ type: "file" filename_prefix: "{prefix}" }}\n'
        "                   sampling_config { sampling_rate: 1.0 } }\n"
        "} }\n"
    )


def example_input(request, rows: np.ndarray):
    for row in rows:
        features = request.input.example_list.examples.add().features.feature
        for i, value in enumerate(row):
            features[f"x{i}"].float_list.value.append(float(value))
    return request


@pytest.fixture(scope="module")
def request_log(tmp_path_factory, exported_model, exported_version):
    """PREFIX of the files our server logged for gRPC and REST Predict, Classify and Regress calls
    (the server is stopped: the files are complete), and the rows sent."""
    root = tmp_path_factory.mktemp("replay")
    prefix = root / "logs" / "requests"
    config = root / "models.config"
    config.write_text(config_text(exported_model / MODEL, prefix))
    with np.load(exported_version / "assets.extra" / "heldout.npz") as data:
        rows = data["features"].astype(np.float32)
    with (
        LocalServer([f"--model_config_file={config}"], rest=True, timeout=120) as server,
        grpc.insecure_channel(server.grpc_target) as channel,
    ):
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        rest = Http(server.rest_url)
        for start in range(0, 12, 4):
            request = predict_pb2.PredictRequest()
            request.model_spec.name = MODEL
            from_numpy(rows[start : start + 4], out=request.inputs["features"])
            stub.Predict(request, timeout=30)
            body = {"instances": rows[start + 12 : start + 16].tolist()}
            assert rest.request("POST", f"/v1/models/{MODEL}:predict", body)[0] == 200
        for name, request_type, call in (
            ("classify", classification_pb2.ClassificationRequest, stub.Classify),
            ("regress", regression_pb2.RegressionRequest, stub.Regress),
        ):
            request = example_input(request_type(), rows[:5])
            request.model_spec.name, request.model_spec.signature_name = MODEL, name
            call(request, timeout=30)
            body = {
                "signature_name": name,
                "examples": [{f"x{i}": float(v) for i, v in enumerate(row)} for row in rows[5:8]],
            }
            assert rest.request("POST", f"/v1/models/{MODEL}:{name}", body)[0] == 200
    return prefix


def checked(tfkit, version, report_dir, *args):
    result = tfkit("check", version, *args, "--report", report_dir)
    return result, json.loads((report_dir / "report.json").read_text())


def test_a_request_log_replays_through_every_runtime_and_matches_its_responses(
    tfkit, exported_version, request_log, tmp_path
):
    result, report = checked(tfkit, exported_version, tmp_path, "--inputs", f"{request_log}*")
    assert result.exit_code == 0, result.output
    logged = [name for name in report["runtimes"] if name.startswith("logged:")]
    assert logged == [f"logged:{next(request_log.parent.glob('requests-*')).name}"]
    assert {"eager", "grpc", "rest"} <= set(report["runtimes"])
    assert any(name.startswith("tflite:") for name in report["runtimes"])
    assert report["inputs"]["rows"] == 24 and report["calls"] == 6  # 3 gRPC + 3 REST Predicts of 4 rows
    assert report["runtime_details"][report["runtimes"].index(logged[0])]["policy"] == "float"
    # Our server answered, and the logged answers are, the eager reference bit for bit.
    for runtime in ("grpc", "rest", logged[0]):
        comparisons = [c for c in report["comparisons"] if c["candidate"] == runtime]
        assert comparisons and all(c["bit_exact"] for c in comparisons), (runtime, comparisons)


@pytest.mark.parametrize("signature,rows", [("classify", 5 + 3), ("regress", 5 + 3)])
def test_classify_and_regress_logs_replay_through_their_signatures(
    tfkit, exported_version, request_log, tmp_path, signature, rows
):
    result, report = checked(
        tfkit, exported_version, tmp_path, "--inputs", f"{request_log}*", "--signature", signature, "--no-convert"
    )
    assert result.exit_code == 0, result.output
    assert report["inputs"]["rows"] == rows
    skipped = " ".join(report["inputs"]["notes"])
    other = "regress" if signature == "classify" else "classify"
    assert f"skipped 6 requests for signature 'serving_default'; 2 requests for signature '{other}'" in skipped
    logged = [c for c in report["comparisons"] if c["candidate"].startswith("logged:")]
    assert {c["output"] for c in logged} == ({"scores", "classes"} if signature == "classify" else {"outputs"})
    assert all(c["bit_exact"] for c in logged), logged


def test_requests_of_another_model_are_skipped_and_counted(tfkit, exported_version, request_log, tmp_path):
    result, report = checked(
        tfkit,
        exported_version,
        tmp_path,
        "--inputs",
        f"{request_log}*",
        "--model-name",
        "other",
        "--no-server",
        "--no-convert",
    )
    assert result.exit_code == 2
    assert "no logged request for signature 'serving_default' of model 'other'" in result.output
    assert "6 requests for model 'logreg'" in result.output and "--model-name NAME" in result.output


def test_a_corrupt_record_is_named_by_file_and_index(tfkit, exported_version, request_log, tmp_path):
    (log_file,) = request_log.parent.glob("requests-*")
    data = bytearray(log_file.read_bytes())
    first = int.from_bytes(data[:8], "little") + 16  # the first record, framed
    second = int.from_bytes(data[first : first + 8], "little")
    data[first + 12 + second // 2] ^= 0xFF  # a flipped byte inside record 1's data: its CRC fails
    damaged = tmp_path / "damaged.tfrecord"
    damaged.write_bytes(bytes(data))
    result = tfkit(
        "check", exported_version, "--inputs", damaged, "--no-server", "--no-convert", "--report", tmp_path / "report"
    )
    assert result.exit_code == 2
    assert f"--inputs {damaged}: record 1 is corrupt" in result.output
