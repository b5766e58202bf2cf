"""`tfkit export` and `tfkit inspect` through the CLI, --help texts and exit codes."""

import json
import os
import shutil
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from toolkit.cli import cli

from tf_serving_testdata import HALF_PLUS_TWO_TF2

TF2_TESTDATA = HALF_PLUS_TWO_TF2 / "00000123"


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.mark.parametrize(
    "command, phrases",
    [
        (
            "train",
            [
                "--out",
                "--data",
                "--label-column",
                "--seed",
                "--steps",
                "--learning-rate",
                "--batch-size",
                "--test-fraction",
                "--force",
            ],
        ),
        (
            "export",
            [
                "SOURCE",
                "--model-base-path",
                "--name",
                "--version",
                "--force",
                "--quantize",
                "dynamic, float16, int8",
                "--signature",
                "--inputs",
                "--calibration",
                "--no-tflite",
                "--allow-flex",
            ],
        ),
        ("inspect", ["PATH", "--json"]),
    ],
)
def test_help_texts(command, phrases):
    result = invoke(command, "--help")
    assert result.exit_code == 0
    missing = [p for p in phrases if p not in result.output]
    assert missing == []


def test_top_level_help_lists_the_commands_without_importing_tensorflow():
    code = (
        "import sys; from toolkit.cli import main; sys.argv = ['tfkit', '--help']\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
        "assert 'tensorflow' not in sys.modules, 'tensorflow imported by tfkit --help'\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert result.returncode == 0, result.stderr
    for command in ("train", "export", "inspect"):
        assert f"  {command} " in result.stdout
    # Each command's first sentence is shown whole (click would cut it with "...").
    assert "..." not in result.stdout.split("Commands:")[1]
    assert "print\n           the outputs as JSON." in result.stdout


def _commands(group, prefix=()):
    for name, command in group.commands.items():
        yield prefix + (name,), command
        if isinstance(command, click.Group):
            yield from _commands(command, prefix + (name,))


def test_every_option_of_every_command_is_described():
    """`--help` never lists an option with nothing but its default."""
    undescribed = [
        f"tfkit {' '.join(path)} {param.opts[0]}"
        for path, command in _commands(cli)
        for param in command.params
        if isinstance(param, click.Option) and not param.help
    ]
    assert undescribed == []


def test_subcommand_lists_show_whole_sentences():
    result = invoke("deploy", "--help")
    assert result.exit_code == 0
    assert "..." not in result.output.split("Commands:")[1]


@pytest.mark.parametrize(
    "args, message",
    [
        (["train"], "Missing option '--out'"),
        (["export", "run"], "Missing option '--model-base-path'"),
        (["export", "run", "--model-base-path", "b"], "Missing option '--name'"),
        (["inspect"], "Missing argument 'PATH'"),
        (["train", "--out", "x", "--steps", "many"], "'many' is not a valid integer"),
    ],
)
def test_usage_errors_exit_2(args, message):
    result = invoke(*args)
    assert result.exit_code == 2
    assert message in result.output


def test_export_command_writes_a_version_and_refuses_to_overwrite(trained_run, tmp_path):
    result = invoke("export", trained_run, "--model-base-path", tmp_path, "--name", "logreg")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == f"Exported {tmp_path / 'logreg' / '1'}"
    assert "model.tflite" in result.output and "manifest.json" in result.output

    again = invoke("export", trained_run, "--model-base-path", tmp_path, "--name", "logreg", "--version", "1")
    assert again.exit_code == 2
    assert again.output == (
        f"Error: {tmp_path / 'logreg' / '1'}: version 1 already exists; "
        "pass --force to replace it or choose another --version\n"
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["export", "{tmp}/none", "--model-base-path", "{tmp}", "--name", "m"], "none: no such file or directory"),
        (
            ["export", "{tmp}", "--model-base-path", "{tmp}", "--name", "m"],
            "neither a tfkit run folder (training.json)",
        ),
        (
            ["export", "{run}", "--model-base-path", "{tmp}", "--name", "m", "--quantize", "int3"],
            "unknown variant(s) int3",
        ),
        (
            ["export", "{run}", "--model-base-path", "{tmp}", "--name", "m", "--version", "0"],
            "--version must be a positive",
        ),
        (["inspect", "{tmp}/none"], "no such file or directory"),
        (["inspect", "{tmp}"], "no saved_model.pb or .tflite file in this folder"),
    ],
)
def test_bad_paths_and_values_are_one_line_errors_with_exit_2(trained_run, tmp_path, args, message):
    result = invoke(*[a.format(tmp=tmp_path, run=trained_run) for a in args])
    assert result.exit_code == 2
    assert result.output.startswith("Error: ") and result.output.count("\n") == 1
    assert message in result.output


def test_inspect_of_a_model_folder_names_a_version_to_inspect(exported_model):
    result = invoke("inspect", exported_model / "logreg")
    assert result.exit_code == 2
    assert result.output == (
        f"Error: {exported_model / 'logreg'}: no saved_model.pb or .tflite file in this folder; "
        f"it holds versions 1 (inspect one of them, e.g. {exported_model / 'logreg' / '1'})\n"
    )


def test_inspect_saved_model_like_saved_model_cli(exported_version):
    result = invoke("inspect", exported_version)
    assert result.exit_code == 0, result.output
    out = result.output
    assert out.startswith("MetaGraphDef with tag-set: 'serve' contains the following SignatureDefs:")
    assert "__saved_model_init_op" not in out
    for fragment in (
        "signature_def['serving_default']:",
        "signature_def['classify']:",
        "signature_def['regress']:",
        "    inputs['features'] tensor_info:\n        dtype: DT_FLOAT\n        shape: (-1, 2)",
        "    outputs['classes'] tensor_info:\n        dtype: DT_INT64\n        shape: (-1, 1)",
        "    inputs['inputs'] tensor_info:\n        dtype: DT_STRING\n        shape: (-1)",
        "  Method name is: tensorflow/serving/predict",
    ):
        assert fragment in out
    # The TFLite files beside the SavedModel are listed too.
    for name in ("model.tflite", "model_dynamic.tflite", "model_float16.tflite", "model_int8.tflite"):
        assert f"/{name} (" in out


