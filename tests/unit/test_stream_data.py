"""Streamed training data (`tfkit train --data`): shards, formats, the split, epochs and every bad-data case.

Tiny CSV and TFRecord shards written per test; training runs in this process on
TF's default strategy (tests/servers/training covers several workers).
"""

import json
import re

import numpy as np
import pytest
from click.testing import CliRunner

from toolkit.cli import cli
from toolkit.errors import InputError
from toolkit.training import data, stream
from toolkit.training.model import tf
from toolkit.training.rundir import train_to_dir
from toolkit.training.train import train

# The tutorial's output for `tfkit train --seed 0` before streaming existed: the defaults must keep it.
TUTORIAL_LINES = [
    "Loss at step 0: 0.6813, Accuracy: 0.5531",
    "Loss at step 1: 0.5082, Accuracy: 0.9997",
    "Loss at step 2: 0.3990, Accuracy: 0.9997",
    "Loss at step 3: 0.3267, Accuracy: 0.9997",
    "Loss at step 4: 0.2762, Accuracy: 0.9997",
    "Loss at step 5: 0.2393, Accuracy: 0.9997",
    "Loss at step 6: 0.2112, Accuracy: 0.9997",
    "Loss at step 7: 0.1892, Accuracy: 0.9997",
    "Loss at step 8: 0.1715, Accuracy: 0.9997",
    "Loss at step 9: 0.1569, Accuracy: 0.9997",
    "Held-out (800 samples): loss 0.1425, accuracy 1.0000",
]


@pytest.fixture(scope="module")
def rows():
    """300 rows of the tutorial's data, classes interleaved."""
    d = data.synthetic(150, seed=5)
    order = np.random.default_rng(5).permutation(len(d))
    return d.features[order], d.labels[order]


def write_csv(path, features, labels, header="x0,x1,label", text=None):
    body = "".join(f"{a!r},{b!r},{int(y)}\n" for (a, b), y in zip(features.tolist(), labels))
    path.write_text(header + "\n" + (body if text is None else text))
    return path


def write_csv_shards(folder, features, labels, shards):
    folder.mkdir(parents=True, exist_ok=True)
    for s in range(shards):
        write_csv(folder / f"part-{s}.csv", features[s::shards], labels[s::shards])
    return folder


def write_tfrecord(path, features, labels, names=("x0", "x1"), label=lambda y: {"label": ("float", [float(y)])}):
    with tf.io.TFRecordWriter(str(path)) as writer:
        for row, y in zip(features.tolist(), labels):
            columns = {n: ("float", [v]) for n, v in zip(names, row)} | label(y)
            writer.write(_example(columns))
    return path


def _example(columns: dict) -> bytes:
    feature = {}
    for name, (kind, values) in columns.items():
        feature[name] = (
            tf.train.Feature(float_list=tf.train.FloatList(value=values))
            if kind == "float"
            else tf.train.Feature(int64_list=tf.train.Int64List(value=values))
        )
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def invoke(*args):
    return CliRunner().invoke(cli, ["train", *map(str, args)])


# -- the tutorial's defaults ----------------------------------------------------------------------
def test_tutorial_defaults_print_the_same_lines_as_before(tmp_path):
    result = invoke("--out", tmp_path / "run", "--seed", "0", "--no-plots")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[: len(TUTORIAL_LINES)] == TUTORIAL_LINES


# -- shards, formats, the split -------------------------------------------------------------------
def test_a_glob_a_folder_and_one_file_of_the_same_rows_train_alike(tmp_path, rows):
    features, labels = rows
    folder = write_csv_shards(tmp_path / "shards", features, labels, 3)
    one = write_csv(tmp_path / "all.csv", features, labels)
    by_glob = train_to_dir(tmp_path / "a", data_path=str(folder / "part-*.csv"), plots=False, steps=3)
    by_folder = train_to_dir(tmp_path / "b", data_path=str(folder), plots=False, steps=3)
    by_file = train_to_dir(tmp_path / "c", data_path=str(one), plots=False, steps=3)
    for record in (by_glob, by_folder, by_file):
        config = record["config"]
        assert config["num_train"] + config["num_heldout"] == 300
    assert by_glob["config"]["data_shards"] == by_folder["config"]["data_shards"] == 3
    # The split and the hash depend on the rows only, not on how they are sharded.
    assert {r["config"]["num_heldout"] for r in (by_glob, by_folder, by_file)} == {by_file["config"]["num_heldout"]}
    assert by_glob["config"]["data_hash"] == by_file["config"]["data_hash"]
    # Full batch is order-free: one pass per step gives the same model however the rows are sharded.
    np.testing.assert_allclose(by_glob["weights"]["w"], by_file["weights"]["w"], rtol=1e-5)


