"""Batching: concurrent callers are merged into few model calls and each gets its own rows."""

import threading

import grpc
import numpy as np
import pytest
from google.protobuf import text_format
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from serving.batching import BatchScheduler
from serving.config_protos import BatchingParameters
from serving.errors import ServingError
from serving.tensors import from_numpy, to_numpy
from toolkit.serve import LocalServer

from support import MONITORING_FLAG, MetricsSnapshot, wait_for

HALF = "half"
MAX_BATCH = 16  # conftest.BATCHING
WRAPPED = ":tensorflow:serving:batching_session:wrapped_run_count"


def params(text: str) -> BatchingParameters:
    return text_format.Parse(text, BatchingParameters())


def test_concurrent_callers_get_their_own_rows_and_are_merged(rest, channel, scrape):
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    before = scrape().value(WRAPPED)
    results, failures = {}, []
    start = threading.Barrier(24)

    def via_grpc(i):
        x = (np.arange(1 + i % 4, dtype=np.float32) + 100 * i).reshape(-1, 1)
        request = predict_pb2.PredictRequest()
        request.model_spec.name = HALF
        request.inputs["x"].CopyFrom(from_numpy(x))
        start.wait()
        results[i] = (x, to_numpy(stub.Predict(request, timeout=30).outputs["y"]))

    def via_rest(i):
        x = (np.arange(1 + i % 3, dtype=np.float32) + 100 * i).reshape(-1, 1)
        start.wait()
        status, data = rest.json("POST", f"/v1/models/{HALF}:predict", {"instances": x.tolist()})
        assert status == 200, data
        results[i] = (x, np.array(data["predictions"], dtype=np.float32))

    def run(target, i):
        try:
            target(i)
        except Exception as err:  # collected: an assert in a thread would be lost
            failures.append(repr(err))

    threads = [threading.Thread(target=run, args=(via_grpc if i % 2 else via_rest, i)) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not failures
    assert len(results) == 24
    for x, y in results.values():
        np.testing.assert_array_equal(y, 0.5 * x + 2)  # own rows, own order, nothing extra
    merged_calls = scrape().value(WRAPPED) - before
    assert 1 <= merged_calls < 24, f"{merged_calls} model calls for 24 requests: nothing was merged"


def test_batched_grpc_calls_wait_without_holding_a_worker_thread(ops_models, half_base):
    # One gRPC worker thread: if a batched call held it while waiting for its
    # batch, the 16 calls would run one batch each.
    server = LocalServer(
        [
            f"--model_name={HALF}",
            f"--model_base_path={half_base}",
            "--enable_batching",
            f"--batching_parameters_file={ops_models['batching']}",
            "--grpc_max_threads=1",
            MONITORING_FLAG,
        ],
        rest=True,
    )
    callers = 16
    with server, grpc.insecure_channel(server.grpc_target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        start = threading.Barrier(callers)
        answers, failures = {}, []

        def call(i):
            request = predict_pb2.PredictRequest()
            request.model_spec.name = HALF
            request.inputs["x"].CopyFrom(from_numpy(np.full((1, 1), i, np.float32)))
            start.wait()
            try:
                answers[i] = to_numpy(stub.Predict(request, timeout=30).outputs["y"])
            except grpc.RpcError as err:
                failures.append(f"{err.code().name}: {err.details()}")

        threads = [threading.Thread(target=call, args=(i,)) for i in range(callers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        model_calls = MetricsSnapshot(server.rest_url).value(WRAPPED)
    assert not failures
    assert {i: float(y[0, 0]) for i, y in answers.items()} == {i: 0.5 * i + 2 for i in range(callers)}
    assert model_calls < callers / 2, f"{model_calls:g} model calls for {callers} batched calls"


def test_oversized_request_is_refused_like_tf_serving(rest, channel):
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = HALF
    request.inputs["x"].CopyFrom(from_numpy(np.ones((MAX_BATCH + 1, 1), np.float32)))
    with pytest.raises(grpc.RpcError) as err:
        stub.Predict(request, timeout=30)
    message = f"Task size {MAX_BATCH + 1} is larger than maximum input batch size {MAX_BATCH}"
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and err.value.details() == message
    status, data = rest.json("POST", f"/v1/models/{HALF}:predict", {"instances": [[1.0]] * (MAX_BATCH + 1)})
    assert (status, data["error"]) == (400, message)


def test_padding_to_allowed_sizes_is_invisible_to_callers(rest, scrape):
    before = scrape()
    status, data = rest.json("POST", f"/v1/models/{HALF}:predict", {"instances": [[1.0], [2.0], [3.0]]})
    assert (status, data["predictions"]) == (200, [[2.5], [3.0], [3.5]])
    after = scrape()
    processed = ":tensorflow:serving:batching_session:processed_batch_size_sum"
    padding = ":tensorflow:serving:batching_session:padding_size_sum"
    # 3 rows ran as a batch of 4, the smallest allowed size (when not merged with anything else).
    assert after.value(processed) - before.value(processed) == 4
    assert after.value(padding, execution_batch_size="4") - before.value(padding, execution_batch_size="4") == 1


# -- the scheduler itself, in-process ---------------------------------------------


def test_full_queue_answers_unavailable():
    scheduler = BatchScheduler(
        params("max_batch_size { value: 2 } max_enqueued_batches { value: 1 } num_batch_threads { value: 1 }")
    )
    release = threading.Event()
    started = threading.Event()

    def slow(inputs):
        started.set()
        release.wait(10)
        return {"y": inputs["x"]}

    first = threading.Thread(target=scheduler.run, args=("k", {"x": np.zeros((2, 1))}, slow))
    first.start()
    started.wait(10)  # the only thread is busy; the queue holds one (open) batch
    waiting = threading.Thread(target=scheduler.run, args=("k", {"x": np.zeros((2, 1))}, slow))
    waiting.start()
    wait_for(lambda: scheduler._queues.get("k"), 10, "the second request to sit, full, in the queue")
    with pytest.raises(ServingError) as err:
        scheduler.run("k", {"x": np.zeros((1, 1))}, slow)
    assert err.value.code == grpc.StatusCode.UNAVAILABLE
    assert err.value.message == "The batch scheduling queue to which this task was submitted is full"
    release.set()
    first.join(10)
    waiting.join(10)
    scheduler.stop()


def test_variable_length_inputs_are_padded_with_the_first_element():
    scheduler = BatchScheduler(
        params("pad_variable_length_inputs: true batch_timeout_micros { value: 200000 } num_batch_threads { value: 1 }")
    )
    seen, out = [], {}

    def fn(inputs):
        seen.append(inputs["x"].copy())
        return {"y": inputs["x"] * 2}

    def call(width):
        out[width] = scheduler.run("k", {"x": np.full((1, width), width, np.int64)}, fn)["y"]

    threads = [threading.Thread(target=call, args=(w,)) for w in (1, 3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    scheduler.stop()
    assert len(seen) == 1 and seen[0].shape == (2, 3)
    assert out[1].tolist() == [[2, 2, 2]]  # padded with its own first element, as TF Serving does
    assert out[3].tolist() == [[6, 6, 6]]


def test_without_padding_shapes_must_agree():
    scheduler = BatchScheduler(params("batch_timeout_micros { value: 200000 } num_batch_threads { value: 1 }"))
    errors = []

    def call(width):
        try:
            scheduler.run("k", {"x": np.zeros((1, width))}, lambda i: {"y": i["x"]})
        except ServingError as err:
            errors.append(err)

    threads = [threading.Thread(target=call, args=(w,)) for w in (1, 3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    scheduler.stop()
    assert len(errors) == 2 and {e.code for e in errors} == {grpc.StatusCode.FAILED_PRECONDITION}
    assert "have different shapes and padding is turned off" in errors[0].message


def test_large_batch_splitting_reassembles_in_order():
    scheduler = BatchScheduler(
        params(
            "max_batch_size { value: 10 } enable_large_batch_splitting { value: true } "
            "max_execution_batch_size { value: 4 } allowed_batch_sizes: 2 allowed_batch_sizes: 4 "
            "num_batch_threads { value: 2 }"
        )
    )
    sizes = []

    def fn(inputs):
        sizes.append(len(inputs["x"]))
        return {"y": inputs["x"] + 1}

    x = np.arange(10).reshape(10, 1)
    y = scheduler.run("k", {"x": x}, fn)["y"]
    scheduler.stop()
    np.testing.assert_array_equal(y, x + 1)
    assert sorted(sizes) == [2, 4, 4]  # 4 + 4 + 2 rows, each a full or padded allowed size


@pytest.mark.parametrize(
    "text,message",
    [
        (
            "max_batch_size { value: 8 } allowed_batch_sizes: 2 allowed_batch_sizes: 4",
            "Last entry in allowed_batch_sizes must match max_batch_size; last entry was 4; expected 8",
        ),
        (
            "max_batch_size { value: 8 } enable_large_batch_splitting { value: true } "
            "max_execution_batch_size { value: 4 } allowed_batch_sizes: 4 allowed_batch_sizes: 2",
            "allowed_batch_sizes entries must be monotonically increasing",
        ),
        ("num_batch_threads { value: 0 }", "BatchingParameters.num_batch_threads must be positive; was 0"),
    ],
)
def test_invalid_parameters_are_refused(text, message):
    with pytest.raises(ServingError) as err:
        BatchScheduler(params(text))
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT and err.value.message == message


def test_shared_testdata_batching_config_parses():
    from serving.batching import load_parameters

    from tf_serving_testdata import TESTDATA

    path = TESTDATA / "batching_config.txt"
    scheduler = BatchScheduler(load_parameters(str(path)))
    assert (
        scheduler.max_batch_size,
        scheduler.batch_timeout_s,
        scheduler.max_enqueued_batches,
        scheduler.num_batch_threads,
    ) == (128, 0, 1000000, 8)
