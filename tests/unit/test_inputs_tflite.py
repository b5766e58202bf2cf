"""How a TFLite file's quantization kind is read (tensor scales and weight types,
not "any integer tensor"), raw integer inputs, and Flex files in `tfkit inspect`."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from toolkit.tfenv import import_tf

from input_models import convert_module, save_module, uint8_module
from support import tflite_runtimes


def tfkit(*args):
    from toolkit.cli import cli

    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def variants(tmp_path_factory):
    """One small float model converted the ways a user (or `tfkit export --quantize`) does."""
    t = import_tf()
    folder = tmp_path_factory.mktemp("variants")

    class Dense(t.Module):
        def __init__(self):
            super().__init__()
            # 4 x 300 weights: above the converter's 1024-element floor for quantizing weights.
            self.w = t.Variable(np.random.default_rng(0).normal(size=(4, 300)).astype(np.float32))

        @t.function(input_signature=[t.TensorSpec([None, 4], t.float32, name="x")])
        def serve(self, x):
            return {"y": t.nn.softmax(t.matmul(x, self.w))}

    def representative():
        for i in range(8):
            yield [np.random.default_rng(i).uniform(-1, 1, (1, 4)).astype(np.float32)]

    default, ops = [t.lite.Optimize.DEFAULT], t.lite.OpsSet
    calibrated = dict(optimizations=default, representative_dataset=representative)
    settings = {
        "float32": {},
        "dynamic": dict(optimizations=default),
        "float16": dict(optimizations=default, supported_types=[t.float16]),
        "int8": dict(
            calibrated,
            supported_ops=[ops.TFLITE_BUILTINS_INT8],
            inference_input_type=t.int8,
            inference_output_type=t.int8,
        ),
        "int8, float I/O": calibrated,
        "int16x8": dict(calibrated, supported_ops=[ops.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]),
    }
    module = Dense()
    files = {
        kind: convert_module(module, folder / f"{i}.tflite", **extra)
        for i, (kind, extra) in enumerate(settings.items())
    }
    files["uint8 input"] = convert_module(uint8_module(), folder / "uint8_input.tflite")
    return files


@pytest.mark.parametrize(
    "name, kind",
    [
        ("float32", "float32"),
        ("dynamic", "dynamic"),
        ("float16", "float16"),
        ("int8", "int8"),
        ("int8, float I/O", "int8"),
        ("int16x8", "int16x8"),
        ("uint8 input", "float32"),
    ],
)
def test_quantization_kind_is_read_from_scales_and_weight_types(variants, name, kind):
    from toolkit.parity.device import model_facts

    assert model_facts(variants[name])["quantization"] == kind


def test_kinds_of_the_variants_tfkit_export_writes(exported_version):
    from toolkit.parity.device import model_facts

    kinds = {p.name: model_facts(p)["quantization"] for p in exported_version.glob("*.tflite")}
    # tfkit's model has too few weights for the converter to quantize them: its dynamic file stays float32.
    assert kinds == {
        "model.tflite": "float32",
        "model_dynamic.tflite": "float32",
        "model_float16.tflite": "float16",
        "model_int8.tflite": "int8",
    }


def test_an_integer_input_without_scale_is_fed_raw(variants):
    from toolkit.parity.runners.tflite import TFLiteRunner

    images = np.random.default_rng(3).integers(0, 256, (5, 4), dtype=np.uint8)
    module = uint8_module()
    with TFLiteRunner(variants["uint8 input"]) as runner:
        assert runner.signature.inputs["images"].dtype == np.uint8
        got = runner.infer({"images": images})["y"]
    np.testing.assert_allclose(got, module.serve(images)["y"].numpy(), rtol=1e-5, atol=1e-6)


def test_a_float_file_with_a_uint8_input_gets_the_float_policy(tmp_path):
    model = save_module(uint8_module(), tmp_path / "model" / "1")
    off = convert_module(uint8_module(offset=0.01), tmp_path / "off_by_0.01.tflite")
    good = tfkit("check", model, "--no-server", "--report", tmp_path / "good")
    assert good.exit_code == 0, good.output
    assert "images uint8 integers in [0, 255]" in good.output
    bad = tfkit("check", model, "--tflite", off, "--no-server", "--report", tmp_path / "bad")
    assert bad.exit_code == 1, bad.output
    report = json.loads((tmp_path / "bad" / "report.json").read_text())
    (edge,) = report["edge"]
    assert edge["quantization"] == "float32"
    details = {r["name"]: r for r in report["runtime_details"]}
    # The file runs under every op resolver, each judged by the file's policy.
    assert {details[name]["policy"] for name in tflite_runtimes("off_by_0.01.tflite")} == {"float"}
    comparisons = [c for c in report["comparisons"] if c["output"] == "y"]
    assert len(comparisons) == 3
    for comparison in comparisons:
        assert not comparison["passed"] and comparison["max_abs_error"] == pytest.approx(0.01, rel=1e-3)


def test_inspect_says_a_tflite_file_needs_the_flex_delegate(tmp_path):
    t = import_tf()

    class Inverse(t.Module):
        @t.function(input_signature=[t.TensorSpec([None, 3, 3], t.float32, name="x")])
        def serve(self, x):
            return {"inverse": t.linalg.inv(x)}

    module = Inverse()
    converter = t.lite.TFLiteConverter.from_concrete_functions([module.serve.get_concrete_function()], module)
    converter.target_spec.supported_ops = [t.lite.OpsSet.TFLITE_BUILTINS, t.lite.OpsSet.SELECT_TF_OPS]
    path = tmp_path / "flex.tflite"
    path.write_bytes(converter.convert())
    text = tfkit("inspect", path)
    assert text.exit_code == 0, text.output
    assert "needs the Flex delegate (select TF ops) for FlexMatrixInverse" in text.output
    plain = tfkit("inspect", convert_module(uint8_module(), tmp_path / "plain.tflite"))
    assert "Flex" not in plain.output and "bytes, float32):" in plain.output