def test_inspect_prints_nothing_on_stderr(exported_version):
    """TensorFlow's start-up banner ignores TF_CPP_MIN_LOG_LEVEL; inspect must not show it."""
    result = subprocess.run(
        [sys.executable, "-m", "toolkit", "inspect", str(exported_version)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("MetaGraphDef with tag-set: 'serve'")
    assert result.stderr == ""


def test_inspect_a_foreign_saved_model(tmp_path):
    if not TF2_TESTDATA.is_dir():
        pytest.skip(f"TF Serving test data not on this machine ({TF2_TESTDATA})")
    result = invoke("inspect", TF2_TESTDATA, "--json")
    assert result.exit_code == 0, result.output
    signatures = json.loads(result.output)["saved_model"]["meta_graphs"][0]["signatures"]
    assert "__saved_model_init_op" not in signatures
    assert signatures["classify_x_to_y"]["inputs"]["inputs"] == {
        "dtype": "DT_STRING",
        "shape": [-1],
        "name": "classify_x_to_y_inputs:0",
    }
    assert signatures["serving_default"]["outputs"]["y"]["dtype"] == "DT_FLOAT"


def test_inspect_a_tflite_only_version_without_signatures():
    folder = TF2_TESTDATA.parents[1] / "saved_model_half_plus_two_tflite" / "00000123"
    if not folder.is_dir():
        pytest.skip(f"TF Serving test data not on this machine ({folder})")
    result = invoke("inspect", folder)
    assert result.exit_code == 0, result.output
    assert "no signatures; model inputs and outputs:" in result.output
    assert "no TF Serving SignatureDefs (signature_defs_metadata)" in result.output
    assert "    input  " in result.output and "    output " in result.output


def test_inspect_shows_the_tf_serving_signature_defs_of_each_tflite(exported_version):
    out = invoke("inspect", exported_version / "model_int8.tflite").output
    assert (
        "  TF Serving SignatureDefs (signature_defs_metadata):\n"
        "    signature_def['serving_default'] (tensorflow/serving/predict):\n"
        "      input  features: DT_INT8 (-1, 2) (tensor 'serving_default_features:0')\n"
    ) in out
    (lite,) = json.loads(invoke("inspect", exported_version / "model.tflite", "--json").output)["tflite"]
    features = lite["signature_defs"]["serving_default"]["inputs"]["features"]
    assert features == {
        "dtype": "DT_FLOAT",
        "shape": [-1, 2],
        "name": lite["signatures"]["serving_default"]["inputs"]["features"]["tensor"],
    }
    assert set(lite["signature_defs"]["serving_default"]["outputs"]) == {"probabilities", "logits", "classes"}


def test_inspect_tflite_json_reports_quantization(exported_version, tmp_path):
    result = invoke("inspect", exported_version / "model_int8.tflite", "--json")
    assert result.exit_code == 0, result.output
    (lite,) = json.loads(result.output)["tflite"]
    features = lite["signatures"]["serving_default"]["inputs"]["features"]
    assert features["dtype"] == "int8" and features["shape"] == [-1, 2]
    assert features["quantization"]["scale"] > 0
    float_result = json.loads(invoke("inspect", exported_version / "model.tflite", "--json").output)
    float_features = float_result["tflite"][0]["signatures"]["serving_default"]["inputs"]["features"]
    assert float_features["dtype"] == "float32" and float_features["quantization"]["scale"] == 0.0

    broken = tmp_path / "broken.tflite"
    broken.write_bytes(b"not a flatbuffer")
    bad = invoke("inspect", broken)
    assert bad.exit_code == 2 and "not a readable TFLite model" in bad.output


def test_inspect_a_tflite_with_malformed_signature_defs(exported_version, tmp_path):
    from ai_edge_litert import schema_py_generated as schema

    content = (exported_version / "model.tflite").read_bytes()
    model = schema.Model.GetRootAsModel(content, 0)
    (entry,) = [
        model.Metadata(i)
        for i in range(model.MetadataLength())
        if model.Metadata(i).Name() == b"signature_defs_metadata"
    ]
    data = model.Buffers(entry.Buffer()).DataAsNumpy().tobytes()
    garbled = tmp_path / "garbled.tflite"
    garbled.write_bytes(content.replace(data, b"\xff" * len(data)))
    result = invoke("inspect", garbled)
    assert result.exit_code == 2 and result.output.count("\n") == 1
    assert result.output.startswith(f"Error: {garbled}: Invalid SignatureDefs found in TfLite model: ")


def test_inspect_a_corrupt_saved_model(exported_version, tmp_path):
    copy = tmp_path / "v"
    shutil.copytree(exported_version, copy)
    (copy / "saved_model.pb").write_bytes(b"\x00garbage")
    result = invoke("inspect", copy)
    assert result.exit_code == 2
    assert f"{copy / 'saved_model.pb'}: not a readable SavedModel" in result.output


def test_export_of_a_run_with_a_damaged_checkpoint(trained_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    (run / "checkpoint" / "model.index").write_bytes(b"damaged")
    result = invoke("export", run, "--model-base-path", tmp_path / "models", "--name", "m")
    assert result.exit_code == 2
    assert f"Error: {run / 'checkpoint' / 'model'}: cannot restore the model checkpoint" in result.output
    assert not (tmp_path / "models").exists()
