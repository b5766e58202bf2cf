"""The model's outputs: classes are exactly `probabilities > 0.5`."""

import numpy as np

from toolkit.training.model import LogisticRegression


def test_classes_are_probability_above_one_half_even_at_the_boundary():
    model = LogisticRegression(num_features=2, seed=0)
    model.w.assign([[1.0], [0.0]])
    model.b.assign([0.0])
    # Logits straddling 0 by a few ulps, where sigmoid rounds to 0.5 or just off it,
    # plus ordinary and saturated values.
    tiny = np.float32(1e-7) * np.arange(-50, 51, dtype=np.float32)
    z = np.concatenate([tiny, np.float32([-30, -3, -1e-3, 1e-3, 3, 30])])
    features = np.stack([z, np.zeros_like(z)], axis=1)
    out = {k: v.numpy() for k, v in model.serving_default(features).items()}
    probabilities = out["probabilities"].ravel()
    assert np.any(probabilities == np.float32(0.5)) and np.any(probabilities > 0.5)
    np.testing.assert_array_equal(out["classes"].ravel(), (probabilities > 0.5).astype(np.int64))


def test_the_float32_identity_behind_the_classes_op():
    # Every float32 in [0.25, 0.75] (the sigmoid range where 1 - p can round):
    # p > 1 - p is p > 0.5.
    bits = np.arange(np.float32(0.25).view(np.uint32), np.float32(0.75).view(np.uint32) + 1, dtype=np.uint32)
    p = bits.view(np.float32)
    np.testing.assert_array_equal(p > np.float32(1.0) - p, p > np.float32(0.5))