def test_tfrecord_shards_hold_the_same_rows_as_csv(tmp_path, rows):
    features, labels = rows
    csv = write_csv(tmp_path / "d.csv", features, labels)
    for s in range(2):
        write_tfrecord(
            tmp_path / f"d-{s}.tfrecord", features[s::2], labels[s::2], label=lambda y: {"label": ("int64", [int(y)])}
        )
    from_csv = train_to_dir(tmp_path / "a", data_path=str(csv), plots=False, batch_size=32, steps=20)
    from_tfrecord = train_to_dir(
        tmp_path / "b", data_path=str(tmp_path / "*.tfrecord"), plots=False, batch_size=32, steps=20
    )
    assert from_tfrecord["config"]["data_format"] == "tfrecord"
    for key in ("num_train", "num_heldout", "data_hash", "feature_names"):
        assert from_csv["config"][key] == from_tfrecord["config"][key], key
    assert from_tfrecord["heldout"]["accuracy"] >= 0.95


def test_an_npz_is_read_whole_and_split_like_the_same_rows_in_csv(tmp_path, rows):
    features, labels = rows
    csv = write_csv(tmp_path / "d.csv", features, labels)
    np.savez(tmp_path / "d.npz", features=features, labels=labels, feature_names=["x0", "x1"])
    from_csv = train_to_dir(tmp_path / "a", data_path=str(csv), plots=False, steps=1)
    from_npz = train_to_dir(tmp_path / "b", data_path=str(tmp_path / "d.npz"), plots=False, steps=1)
    assert from_npz["config"]["data_format"] == "npz"
    for key in ("num_train", "num_heldout", "data_hash"):
        assert from_csv["config"][key] == from_npz["config"][key], key


def test_the_split_is_the_same_on_every_run_and_independent_of_the_seed(tmp_path, rows):
    features, labels = rows
    path = write_csv(tmp_path / "d.csv", features, labels)
    first = train_to_dir(tmp_path / "a", data_path=str(path), seed=1, plots=False, steps=1)
    second = train_to_dir(tmp_path / "b", data_path=str(path), seed=2, plots=False, steps=1)
    with np.load(tmp_path / "a" / "heldout.npz") as a, np.load(tmp_path / "b" / "heldout.npz") as b:
        np.testing.assert_array_equal(a["features"], b["features"])
        held = {tuple(r) for r in a["features"].tolist()}
    assert first["config"]["num_heldout"] == second["config"]["num_heldout"] == len(held)
    assert 0.1 < len(held) / 300 < 0.3  # about --test-fraction 0.2
    with np.load(tmp_path / "a" / "train.npz") as t:
        assert not held & {tuple(r) for r in t["features"].tolist()}


def test_streamed_full_batch_steps_match_the_in_memory_loop(tmp_path, rows):
    """Summing gradients chunk by chunk over a pass is the tutorial's full-batch gradient."""
    features, labels = rows
    write_csv(tmp_path / "d.csv", features, labels)
    write_csv(tmp_path / "eval.csv", features[:20], labels[:20])
    record = train_to_dir(
        tmp_path / "run",
        data_path=str(tmp_path / "d.csv"),
        eval_data_path=str(tmp_path / "eval.csv"),
        seed=4,
        steps=5,
        plots=False,
    )
    in_memory = train(data.Dataset(features, labels, ("x0", "x1"), "rows"), steps=5, seed=4)
    np.testing.assert_allclose([s["loss"] for s in record["steps"]], [m.loss for m in in_memory.history], rtol=1e-5)
    np.testing.assert_allclose(record["weights"]["w"], in_memory.model.w.numpy().reshape(-1), rtol=1e-5)
    assert record["config"]["test_fraction"] is None and record["config"]["num_heldout"] == 20


