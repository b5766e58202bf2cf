"""Verdicts on models tfkit did not make (issue 12, items 2-7).

Each test builds a tiny model (tf.Module or Keras), runs `tfkit check` through
the CLI and asserts the verdict: outputs that do not follow the batch, state
between identical calls, our server's Session, the batch-invariance floor,
infinities, int8 calibration, and an injected 1e-4 error that must still fail.
Checks without --no-server start a real local server on ephemeral ports.
"""

import json
import re
import warnings

import numpy as np
import pytest
from click.testing import CliRunner

from toolkit.tfenv import import_tf

from support import tflite_runtimes

SHIFT = 1e-4  # the injected error


def tfkit(*args):
    """Run `tfkit ARGS` in-process; returns click's Result."""
    from toolkit.cli import cli

    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def check(model, report_dir, *args):
    """`tfkit check MODEL --report DIR ARGS`: (click Result, report.json as a dict)."""
    result = tfkit("check", model, "--report", report_dir, *args)
    return result, json.loads((report_dir / "report.json").read_text())


def save_module(path, fn, spec, variables=()):
    """A tf.Module whose serving_default runs `fn(module, x)` on one input `x` of `spec`."""
    tf = import_tf()

    class Model(tf.Module):
        def __init__(self):
            super().__init__()
            self.state = list(variables)

        @tf.function(input_signature=[spec])
        def serve(self, x):
            return fn(self, x)

    module = Model()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return path


def shifted(fn):
    """The same model with SHIFT added to every output."""
    return lambda module, x: {k: v + SHIFT for k, v in fn(module, x).items()}


def float_tflite(version_dir, path):
    from toolkit.artifacts.tflite import convert

    path.write_bytes(convert(version_dir, ["serving_default"]))
    return path


def per_call_outputs(module, x):
    tf = import_tf()
    return {
        "y": x * 2.0,
        "mean": tf.reduce_mean(x, 0),
        "total": tf.reduce_sum(x),
        "fixed": tf.constant([1.0, 2.0, 3.0, 4.0]) * tf.reduce_max(x),
    }


def infinities(module, x):
    tf = import_tf()
    # The "zeros" feed gives 1/0 = +inf, log 0 = -inf and 0 * -inf = NaN, the same in every runtime.
    return {"inv": 1.0 / x, "log": tf.math.log(tf.abs(x)), "xlogx": x * tf.math.log(tf.abs(x))}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Tiny SavedModels (BASE/NAME/1) and, for injected errors, float TFLite files of a shifted twin."""
    tf = import_tf()
    base = tmp_path_factory.mktemp("verdicts")
    x3 = tf.TensorSpec([None, 3], tf.float32, name="x")
    made = {
        "per_call": save_module(base / "per_call" / "1", per_call_outputs, x3),
        "centered": save_module(
            base / "centered" / "1",
            lambda m, x: {"centered": x - tf.reduce_mean(x, 0), "mean": tf.reduce_mean(x, 0)},
            x3,
        ),
        "static": save_module(
            base / "static" / "1", lambda m, x: {"norm": tf.norm(x)}, tf.TensorSpec([3], tf.float32, name="x")
        ),
        "counter": save_module(
            base / "counter" / "1", lambda m, x: {"y": x * 2.0 + m.state[0].assign_add(1.0)}, x3, [tf.Variable(0.0)]
        ),
        "infinities": save_module(base / "infinities" / "1", infinities, x3),
    }
    made["per_call.tflite"] = float_tflite(
        save_module(base / "per_call_shifted", shifted(per_call_outputs), x3), base / "per_call_shifted.tflite"
    )
    made["infinities.tflite"] = float_tflite(
        save_module(base / "infinities_shifted", shifted(infinities), x3), base / "infinities_shifted.tflite"
    )
    for name, build in (("normalization", _normalization), ("cnn", _cnn), ("wide", _wide)):
        tf.keras.utils.set_random_seed(0)
        model = build(tf.keras)
        model.export(str(base / name / "1"), verbose=False)
        # The twin shares the weights and adds SHIFT to the output.
        twin = tf.keras.Model(model.inputs, tf.keras.layers.Rescaling(1.0, offset=SHIFT)(model.outputs[0]))
        twin.export(str(base / f"{name}_shifted"), verbose=False)
        made[name] = base / name / "1"
        made[f"{name}.tflite"] = float_tflite(base / f"{name}_shifted", base / f"{name}_shifted.tflite")
    return made


def _normalization(keras):
    """Keras Normalization: our server's Session rewrites it and differs from eager by an ULP or two."""
    norm = keras.layers.Normalization()
    norm.adapt(np.random.default_rng(0).normal(3, 2, (200, 5)).astype("float32"))
    x = keras.Input((5,), name="x")
    return keras.Model(x, keras.layers.Dense(3)(norm(x)))


