"""Model warmup: replay assets.extra/tf_serving_warmup_requests before serving.

The file is a TFRecord of PredictionLog protos (Predict, Classify, Regress or
MultiInference requests), replayed against the freshly loaded version before
it becomes AVAILABLE, as TF Serving does; a failing record fails the load.
"""

import logging
import os
import time

import grpc
from tensorflow_serving.apis import prediction_log_pb2

from serving import inference
from serving.errors import ServingError
from serving.servable import LoadError, Servable

log = logging.getLogger("serving")

WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
MAX_RECORDS = 1000


def _replay(servable: Servable, record, method_check: bool, as_content: bool) -> None:
    kind = record.WhichOneof("log_type")
    if kind == "predict_log":
        inference.predict(servable, record.predict_log.request, as_content)
    elif kind == "classify_log":
        inference.classify(servable, record.classify_log.request, method_check)
    elif kind == "regress_log":
        inference.regress(servable, record.regress_log.request, method_check)
    elif kind == "multi_inference_log":
        inference.multi_inference(servable, record.multi_inference_log.request, method_check)
    else:
        number = record.DESCRIPTOR.fields_by_name[kind].number if kind else 0
        raise LoadError(grpc.StatusCode.UNIMPLEMENTED, f"Unsupported log_type for warmup: {number}")


def run_warmup(servable: Servable, iterations: int = 1, method_check: bool = False) -> None:
    """Replay the version's warmup requests; LoadError if one is bad or fails."""
    import tensorflow as tf

    path = os.path.join(servable.path, WARMUP_FILE)
    if not os.path.isfile(path):
        log.info("No warmup data file found at %s", path)
        return
    started = time.monotonic()
    count = 0
    try:
        for raw in tf.compat.v1.io.tf_record_iterator(path):
            count += 1
            if count > MAX_RECORDS:
                raise LoadError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"Number of warmup records exceeds the maximum ({MAX_RECORDS}) at {path}",
                )
            try:
                record = prediction_log_pb2.PredictionLog.FromString(raw)
            except Exception:  # protobuf's DecodeError, whatever its module
                raise LoadError(
                    grpc.StatusCode.INVALID_ARGUMENT, f"Failed to parse warmup record: {raw!r} from {path}"
                ) from None
            for _ in range(max(1, iterations)):
                _replay(servable, record, method_check, False)
    except tf.errors.OpError as exc:
        raise LoadError(
            grpc.StatusCode.DATA_LOSS, f"{exc.message}. Please verify your warmup data is in TFRecord format."
        ) from None
    except ServingError as exc:
        raise LoadError(exc.code, exc.message) from None
    log.info(
        "Finished reading warmup data for model at %s. Number of warmup records read: %d. "
        "Elapsed time (microseconds): %d.",
        path,
        count,
        (time.monotonic() - started) * 1e6,
    )
