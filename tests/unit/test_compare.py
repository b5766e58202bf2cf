"""The comparator on hand-made arrays: the isclose rule, statistics, class flips
near the threshold reported apart, ULPs, NaN, overrides, signature drift."""

import numpy as np
import pytest

from toolkit.parity.compare import (ClassifierSpec, Comparator, default_policies, parse_overrides, signature_consistency,
                             ulp_distance)
from toolkit.errors import InputError
from toolkit.parity.runners.base import Signature, TensorSpec

POLICIES = default_policies()


def outputs(p, logits=None):
    p = np.asarray(p, np.float32).reshape(-1, 1)
    out = {"probabilities": p, "classes": (p > 0.5).astype(np.int64)}
    if logits is not None:
        out["logits"] = np.asarray(logits, np.float32).reshape(-1, 1)
    return out


def classifier():
    return ClassifierSpec("probabilities", ("classes",))


def test_isclose_rule_and_statistics():
    ref = {"y": np.array([1.0, 2.0, 100.0, 0.0], np.float32)}
    cand = {"y": np.array([1.0, 2.0 + 2e-6, 100.0 + 5e-5, 3e-6], np.float32)}
    result = Comparator().compare("eager", ref, "tflite", cand, POLICIES["float"]).outputs[0]
    # atol 1e-6 + rtol 1e-6 * |b|: 2.0 allows 3e-6, 100 allows 1.01e-4, 0 allows only 1e-6.
    assert not result and result.failures == 1 and result.failed_rows == [3]
    # The largest error (row 2) is within rtol; the failing row 3 is smaller in absolute terms.
    assert result.max_abs_error == float(cand["y"][2]) - 100.0
    assert [w["row"] for w in result.worst_rows[:2]] == [2, 3]
    assert not result.bit_exact and result.max_ulp_error > 0
    exact = Comparator().compare("eager", ref, "grpc", ref, POLICIES["exact"]).outputs[0]
    assert exact and exact.bit_exact and exact.max_abs_error == 0 and exact.max_ulp_error == 0


def test_exact_policy_fails_on_one_ulp():
    a = np.array([0.3], np.float32)
    b = np.nextafter(a, np.float32(1))
    result = Comparator().compare("eager", {"y": a}, "grpc", {"y": b}, POLICIES["exact"])
    assert not result and result.outputs[0].max_ulp_error == 1


def test_per_output_override():
    policies = default_policies(atol=parse_overrides(["probabilities=0.01"], "--atol"))
    assert policies["float"].tolerance("probabilities").atol == 0.01
    assert policies["float"].tolerance("logits").atol == 1e-6
    assert policies["exact"].tolerance("probabilities").atol == 0.01
    everything = default_policies(rtol=parse_overrides(["1e-3"], "--rtol"))
    assert everything["float"].tolerance("anything").rtol == 1e-3
    with pytest.raises(InputError, match="--atol 'probabilities=x'"):
        parse_overrides(["probabilities=x"], "--atol")


def test_flip_near_threshold_is_reported_apart_from_real_flips():
    ref = outputs([0.5000001, 0.9, 0.2, 0.7])
    cand = outputs([0.4999999, 0.9, 0.8, 0.7])  # row 0 sits on the threshold, row 2 really flips
    pair = Comparator(classifier()).compare("eager", ref, "tflite", cand, POLICIES["float"])
    classes = next(o for o in pair.outputs if o.output == "classes")
    assert classes.near_threshold_rows == [0] and classes.failed_rows == [2]
    assert pair.classes.flipped_rows == [2] and pair.classes.near_threshold_rows == [0]
    assert pair.classes.agreement == pytest.approx(0.75) and not pair.classes
    assert not pair


def test_quantized_policy_judges_score_and_agreement_only():
    ref = outputs([0.1, 0.9, 0.3], logits=[-2.2, 2.2, -0.85])
    cand = outputs([0.12, 0.88, 0.31], logits=[-2.0, 2.0, -0.8])  # logits off by 0.2: informational
    pair = Comparator(classifier()).compare("eager", ref, "int8", cand, POLICIES["quantized"])
    logits = next(o for o in pair.outputs if o.output == "logits")
    assert not logits.judged and not logits.passed and bool(logits)
    assert pair and pair.classes.agreement == 1.0
    worse = outputs([0.1, 0.9, 0.41], logits=[-2.2, 2.2, -0.85])
    probs = next(o for o in Comparator(classifier()).compare("eager", ref, "int8", worse,
                                                            POLICIES["quantized"]).outputs
                 if o.output == "probabilities")
    assert probs.judged and not probs and probs.failed_rows == [2]


def test_ulp_distance_and_nan():
    a = np.array([1.0, -0.0, np.nan, 1.0, -1e-45], np.float32)
    b = np.array([np.nextafter(np.float32(1), np.float32(2)), 0.0, np.nan, np.nan, 1e-45], np.float32)
    d = ulp_distance(a, b)
    assert list(d[:3]) == [1, 0, 0] and d[3] == np.iinfo(np.int64).max and d[4] == 2
    ref = {"y": np.array([np.nan, 1.0], np.float32)}
    assert Comparator().compare("a", ref, "b", {"y": np.array([np.nan, 1.0], np.float32)}, POLICIES["exact"])
    bad = Comparator().compare("a", ref, "b", {"y": np.array([0.0, 1.0], np.float32)}, POLICIES["float"])
    assert not bad and bad.outputs[0].failed_rows == [0]


def test_shape_and_missing_output_are_failures_not_crashes():
    ref = {"y": np.zeros((3, 1), np.float32), "z": np.zeros(3, np.float32)}
    cand = {"y": np.zeros((3, 2), np.float32), "extra": np.zeros(3, np.float32)}
    pair = Comparator().compare("a", ref, "b", cand, POLICIES["float"])
    errors = {o.output: o.error for o in pair.outputs}
    assert "shape [3, 2]" in errors["y"] and "did not return output z" in errors["z"]
    assert "not produced by a" in errors["extra"] and not pair


def test_batch_invariance_counts_ulps_for_float_outputs_only():
    alone = {"p": np.array([0.25, 0.5], np.float32), "c": np.array([0, 1])}
    batched = {"p": np.array([0.25, np.nextafter(np.float32(0.5), np.float32(1))], np.float32),
               "c": np.array([0, 1])}
    (result,) = Comparator.batch_invariance("eager", alone, batched, bound=0, judged=True)
    assert result.output == "p" and result.max_ulps == 1 and result.rows_differing == 1 and not result
    (loose,) = Comparator.batch_invariance("eager", alone, batched, bound=4, judged=True)
    assert loose


def test_signature_drift_is_named():
    f = np.dtype(np.float32)
    ref = Signature({"x": TensorSpec("x", f, (None, 2))}, {"y": TensorSpec("y", f, (None, 1))})
    drift = Signature({"x": TensorSpec("x", np.dtype(np.float64), (1, 2))}, {"z": TensorSpec("z", f, (None, 1))})
    result = signature_consistency("grpc", ref, drift)
    assert not result
    assert result.problems == ["input x dtype float64 != float32", "input x shape [1,2] != [?,2]",
                               "output y missing", "unexpected output z"]
    assert signature_consistency("grpc", ref, ref)