def _cnn(keras):
    """An untrained CNN whose batch-1 and batch-N answers differ by many ULPs of small values."""
    x = keras.Input((32, 32, 3), name="image")
    h = keras.layers.Conv2D(16, 3, activation="relu")(x)
    h = keras.layers.Conv2D(16, 3, activation="relu")(h)
    return keras.Model(x, keras.layers.Dense(1)(keras.layers.Flatten()(h)))


def _wide(keras):
    """A Dense over 4096 inputs: long sums, rounded differently per batch size and per runtime."""
    x = keras.Input((4096,), name="x")
    return keras.Model(x, keras.layers.Dense(8)(x))


def problems(result) -> list[str]:
    return [line[4:] for line in result.output.splitlines() if line.startswith("  - ")]


# -- item 2: outputs without a batch dimension -------------------------------------------
def test_outputs_that_do_not_follow_the_batch_are_compared_per_call_and_named(models, tmp_path):
    result, report = check(models["per_call"], tmp_path, "--no-server")
    assert result.exit_code == 0, result.output
    assert "compared per call (not following the batch): fixed, mean, total" in result.output
    assert "not judged: batch invariance of fixed, mean, total: they do not follow the batch" in result.output
    # 64 generated rows, one row of zeros and a batch of 1: three calls, never "12 rows" of a [4] output.
    assert "on 66 rows in 3 calls" in result.output and report["rows"] == 66 and report["calls"] == 3
    units = {(c["candidate"], c["output"]): (c["unit"], c["units"]) for c in report["comparisons"]}
    assert units[("tflite:converted.tflite", "fixed")] == ("call", 3)
    assert units[("tflite:converted.tflite", "y")] == ("row", 66)
    # The batch output is still judged for batch invariance, in every runtime.
    judged = {(b["runtime"], b["output"]) for b in report["batch_invariance"] if b["judged"]}
    assert judged == {(runtime, "y") for runtime in {"eager"} | tflite_runtimes("converted.tflite")}


def test_a_batch_dependent_output_fails_beside_an_output_without_batch_dimension(models, tmp_path):
    result, _ = check(models["centered"], tmp_path, "--no-server")
    assert result.exit_code == 1, result.output
    assert any(
        line.startswith("eager, output centered: batch 1 and batch N differ by up to") and "--max-ulps" in line
        for line in problems(result)
    ), result.output


def test_an_error_in_an_output_without_batch_dimension_fails_naming_the_call(models, tmp_path):
    result, _ = check(models["per_call"], tmp_path, "--no-server", "--tflite", models["per_call.tflite"])
    assert result.exit_code == 1, result.output
    line = next(p for p in problems(result) if "output mean:" in p)
    assert "9 element(s) outside 64 ULPs of the output's scale" in line  # 3 values x 3 calls
    assert "in calls generated, zeros, batch of 1" in line and "--float-ulps" in line


