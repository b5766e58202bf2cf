"""Training: the loop, mini-batches, determinism, the run folder and `tfkit train`'s output."""

import json
import re

import numpy as np
import pytest
from click.testing import CliRunner

from toolkit.cli import cli
from toolkit.cli.train import STEP_LINES_MAX
from toolkit.errors import InputError
from toolkit.training import data
from toolkit.training.rundir import train_to_dir
from toolkit.training.train import evaluate, train

STEP_LINE = re.compile(r"^Loss at step (\d+): (\d+\.\d{4}), Accuracy: (\d\.\d{4})$")


@pytest.fixture(scope="module")
def small():
    return data.split(data.synthetic(100, seed=3), 0.2, seed=3)


def test_training_learns_and_is_deterministic(small):
    train_data, held = small
    a = train(train_data, steps=10, seed=3)
    b = train(train_data, steps=10, seed=3)
    np.testing.assert_array_equal(a.model.w.numpy(), b.model.w.numpy())
    assert [m.step for m in a.history] == list(range(10))
    assert a.history[-1].loss < a.history[0].loss
    assert evaluate(a.model, held)["accuracy"] >= 0.95


def test_initial_weights_depend_on_the_seed(small):
    train_data, _ = small
    first = train(train_data, steps=1, seed=0).history[0].loss
    assert first != train(train_data, steps=1, seed=1).history[0].loss


def test_mini_batches_walk_a_shuffled_pipeline(small):
    train_data, held = small
    full = train(train_data, steps=20, seed=3)
    mini = train(train_data, steps=20, batch_size=16, seed=3)
    again = train(train_data, steps=20, batch_size=16, seed=3)
    assert len(mini.history) == 20
    np.testing.assert_array_equal(mini.model.w.numpy(), again.model.w.numpy())
    assert not np.array_equal(mini.model.w.numpy(), full.model.w.numpy())
    # Per-batch accuracies are multiples of 1/16 (or of the last partial batch's size).
    assert any(m.accuracy * 16 == round(m.accuracy * 16) and m.accuracy < 1 for m in mini.history)
    assert evaluate(mini.model, held)["accuracy"] >= 0.95


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(steps=0), "--steps must be at least 1"),
        (dict(learning_rate=0.0), "--learning-rate must be positive"),
        (dict(batch_size=0), "--batch-size must be at least 1"),
    ],
)
def test_bad_training_options(small, kwargs, message):
    with pytest.raises(InputError, match=message):
        train(small[0], **kwargs)


def test_train_command_prints_steps_like_the_tutorial_and_writes_the_run(tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["train", "--out", str(out), "--num-per-class", "100", "--steps", "4"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    steps = [STEP_LINE.match(line) for line in lines[:4]]
    assert all(steps) and [int(m.group(1)) for m in steps] == [0, 1, 2, 3]
    assert re.match(r"^Held-out \(40 samples\): loss \d+\.\d{4}, accuracy \d\.\d{4}$", lines[4])

    record = json.loads((out / "training.json").read_text())
    assert record["config"]["steps"] == 4 and record["config"]["num_features"] == 2
    assert [round(s["loss"], 4) for s in record["steps"]] == [float(m.group(2)) for m in steps]
    assert record["heldout"]["samples"] == 40
    for name in ("data.png", "curves.png"):
        assert (out / "plots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with np.load(out / "heldout.npz") as npz:
        assert npz["features"].shape == (40, 2) and npz["labels"].shape == (40,)


def test_many_steps_show_a_progress_bar_and_the_last_step(tmp_path):
    steps = STEP_LINES_MAX + 10
    result = CliRunner().invoke(
        cli, ["train", "--out", str(tmp_path / "r"), "--num-per-class", "50", "--steps", str(steps), "--no-plots"]
    )
    assert result.exit_code == 0, result.output
    step_lines = [line for line in result.output.splitlines() if STEP_LINE.match(line)]
    assert step_lines and step_lines[-1].startswith(f"Loss at step {steps - 1}:") and len(step_lines) == 1
    assert "Training" in result.output  # the progress bar's label
    assert not (tmp_path / "r" / "plots").exists()


def test_train_refuses_to_overwrite_a_run_without_force(tmp_path):
    args = ["train", "--out", str(tmp_path), "--num-per-class", "20", "--steps", "1", "--no-plots"]
    assert CliRunner().invoke(cli, args).exit_code == 0
    refused = CliRunner().invoke(cli, args)
    assert refused.exit_code == 2
    assert "already holds a training run; pass --force" in refused.output
    assert CliRunner().invoke(cli, args + ["--force"]).exit_code == 0


def test_a_csv_with_three_features_trains_and_exports(tmp_path):
    from toolkit.artifacts.export import export_model
    from toolkit.training.model import make_example, tf

    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 60)
    features = rng.normal(size=(120, 3)) + labels[:, None] * [3.0, -3.0, 1.0]
    rows = "\n".join(f"{a},{b},{y},{c}" for (a, b, c), y in zip(features, labels))
    (tmp_path / "d.csv").write_text("alpha,beta,target,gamma\n" + rows + "\n")
    record = train_to_dir(tmp_path / "run", data_path=tmp_path / "d.csv", label_column="target", steps=100)
    assert record["config"]["feature_names"] == ["alpha", "beta", "gamma"]
    assert record["heldout"]["accuracy"] >= 0.9
    assert (tmp_path / "run" / "plots" / "data.png").read_bytes()[:4] == b"\x89PNG"

    folder = export_model(tmp_path / "run", tmp_path / "models", "three")
    loaded = tf.saved_model.load(str(folder))
    x = features[:5].astype(np.float32)
    probabilities = loaded.signatures["serving_default"](features=tf.constant(x))["probabilities"].numpy()
    examples = tf.constant([make_example(row, ["alpha", "beta", "gamma"]) for row in x])
    outputs = loaded.signatures["regress"](inputs=examples)["outputs"].numpy()
    np.testing.assert_allclose(outputs, probabilities[:, 0], rtol=0, atol=1e-6)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["signatures"]["serving_default"]["inputs"]["features"]["shape"] == [-1, 3]