def test_mini_batches_are_seeded_and_epochs_count_passes(tmp_path, rows):
    features, labels = rows
    path = str(write_csv(tmp_path / "d.csv", features, labels))
    options = dict(data_path=path, batch_size=50, epochs=3, shuffle_buffer=64, plots=False)
    a = train_to_dir(tmp_path / "a", seed=7, **options)
    again = train_to_dir(tmp_path / "b", seed=7, **options)
    other = train_to_dir(tmp_path / "c", seed=8, **options)
    per_epoch = -(-a["config"]["num_train"] // 50)
    assert a["config"]["steps"] == 3 * per_epoch == len(a["steps"])
    assert [e["epoch"] for e in a["epochs"]] == [1, 2, 3]
    # An epoch is ceil(rows / batch) steps; the batches run on across the end of a pass.
    assert all(e["rows"] == per_epoch * 50 for e in a["epochs"])
    assert a["weights"] == again["weights"] != other["weights"]
    assert a["heldout"]["accuracy"] >= 0.95


def test_a_long_run_shows_rows_per_second_and_epoch_lines(tmp_path, rows):
    features, labels = rows
    path = write_csv(tmp_path / "d.csv", features, labels)
    result = invoke("--data", path, "--out", tmp_path / "run", "--batch-size", 4, "--epochs", 2, "--no-plots")
    assert result.exit_code == 0, result.output
    epochs = [line for line in result.output.splitlines() if line.startswith("Epoch ")]
    assert len(epochs) == 2
    assert re.match(
        r"^Epoch 1/2: loss \d\.\d{4}, accuracy \d\.\d{4} \([\d,]+ rows, [\d.]+ s, [\d,]+ rows/s\)$", epochs[0]
    )
    assert "Training" in result.output  # the progress bar's label
    record = json.loads((tmp_path / "run" / "training.json").read_text())
    assert record["throughput"]["rows_per_second"] > 0
    assert record["throughput"]["train_rows"] == 2 * record["config"]["num_train"]  # batches of 4 fit exactly


def test_run_folder_keeps_a_bounded_sample_and_says_so(tmp_path, rows, monkeypatch):
    monkeypatch.setattr(stream, "SAMPLE_ROWS", 25)
    features, labels = rows
    record = train_to_dir(
        tmp_path / "run", data_path=str(write_csv(tmp_path / "d.csv", features, labels)), steps=2, plots=False
    )
    with np.load(tmp_path / "run" / "heldout.npz") as held:
        assert held["features"].shape == (25, 2)
    sample = record["samples"]["heldout.npz"]
    assert sample["rows"] == 25 and sample["of"] == record["config"]["num_heldout"] > 25
    assert "first" in sample["rule"]


def test_an_exported_streamed_run_has_the_usual_signatures(tmp_path, rows, exported_version):
    from toolkit.artifacts.export import export_model
    from toolkit.artifacts.inspect import saved_model_info

    features, labels = rows
    train_to_dir(tmp_path / "run", data_path=str(write_csv(tmp_path / "d.csv", features, labels)), steps=3, plots=False)
    version = export_model(tmp_path / "run", tmp_path / "models", "logreg")
    ours = saved_model_info(version)["meta_graphs"][0]["signatures"]
    assert ours == saved_model_info(exported_version)["meta_graphs"][0]["signatures"]
    tutorial_files = {p.relative_to(exported_version).as_posix() for p in exported_version.rglob("*")}
    assert {"saved_model.pb", "model.tflite", "assets.extra/heldout.npz"} <= tutorial_files
    assert {p.relative_to(version).as_posix() for p in version.rglob("*")} <= tutorial_files


# -- bad data -------------------------------------------------------------------------------------
CSV_CASES = {
    "empty": ("", r"d\.csv: file is empty"),
    "header only": ("x,label\n", r"d\.csv: file is empty \(a header but no data rows\)"),
    "no label column": ("x,y\n1,0\n", r"d\.csv: no label column 'label' in the header \(columns: x, y\)"),
    "non-numeric": ("x,label\n1,0\nabc,1\n", r"d\.csv: line 3, column 'x': 'abc' is not a number \(1 bad row"),
    "short row": ("x,y,label\n1,2,0\n1,1\n", r"d\.csv: line 3: expected 3 cells, found 2"),
    "nan": ("x,label\n1,0\nnan,1\n", r"d\.csv: line 3, column 'x': feature is NaN"),
    "inf": ("x,label\n1,0\n2,1\n-inf,1\n", r"d\.csv: line 4, column 'x': feature is -inf "),
    "float32 overflow": ("x,label\n1,0\n1e39,1\n", r"d\.csv: line 3, column 'x': feature 1e\+39 is too large"),
    "label not 0/1": ("x,label\n1,0\n2,2\n", r"d\.csv: line 3, column 'label': label 2 is not 0 or 1"),
    "hex is not a number": ("x,label\n1,0\n0x10,1\n", r"d\.csv: line 3, column 'x': '0x10' is not a number"),
    "single class": ("x,label\n1,1\n2,1\n", r"d\.csv: every label is 1; a classifier needs samples of both"),
    "only label column": ("label\n1\n0\n", r"d\.csv: only the label column 'label'"),
}


@pytest.mark.parametrize("case", CSV_CASES)
def test_bad_csv_is_rejected_naming_file_line_and_problem(tmp_path, case):
    text, message = CSV_CASES[case]
    (tmp_path / "d.csv").write_text(text)
    with pytest.raises(InputError, match=message):
        train_to_dir(tmp_path / "run", data_path=str(tmp_path / "d.csv"), plots=False)
    assert not (tmp_path / "run").exists()


def test_csv_cells_decode_csv_and_python_agree_on(tmp_path):
    """Spaces, quotes, signs, exponents, blank lines and CRLF are fine; the row numbers stay the file's lines."""
    rows = 'x,label\r\n 1.5 ,0\r\n"2",1\r\n\r\n+.5e1,0\r\n-3.,1\r\nNaN,0\r\n'
    (tmp_path / "d.csv").write_text(rows, newline="")
    with pytest.raises(InputError, match=r"d\.csv: line 7, column 'x': feature is NaN \(1 bad row"):
        train_to_dir(tmp_path / "run", data_path=str(tmp_path / "d.csv"), plots=False)


def test_skip_bad_rows_skips_and_counts_them(tmp_path, rows):
    features, labels = rows
    good = "".join(f"{a!r},{b!r},{int(y)}\n" for (a, b), y in zip(features.tolist(), labels))
    bad = "1,2\nx,1,0\n1,2,7\n,,\n"
    (tmp_path / "d.csv").write_text("x0,x1,label\n" + bad + good)
    record = train_to_dir(tmp_path / "run", data_path=str(tmp_path / "d.csv"), skip_bad_rows=True, plots=False, steps=2)
    assert record["bad_rows_skipped"] == 4
    assert record["config"]["num_train"] + record["config"]["num_heldout"] == 300
    result = invoke(
        "--data", tmp_path / "d.csv", "--out", tmp_path / "cli", "--skip-bad-rows", "--no-plots", "--steps", 2
    )
    assert result.exit_code == 0 and "Skipped 4 bad row(s)" in result.output


def test_a_shard_with_other_columns_is_named(tmp_path, rows):
    features, labels = rows
    write_csv_shards(tmp_path / "s", features, labels, 2)
    write_csv(tmp_path / "s" / "part-2.csv", features[:5], labels[:5], header="x1,x0,label")
    with pytest.raises(
        InputError,
        match=r"part-2\.csv: line 1: columns \(x1, x0, label\) differ from those of "
        r"the first shard .*part-0\.csv \(x0, x1, label\)",
    ):
        train_to_dir(tmp_path / "run", data_path=str(tmp_path / "s"), plots=False)


def test_an_empty_glob_or_folder_is_named(tmp_path):
    with pytest.raises(InputError, match=r"--data .*/nothing-\*\.csv: no files match this pattern"):
        train_to_dir(tmp_path / "run", data_path=str(tmp_path / "nothing-*.csv"))
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "_SUCCESS").write_text("")
    with pytest.raises(InputError, match=r"--data .*/empty: folder holds no \.csv or \.tfrecord shards"):
        train_to_dir(tmp_path / "run", data_path=str(tmp_path / "empty"))
    with pytest.raises(InputError, match=r"--data .*/missing\.csv: no such file"):
        train_to_dir(tmp_path / "run", data_path=str(tmp_path / "missing.csv"))


