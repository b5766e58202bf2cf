"""The PredictionService calls on one servable: Predict, Classify, Regress, MultiInference.

Each function takes the held servable and the request proto and returns the
response proto, or raises ServingError with TF Serving's code and message
(servables/tensorflow/predict_util.cc, classifier.cc, regressor.cc,
multi_inference.cc, util.cc).
"""

import grpc
import numpy as np
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import classification_pb2, inference_pb2, predict_pb2, regression_pb2

from serving.errors import ServingError, invalid_argument
from serving.servable import CLASSIFY_METHOD, DEFAULT_SIGNATURE, REGRESS_METHOD, Servable
from serving.tensors import TensorError, data_type_of, from_numpy, to_numpy

CLASSIFY_INPUTS = "inputs"
CLASSES = "classes"
SCORES = "scores"
REGRESS_INPUTS = "inputs"
REGRESS_OUTPUTS = "outputs"


def _model_spec(target, name: str, signature_name, version: int) -> None:
    """TF Serving's MakeModelSpec: an empty signature name reads serving_default."""
    target.Clear()
    target.name = name
    if signature_name is not None:
        target.signature_name = signature_name or DEFAULT_SIGNATURE
    target.version.value = version


def decode_inputs(tensors) -> dict:
    """Request TensorProtos by alias -> numpy arrays (INVALID_ARGUMENT if malformed)."""
    inputs = {}
    for alias, proto in tensors.items():
        try:
            inputs[alias] = to_numpy(proto)
        except TensorError:
            raise invalid_argument(f"tensor parsing error: {alias}") from None
    return inputs


def predict(servable: Servable, request, as_tensor_content: bool) -> predict_pb2.PredictResponse:
    """Predict: run a signature on named tensors."""
    return predict_response(servable, request, start_predict(servable, request).result(), as_tensor_content)


def start_predict(servable: Servable, request):
    """Predict up to the model run: checks, decoding, and the run started
    (Servable.start: `result()` gives the outputs, which may wait for a batch)."""
    plan = servable.plan(request.model_spec.signature_name or DEFAULT_SIGNATURE)
    if set(request.inputs) != plan.inputs:
        # TF Serving checks the input names before it parses any tensor.
        servable.check_input_set(plan.signature, request.inputs)
    return servable.start(request.model_spec.signature_name, decode_inputs(request.inputs), request.output_filter)


def predict_response(
    servable: Servable, request, outputs: dict, as_tensor_content: bool
) -> predict_pb2.PredictResponse:
    """The PredictResponse of a finished start_predict."""
    response = predict_pb2.PredictResponse()
    _model_spec(
        response.model_spec,
        request.model_spec.name,
        request.model_spec.signature_name or DEFAULT_SIGNATURE,
        servable.version,
    )
    for alias, value in outputs.items():
        from_numpy(value, as_tensor_content, out=response.outputs[alias])
    return response


def examples_tensor(input_proto) -> np.ndarray:
    """An Input proto as the 1-D string tensor of serialized tf.Examples the graph parses."""
    kind = input_proto.WhichOneof("kind")
    if kind == "example_list":
        serialized = [e.SerializeToString() for e in input_proto.example_list.examples]
    elif kind == "example_list_with_context":
        # Concatenated serializations merge the context into every example.
        context = input_proto.example_list_with_context.context.SerializeToString()
        serialized = [context + e.SerializeToString() for e in input_proto.example_list_with_context.examples]
    else:
        serialized = []
    if not serialized:
        raise invalid_argument("Input is empty.")
    tensor = np.empty(len(serialized), dtype=object)
    tensor[:] = serialized
    return tensor


def _signature_for(servable: Servable, model_spec, not_found_message: str):
    name = model_spec.signature_name or DEFAULT_SIGNATURE
    try:
        return servable.signature_defs[name]
    except KeyError:
        raise invalid_argument(f"{not_found_message}{name}") from None


