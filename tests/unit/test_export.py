"""The exported version: layout, reload parity, every signature at batch 1 and 10 000,
TFLite float and quantized variants, warmup records, manifest, atomicity, overwrite rules."""

import hashlib
import json
import shutil
import sys
import threading

import numpy as np
import pytest

from toolkit.artifacts import export as exportmod
from toolkit.artifacts.export import export_model
from toolkit.errors import InputError
from toolkit.training.model import make_example, tf
from toolkit.training.rundir import load_run

BATCH_SIZES = (1, 10_000)


@pytest.fixture(scope="module")
def run(trained_run):
    return load_run(trained_run)


@pytest.fixture(scope="module")
def loaded(exported_version):
    return tf.saved_model.load(str(exported_version))


def _feed(run, n):
    """n rows: the held-out samples repeated, so every row is a real sample."""
    rows = run.heldout.features
    return np.resize(rows, (n, rows.shape[1])).astype(np.float32)


def _tflite_runner(path):
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_path=str(path)).get_signature_runner("serving_default")


def test_version_folder_holds_every_artifact(exported_version):
    expected = [
        "saved_model.pb",
        "variables/variables.index",
        "model.tflite",
        "model_dynamic.tflite",
        "model_float16.tflite",
        "model_int8.tflite",
        "assets.extra/tf_serving_warmup_requests",
        "assets.extra/heldout.npz",
        "manifest.json",
    ]
    missing = [name for name in expected if not (exported_version / name).is_file()]
    assert missing == []
    # Nothing but integer versions is left under BASE/NAME (no staging folders).
    assert [p.name for p in exported_version.parent.iterdir()] == ["1"]


def test_restored_checkpoint_has_the_trained_weights(run):
    weights = run.record["weights"]
    np.testing.assert_array_equal(run.model.w.numpy().reshape(-1), np.float32(weights["w"]))
    assert run.model.b.numpy()[0] == np.float32(weights["b"])


@pytest.mark.parametrize("n", BATCH_SIZES)
def test_serving_default_is_bit_identical_to_the_trained_module(run, loaded, n):
    x = _feed(run, n)
    want = run.model.serving_default(tf.constant(x))
    got = loaded.signatures["serving_default"](features=tf.constant(x))
    assert set(got) == {"probabilities", "logits", "classes"}
    for key in got:
        assert got[key].shape == (n, 1)
        np.testing.assert_array_equal(got[key].numpy(), want[key].numpy(), err_msg=key)
    assert got["classes"].dtype == tf.int64
    # Independent of TensorFlow: the probabilities are sigmoid(x @ w + b).
    w, b = run.model.w.numpy().astype(np.float64), float(run.model.b.numpy()[0])
    reference = 1.0 / (1.0 + np.exp(-(x.astype(np.float64) @ w + b)))
    np.testing.assert_allclose(got["probabilities"].numpy(), reference, atol=1e-6)


@pytest.mark.parametrize("n", BATCH_SIZES)
def test_classify_and_regress_on_tf_examples(run, loaded, n):
    x = _feed(run, n)
    examples = tf.constant([make_example(row, run.heldout.feature_names) for row in x])
    probabilities = loaded.signatures["serving_default"](features=tf.constant(x))["probabilities"].numpy()

    classified = loaded.signatures["classify"](inputs=examples)
    scores, classes = classified["scores"].numpy(), classified["classes"].numpy()
    assert scores.shape == (n, 2) and classes.shape == (n, 2)
    # A different graph (parse + stack before the matmul) may round differently by an ulp.
    np.testing.assert_allclose(scores[:, 1:], probabilities, rtol=0, atol=1e-6)
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, atol=1e-6)
    assert (classes == [b"0", b"1"]).all()

    regressed = loaded.signatures["regress"](inputs=examples)["outputs"].numpy()
    assert regressed.shape == (n,)
    np.testing.assert_allclose(regressed, probabilities[:, 0], rtol=0, atol=1e-6)


def test_classify_rejects_an_example_missing_a_feature(run, loaded):
    incomplete = make_example([1.0], run.heldout.feature_names[:1])
    with pytest.raises(tf.errors.InvalidArgumentError, match=run.heldout.feature_names[1]):
        loaded.signatures["classify"](inputs=tf.constant([incomplete]))


@pytest.mark.parametrize("n", BATCH_SIZES + (0,))
def test_float_tflite_within_1e6_of_the_saved_model(run, loaded, exported_version, n):
    x = _feed(run, n)
    want = {k: v.numpy() for k, v in loaded.signatures["serving_default"](features=tf.constant(x)).items()}
    got = _tflite_runner(exported_version / "model.tflite")(features=x)
    for key in ("probabilities", "logits"):
        assert got[key].shape == (n, 1)
        np.testing.assert_allclose(got[key], want[key], rtol=0, atol=1e-6, err_msg=key)
    # Classes may only differ where the probability is within float error of 0.5.
    differ = got["classes"] != want["classes"]
    assert np.all(np.abs(want["probabilities"][differ] - 0.5) < 1e-6)


