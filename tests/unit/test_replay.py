"""toolkit.parity.replay through file_feeds: PredictionLog files of every kind, several files and
globs, what is skipped and counted, the logged answers, and damaged files."""

import numpy as np
import pytest
from tensorflow_serving.apis import classification_pb2, inference_pb2, predict_pb2, prediction_log_pb2, regression_pb2

from toolkit.errors import InputError
from toolkit.parity.inputs import file_feeds
from toolkit.parity.runners.base import Signature, TensorSpec
from toolkit.tfenv import import_tf

from input_models import predict_log, write_prediction_log

EXAMPLES = Signature(
    {"inputs": TensorSpec("inputs", np.dtype(object), (None,))},
    {
        "scores": TensorSpec("scores", np.dtype(np.float32), (None, 2)),
        "classes": TensorSpec("classes", np.dtype(object), (None, 2)),
    },
)
REGRESSION = Signature(EXAMPLES.inputs, {"outputs": TensorSpec("outputs", np.dtype(np.float32), (None,))})
PREDICT = Signature(
    {"x": TensorSpec("x", np.dtype(np.float32), (None, 2))}, {"y": TensorSpec("y", np.dtype(np.float32), (None, 1))}
)


def with_examples(request, values, context=None):
    target = request.input.example_list_with_context if context is not None else request.input.example_list
    if context is not None:
        target.context.features.feature["c"].float_list.value.append(context)
    for value in values:
        target.examples.add().features.feature["x"].float_list.value.append(value)
    return request


def classify_log(values, signature="classify", model="m", context=None, answered=True):
    request = with_examples(classification_pb2.ClassificationRequest(), values, context)
    request.model_spec.name, request.model_spec.signature_name = model, signature
    response = classification_pb2.ClassificationResponse()
    if answered:
        for value in values:
            entry = response.result.classifications.add()
            entry.classes.add(label="0", score=1 - value)
            entry.classes.add(label="1", score=value)
    return prediction_log_pb2.PredictionLog(
        classify_log=prediction_log_pb2.ClassifyLog(request=request, response=response)
    )


def answered_predict(rows, model="m", output_filter=()):
    request = predict_pb2.PredictRequest(output_filter=list(output_filter))
    request.model_spec.name = model
    request.inputs["x"].CopyFrom(import_tf().make_tensor_proto(np.asarray(rows, np.float32)))
    response = predict_pb2.PredictResponse()
    response.outputs["y"].CopyFrom(import_tf().make_tensor_proto(np.asarray(rows, np.float32).sum(1, keepdims=True)))
    return prediction_log_pb2.PredictionLog(
        predict_log=prediction_log_pb2.PredictLog(request=request, response=response)
    )


def test_classify_logs_become_serialized_examples_and_their_answers(tmp_path):
    logs = [classify_log([0.25, 0.5]), classify_log([0.75], context=2.0)]
    inputs = file_feeds(write_prediction_log(tmp_path / "log", logs), EXAMPLES, "classify", "m")
    (feed,) = inputs.feeds
    expected = [[e.SerializeToString() for e in logs[0].classify_log.request.input.example_list.examples]]
    with_context = logs[1].classify_log.request.input.example_list_with_context
    expected.append([with_context.context.SerializeToString() + e.SerializeToString() for e in with_context.examples])
    assert [call["inputs"].tolist() for call in feed.calls] == expected
    parsed = import_tf().io.parse_example(
        feed.calls[1]["inputs"],
        {"x": import_tf().io.FixedLenFeature([], "float32"), "c": import_tf().io.FixedLenFeature([], "float32")},
    )
    assert (parsed["x"].numpy().tolist(), parsed["c"].numpy().tolist()) == ([0.75], [2.0])  # the context merged
    (first, answer), _ = inputs.logged
    assert answer["scores"].tolist() == [[0.75, 0.25], [0.5, 0.5]]
    assert answer["classes"].tolist() == [[b"0", b"1"], [b"0", b"1"]]
    assert answer["scores"].dtype == np.float32 and first is feed.calls[0]


def test_regress_logs_and_multi_inference_tasks_replay_through_their_signature(tmp_path):
    regress = regression_pb2.RegressionRequest()
    with_examples(regress, [1.0, 2.0]).model_spec.signature_name = "regress"
    regress_answer = regression_pb2.RegressionResponse()
    for value in (0.5, 0.25):
        regress_answer.result.regressions.add(value=value)
    multi = with_examples(inference_pb2.MultiInferenceRequest(), [3.0])
    for signature, method in (("classify", "tensorflow/serving/classify"), ("regress", "tensorflow/serving/regress")):
        task = multi.tasks.add(method_name=method)
        task.model_spec.name, task.model_spec.signature_name = "m", signature
    multi_answer = inference_pb2.MultiInferenceResponse()
    multi_answer.results.add().classification_result.classifications.add().classes.add(label="1", score=0.5)
    multi_answer.results.add().regression_result.regressions.add(value=0.125)
    logs = [
        prediction_log_pb2.PredictionLog(
            regress_log=prediction_log_pb2.RegressLog(request=regress, response=regress_answer)
        ),
        prediction_log_pb2.PredictionLog(
            multi_inference_log=prediction_log_pb2.MultiInferenceLog(request=multi, response=multi_answer)
        ),
    ]
    inputs = file_feeds(write_prediction_log(tmp_path / "log", logs), REGRESSION, "regress", "m")
    assert [len(call["inputs"]) for call in inputs.feeds[0].calls] == [2, 1]
    assert [answer["outputs"].tolist() for _, answer in inputs.logged] == [[0.5, 0.25], [0.125]]
    assert inputs.notes == [f"--inputs {tmp_path / 'log'}: skipped 1 requests for signature 'classify'"]