def classification_io(signature, method_check: bool) -> tuple:
    """(input tensor name, output tensor names) of a classification signature."""
    if method_check and signature.method_name != CLASSIFY_METHOD:
        raise invalid_argument(
            f"Expected classification signature method_name to be {CLASSIFY_METHOD}. Was: {signature.method_name}"
        )
    if len(signature.inputs) != 1:
        raise invalid_argument("Expected one input Tensor.")
    if len(signature.outputs) not in (1, 2):
        raise invalid_argument(f"Expected one or two output Tensors, found {len(signature.outputs)}")
    if CLASSIFY_INPUTS not in signature.inputs:
        raise invalid_argument(f"No classification inputs found in SignatureDef: {signature}")
    if CLASSES not in signature.outputs and SCORES not in signature.outputs:
        raise invalid_argument(
            f'Expected classification signature outputs to contain at least one of "{CLASSES}" '
            f'or "{SCORES}". Signature was: {signature}'
        )
    outputs = [signature.outputs[k].name for k in (CLASSES, SCORES) if k in signature.outputs]
    return signature.inputs[CLASSIFY_INPUTS].name, outputs


def regression_io(signature, method_check: bool) -> tuple:
    """(input tensor name, [output tensor name]) of a regression signature."""
    if method_check and signature.method_name != REGRESS_METHOD:
        raise invalid_argument(
            f"Expected regression signature method_name to be {REGRESS_METHOD}. Was: {signature.method_name}"
        )
    if len(signature.inputs) != 1:
        raise invalid_argument("Expected one input Tensor.")
    if len(signature.outputs) != 1:
        raise invalid_argument("Expected one output Tensor.")
    if REGRESS_INPUTS not in signature.inputs:
        raise invalid_argument(f"No regression inputs found in SignatureDef: {signature}")
    if REGRESS_OUTPUTS not in signature.outputs:
        raise invalid_argument(f"No regression outputs found in SignatureDef: {signature}")
    return signature.inputs[REGRESS_INPUTS].name, [signature.outputs[REGRESS_OUTPUTS].name]


def _shape(array) -> str:
    return "[" + ",".join(str(d) for d in array.shape) + "]"


def _dtype_enum_name(array) -> str:
    return types_pb2.DataType.Name(data_type_of(array))


def classification_result(signature, num_examples: int, fetched: dict, result) -> None:
    """Fill a ClassificationResult from the classes/scores tensors (by tensor name)."""
    classes = fetched.get(signature.outputs[CLASSES].name) if CLASSES in signature.outputs else None
    scores = fetched.get(signature.outputs[SCORES].name) if SCORES in signature.outputs else None
    for what, tensor, want in (("classes", classes, "DT_STRING"), ("scores", scores, "DT_FLOAT")):
        if tensor is None:
            continue
        if tensor.ndim != 2:
            raise invalid_argument(f"Expected Tensor shape: [batch_size num_classes] but got {_shape(tensor)}")
        if _dtype_enum_name(tensor) != want:
            raise invalid_argument(f"Expected {what} Tensor of {want}. Got: {_dtype_enum_name(tensor)}")
        if tensor.shape[0] != num_examples:
            raise invalid_argument(f"Expected {what} output batch size of {num_examples}. Got: {tensor.shape[0]}")
    if classes is not None and scores is not None and classes.shape[1] != scores.shape[1]:
        raise invalid_argument(
            f"Tensors class and score should match in dim_size(1). Got {classes.shape[1]} vs. {scores.shape[1]}"
        )
    num_classes = (classes if classes is not None else scores).shape[1]
    labels = classes.tolist() if classes is not None else None
    values = scores.tolist() if scores is not None else None
    for i in range(num_examples):
        entry = result.classifications.add()
        for c in range(num_classes):
            cls = entry.classes.add()
            if labels is not None:
                cls.label = (
                    labels[i][c].decode("utf-8", "replace") if isinstance(labels[i][c], bytes) else str(labels[i][c])
                )
            if values is not None:
                cls.score = values[i][c]


def regression_result(signature, num_examples: int, fetched: dict, result) -> None:
    """Fill a RegressionResult from the outputs tensor (by tensor name)."""
    name = signature.outputs[REGRESS_OUTPUTS].name
    tensor = fetched.get(name)
    if tensor is None:
        raise invalid_argument(f"Could not find output tensor '{name}'")
    if not (tensor.ndim == 1 or (tensor.ndim == 2 and tensor.shape[1] == 1)):
        raise invalid_argument(
            f"Expected output Tensor shape to be either [batch_size] or [batch_size, 1] but got {_shape(tensor)}"
        )
    if tensor.shape[0] != num_examples:
        raise invalid_argument(
            f"Input batch size did not match output batch size: {num_examples} vs. {tensor.shape[0]}"
        )
    if _dtype_enum_name(tensor) != "DT_FLOAT":
        raise invalid_argument(f"Expected output Tensor of DT_FLOAT.  Got: {_dtype_enum_name(tensor)}")
    for value in tensor.reshape(-1).tolist():
        result.regressions.add().value = value