@pytest.mark.parametrize("variant, atol", [("dynamic", 1e-6), ("float16", 2e-3)])
def test_float_io_quantized_variants_stay_close(run, loaded, exported_version, variant, atol):
    x = _feed(run, 1000)
    want = loaded.signatures["serving_default"](features=tf.constant(x))["probabilities"].numpy()
    got = _tflite_runner(exported_version / f"model_{variant}.tflite")(features=x)["probabilities"]
    np.testing.assert_allclose(got, want, rtol=0, atol=atol)


def test_int8_variant_is_full_integer_and_agrees_on_classes(run, loaded, exported_version):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(exported_version / "model_int8.tflite"))
    runner = interpreter.get_signature_runner("serving_default")
    inputs, outputs = runner.get_input_details(), runner.get_output_details()
    assert inputs["features"]["dtype"] == np.int8
    assert outputs["probabilities"]["dtype"] == np.int8
    in_scale, in_zero = inputs["features"]["quantization"]
    out_scale, out_zero = outputs["probabilities"]["quantization"]
    assert in_scale > 0 and out_scale > 0

    x = run.heldout.features
    quantized = np.clip(np.round(x / in_scale + in_zero), -128, 127).astype(np.int8)
    probabilities = (runner(features=quantized)["probabilities"].astype(np.float32) - out_zero) * out_scale
    want = loaded.signatures["serving_default"](features=tf.constant(x))["probabilities"].numpy()
    # One quantization step of the output plus the input rounding carried through the sigmoid.
    assert np.max(np.abs(probabilities - want)) < 0.05
    agree = np.mean((probabilities > 0.5) == (want > 0.5))
    assert agree >= 0.99


