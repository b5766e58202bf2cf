"""Models tfkit did not make, where a runtime cannot run or the user's setup is off: the check judges what can
run, names what cannot and why, reports every problem at once, and leaves a report.json even on an error."""

import json
import os
import re
import time

import numpy as np
import pytest
from click.testing import CliRunner

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def tfkit(*args):
    """Run `tfkit ARGS` in-process; returns click's Result."""
    from toolkit.cli import cli

    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def error_line(result) -> str:
    return result.output.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """BASE/NAME/1 for: svd (an op no TFLite runtime has), strings (a string input, a Flex-only op),
    embed (int64 ids into a 100-row table), twotags (MetaGraph 'serve' y = 2x, 'train' y = 3x),
    with_default (TF2: t defaults to 2.0, recorded in the SignatureDef) and placeholder_default
    (TF1: scale is a placeholder_with_default, which a SignatureDef cannot record)."""
    from toolkit.tfenv import import_tf

    t = import_tf()
    base = tmp_path_factory.mktemp("models")

    class Svd(t.Module):
        @t.function(input_signature=[t.TensorSpec([None, 3, 3], t.float32, name="m")])
        def serve(self, m):
            return {"s": t.linalg.svd(m, compute_uv=False)}

    class Strings(t.Module):
        @t.function(input_signature=[t.TensorSpec([None], t.string, name="s")])
        def serve(self, s):
            return {"n": t.strings.length(s)}

    class Embed(t.Module):
        def __init__(self):
            self.table = t.Variable(np.zeros((100, 2), np.float32))

        @t.function(input_signature=[t.TensorSpec([None], t.int64, name="ids")])
        def serve(self, ids):
            return {"emb": t.gather(self.table, ids)}

    class WithDefault(t.Module):
        @t.function(
            input_signature=[t.TensorSpec([None, 2], t.float32, name="x"), t.TensorSpec([], t.float32, name="t")]
        )
        def serve(self, x, t_=t.constant(2.0)):
            return {"y": x * t_}

    for name, module in (("svd", Svd()), ("strings", Strings()), ("embed", Embed()), ("with_default", WithDefault())):
        t.saved_model.save(module, str(base / name / "1"), signatures={"serving_default": module.serve})
    _save_tf1(t, base / "twotags" / "1", {("serve",): 2.0, ("train",): 3.0})
    _save_tf1(t, base / "placeholder_default" / "1", {("serve",): None})
    return base


def _save_tf1(t, path, graphs: dict) -> None:
    """A TF1 SavedModel with one MetaGraph per tag-set: y = x * k, or, for k None, y = x * scale
    where scale is a placeholder_with_default 3.0."""
    builder = t.compat.v1.saved_model.Builder(str(path))
    for i, (tags, k) in enumerate(graphs.items()):
        with t.Graph().as_default(), t.compat.v1.Session() as session:
            x = t.compat.v1.placeholder(t.float32, [None, 2], name="x")
            inputs = {"x": x}
            if k is None:
                inputs["scale"] = t.compat.v1.placeholder_with_default(3.0, [], name="scale")
                y = x * inputs["scale"]
            else:
                y = x * k
            signature = t.compat.v1.saved_model.predict_signature_def(inputs, {"y": y})
            signatures = {"serving_default": signature}
            if i == 0:
                builder.add_meta_graph_and_variables(session, list(tags), signature_def_map=signatures)
            else:  # no variables: each MetaGraph holds its own graph
                builder.add_meta_graph(list(tags), signature_def_map=signatures)
    builder.save()


@pytest.fixture(scope="module")
def server(models, tmp_path_factory):
    """One model server (real process, ephemeral ports) serving twotags, with_default and placeholder_default."""
    from toolkit.serve import LocalServer

    config = tmp_path_factory.mktemp("server") / "models.config"
    config.write_text(
        "model_config_list {\n"
        + "".join(
            f'  config {{ name: "{n}" base_path: "{models / n}" model_platform: "tensorflow" }}\n'
            for n in ("twotags", "with_default", "placeholder_default")
        )
        + "}\n"
    )
    with LocalServer([f"--model_config_file={config}"], rest=True, timeout=120) as s:
        yield s