def test_bad_tfrecords_are_named_by_file_and_record(tmp_path, rows):
    features, labels = rows

    def bad_shard(name, columns):
        folder = tmp_path / name
        folder.mkdir()
        write_tfrecord(folder / "a.tfrecord", features[:40], labels[:40])
        with tf.io.TFRecordWriter(str(folder / "b.tfrecord")) as writer:
            writer.write(_example({"x0": ("float", [1.0]), "x1": ("float", [2.0]), "label": ("float", [0.0])}))
            writer.write(_example(columns))

    cases = {
        "label": (
            {"x0": ("float", [1.0]), "x1": ("float", [2.0]), "label": ("float", [3.0])},
            r"b\.tfrecord: record 2, column 'label': label 3 is not 0 or 1",
        ),
        "missing": (
            {"x0": ("float", [1.0]), "label": ("float", [1.0])},
            r"b\.tfrecord: record 2: feature 'x1' is missing",
        ),
        "two values": (
            {"x0": ("float", [1.0, 2.0]), "x1": ("float", [2.0]), "label": ("float", [1.0])},
            r"b\.tfrecord: record 2, feature 'x0': 2 values; expected exactly 1",
        ),
        "int64 feature": (
            {"x0": ("int64", [1]), "x1": ("float", [2.0]), "label": ("float", [1.0])},
            r"b\.tfrecord: record 2, feature 'x0': stored as int64_list; expected float_list",
        ),
    }
    for name, (columns, message) in cases.items():
        bad_shard(name, columns)
        with pytest.raises(InputError, match=message):
            train_to_dir(tmp_path / "run", data_path=str(tmp_path / name), plots=False)
        assert not (tmp_path / "run").exists()