def test_a_signature_without_batch_dimension_counts_calls(models, tmp_path):
    result, report = check(models["static"], tmp_path, "--no-server", "--samples", 10)
    assert result.exit_code == 0, result.output
    # One TFLite file, run under three op resolvers.
    assert re.search(r"PASS: 3 runtime\(s\) agree with eager on 11 calls", result.output), result.output
    assert report["rows"] is None and report["calls"] == 11 and report["batch_invariance"] == []
    assert "not judged: batch invariance: the signature has no batch dimension" in result.output


# -- item 3: state --------------------------------------------------------------------
def test_a_call_counter_is_found_as_answers_changing_between_identical_calls(models, tmp_path):
    result, report = check(models["counter"], tmp_path, "--no-server")
    assert result.exit_code == 1, result.output
    assert problems(result) == [p for p in problems(result) if p.startswith("answers change between identical calls")]
    unstable = {"eager"} | tflite_runtimes("converted.tflite")
    assert f"(state or randomness): {', '.join(sorted(unstable))} (" in result.output
    assert {r["runtime"] for r in report["repeatability"] if not r["passed"]} == unstable


def test_a_call_counter_behind_the_server_names_every_runtime_not_just_rest(models, tmp_path):
    result, _ = check(models["counter"], tmp_path)
    assert result.exit_code == 1, result.output
    (finding,) = problems(result)
    unstable = {"eager", "grpc", "rest"} | tflite_runtimes("converted.tflite")
    assert finding.startswith(
        f"answers change between identical calls (state or randomness): {', '.join(sorted(unstable))} ("
    )


# -- items 4 and 6: our server's Session, infinities ------------------------------------------
@pytest.mark.parametrize("name", ["normalization", "infinities"])
def test_session_runtimes_pass_within_ulps_and_equal_infinities_agree(models, tmp_path, name):
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # none may reach the user's terminal
        result, report = check(models[name], tmp_path)
    # LiteRT's builtin and reference DIV kernels saturate x/0 to +/-FLT_MAX where TensorFlow and XNNPACK
    # give +/-inf: a real kernel difference, found by running every op resolver.
    saturated = {"tflite:converted.tflite[builtin]", "tflite:converted.tflite[ref]"} if name == "infinities" else set()
    failed = {(c["candidate"], c["output"]) for c in report["comparisons"] if not c["passed"]}
    assert failed == {(runtime, "inv") for runtime in saturated}
    assert result.exit_code == (1 if saturated else 0), result.output
    assert all(
        f"vs {runtime}, output inv:" in result.output and "in row zeros[0]" in result.output for runtime in saturated
    )
    served = [c for c in report["comparisons"] if c["candidate"] in ("grpc", "rest")]
    assert served and all(c["policy"] == "session" and c["passed"] for c in served)
    for line in result.output.splitlines():
        if re.search(r"\s(pass|exact)$", line):
            assert not re.search(r"\b(inf|nan)\b", line), line


# -- item 5: the batch-invariance floor ---------------------------------------------------
@pytest.mark.parametrize("name", ["cnn", "wide"])
def test_untrained_cnn_and_wide_dense_pass_batch_invariance(models, tmp_path, name):
    result, report = check(models[name], tmp_path, "--no-server")
    assert result.exit_code == 0, result.output
    invariance = {b["runtime"]: b for b in report["batch_invariance"]}
    assert set(invariance) == {"eager"} | tflite_runtimes("converted.tflite")
    assert all(b["judged"] and b["passed"] and b["max_scale_ulps"] <= b["bound"] for b in invariance.values())