@pytest.mark.parametrize(
    "filename", ["model.tflite", "model_dynamic.tflite", "model_float16.tflite", "model_int8.tflite"]
)
def test_every_tflite_carries_tf_signature_defs_matching_its_native_signature(exported_version, filename):
    """TF Serving's --prefer_tflite_model reads `signature_defs_metadata`: a flexbuffer map of
    serialized SignatureDefs stored as strings (what tflite::GetSignatureDefMap parses)."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.interpreter import Interpreter
    from flatbuffers import flexbuffers
    from tensorflow.core.protobuf import meta_graph_pb2

    content = (exported_version / filename).read_bytes()
    model = schema.Model.GetRootAsModel(content, 0)
    (entry,) = [
        model.Metadata(i)
        for i in range(model.MetadataLength())
        if model.Metadata(i).Name() == b"signature_defs_metadata"
    ]
    stored = flexbuffers.GetRoot(model.Buffers(entry.Buffer()).DataAsNumpy().tobytes()).AsMap
    assert [key.AsKey for key in stored.Keys] == ["serving_default"]
    (value,) = stored.Values
    assert value.IsString
    signature = meta_graph_pb2.SignatureDef.FromString(value.AsStringBytes)
    assert signature.method_name == "tensorflow/serving/predict"

    # The native signature stays, and each SignatureDef alias names its tensor, dtype and shape.
    runner = Interpreter(model_content=content).get_signature_runner("serving_default")
    for stored_map, details in (
        (signature.inputs, runner.get_input_details()),
        (signature.outputs, runner.get_output_details()),
    ):
        assert set(stored_map) == set(details)
        for alias, detail in details.items():
            info = stored_map[alias]
            assert info.name == detail["name"]
            assert tf.as_dtype(info.dtype).as_numpy_dtype == detail["dtype"]
            assert [d.size for d in info.tensor_shape.dim] == list(detail["shape_signature"])
    assert set(signature.inputs) == {"features"}
    assert set(signature.outputs) == {"probabilities", "logits", "classes"}


def test_warmup_records_are_predict_requests_built_from_heldout_samples(run, exported_version):
    from tensorflow_serving.apis import prediction_log_pb2

    path = exported_version / "assets.extra" / "tf_serving_warmup_requests"
    records = list(tf.data.TFRecordDataset(str(path)).as_numpy_iterator())
    assert len(records) == min(exportmod.WARMUP_RECORDS, len(run.heldout))
    for i, raw in enumerate(records):
        log = prediction_log_pb2.PredictionLog.FromString(raw)
        assert log.WhichOneof("log_type") == "predict_log"
        request = log.predict_log.request
        assert request.model_spec.name == "logreg"
        assert request.model_spec.signature_name == "serving_default"
        np.testing.assert_array_equal(tf.make_ndarray(request.inputs["features"]), run.heldout.features[i : i + 1])


def test_manifest_records_versions_data_metrics_signatures_and_hashes(run, exported_version):
    manifest = json.loads((exported_version / "manifest.json").read_text())
    assert manifest["versions"]["tensorflow"] == tf.__version__
    assert set(manifest["versions"]) == {"tfkit", "tensorflow", "litert"}
    assert manifest["seed"] == run.config["seed"]
    assert manifest["data"]["hash"] == run.config["data_hash"]
    assert manifest["feature_names"] == list(run.heldout.feature_names)
    assert manifest["metrics"]["heldout"] == run.record["heldout"]
    assert set(manifest["signatures"]) == {"serving_default", "classify", "regress"}
    assert manifest["signatures"]["serving_default"]["inputs"]["features"]["shape"] == [-1, 2]
    files = {str(p.relative_to(exported_version)) for p in exported_version.rglob("*") if p.is_file()}
    assert set(manifest["files"]) == files - {"manifest.json"}
    for name, digest in manifest["files"].items():
        assert hashlib.sha256((exported_version / name).read_bytes()).hexdigest() == digest, name


def test_heldout_split_travels_with_the_model(run, exported_version):
    with np.load(exported_version / "assets.extra" / "heldout.npz") as npz:
        np.testing.assert_array_equal(npz["features"], run.heldout.features)
        np.testing.assert_array_equal(npz["labels"], run.heldout.labels)


def test_export_failing_midway_leaves_no_version(trained_run, tmp_path, monkeypatch):
    seen_during_build = {}
    real_write_manifest = exportmod._write_manifest

    def failing_write_manifest(folder, *args, **kwargs):
        real_write_manifest(folder, *args, **kwargs)
        # Everything is written, yet no integer-named version is visible to a server.
        seen_during_build["entries"] = sorted(p.name for p in (tmp_path / "m").iterdir())
        raise OSError("disk full (injected)")

    monkeypatch.setattr(exportmod, "_write_manifest", failing_write_manifest)
    with pytest.raises(OSError, match="injected"):
        export_model(trained_run, tmp_path, "m")
    assert len(seen_during_build["entries"]) == 1
    assert not seen_during_build["entries"][0].isdigit()
    assert list((tmp_path / "m").iterdir()) == []


def test_overwrite_needs_force_and_force_replaces_atomically(exported_version, trained_run, tmp_path):
    base = tmp_path / "base"
    shutil.copytree(exported_version, base / "logreg" / "1")
    before = (base / "logreg" / "1" / "manifest.json").read_text()

    with pytest.raises(InputError, match="already exists; pass --force"):
        export_model(trained_run, base, "logreg", version=1)
    assert (base / "logreg" / "1" / "manifest.json").read_text() == before

    # Without --version the next integer is taken.
    assert export_model(trained_run, base, "logreg").name == "2"

    # A poller (like a server watching BASE/NAME) must see version 1 complete at every moment:
    # the manifest is written last, so a version without one would be half-written.
    seen, stop = [], threading.Event()

    def poll():
        while not stop.wait(0.0005):
            # Read the manifest first: if it is there, the folder was complete when we looked.
            complete = (base / "logreg" / "1" / "manifest.json").is_file()
            seen.append((complete, complete or (base / "logreg" / "1").exists()))

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        replaced = export_model(trained_run, base, "logreg", version=1, force=True)
    finally:
        stop.set()
        poller.join()
    assert len(seen) > 100
    assert not any(exists and not complete for complete, exists in seen), "saw a half-written version 1"
    if sys.platform == "linux":  # renameat2(RENAME_EXCHANGE): version 1 is never even absent
        assert all(exists for _, exists in seen)
    manifest = json.loads((replaced / "manifest.json").read_text())
    assert manifest["version"] == 1
    assert not (replaced / "model_int8.tflite").exists()  # the old content is gone, not merged
    assert sorted(p.name for p in (base / "logreg").iterdir()) == ["1", "2"]


def test_a_zero_padded_version_folder_is_that_version(exported_version, trained_run, tmp_path):
    # TF Serving's own layout (00000123/) is version 123: no second folder of the same version.
    base = tmp_path / "base"
    shutil.copytree(exported_version, base / "logreg" / "00000123")
    with pytest.raises(InputError, match="version 123 already exists"):
        export_model(trained_run, base, "logreg", version=123)
    assert export_model(trained_run, base, "logreg").name == "124"
    assert export_model(trained_run, base, "logreg", version=123, force=True).name == "00000123"
    assert sorted(p.name for p in (base / "logreg").iterdir()) == ["00000123", "124"]


def test_bad_export_arguments_are_input_errors(trained_run, tmp_path):
    with pytest.raises(InputError, match="unknown variant.*int4"):
        export_model(trained_run, tmp_path, "m", quantize="int8,int4")
    with pytest.raises(InputError, match="not a valid model name"):
        export_model(trained_run, tmp_path, "a/b")
    with pytest.raises(InputError, match="no such run folder"):
        export_model(tmp_path / "missing", tmp_path, "m")
