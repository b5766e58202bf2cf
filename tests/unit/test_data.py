"""Data: the tutorial's generator, the split, and every bad-data case of a user's NPZ (CSV/TFRecord: test_stream_data)."""

import numpy as np
import pytest

from toolkit.errors import InputError
from toolkit.training import data


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


def test_npz_with_feature_names(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, features=np.arange(6.0).reshape(3, 2), labels=[0, 1, 1], feature_names=["p", "q"])
    d = data.load(path)
    assert d.feature_names == ("p", "q") and d.features.dtype == np.float32


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
