"""Errors of TensorFlow, the TFLite converter and LiteRT reach the user whole, as one line with the root
cause: provoked for real here, then read through `root_cause` / `ConversionError`."""

import numpy as np
import pytest

from toolkit.artifacts.tflite import ConversionError, convert
from toolkit.errors import InputError, root_cause
from toolkit.tfenv import import_tf

#: what only locates or announces a cause
NOISE = (
    "loc(",
    "callsite(",
    "fused[",
    "Graph execution error",
    "[[{{node",
    "{{function_node",
    "[Op:",
    "<unknown>",
    "note:",
    "Traceback",
    "func.func",
)


def assert_clean(text: str) -> None:
    assert "\n" not in text and text == text.strip()
    for noise in NOISE:
        assert noise not in text, (noise, text)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Tiny SavedModels the converter fails on: 'f64' (float64 math), 'svd' (an op that neither TFLite
    nor Flex has) and 'loop' (a TensorArray loop, the TensorList ops a Keras LSTM makes); and 'embed'
    (an embedding lookup of 100 rows, which fails on other ids)."""
    t = import_tf()
    base = tmp_path_factory.mktemp("saved")

    class F64(t.Module):
        @t.function(input_signature=[t.TensorSpec([None, 4], t.float64, name="x")])
        def serve(self, x):
            return {"y": t.reduce_sum(t.sin(x) * 2.0, axis=1)}

    class Svd(t.Module):
        @t.function(input_signature=[t.TensorSpec([None, 3, 3], t.float32, name="m")])
        def serve(self, m):
            return {"s": t.linalg.svd(m, compute_uv=False)}

    class Loop(t.Module):
        @t.function(input_signature=[t.TensorSpec([None, 5, 3], t.float32, name="seq")])
        def serve(self, seq):
            steps = t.TensorArray(t.float32, size=5)
            h = t.zeros_like(seq[:, 0])
            for i in t.range(5):
                h = t.tanh(h + seq[:, i])
                steps = steps.write(i, h)
            return {"h": t.transpose(steps.stack(), [1, 0, 2])}

    class Embed(t.Module):
        def __init__(self):
            self.table = t.Variable(np.zeros((100, 3), np.float32))

        @t.function(input_signature=[t.TensorSpec([None], t.int64, name="ids")])
        def serve(self, ids):
            return {"emb": t.gather(self.table, ids)}

    for name, module in (("f64", F64()), ("svd", Svd()), ("loop", Loop()), ("embed", Embed())):
        t.saved_model.save(module, str(base / name), signatures={"serving_default": module.serve})
    return base


def conversion_error(path) -> ConversionError:
    with pytest.raises(ConversionError) as caught:
        convert(path, ["serving_default"])
    assert_clean(str(caught.value))
    assert str(caught.value).endswith(caught.value.cause)
    return caught.value


@pytest.mark.parametrize("where", ["saved_model", "in_process"])
def test_a_failing_kernel_keeps_its_message_not_the_preamble(saved, where):
    t = import_tf()
    if where == "saved_model":  # fails as "Graph execution error: ... Detected at node ... <stack traces unavailable>"
        lookup = t.saved_model.load(str(saved / "embed")).signatures["serving_default"]
    else:  # fails as "{{function_node ...}} indices[0] ... [[{{node Gather}}]] [Op:...]"
        table = t.Variable(np.zeros((100, 3), np.float32))
        lookup = t.function(lambda ids: t.gather(table, ids))
    with pytest.raises(t.errors.InvalidArgumentError) as caught:
        lookup(ids=t.constant([-1, 0], t.int64))
    assert {"saved_model": "Graph execution error", "in_process": "{{function_node"}[where] in str(caught.value)
    cause = root_cause(caught.value)
    assert cause.startswith("indices[0] = -1 is not in [0, 100) (node "), cause
    assert_clean(cause)


def test_a_session_error_drops_the_root_error_count():
    t = import_tf()
    graph = t.Graph()
    with graph.as_default():
        x = t.compat.v1.placeholder(t.float32, [None], name="x")
        y = x * 2.0
    with t.compat.v1.Session(graph=graph) as session, pytest.raises(t.errors.InvalidArgumentError) as caught:
        session.run(y)
    cause = root_cause(caught.value)
    assert cause.startswith("You must feed a value for placeholder tensor 'x'"), cause
    assert "root error" not in cause
    assert_clean(cause)


def test_float64_is_named_as_the_cause_not_flex_ops(saved):
    error = conversion_error(saved / "f64")
    assert error.cause == "it computes in float64 (ops Mul, Sin, Sum), which TFLite's builtin ops do not support"


def test_an_op_without_any_kernel_is_named_whole(saved):
    assert conversion_error(saved / "svd").cause == "op Svd has no TFLite kernel, neither builtin nor Flex"


def test_tensor_list_lowering_keeps_the_first_error_whole(saved):
    cause = conversion_error(saved / "loop").cause
    assert cause.startswith("'tf.TensorListReserve' op requires element_shape to be"), cause
    assert cause.endswith(
        "during TF Lite transformation pass (the converter would need TF Select (Flex) ops, which LiteRT lacks)"
    ), cause


def test_litert_messages_arrive_whole_and_apart(saved, tmp_path):
    from toolkit.parity.runners.tflite import TFLiteRunner
    from toolkit.tfenv import captured_stderr

    t = import_tf()
    converter = t.lite.TFLiteConverter.from_saved_model(str(saved / "f64"))
    converter.target_spec.supported_ops = [t.lite.OpsSet.TFLITE_BUILTINS, t.lite.OpsSet.SELECT_TF_OPS]
    with captured_stderr():
        (tmp_path / "flex.tflite").write_bytes(converter.convert())
    with pytest.raises(InputError) as caught, TFLiteRunner(tmp_path / "flex.tflite") as runner:
        runner.infer({"x": np.ones((2, 4))})
    message = str(caught.value)
    assert "not supported by this interpreter" in message
    # LiteRT glues its messages together ("...ops_selectNode number 0"): they are split, and kept.
    assert "ops_select; Node number 0 (FlexSin) failed to prepare." in message, message
    assert_clean(message)


def test_remote_runners_let_the_server_decide_about_missing_inputs():
    from toolkit.parity.runners.base import TensorSpec, validate_feed

    specs = {
        "x": TensorSpec("x", np.dtype(np.float32), (None, 2)),
        "scale": TensorSpec("scale", np.dtype(np.float32), ()),
    }
    feed = {"x": np.ones((1, 2), np.float32)}
    with pytest.raises(InputError, match="missing input"):
        validate_feed(feed, specs, "eager")
    validate_feed(feed, specs, "grpc", require_all=False)
    with pytest.raises(InputError, match="unknown input"):
        validate_feed({**feed, "z": feed["x"]}, specs, "grpc", require_all=False)
