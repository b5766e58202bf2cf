"""End-to-end: `tfkit run`, `tfkit check` and `tfkit predict` through the CLI,
against real server processes on ephemeral ports."""

import json
import re
import socket
from pathlib import Path
from xml.etree import ElementTree as ET

import numpy as np

from support import tflite_runtimes


def test_run_exits_0_with_float_runtimes_in_agreement(tfkit_run, run_report):
    result, out = tfkit_run
    assert "PASS" in result.output
    by_pair = {(c["candidate"], c["output"]): c for c in run_report["comparisons"]}
    # Our server is judged within ULPs (its Session may rewrite the graph), yet on the tutorial model it is
    # bit-exact, as is the reloaded SavedModel: that fact is reported, and asserted here.
    for runtime, policy in (("savedmodel", "exact"), ("grpc", "session"), ("rest", "session")):
        for output in ("probabilities", "logits", "classes"):
            assert by_pair[(runtime, output)]["bit_exact"], (runtime, output)
            assert by_pair[(runtime, output)]["policy"] == policy, (runtime, output)
    assert by_pair[("tflite:model.tflite", "probabilities")]["max_abs_error"] <= 1e-6
    assert set(run_report["runtimes"]) >= {"eager", "savedmodel", "grpc", "rest", "tflite:model.tflite"}


def test_run_prints_the_training_lines_of_tfkit_train_before_the_check(tfkit_run):
    """The same seed's per-step lines and held-out result as `tfkit train`, ahead of the verdict."""
    from toolkit.training.rundir import load_run

    result, out = tfkit_run
    record = json.loads((out / "run" / "training.json").read_text())
    lines = result.output.splitlines()
    steps = [line for line in lines if line.startswith("Loss at step ")]
    assert steps == [
        f"Loss at step {m['step']}: {m['loss']:.4f}, Accuracy: {m['accuracy']:.4f}" for m in record["steps"]
    ]
    held = next(i for i, line in enumerate(lines) if line.startswith("Held-out ("))
    assert f"accuracy {record['heldout']['accuracy']:.4f}" in lines[held]
    assert held < next(i for i, line in enumerate(lines) if line.startswith("PASS"))
    assert load_run(out / "run").config["seed"] == 0


def test_run_reports_every_quantized_variant_with_figures(tfkit_run, run_report):
    result, out = tfkit_run
    for variant in ("float16", "int8"):  # the dynamic variant has no quantized tensor (see the edge facts)
        assert re.search(
            rf"tflite:model_{variant}\.tflite: class agreement 1\.0000 \(0 flip\(s\) in \d+ rows, "
            r"\d+ allowed at 0\.99\), max probabilities error \S+ \(atol 0\.15\)",
            result.output,
        )
    plots = set(run_report["plots"])
    agreement = {c["candidate"]: c for c in run_report["class_agreement"]}
    edge = {Path(e["file"]).name: e for e in run_report["edge"]}
    for variant in ("dynamic", "float16", "int8"):
        name = f"tflite:model_{variant}.tflite"
        assert f"plots/vs_tflite_model_{variant}.tflite.png" in plots
        assert (out / "report" / "plots" / f"vs_tflite_model_{variant}.tflite.png").stat().st_size > 1000
        assert 0.99 <= agreement[name]["agreement"] <= 1.0
        facts = edge[f"model_{variant}.tflite"]
        assert facts["size_bytes"] == (out / "models" / "logreg" / "1" / f"model_{variant}.tflite").stat().st_size
        assert facts["latency"]["us_per_row_batched"] > 0
        assert facts["needs_flex"] is False
    assert edge["model_int8.tflite"]["quantization"] == "int8"
    assert edge["model_int8.tflite"]["inputs"][0]["quantization"]["scales"][0] > 0
    assert edge["model_float16.tflite"]["quantization"] == "float16"
    assert (out / "report" / "plots" / "error_distribution.png").is_file()


