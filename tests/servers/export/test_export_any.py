"""`tfkit export` of models tfkit did not train: Keras files, tf.Modules, TF Serving's own TF1 model, a
tfkit version exported again. Each export is served by one `python -m serving` for the session, answered
over gRPC and REST, and passes `tfkit check` against that server; or it exits 2 and publishes nothing."""

import json
import os

import numpy as np
import pytest
from click.testing import CliRunner

from tf_serving_testdata import HALF_PLUS_TWO

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Keras converts numpy arrays the way numpy 2 deprecates; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

WORDS = np.array([b"red", b"green", b"blue", b"unseen", b"green"])


def tfkit(*args):
    """Run `tfkit ARGS` in-process; returns click's Result."""
    from toolkit.cli import cli

    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def _blobs(rng, n: int, centers: np.ndarray, noise: float) -> tuple[np.ndarray, np.ndarray]:
    labels = rng.integers(0, len(centers), n)
    return np.clip(centers[labels] + rng.normal(0, noise, (n, centers.shape[1])), -1, 1).astype(np.float32), labels


def _images(rng, n: int) -> tuple[np.ndarray, np.ndarray]:
    """8x8 uint8 images whose class is their brightness: dark, grey or bright, with noise."""
    labels = rng.integers(0, 3, n)
    pixels = 40 + 85 * labels[:, None, None, None] + rng.integers(-30, 31, (n, 8, 8, 1))
    return pixels.astype(np.uint8), labels


def _fit(model, x, y):
    import keras

    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=8, batch_size=64, verbose=0)


@pytest.fixture(scope="session")
def sources(tmp_path_factory):
    """Every source model and the data files fed to their exports, in one folder."""
    from toolkit.tfenv import import_tf

    t = import_tf()
    import keras

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    src = tmp_path_factory.mktemp("sources")

    centers = np.array([[-0.5, -0.5, 0, 0], [0.5, 0.5, 0, 0], [0, 0, 0.6, -0.6]], np.float32)
    x, y = _blobs(rng, 600, centers, 0.15)
    mlp = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(8, activation="relu"),
            keras.layers.Dense(3, activation="softmax", name="class_probs"),
        ]
    )
    _fit(mlp, x, y)
    mlp.save(src / "mlp.keras")
    np.savez(src / "mlp_calibration.npz", input_layer=x[:400])
    np.savez(src / "mlp_inputs.npz", input_layer=x[400:])

    age, income = keras.Input((3,), name="age"), keras.Input((2,), name="income")
    hidden = keras.layers.Dense(4, activation="relu")(keras.layers.Concatenate()([age, income]))
    keras.Model({"age": age, "income": income}, {"risk": keras.layers.Dense(1, activation="sigmoid")(hidden)}).save(
        src / "two_inputs.keras"
    )

    images, labels = _images(rng, 400)
    image = keras.Input((8, 8, 1), dtype="uint8", name="image")
    features = keras.layers.Conv2D(4, 3, activation="relu")(keras.layers.Rescaling(1 / 255)(image))
    probs = keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(features))
    cnn = keras.Model(image, probs)
    _fit(cnn, images, labels)
    cnn.save(src / "cnn.keras")
    np.savez(src / "cnn_calibration.npz", image=images[:300])
    np.savez(src / "cnn_inputs.npz", image=images[300:])

    class Tokens(t.Module):
        def __init__(self):
            super().__init__()
            self.embedding = t.Variable(rng.normal(size=(10, 4)).astype(np.float32))
            self.w = t.Variable(rng.normal(size=(4, 2)).astype(np.float32))

        @t.function(input_signature=[t.TensorSpec([None, 6], t.int64, name="token_ids")])
        def serve(self, token_ids):
            return {"logits": t.matmul(t.reduce_mean(t.gather(self.embedding, token_ids), axis=1), self.w)}

    class Vocabulary(t.Module):
        def __init__(self):
            super().__init__()
            keys, ids = t.constant([b"red", b"green", b"blue"]), t.constant([0, 1, 2], t.int64)
            self.table = t.lookup.StaticHashTable(t.lookup.KeyValueTensorInitializer(keys, ids), default_value=3)
            self.embedding = t.Variable(rng.normal(size=(4, 2)).astype(np.float32))

        @t.function(input_signature=[t.TensorSpec([None], t.string, name="word")])
        def serve(self, word):
            # The converter loses the shape through the table lookup: restate it, or TFLite declares rank 0.
            return {"scores": t.reshape(t.gather(self.embedding, self.table.lookup(word)), [-1, 2])}

    class CumulativeProduct(t.Module):  # Cumprod: a TF Select (Flex) op, no TFLite builtin
        @t.function(input_signature=[t.TensorSpec([None, 3], t.float32, name="x")])
        def serve(self, x):
            return {"y": t.math.cumprod(x, axis=1)}

    for name, module in (("tokens", Tokens()), ("vocab", Vocabulary()), ("flex", CumulativeProduct())):
        t.saved_model.save(module, str(src / name), signatures={"serving_default": module.serve})
    np.savez(src / "words.npz", word=WORDS)
    unsigned = t.Module()
    unsigned.v = t.Variable(1.0)
    t.saved_model.save(unsigned, str(src / "no_signature"))
    return src