def test_a_tfrecord_shard_with_other_features_is_named(tmp_path, rows):
    features, labels = rows
    write_tfrecord(tmp_path / "a.tfrecord", features[:40], labels[:40])
    write_tfrecord(tmp_path / "b.tfrecord", features[:40], labels[:40], names=("x0", "z"))
    with pytest.raises(
        InputError,
        match=r"b\.tfrecord: record 1: features \(label, x0, z\) differ from those of "
        r"the first shard .*a\.tfrecord \(label, x0, x1\)",
    ):
        train_to_dir(tmp_path / "run", data_path=str(tmp_path / "*.tfrecord"), plots=False)


@pytest.mark.parametrize("case", ["non-numeric", "single class", "empty"])
def test_cli_reports_bad_data_in_one_line_with_exit_2(tmp_path, case):
    text, message = CSV_CASES[case]
    (tmp_path / "d.csv").write_text(text)
    result = invoke("--data", tmp_path / "d.csv", "--out", tmp_path / "run")
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ")
    assert re.search(message, lines[0])
    assert "Traceback" not in result.output
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--steps", "3", "--epochs", "2"], "give --steps or --epochs, not both"),
        (["--epochs", "0"], "--epochs must be at least 1"),
        (["--batch-size", "0"], "--batch-size must be at least 1"),
        (["--shuffle-buffer", "0"], "--shuffle-buffer must be at least 1"),
        (["--workers", "127.0.0.1:1"], "--workers and --worker-index go together"),
        (["--workers", "nohost", "--worker-index", "0"], r"--workers 'nohost': expected HOST:PORT"),
        (["--workers", "a:1,b:2", "--worker-index", "2"], "--worker-index 2: must be between 0 and 1"),
    ],
)
def test_bad_options_are_one_line_errors(tmp_path, rows, args, message):
    features, labels = rows
    path = write_csv(tmp_path / "d.csv", features, labels)
    result = invoke("--data", path, "--out", tmp_path / "run", *args)
    assert result.exit_code == 2, result.output
    assert re.search(message, result.output.strip().splitlines()[-1])


def test_streaming_options_need_data(tmp_path):
    result = invoke("--out", tmp_path / "run", "--skip-bad-rows")
    assert result.exit_code == 2 and "--skip-bad-rows needs --data" in result.output