def test_run_checks_every_tflite_file_under_every_op_resolver(tfkit_run, run_report):
    result, out = tfkit_run
    files = sorted(p.name for p in (out / "models" / "logreg" / "1").glob("*.tflite"))
    assert files == ["model.tflite", "model_dynamic.tflite", "model_float16.tflite", "model_int8.tflite"]
    details = {d["name"]: d for d in run_report["runtime_details"]}
    for file in files:
        assert {details[name]["resolver"] for name in tflite_runtimes(file)} == {"auto", "builtin", "ref"}
        assert {details[name]["policy"] for name in tflite_runtimes(file)} == {
            "float" if file in ("model.tflite", "model_dynamic.tflite") else "quantized"
        }
        assert f"kernels: {file}: " in result.output
    # The spread between kernels, per file and output.
    spread = {(k["file"], k["output"]): k for k in run_report["kernel_spread"]}
    assert set(spread) == {(f, o) for f in files for o in ("classes", "logits", "probabilities")}
    assert all(k["max_abs_difference"] is not None for k in spread.values())
    # Float32 kernels differ by rounding only.
    assert spread[("model.tflite", "probabilities")]["max_abs_difference"] <= 1e-6


def test_report_json_schema(run_report):
    for key in (
        "schema_version",
        "passed",
        "model",
        "reference",
        "runtimes",
        "runtime_details",
        "policies",
        "inputs",
        "rows",
        "calls",
        "row_labels",
        "call_labels",
        "outputs_per_call",
        "comparisons",
        "class_agreement",
        "batch_invariance",
        "repeatability",
        "not_judged",
        "signature_consistency",
        "edge",
        "errors",
        "reproducibility",
        "plots",
    ):
        assert key in run_report, key
    assert run_report["passed"] is True
    for comparison in run_report["comparisons"]:
        for key in (
            "reference",
            "candidate",
            "output",
            "max_abs_error",
            "passed",
            "p99_abs_error",
            "failures",
            "failed_units",
            "worst",
            "unit",
            "units",
            "atol",
            "rtol",
            "ulps",
            "judged",
            "bit_exact",
        ):
            assert key in comparison, key
    repro = run_report["reproducibility"]
    assert re.fullmatch(r"[0-9a-f]{64}", repro["input_sha256"])
    assert re.fullmatch(r"[0-9a-f]{64}", repro["files"]["saved_model.pb"])
    assert repro["versions"]["tensorflow"] and repro["versions"]["litert"] and repro["versions"]["tfkit"]
    assert repro["training_seed"] == 0
    assert len(run_report["row_labels"]) == run_report["inputs"]["rows"]
    judged = [b for b in run_report["batch_invariance"] if b["judged"]]
    assert {b["output"] for b in judged} == {"probabilities", "logits", "classes"}
    assert all(b["passed"] and (b["max_scale_ulps"] or 0) <= b["bound"] for b in judged)
    assert run_report["rows"] == len(run_report["row_labels"]) and run_report["calls"] == len(run_report["call_labels"])
    assert {r["runtime"] for r in run_report["repeatability"]} >= {"eager", "savedmodel", "grpc", "rest"}
    assert all(r["passed"] for r in run_report["repeatability"])
    assert all(s["passed"] for s in run_report["signature_consistency"])


def test_junit_is_valid_xml(tfkit_run, run_report):
    _, out = tfkit_run
    suite = ET.parse(out / "junit.xml").getroot()
    cases = suite.findall("testcase")
    assert suite.tag == "testsuite" and int(suite.get("tests")) == len(cases)
    assert int(suite.get("failures")) == 0
    assert len(cases) >= len(run_report["comparisons"])


def test_check_half_plus_two_converts_and_passes(tmp_path, tfkit, half_plus_two):
    result = tfkit("check", half_plus_two, "--report", tmp_path / "r", "--timeout", 120)
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert (tmp_path / "r" / "converted.tflite").is_file()
    assert set(report["runtimes"]) == {"eager", "grpc", "rest"} | tflite_runtimes("converted.tflite")
    # The conversion note is printed once, with the verdict (not again as progress on stderr).
    assert result.output.count("no TFLite file in") == 1
    assert report["model"]["version"] == "00000123"
    # A fully static signature x: float32[1] is fed one sample per call.
    assert report["inputs"]["source"] == "generated" and report["inputs"]["rows"] == 65