@pytest.fixture(scope="session")
def exports(sources, exported_version, tmp_path_factory):
    """BASE with one exported model per source; {name: tfkit export's Result}."""
    base = tmp_path_factory.mktemp("exported")
    commands = {
        "mlp": [
            sources / "mlp.keras",
            "--inputs",
            sources / "mlp_inputs.npz",
            "--calibration",
            sources / "mlp_calibration.npz",
            "--quantize",
            "int8",
        ],
        "two_inputs": [sources / "two_inputs.keras"],
        "cnn": [
            sources / "cnn.keras",
            "--inputs",
            sources / "cnn_inputs.npz",
            "--calibration",
            sources / "cnn_calibration.npz",
            "--quantize",
            "int8",
        ],
        "tokens": [sources / "tokens"],
        "vocab": [sources / "vocab", "--inputs", sources / "words.npz"],
        "flex": [sources / "flex", "--allow-flex"],
        "half_plus_two": [HALF_PLUS_TWO / "00000123"],
        "logreg_int8": [exported_version, "--quantize", "int8"],
    }
    results = {
        name: tfkit("export", *args, "--model-base-path", base, "--name", name) for name, args in commands.items()
    }
    for name, result in results.items():
        assert result.exit_code == 0, (name, result.output)
    return base, results


@pytest.fixture(scope="session")
def server(exports, tmp_path_factory):
    """One `python -m serving` for every export."""
    from toolkit.serve import LocalServer

    base, results = exports
    config = tmp_path_factory.mktemp("config") / "models.config"
    config.write_text(
        "model_config_list {\n"
        + "".join(
            f'  config {{ name: "{name}" base_path: "{base / name}" model_platform: "tensorflow" }}\n'
            for name in results
        )
        + "}\n"
    )
    with LocalServer([f"--model_config_file={config}"], rest=True, timeout=180) as s:
        yield s


def _manifest(base, name) -> dict:
    return json.loads((base / name / "1" / "manifest.json").read_text())


CHECK_INPUTS = {"vocab": "words.npz"}  # a string input cannot be generated


@pytest.mark.parametrize(
    "name", ["mlp", "two_inputs", "cnn", "tokens", "vocab", "flex", "half_plus_two", "logreg_int8"]
)
def test_each_export_is_served_and_passes_check(name, exports, server, sources, tmp_path):
    base, _ = exports
    inputs = ["--inputs", sources / CHECK_INPUTS[name]] if name in CHECK_INPUTS else []
    result = tfkit(
        "check",
        base / name,
        "--target",
        server.grpc_target,
        "--rest-target",
        server.rest_url,
        "--model-name",
        name,
        "--report",
        tmp_path,
        *inputs,
    )
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "report.json").read_text())
    served = {f"grpc@{server.grpc_target}", f"rest@{server.rest_url.split('://')[1]}"}
    assert served <= set(report["runtimes"])
    answered = [c for c in report["comparisons"] if c["candidate"] in served]
    assert answered and all(c["passed"] for c in answered)
    manifest = _manifest(base, name)
    # Every TFLite file the export wrote was compared, except one that needs the Flex delegate.
    compared = {c["candidate"] for c in report["comparisons"]}
    for filename, facts in manifest["tflite_files"].items():
        assert (f"tflite:{filename}" in compared) != facts["needs_flex"], (filename, compared)