def test_tflite_that_cannot_convert_is_not_run_and_the_rest_is_judged(models, tmp_path):
    result = tfkit("check", models / "svd", "--report", tmp_path)
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["status"] == "pass" and report["runtimes"] == ["eager", "grpc", "rest"]
    assert {(c["candidate"], c["bit_exact"], c["passed"]) for c in report["comparisons"]} == {
        ("grpc", True, True),
        ("rest", True, True),
    }
    (not_run,) = report["not_run"]
    assert not_run["runtime"] == "tflite:converted.tflite"
    assert "op Svd has no TFLite kernel, neither builtin nor Flex" in not_run["reason"]
    assert "PASS: 2 runtime(s) agree with eager on 66 rows in 3 calls; 1 not run" in result.output
    assert f"not run: tflite:converted.tflite: {not_run['reason']}" in result.output


def test_every_problem_is_reported_at_once_and_an_error_leaves_a_report(models, tmp_path):
    (tmp_path / "report.json").write_text('{"status": "pass"}')  # a previous run's report is replaced
    result = tfkit("check", models / "strings", "--no-server", "--report", tmp_path)
    assert result.exit_code == 2, result.output
    line = error_line(result)
    assert line.startswith("Error: input s: string[?] is a string tensor"), line
    assert "pass --inputs FILE (.npz with an array named 's'" in line
    assert (
        "tflite:converted.tflite not run: the TFLite converter failed: it needs TF Select (Flex) op StringLength, "
        "which LiteRT lacks" in line
    )
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["status"] == "error" and report["passed"] is False and report["exit_code"] == 2
    assert report["error"] == line.removeprefix("Error: ")
    assert report["model"]["path"] == str(models / "strings")
    assert "# tfkit check: ERROR" in (tmp_path / "report.md").read_text()


def test_a_flex_file_in_the_version_folder_is_not_run(models, tmp_path):
    import shutil

    from toolkit.tfenv import captured_stderr, import_tf

    t = import_tf()
    version = tmp_path / "strings" / "1"
    shutil.copytree(models / "strings" / "1", version)
    converter = t.lite.TFLiteConverter.from_saved_model(str(version))
    converter.target_spec.supported_ops = [t.lite.OpsSet.TFLITE_BUILTINS, t.lite.OpsSet.SELECT_TF_OPS]
    with captured_stderr():
        (version / "model.tflite").write_bytes(converter.convert())
    np.savez(tmp_path / "s.npz", s=np.array([b"a", b"bc"]))
    result = tfkit("check", version, "--inputs", tmp_path / "s.npz", "--no-server", "--report", tmp_path / "r")
    assert result.exit_code == 2, result.output
    assert error_line(result) == (
        f"Error: nothing to compare {version} with: no TFLite runtime can run and no server "
        "was asked for (also: tflite:model.tflite not run: needs the Flex delegate (ops "
        "FlexStringLength), which LiteRT and most edge runtimes lack)"
    )


def test_a_kernel_error_on_generated_ids_says_what_was_fed_and_how_to_change_it(models, tmp_path):
    result = tfkit("check", models / "embed", "--no-server", "--value-range", "-5", "5", "--report", tmp_path)
    assert result.exit_code == 2, result.output
    line = error_line(result)
    assert line.startswith("Error: eager failed to run: indices["), line
    assert "is not in [0, 100) (node " in line and "Graph execution error" not in line
    assert re.search(r"; the generated inputs held ids in \[-[1-5], [0-5]\]; ", line), line
    assert line.endswith("pass --value-range LOW HIGH or --inputs FILE with values the model accepts")


