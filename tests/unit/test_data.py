"""Data: the tutorial's generator, the split, and every bad-data case of a user's file (exit 2)."""

import re

import numpy as np
import pytest
from click.testing import CliRunner

from toolkit.training import data
from toolkit.cli import cli
from toolkit.errors import InputError


def test_synthetic_is_the_tutorials_two_gaussians():
    d = data.synthetic(2000, seed=0)
    assert d.features.shape == (4000, 2) and d.features.dtype == np.float32
    assert d.labels.dtype == np.float32 and set(np.unique(d.labels)) == {0.0, 1.0}
    for label, mean in enumerate(data.TUTORIAL_MEANS):
        points = d.features[d.labels == label]
        assert len(points) == 2000
        np.testing.assert_allclose(points.mean(axis=0), mean, atol=0.1)
        np.testing.assert_allclose(np.cov(points.T), data.TUTORIAL_COV, atol=0.1)


def test_synthetic_is_seeded():
    a, b, c = data.synthetic(50, seed=1), data.synthetic(50, seed=1), data.synthetic(50, seed=2)
    np.testing.assert_array_equal(a.features, b.features)
    assert a.digest() == b.digest() != c.digest()


def test_split_holds_out_the_fraction_without_overlap():
    d = data.synthetic(100, seed=0)
    train, held = data.split(d, 0.2, seed=0)
    assert (len(train), len(held)) == (160, 40)
    rows = {tuple(r) for r in train.features} | {tuple(r) for r in held.features}
    assert len(rows) == 200


def test_split_is_stratified_and_needs_two_samples_per_class():
    d = data.Dataset(np.arange(10, dtype=np.float32).reshape(5, 2), np.float32([0, 0, 0, 0, 1]), ("a", "b"), "tiny")
    with pytest.raises(InputError, match="tiny: class 1 has 1 sample"):
        data.split(d, 0.2, seed=0)
    train, held = data.split(data.synthetic(30, seed=0), 0.1, seed=0)
    assert (held.labels == 0).sum() == (held.labels == 1).sum() == 3


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_csv_with_any_number_of_features(tmp_path):
    path = _write(tmp_path, "d.csv", "a,label,b,c\n1,0,2,3\n\n4,1,5,6e-1\n")
    d = data.load(path)
    assert d.feature_names == ("a", "b", "c")
    np.testing.assert_array_equal(d.features, np.float32([[1, 2, 3], [4, 5, 0.6]]))
    np.testing.assert_array_equal(d.labels, [0, 1])


def test_npz_with_feature_names(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, features=np.arange(6.0).reshape(3, 2), labels=[0, 1, 1], feature_names=["p", "q"])
    d = data.load(path)
    assert d.feature_names == ("p", "q") and d.features.dtype == np.float32


CSV_CASES = {
    "empty": ("", r"d\.csv: file is empty"),
    "header only": ("x,label\n", r"d\.csv: file is empty \(a header but no data rows\)"),
    "no label column": ("x,y\n1,0\n", r"d\.csv: no label column 'label' in the header \(columns: x, y\)"),
    "non-numeric": ("x,label\n1,0\nabc,1\n", r"d\.csv: line 3, column 'x': 'abc' is not a number"),
    "short row": ("x,y,label\n1,2,0\n1,1\n", r"d\.csv: line 3: expected 3 cells, found 2"),
    "nan": ("x,label\n1,0\nnan,1\n", r"d\.csv: line 3, column 'x': feature is NaN"),
    "inf": ("x,label\n1,0\n2,1\n-inf,1\n", r"d\.csv: line 4, column 'x': feature is -inf$"),
    "float32 overflow": ("x,label\n1,0\n1e39,1\n", r"d\.csv: line 3, column 'x': feature 1e\+39 is too large for float32"),
    "label not 0/1": ("x,label\n1,0\n2,2\n", r"d\.csv: line 3, column 'label': label 2 is not 0 or 1"),
    "single class": ("x,label\n1,1\n2,1\n", r"d\.csv: every label is 1; a classifier needs samples of both"),
    "only label column": ("label\n1\n0\n", r"d\.csv: only the label column 'label'"),
}


@pytest.mark.parametrize("case", CSV_CASES)
def test_bad_csv_is_rejected_with_file_row_column_and_problem(tmp_path, case):
    text, message = CSV_CASES[case]
    path = _write(tmp_path, "d.csv", text)
    with pytest.raises(InputError, match=message):
        data.load(path)


NPZ_CASES = {
    "missing labels": (dict(features=np.ones((2, 2))), r"d\.npz: missing array\(s\) labels \(found: features\)"),
    "1-D features": (dict(features=np.ones(2), labels=[0, 1]), r"'features' must be 2-D"),
    "length mismatch": (dict(features=np.ones((3, 2)), labels=[0, 1]), r"3 feature rows but 2 labels"),
    "nan": (dict(features=[[1.0, 2.0], [1.0, np.nan]], labels=[0, 1]), r"d\.npz: row 1, column 'x1': feature is NaN"),
    "label 0.5": (dict(features=np.ones((2, 1)), labels=[0, 0.5]), r"row 1, column 'labels': label 0\.5 is not 0 or 1"),
    "single class": (dict(features=np.ones((2, 1)), labels=[0, 0]), r"every label is 0"),
    "strings": (dict(features=np.array([["a"], ["b"]]), labels=[0, 1]), r"'features' has non-numeric dtype"),
    "empty": (dict(features=np.ones((0, 2)), labels=np.ones(0)), r"d\.npz: file is empty"),
}


@pytest.mark.parametrize("case", NPZ_CASES)
def test_bad_npz_is_rejected(tmp_path, case):
    arrays, message = NPZ_CASES[case]
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(InputError, match=message):
        data.load(tmp_path / "d.npz")


def test_unreadable_or_missing_files(tmp_path):
    with pytest.raises(InputError, match=r"nope\.csv: no such file"):
        data.load(tmp_path / "nope.csv")
    with pytest.raises(InputError, match=r"not a readable \.npz"):
        data.load(_write(tmp_path, "bad.npz", "not a zip"))
    with pytest.raises(InputError, match=r"unsupported data format '\.txt'"):
        data.load(_write(tmp_path, "d.txt", "x"))


@pytest.mark.parametrize("case", ["non-numeric", "single class", "empty"])
def test_cli_reports_bad_data_in_one_line_with_exit_2(tmp_path, case):
    text, message = CSV_CASES[case]
    path = _write(tmp_path, "d.csv", text)
    result = CliRunner().invoke(cli, ["train", "--data", str(path), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ")
    assert re.search(message, lines[0])
    assert "Traceback" not in result.output
    assert not (tmp_path / "run").exists()
