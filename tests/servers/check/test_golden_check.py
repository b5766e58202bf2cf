"""Portable proof on the host: the golden file `tfkit export` writes checks a served fleet with no
SavedModel at hand, bit for bit; the device checker's report comes home as one more runtime;
stored runs compare with no model; golden files of another model, or with another output layout,
are named."""

import json
import shutil
from xml.etree import ElementTree as ET

import pytest

from toolkit.artifacts import golden
from toolkit.edge import cli as edge_cli

from support import tflite_runtimes


def _golden(version_dir):
    return version_dir / "assets.extra" / "tfkit_golden" / "serving_default.json"


def _report(folder) -> dict:
    return json.loads((folder / "report.json").read_text())


def test_export_writes_a_golden_file_with_inputs_outputs_hashes_versions_and_policies(exported_version):
    recorded = golden.read(_golden(exported_version))
    assert recorded.origin == "export" and recorded.reference == "savedmodel"
    assert [f.name for f in recorded.feeds][:2] == ["heldout", "on the decision boundary"]
    assert {f.name: f.in_distribution for f in recorded.feeds}["large magnitude x1e6"] is False
    assert recorded.model["saved_model_sha256"] == golden.saved_model_sha256(exported_version)
    assert set(recorded.model["tflite"]) == {p.name for p in exported_version.glob("*.tflite")}
    assert recorded.environment["versions"]["tensorflow"] and recorded.environment["versions"]["litert"]
    assert recorded.environment["platform"]["machine"]
    assert recorded.policies["quantized"]["quantized"] is True
    assert set(recorded.runtime("savedmodel").outputs[0]) == {"classes", "logits", "probabilities"}


def test_a_golden_file_checks_a_served_model_over_grpc_and_rest_without_the_savedmodel(
    tfkit, exported_version, logreg_server, tmp_path
):
    result = tfkit(
        "check",
        "--target",
        logreg_server.grpc_target,
        "--rest-target",
        logreg_server.rest_url,
        "--load-outputs",
        _golden(exported_version),
        "--report",
        tmp_path,
    )
    assert result.exit_code == 0, result.output
    report = _report(tmp_path)
    grpc, rest = f"grpc@{logreg_server.grpc_target}", f"rest@{logreg_server.rest_url.split('://')[1]}"
    assert report["model"]["path"] is None and report["runtimes"] == ["golden:savedmodel", grpc, rest]
    compared = {(c["candidate"], c["output"]): c["bit_exact"] for c in report["comparisons"]}
    assert compared == {
        (runtime, output): True for runtime in (grpc, rest) for output in ("classes", "logits", "probabilities")
    }
    # Fed exactly the golden file's rows: held-out and boundary cases.
    assert report["rows"] == sum(len(next(iter(c.values()))) for c in golden.read(_golden(exported_version)).calls)


@pytest.fixture(scope="module")
def device_report(exported_version, tmp_path_factory):
    """The device checker's report folder on the tutorial export (run in this process: it needs no TensorFlow)."""
    folder = tmp_path_factory.mktemp("device")
    assert edge_cli.main(["check", str(exported_version), "--report", str(folder)]) == 0
    return folder


def test_the_device_report_comes_home_as_its_own_runtime(tfkit, exported_version, device_report, tmp_path):
    result = tfkit(
        "check",
        exported_version,
        "--no-server",
        "--tflite",
        exported_version / "model.tflite",
        "--load-outputs",
        device_report / "report.json",
        "--report",
        tmp_path,
        "--junit",
        tmp_path / "junit.xml",
    )
    assert result.exit_code == 0, result.output
    device = {f"device:{name}" for file in ("model.tflite", "model_int8.tflite") for name in tflite_runtimes(file)}
    table = {line.split()[0] for line in result.output.splitlines() if line.startswith("device:")}
    assert device <= table
    report = _report(tmp_path)
    assert device <= set(report["runtimes"])
    details = {d["name"]: d for d in report["runtime_details"]}["device:tflite:model.tflite[ref]"]
    assert details["kind"] == "device" and details["resolver"] == "ref"
    assert {"machine", "processor", "os", "python", "litert"} <= set(details["device"])
    assert "plots/vs_device_tflite_model.tflite_ref_.png" in report["plots"]
    cases = {case.get("classname") for case in ET.parse(tmp_path / "junit.xml").getroot()}
    assert "eager.vs.device:tflite:model_int8.tflite" in cases