def test_check_other_shape_model_against_target(foreign_models, server, tmp_path, tfkit):
    result = tfkit(
        "check",
        foreign_models / "two_inputs",
        "--target",
        server.grpc_target,
        "--rest-target",
        server.rest_url,
        "--samples",
        20,
        "--seed",
        3,
        "--report",
        tmp_path,
    )
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "report.json").read_text())
    assert {c["output"] for c in report["comparisons"]} == {"total", "scaled"}
    assert f"grpc@{server.grpc_target}" in report["runtimes"]
    assert report["inputs"]["seed"] == 3


def test_tflite_from_another_model_exits_1_naming_pair_and_output(exported_version, tmp_path, tfkit):
    from toolkit.artifacts.tflite import convert
    from toolkit.tfenv import import_tf
    from toolkit.training.model import LogisticRegression

    other = LogisticRegression(2, seed=7)
    import_tf().saved_model.save(other, str(tmp_path / "other"), signatures=other.signatures())
    wrong = tmp_path / "other.tflite"
    wrong.write_bytes(convert(tmp_path / "other", ["serving_default"]))
    result = tfkit("check", exported_version, "--tflite", wrong, "--no-server")
    assert result.exit_code == 1, result.output
    assert "eager vs tflite:other.tflite, output probabilities" in result.output
    assert "rows heldout[" in result.output


def test_server_serving_another_version_exits_1(foreign_models, server, tfkit):
    result = tfkit("check", foreign_models / "scale" / "1", "--target", server.grpc_target, "--no-convert")
    assert result.exit_code == 1, result.output
    assert f"eager vs grpc@{server.grpc_target}, output y" in result.output
    assert "answered with model version 2" in result.output


def test_server_serving_the_same_version_passes(foreign_models, server, tfkit):
    result = tfkit("check", foreign_models / "scale", "--target", server.grpc_target, "--max-batch", 7)
    assert result.exit_code == 0, result.output


def test_unreachable_target_exits_3_with_address(tfkit, half_plus_two):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: nothing answers
        result = tfkit("check", half_plus_two, "--target", f"127.0.0.1:{port}", "--timeout", 1, "--no-convert")
    assert result.exit_code == 3, result.output
    assert f"127.0.0.1:{port}" in result.output
    assert "Traceback" not in result.output


def test_bad_model_path_exits_2(tmp_path, tfkit):
    result = tfkit("check", tmp_path / "missing")
    assert result.exit_code == 2
    assert result.output.startswith("Error: model path not found")


def test_a_tflite_file_as_model_points_at_tflite_option(exported_version, tfkit):
    lite = exported_version / "model.tflite"
    result = tfkit("check", lite)
    assert result.exit_code == 2
    assert result.output.splitlines()[-1].endswith(
        f"; to check a .tflite file, check its SavedModel with --tflite {lite}"
    )
    served = tfkit("serve", lite)
    assert served.exit_code == 2
    assert (
        served.output
        == f"Error: {lite}: not a folder; serve a model folder (BASE/NAME) or a version folder (BASE/NAME/VERSION)\n"
    )


def test_predict_saved_model_tflite_and_target(exported_version, foreign_models, server, tfkit):
    local = tfkit("predict", exported_version, "--csv", "0,4;4,0")
    lite = tfkit("predict", exported_version / "model.tflite", "--json", "[[0, 4], [4, 0]]")
    assert local.exit_code == 0 and lite.exit_code == 0, local.output + lite.output
    a, b = json.loads(local.output), json.loads(lite.output)
    assert a["classes"] == b["classes"] and len(a["probabilities"]) == 2
    np.testing.assert_allclose(a["probabilities"], b["probabilities"], atol=1e-6)
    remote = tfkit("predict", "--target", server.grpc_target, "--model-name", "scale", "--json", '{"x": [[1, 2, 3]]}')
    assert remote.exit_code == 0, remote.output
    assert json.loads(remote.output) == {"y": [[3.0, 6.0, 9.0]]}


def test_predict_with_a_bad_feed_names_the_model(exported_version, tfkit):
    result = tfkit("predict", exported_version, "--csv", "0,4,5")
    assert result.exit_code == 2
    assert result.output.splitlines()[-1] == (
        f"Error: bad feed for {exported_version}: input features has shape [1, 3], expected float32[?,2]"
    )