def _run(servable: Servable, input_name: str, examples: np.ndarray, output_names: list) -> dict:
    with servable.hold():
        fetched = servable.run_tensors({input_name: examples}, output_names)
    return dict(zip(output_names, fetched))


def _run_examples(servable: Servable, request, method_check: bool, io, fill, response):
    """Classify/Regress: serialized tf.Examples through the request's signature.

    `io` picks the signature's input and outputs (checking the method name when
    asked); `fill` writes the fetched outputs into `response.result`.
    """
    signature = _signature_for(servable, request.model_spec, "No signature was found with the name: ")
    input_name, output_names = io(signature, method_check)
    examples = examples_tensor(request.input)
    fetched = _run(servable, input_name, examples, output_names)
    _model_spec(response.model_spec, request.model_spec.name, request.model_spec.signature_name, servable.version)
    fill(signature, len(examples), fetched, response.result)
    return response


def classify(servable: Servable, request, method_check: bool):
    """Classify: serialized tf.Examples through a classification signature."""
    return _run_examples(
        servable,
        request,
        method_check,
        classification_io,
        classification_result,
        classification_pb2.ClassificationResponse(),
    )


def regress(servable: Servable, request, method_check: bool):
    """Regress: serialized tf.Examples through a regression signature."""
    return _run_examples(
        servable, request, method_check, regression_io, regression_result, regression_pb2.RegressionResponse()
    )


def _check_tasks_share_a_model(request) -> None:
    """Every task names the same, non-empty model (INVALID_ARGUMENT otherwise)."""
    model_name = ""
    for task in request.tasks:
        if not task.model_spec.name:
            raise invalid_argument("Found ModelSpec with an empty model name.")
        if not model_name:
            model_name = task.model_spec.name
        elif model_name != task.model_spec.name:
            raise invalid_argument("All ModelSpecs in a MultiInferenceRequest must access the same model name.")


def multi_inference(servable: Servable, request, method_check: bool):
    """MultiInference: several classify/regress signatures over one set of examples.

    Each task's signature goes through Classify's or Regress's checks, the
    method-name check included when asked (multi_inference.cc calls the same
    PreProcessClassification / PreProcessRegression)."""
    _check_tasks_share_a_model(request)
    plans, seen, input_names, output_names = [], set(), set(), set()
    for task in request.tasks:
        signature_name = task.model_spec.signature_name or DEFAULT_SIGNATURE
        if signature_name in seen:
            raise invalid_argument(f"Duplicate evaluation of signature: {signature_name}")
        seen.add(signature_name)
        signature = servable.signature_defs.get(signature_name)
        if signature is None:
            raise invalid_argument(f"Requested signature not found in model graph: {signature_name}")
        if task.method_name == CLASSIFY_METHOD:
            input_name, outputs = classification_io(signature, method_check)
        elif task.method_name == REGRESS_METHOD:
            input_name, outputs = regression_io(signature, method_check)
        else:
            raise ServingError(grpc.StatusCode.UNIMPLEMENTED, f"Unsupported signature method_name: {task.method_name}")
        input_names.add(input_name)
        output_names.update(outputs)
        plans.append((task, signature))
    examples = examples_tensor(request.input)
    fetched = {}
    if plans:
        names = sorted(output_names)
        with servable.hold():
            # One examples tensor feeds every signature's input.
            values = servable.run_tensors({name: examples for name in input_names}, names)
        fetched = dict(zip(names, values))
    response = inference_pb2.MultiInferenceResponse()
    for task, signature in plans:
        result = response.results.add()
        _model_spec(result.model_spec, task.model_spec.name, task.model_spec.signature_name, servable.version)
        if task.method_name == CLASSIFY_METHOD:
            classification_result(signature, len(examples), fetched, result.classification_result)
        else:
            regression_result(signature, len(examples), fetched, result.regression_result)
    return response