def test_the_device_report_has_the_check_schema_and_the_kernel_spread(device_report, exported_version):
    report = _report(device_report)
    assert report["status"] == "pass" and report["reference"] == "golden:savedmodel"
    assert set(report["runtimes"][1:]) == set().union(
        *(tflite_runtimes(p.name) for p in exported_version.glob("*.tflite"))
    )
    spread = {(k["file"], k["output"]): k for k in report["kernel_spread"]}
    assert set(spread) == {
        (p.name, o) for p in exported_version.glob("*.tflite") for o in ("classes", "logits", "probabilities")
    }
    assert all(len(k["runtimes"]) == 3 and k["max_abs_difference"] is not None for k in spread.values())
    assert report["saved_outputs"] == "outputs.json" and (device_report / "outputs.npz").is_file()


def test_stored_runs_compare_with_each_other_without_a_model(tfkit, exported_version, tmp_path):
    saved = tmp_path / "saved" / "today.json"
    first = tfkit(
        "check",
        exported_version,
        "--no-server",
        "--tflite",
        exported_version / "model.tflite",
        "--save-outputs",
        saved,
        "--report",
        tmp_path / "first",
    )
    assert first.exit_code == 0, first.output
    assert _report(tmp_path / "first")["saved_outputs"] == str(saved.resolve())
    result = tfkit(
        "check", "--load-outputs", _golden(exported_version), "--load-outputs", saved, "--report", tmp_path / "second"
    )
    assert result.exit_code == 0, result.output
    report = _report(tmp_path / "second")
    assert report["reference"] == "golden:savedmodel"
    assert set(report["runtimes"]) == {"golden:savedmodel", "stored:eager"} | {
        f"stored:{name}" for name in tflite_runtimes("model.tflite")
    }
    # Today's eager run of the same SavedModel is the export's golden outputs, bit for bit.
    assert all(c["bit_exact"] for c in report["comparisons"] if c["candidate"] == "stored:eager")


def test_a_golden_file_of_another_model_exits_2_naming_both_hashes(tfkit, exported_version, other_golden, tmp_path):
    result = tfkit("check", exported_version, "--no-server", "--load-outputs", other_golden, "--report", tmp_path)
    assert result.exit_code == 2, result.output
    recorded = golden.read(other_golden).model["saved_model_sha256"]
    assert recorded in result.output and golden.saved_model_sha256(exported_version) in result.output
    assert "--allow-model-mismatch" in result.output and "Traceback" not in result.output


def test_a_changed_tflite_file_is_judged_by_its_outputs_and_noted(tfkit, exported_version, tmp_path):
    version = tmp_path / "1"
    shutil.copytree(exported_version, version)
    data = bytearray((version / "model.tflite").read_bytes())
    data.extend(b"\0" * 16)  # padding after the flatbuffer: another file, the same model
    (version / "model.tflite").write_bytes(bytes(data))
    result = tfkit("check", version, "--no-server", "--tflite", version / "model.tflite", "--report", tmp_path / "r")
    assert result.exit_code == 0, result.output
    assert "note: model.tflite changed since export: its sha256" in result.output


def test_stored_outputs_with_a_missing_output_or_another_shape_fail_that_comparison(tfkit, exported_version, tmp_path):
    recorded = golden.read(_golden(exported_version))
    for outputs in recorded.runtimes[0].outputs:
        del outputs["logits"]
        outputs["classes"] = outputs["classes"].reshape(-1)
    edited = golden.write(recorded, tmp_path / "edited.json")
    result = tfkit(
        "check",
        exported_version,
        "--no-server",
        "--tflite",
        exported_version / "model.tflite",
        "--load-outputs",
        edited,
        "--report",
        tmp_path / "r",
    )
    assert result.exit_code == 1, result.output
    errors = {
        c["output"]: c["error"] for c in _report(tmp_path / "r")["comparisons"] if c["candidate"] == "golden:savedmodel"
    }
    assert errors["logits"] == "golden:savedmodel did not return output logits"
    assert errors["classes"].startswith("shape [") and "differs from the reference's" in errors["classes"]
    assert errors["probabilities"] is None