def test_keras_exports_name_inputs_after_the_model_and_outputs_after_its_layers(exports):
    base, _ = exports
    signatures = {name: _manifest(base, name)["signatures"] for name in ("mlp", "two_inputs", "cnn")}
    assert {name: sorted(s) for name, s in signatures.items()} == {n: ["serving_default"] for n in signatures}
    mlp, two, cnn = (signatures[n]["serving_default"] for n in ("mlp", "two_inputs", "cnn"))
    assert set(mlp["inputs"]) == {"input_layer"} and set(mlp["outputs"]) == {"class_probs"}
    assert set(two["inputs"]) == {"age", "income"} and set(two["outputs"]) == {"risk"}
    assert two["inputs"]["age"]["shape"] == [-1, 3]  # the batch dimension stays dynamic
    assert cnn["inputs"]["image"]["dtype"] == "DT_UINT8" and cnn["inputs"]["image"]["shape"] == [-1, 8, 8, 1]
    assert _manifest(base, "mlp")["source"]["kind"] == "keras"


def test_clients_of_the_keras_model_call_the_served_export_by_its_names(exports, server, sources):
    """A Predict over gRPC and over REST with the Keras model's own input names, answered under its output name."""
    import keras

    from toolkit.parity.runners.grpc import GrpcRunner
    from toolkit.parity.runners.rest import RestRunner

    feed = {
        "age": np.array([[0.1, 0.2, 0.3], [1, 0, -1]], np.float32),
        "income": np.array([[0.5, -0.5], [2, 1]], np.float32),
    }
    want = keras.models.load_model(sources / "two_inputs.keras")(feed)["risk"].numpy()
    for runner in (GrpcRunner(server.grpc_target, "two_inputs"), RestRunner(server.rest_url, "two_inputs")):
        with runner:
            got = runner.infer(feed)
        assert set(got) == {"risk"}
        np.testing.assert_allclose(got["risk"], want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_int8_calibrated_on_calibration_file_agrees_on_classes(name, exports, sources):
    """Class agreement of model_int8.tflite with the SavedModel on the inputs the export recorded (its golden inputs)."""
    from toolkit.parity.runners.eager import EagerRunner
    from toolkit.parity.runners.tflite import TFLiteRunner

    base, _ = exports
    version = base / name / "1"
    manifest = _manifest(base, name)
    assert manifest["calibration"]["serving_default"]["source"] == f"npz:{sources / f'{name}_calibration.npz'}"
    assert manifest["tflite_files"]["model_int8.tflite"]["quantization"] == "int8"
    with np.load(version / manifest["inputs"]["serving_default"]["file"]) as data:
        feed = {key: data[key] for key in data.files}
    with EagerRunner(version) as eager, TFLiteRunner(version / "model_int8.tflite") as int8:
        (want,), (got,) = eager.infer(feed).values(), int8.infer(feed).values()
    assert len(want) == manifest["inputs"]["serving_default"]["rows"] >= 100
    agreement = np.mean(want.argmax(axis=1) == got.argmax(axis=1))
    assert agreement >= 0.99, agreement


def test_half_plus_two_keeps_every_signature_and_converts_the_ones_it_can_feed(exports):
    base, results = exports
    manifest = _manifest(base, "half_plus_two")
    assert manifest["source"]["kind"] == "version-folder"
    assert set(manifest["signatures"]) == {
        "serving_default",
        "regress_x2_to_y3",
        "classify_x_to_y",
        "regress_x_to_y",
        "regress_x_to_y2",
    }
    assert set(manifest["inputs"]) == {"serving_default", "regress_x2_to_y3"}
    assert set(manifest["not_fed"]) == {"classify_x_to_y", "regress_x_to_y", "regress_x_to_y2"}
    assert "input inputs: string[?] is a string tensor" in manifest["not_fed"]["classify_x_to_y"]
    # A TF1 graph (reference variables) converts through its frozen signatures.
    assert manifest["tflite_files"]["model.tflite"]["signatures"] == ["regress_x2_to_y3", "serving_default"]
    assert (
        "not fed (kept, without warmup or TFLite runner): classify_x_to_y, regress_x_to_y, regress_x_to_y2; "
        "pass --inputs FILE"
    ) in results["half_plus_two"].output
    assert (base / "half_plus_two" / "1" / "assets" / "foo.txt").is_file()


def test_a_tfkit_version_exported_again_keeps_its_signatures_data_and_training_record(exports, exported_version):
    base, _ = exports
    manifest = _manifest(base, "logreg_int8")
    before = json.loads((exported_version / "manifest.json").read_text())
    assert manifest["source"]["kind"] == "version-folder" and manifest["source"]["path"] == str(exported_version)
    assert set(manifest["signatures"]) == {"serving_default", "classify", "regress"}
    assert manifest["inputs"]["serving_default"]["source"] == "heldout"
    assert manifest["seed"] == before["seed"] and manifest["metrics"] == before["metrics"]
    assert set(manifest["tflite"]) == {"float32", "int8"}
    assert (base / "logreg_int8" / "1" / "assets.extra" / "heldout.npz").is_file()


def test_flex_export_says_the_device_needs_the_flex_delegate(exports):
    base, results = exports
    facts = _manifest(base, "flex")["tflite_files"]["model.tflite"]
    assert facts["needs_flex"] and facts["flex_ops"] == ["FlexCumprod"]
    assert "model.tflite needs the Flex delegate (ops FlexCumprod)" in results["flex"].output
    inspected = tfkit("inspect", base / "flex" / "1")
    assert inspected.exit_code == 0
    assert "needs the Flex delegate (select TF ops) for FlexCumprod" in inspected.output


@pytest.mark.parametrize(
    "args, message, fix",
    [
        (["vocab"], "signature 'serving_default': input word: string[?] is a string tensor", "pass --inputs FILE"),
        (
            ["flex"],
            "model.tflite: signature(s) 'serving_default' of {src}/flex need TF Select (Flex) ops Cumprod",
            "pass --allow-flex",
        ),
        (
            ["no_signature"],
            "{src}/no_signature: the SavedModel has no signature",
            "save a tf.function with an input_signature",
        ),
        (
            ["tokens", "--signature", "nope"],
            "--signature nope: {src}/tokens has no such signature",
            "(it has: serving_default)",
        ),
        (["vocab", "--quantize", "float16", "--no-tflite"], "--quantize makes TFLite variants", "drop --no-tflite"),
    ],
)
def test_exports_that_cannot_be_made_exit_2_say_the_fix_and_publish_nothing(args, message, fix, sources, tmp_path):
    source, *options = args
    result = tfkit("export", sources / source, "--model-base-path", tmp_path, "--name", source, *options)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    # No version, and no staging folder left behind under BASE/NAME.
    assert not (tmp_path / source).exists() or list((tmp_path / source).iterdir()) == []
    line = result.output.strip().splitlines()[-1]
    assert message.format(src=sources) in line and fix in line, line


@pytest.mark.parametrize("graph", ["tf1", "tf2"])
def test_signature_option_keeps_only_the_chosen_signatures(graph, exported_version, tmp_path):
    from toolkit.tfenv import import_tf

    source = HALF_PLUS_TWO / "00000123" if graph == "tf1" else exported_version
    result = tfkit(
        "export", source, "--model-base-path", tmp_path, "--name", "m", "--signature", "serving_default", "--no-tflite"
    )
    assert result.exit_code == 0, result.output
    version = tmp_path / "m" / "1"
    inspected = json.loads(tfkit("inspect", version, "--json").output)
    assert list(inspected["saved_model"]["meta_graphs"][0]["signatures"]) == ["serving_default"]
    assert inspected["tflite"] == []
    # TF2's object graph loses them too, and the fingerprint of the old saved_model.pb goes.
    assert list(import_tf().saved_model.load(str(version)).signatures) == ["serving_default"]
    assert not (version / "fingerprint.pb").exists()


def test_tfkit_run_model_keras_exports_serves_and_checks(sources, tmp_path):
    out = tmp_path / "out"
    result = tfkit("run", "--model", sources / "mlp.keras", "--out", out, "--quantize", "int8")
    assert result.exit_code == 0, result.output
    assert "exported: " in result.output and "served:   gRPC 127.0.0.1:" in result.output
    report = json.loads((out / "report" / "report.json").read_text())
    assert report["passed"] and {"grpc", "rest", "tflite:model_int8.tflite"} <= set(report["runtimes"])
    assert (out / "models" / "mlp" / "1" / "saved_model.pb").is_file()