def test_a_model_with_two_tag_sets_is_checked_and_predicted(models, server, tmp_path):
    model = models / "twotags"
    row = '{"x": [[1.0, 2.0]]}'
    assert json.loads(tfkit("predict", model, "--json", row).output) == {"y": [[2.0, 4.0]]}
    assert json.loads(tfkit("predict", model, "--tags", "train", "--json", row).output) == {"y": [[3.0, 6.0]]}
    remote = tfkit("predict", "--target", server.grpc_target, "--model-name", "twotags", "--json", row)
    assert json.loads(remote.output) == {"y": [[2.0, 4.0]]}, remote.output
    missing = tfkit("predict", model, "--tags", "gpu", "--json", row)
    assert missing.exit_code == 2
    assert error_line(missing).endswith(
        "has no MetaGraph tagged gpu (it has tag-sets: serve; train); pass --tags, as TF Serving's --saved_model_tags"
    )

    shown = json.loads(tfkit("inspect", model / "1", "--tags", "train", "--json").output)
    assert [m["tags"] for m in shown["saved_model"]["meta_graphs"]] == [["train"]]
    assert tfkit("inspect", model / "1", "--tags", "gpu").exit_code == 2

    against_server = tfkit(
        "check",
        model,
        "--target",
        server.grpc_target,
        "--rest-target",
        server.rest_url,
        "--report",
        tmp_path / "served",
    )
    assert against_server.exit_code == 0, against_server.output
    # The local server gets --saved_model_tags=train: serving 'serve' would answer 2x against eager's 3x.
    train = tfkit("check", model, "--tags", "train", "--no-convert", "--report", tmp_path / "train")
    assert train.exit_code == 0, train.output
    report = json.loads((tmp_path / "train" / "report.json").read_text())
    assert report["runtimes"] == ["eager", "grpc", "rest"] and all(c["bit_exact"] for c in report["comparisons"])


def test_an_unknown_model_name_ends_the_wait_at_once(models, server, tmp_path):
    started = time.monotonic()
    result = tfkit(
        "check",
        models / "twotags",
        "--target",
        server.grpc_target,
        "--model-name",
        "WRONG",
        "--timeout",
        120,
        "--no-convert",
        "--report",
        tmp_path,
    )
    assert result.exit_code == 3, result.output
    assert time.monotonic() - started < 30  # sanity bound: the --timeout of 120 s was not waited out
    assert error_line(result) == (
        f"Error: model 'WRONG' not found at {server.grpc_target} (NOT_FOUND: Could not find "
        "any versions of model WRONG); pass --model-name with a model the server serves"
    )
    assert json.loads((tmp_path / "report.json").read_text())["exit_code"] == 3
    rest = tfkit(
        "predict",
        "--rest-target",
        server.rest_url,
        "--model-name",
        "WRONG",
        "--timeout",
        120,
        "--json",
        '{"x": [[1.0, 2.0]]}',
    )
    assert rest.exit_code == 3 and "model 'WRONG' not found at http://127.0.0.1:" in error_line(rest)


def test_predict_to_a_server_may_omit_inputs_and_the_server_answers(server):
    row = '{"x": [[1.0, 2.0]]}'
    # gRPC Predict fills an input the SignatureDef gives a default (a tf.function default argument).
    filled = tfkit("predict", "--target", server.grpc_target, "--model-name", "with_default", "--json", row)
    assert filled.exit_code == 0, filled.output
    assert json.loads(filled.output) == {"y": [[2.0, 4.0]]}
    # A TF1 placeholder_with_default is not in the SignatureDef, and TF Serving's REST API wants every
    # input: tfkit sends what it was given and shows the server's own answer.
    refused = tfkit("predict", "--target", server.grpc_target, "--model-name", "placeholder_default", "--json", row)
    assert refused.exit_code == 2
    assert "input size does not match signature" in error_line(refused)
    assert "Missing but required: {scale}" in error_line(refused)
    rest = tfkit("predict", "--rest-target", server.rest_url, "--model-name", "with_default", "--json", row)
    assert rest.exit_code == 2
    assert error_line(rest).endswith("rejected the request: HTTP 400: Missing named input: t in 'inputs' object.")