def test_input_errors_exit_2_with_one_line(tfkit, half_plus_two, tmp_path):
    garbage = tmp_path / "garbage.tflite"
    garbage.write_bytes(b"not a flatbuffer")
    cases = [
        (["--tflite", garbage], f"Error: {garbage} is not a TFLite model"),
        (["--signature", "nope"], "has no signature 'nope' (it has: classify_x2_to_y3"),
        # Both problems at once: the string input needs --inputs, and TFLite cannot run the signature.
        (["--signature", "classify_x_to_y"], "needs TF Select (Flex) op ParseExampleV2"),
        (["--signature", "classify_x_to_y", "--no-convert"], "input inputs: string[?] is a string tensor"),
        (["--atol", "y=abc"], "Error: --atol 'y=abc': expected VALUE or OUTPUT=VALUE"),
        (["--no-convert"], "nothing to compare"),
    ]
    for args, message in cases:
        result = tfkit("check", half_plus_two, "--no-server", "--report", tmp_path / "r", *args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output and len(result.output.strip().splitlines()[-1]) < 400
        assert "Traceback" not in result.output


def test_a_stale_replica_is_named_among_good_ones(foreign_models, server, tfkit, tmp_path):
    from toolkit.serve import LocalServer

    config = tmp_path / "stale.config"
    config.write_text(
        f'model_config_list {{ config {{ name: "scale" base_path: "{foreign_models / "scale"}" '
        'model_platform: "tensorflow" model_version_policy { specific { versions: 1 } } } }\n'
    )
    with LocalServer([f"--model_config_file={config}"], timeout=120) as stale:
        result = tfkit(
            "check",
            foreign_models / "scale",
            "--target",
            server.grpc_target,
            "--target",
            stale.grpc_target,
            "--no-convert",
            "--report",
            tmp_path / "r",
        )
    assert result.exit_code == 1, result.output
    assert f"eager vs grpc@{stale.grpc_target}, output y" in result.output
    assert f"eager vs grpc@{server.grpc_target}" not in result.output.split("FAIL")[1]
    assert f"grpc@{stale.grpc_target} answered with model version 1" in result.output
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    verdicts = {c["candidate"]: c["passed"] for c in report["comparisons"]}
    assert verdicts == {f"grpc@{server.grpc_target}": True, f"grpc@{stale.grpc_target}": False}


def test_string_signature_with_serialized_examples(exported_version, server, tfkit, tmp_path):
    from toolkit.training.model import make_example

    rows = [[0.5, 3.0], [3.0, 0.5], [1.7, 1.9]]
    examples = np.array([make_example(r, ["x0", "x1"]) for r in rows], dtype="S")
    np.savez(tmp_path / "examples.npz", inputs=examples)
    result = tfkit(
        "check",
        exported_version,
        "--signature",
        "classify",
        "--inputs",
        tmp_path / "examples.npz",
        "--target",
        server.grpc_target,
        "--rest-target",
        server.rest_url,
        "--report",
        tmp_path / "r",
    )
    assert result.exit_code == 0, result.output
    assert "model.tflite has no signature 'classify' (it has: serving_default): not compared" in result.output
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    classes = [c for c in report["comparisons"] if c["output"] == "classes"]
    assert len(classes) == 2 and all(c["bit_exact"] for c in classes)


def test_object_arrays_in_inputs_are_refused_with_a_hint(exported_version, tfkit, tmp_path):
    np.savez(tmp_path / "objects.npz", inputs=np.array([b"x", b"y"], dtype=object))
    result = tfkit(
        "check", exported_version, "--signature", "classify", "--inputs", tmp_path / "objects.npz", "--no-server"
    )
    assert result.exit_code == 2
    assert "store strings as a bytes array (dtype 'S')" in result.output


def test_check_without_report_option_writes_the_json_report_in_tfkit_report(
    tfkit, half_plus_two, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    result = tfkit("check", half_plus_two, "--no-server")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "tfkit-report" / "report.json").read_text())
    assert report["passed"] is True and "eager" in report["runtimes"]
