"""Tiny models whose inputs are not like tfkit's, shared by the input tests:
a scalar beside a batch input, a TF1 input with a default, a uint8 input,
serialized tf.Example strings (and files that carry them losslessly)."""

from pathlib import Path

import numpy as np

from toolkit.tfenv import import_tf


def save_temperature_model(path: Path) -> Path:
    """x float32 [?,4] and a rank-0 temperature -> probs softmax(x W / (1.5 + |t|))."""
    t = import_tf()

    class Temperature(t.Module):
        def __init__(self):
            super().__init__()
            self.w = t.Variable(np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32))

        @t.function(
            input_signature=[
                t.TensorSpec([None, 4], t.float32, name="x"),
                t.TensorSpec([], t.float32, name="temperature"),
            ]
        )
        def serve(self, x, temperature):
            return {"probs": t.nn.softmax(t.matmul(x, self.w) / (1.5 + t.abs(temperature)))}

    module = Temperature()
    t.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return path


def save_default_scale_model(path: Path) -> Path:
    """TF1 graph: x float32 [?,4] and scale, a rank-0 placeholder_with_default(2.0) -> y [?,1]."""
    t = import_tf()
    v1 = t.compat.v1
    graph = t.Graph()
    with graph.as_default():
        x = v1.placeholder(t.float32, [None, 4], name="x")
        scale = v1.placeholder_with_default(t.constant(2.0), [], name="scale")
        y = t.reduce_sum(x, axis=1, keepdims=True) * scale
        with v1.Session(graph=graph) as session:
            builder = v1.saved_model.Builder(str(path))
            signature = v1.saved_model.predict_signature_def({"x": x, "scale": scale}, {"y": y})
            builder.add_meta_graph_and_variables(session, ["serve"], signature_def_map={"serving_default": signature})
            builder.save()
    return path


def uint8_module(offset: float = 0.0):
    """images uint8 [?,4] cast to float -> y float32 [?,3] (+ offset, to inject an error)."""
    t = import_tf()

    class Uint8Input(t.Module):
        def __init__(self):
            super().__init__()
            self.w = t.Variable(np.random.default_rng(1).normal(size=(4, 3)).astype(np.float32) / 255)

        @t.function(input_signature=[t.TensorSpec([None, 4], t.uint8, name="images")])
        def serve(self, images):
            return {"y": t.matmul(t.cast(images, t.float32), self.w) + offset}

    return Uint8Input()


def save_module(module, path: Path) -> Path:
    import_tf().saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return path


def convert_module(module, path: Path, **settings) -> Path:
    """Convert the module's `serve` to a .tflite file; settings are converter attributes
    (supported_ops and supported_types go to its target_spec)."""
    t = import_tf()
    converter = t.lite.TFLiteConverter.from_concrete_functions([module.serve.get_concrete_function()], module)
    for name, value in settings.items():
        setattr(converter.target_spec if name.startswith("supported_") else converter, name, value)
    path.write_bytes(converter.convert())
    return path


def save_example_model(path: Path) -> Path:
    """examples string [?] parsed by tf.io.parse_example (x float32 [4]) -> scores [?,2]."""
    t = import_tf()

    class Examples(t.Module):
        def __init__(self):
            super().__init__()
            self.w = t.Variable(np.random.default_rng(2).normal(size=(4, 2)).astype(np.float32))

        @t.function(input_signature=[t.TensorSpec([None], t.string, name="examples")])
        def serve(self, examples):
            features = t.io.parse_example(examples, {"x": t.io.FixedLenFeature([4], t.float32)})
            return {"scores": t.matmul(features["x"], self.w)}

    return save_module(Examples(), path)


def serialized_examples(count: int, seed: int = 0) -> list[bytes]:
    """tf.Examples whose last float is 0.0, so every serialization ends in a zero byte."""
    t = import_tf()
    rng = np.random.default_rng(seed)
    examples = []
    for _ in range(count):
        values = [*rng.uniform(-1, 1, 3).tolist(), 0.0]
        feature = {"x": t.train.Feature(float_list=t.train.FloatList(value=values))}
        examples.append(t.train.Example(features=t.train.Features(feature=feature)).SerializeToString())
    assert all(e.endswith(b"\x00") for e in examples)
    return examples


def save_lossless_npz(path: Path, name: str, values: list[bytes]) -> Path:
    """The .npz form tfkit reads bytes from without loss: NAME.bytes + NAME.lengths."""
    np.savez(
        path,
        **{
            f"{name}.bytes": np.frombuffer(b"".join(values), np.uint8),
            f"{name}.lengths": np.array([len(v) for v in values]),
        },
    )
    return path


def predict_log(inputs: dict, signature_name: str = ""):
    """A PredictionLog holding one PredictRequest with `inputs` ({name: ndarray})."""
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    t = import_tf()
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "m"
    request.model_spec.signature_name = signature_name
    for name, value in inputs.items():
        request.inputs[name].CopyFrom(t.make_tensor_proto(value))
    return prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))


def write_prediction_log(path: Path, logs: list) -> Path:
    """A TFRecord file of PredictionLogs (TF Serving's warmup and request-log format)."""
    with import_tf().io.TFRecordWriter(str(path)) as writer:
        for log in logs:
            writer.write(log.SerializeToString())
    return path