# -- done when: an injected 1e-4 error still fails --------------------------------------------
@pytest.mark.parametrize("name", ["normalization", "cnn", "wide", "infinities"])
def test_an_injected_1e_minus_4_error_fails(models, tmp_path, name):
    result, _ = check(models[name], tmp_path, "--no-server", "--tflite", models[f"{name}.tflite"])
    assert result.exit_code == 1, result.output
    failed = [p for p in problems(result) if "ULPs of the output's scale" in p and "--float-ulps" in p]
    # Every op resolver finds it; the default one (XNNPACK) keeps infinities, so its error is the shift itself
    # (the builtin and reference kernels saturate them to FLT_MAX, see above).
    for runtime in tflite_runtimes(f"{name}_shifted.tflite"):
        assert any(f"vs {runtime}, output" in p for p in failed), (runtime, result.output)
    default = [p for p in failed if f"vs tflite:{name}_shifted.tflite, output" in p]
    assert all(re.search(r"max abs error 1\.0\de-04", p) for p in default), result.output


# -- item 7: int8 calibration --------------------------------------------------------------------
@pytest.fixture(scope="module")
def int8_files(tmp_path_factory):
    """A trained 3-class MLP, int8 files calibrated on its data (good) and on [0, 1) (bad), and inputs."""
    from toolkit.artifacts.tflite import convert

    tf = import_tf()
    base = tmp_path_factory.mktemp("int8")
    rng = np.random.default_rng(0)
    centers = rng.normal(0, 1, (3, 8))

    def sample(n):
        labels = rng.integers(0, 3, n)
        return (centers[labels] + rng.normal(0, 0.6, (n, 8))).astype(np.float32), labels

    tf.keras.utils.set_random_seed(0)
    keras_model = tf.keras.Sequential(
        [tf.keras.Input((8,)), tf.keras.layers.Dense(16, activation="relu"), tf.keras.layers.Dense(3)]
    )
    keras_model.compile(
        optimizer=tf.keras.optimizers.Adam(0.05), loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    keras_model.fit(*sample(1500), epochs=15, batch_size=64, verbose=0)
    w1, b1, w2, b2 = [tf.Variable(w) for w in keras_model.get_weights()]
    version = save_module(
        base / "mlp" / "1",
        lambda m, x: {
            "probabilities": tf.nn.softmax(tf.nn.relu(x @ m.state[0] + m.state[1]) @ m.state[2] + m.state[3])
        },
        tf.TensorSpec([None, 8], tf.float32, name="x"),
        [w1, b1, w2, b2],
    )

    def calibration(rows):
        return lambda: ({"x": row[None]} for row in rows)

    files = {"model": version}
    for name, rows in (("good", sample(200)[0]), ("bad", rng.uniform(0, 1, (200, 8)).astype(np.float32))):
        files[name] = base / f"{name}.tflite"
        files[name].write_bytes(convert(version, ["serving_default"], "int8", calibration(rows)))
    for n in (66, 2000):
        files[n] = base / f"x{n}.npz"
        np.savez(files[n], x=sample(n)[0])
    return files


@pytest.mark.parametrize("rows", [66, 2000])
def test_a_calibrated_int8_file_passes_and_a_badly_calibrated_one_fails(int8_files, tmp_path, rows):
    good, report = check(
        int8_files["model"],
        tmp_path / "good",
        "--no-server",
        "--tflite",
        int8_files["good"],
        "--inputs",
        int8_files[rows],
    )
    assert good.exit_code == 0, good.output
    # One class agreement per op resolver.
    assert {a["candidate"] for a in report["class_agreement"]} == tflite_runtimes("good.tflite")
    assert all(a["rows"] == rows and a["flips"] <= a["allowed_flips"] for a in report["class_agreement"])
    bad, report = check(
        int8_files["model"],
        tmp_path / "bad",
        "--no-server",
        "--tflite",
        int8_files["bad"],
        "--inputs",
        int8_files[rows],
    )
    assert bad.exit_code == 1, bad.output
    assert {a["candidate"] for a in report["class_agreement"]} == tflite_runtimes("bad.tflite")
    assert all(a["agreement"] < 0.9 and not a["passed"] for a in report["class_agreement"])
    assert any("class agreement" in p and "--min-class-agreement" in p for p in problems(bad)), bad.output