def test_other_models_signatures_and_kinds_are_skipped_and_counted_and_unnamed_requests_kept(tmp_path):
    unnamed = answered_predict([[1, 2]], model="")
    logs = [
        answered_predict([[1, 2]]),
        answered_predict([[3, 4]], model="other"),
        unnamed,
        predict_log({"x": np.ones((1, 2), np.float32)}, "custom"),
        prediction_log_pb2.PredictionLog(session_run_log=prediction_log_pb2.SessionRunLog()),
        classify_log([0.5]),
    ]
    inputs = file_feeds(write_prediction_log(tmp_path / "log", logs), PREDICT, "serving_default", "m")
    assert [call["x"].tolist() for call in inputs.feeds[0].calls] == [[[1, 2]], [[1, 2]]]
    assert inputs.notes == [
        f"--inputs {tmp_path / 'log'}: skipped 1 requests for signature 'custom'; "
        "1 session_run_log records; 1 requests for signature 'classify'; "
        "1 requests for model 'other'"
    ]


def test_requests_of_one_other_model_replay_unless_a_model_is_named(tmp_path):
    """A warmup file written under another model name replays; --model-name makes the name count."""
    path = write_prediction_log(tmp_path / "log", [answered_predict([[1, 2]], model="old-name")])
    inputs = file_feeds(path, PREDICT, "serving_default", "m")
    assert len(inputs.feeds[0].calls) == 1
    assert inputs.notes == [
        f"--inputs {path}: the logged requests name model 'old-name', not 'm': replayed as "
        "its requests (--model-name picks one model's requests)"
    ]
    with pytest.raises(
        InputError, match="of model 'm' \\(found: 1 requests for model 'old-name'\\); pass --model-name NAME"
    ):
        file_feeds(path, PREDICT, "serving_default", "m", explicit_model=True)


def test_several_files_and_globs_give_one_feed_each_and_a_prefix_label(tmp_path):
    for part in range(3):
        write_prediction_log(tmp_path / f"requests-0000{part}.tfrecord", [answered_predict([[part, 1]])])
    write_prediction_log(tmp_path / "other.tfrecord", [answered_predict([[9, 9]])])
    inputs = file_feeds([str(tmp_path / "requests-*"), str(tmp_path / "requests-00001.tfrecord")], PREDICT)
    assert [feed.name for feed in inputs.feeds] == [f"requests-0000{p}.tfrecord" for p in range(3)]
    assert inputs.logged_from == "requests-0000*" and len(inputs.logged) == 3
    assert inputs.source == "predictionlog:requests-0000* (3 files)"
    with pytest.raises(InputError, match="--inputs .*nothing-\\*: no file matches"):
        file_feeds([str(tmp_path / "nothing-*")], PREDICT)


def test_logged_answers_need_every_record_answered_in_full(tmp_path):
    logs = [
        answered_predict([[1, 2]]),
        answered_predict([[1, 2]], output_filter=["y"]),
        predict_log({"x": np.ones((1, 2), np.float32)}),
    ]
    inputs = file_feeds(write_prediction_log(tmp_path / "log", logs), PREDICT)
    assert inputs.logged is None
    assert inputs.notes == [
        f"--inputs {tmp_path / 'log'}: 2 of 3 replayed records have no complete response "
        "(a warmup record, or a Predict with an output_filter): "
        "the logged answers are not compared"
    ]


def test_an_npz_is_read_on_its_own(tmp_path):
    np.savez(tmp_path / "in.npz", x=np.ones((2, 2), np.float32))
    write_prediction_log(tmp_path / "log", [answered_predict([[1, 2]])])
    with pytest.raises(InputError, match="in.npz: an .npz is read on its own"):
        file_feeds([tmp_path / "log", tmp_path / "in.npz"], PREDICT)


def test_a_cut_file_names_the_record_where_it_ends(tmp_path):
    path = write_prediction_log(tmp_path / "log", [answered_predict([[i, 1]]) for i in range(3)])
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(InputError, match=f"--inputs {path}: record 2 is corrupt .*the 2 records before it are whole"):
        file_feeds(path, PREDICT)
