"""The comparator on hand-made arrays: the isclose rule with its floor tied to the
output's scale, per-call outputs, infinities, class flips (near the threshold
and counted against a binomial bound), ULPs, overrides, signature drift."""

import warnings

import numpy as np
import pytest

from toolkit.errors import InputError
from toolkit.parity.compare import (
    ClassifierSpec,
    Comparator,
    Layout,
    allowed_flips,
    default_policies,
    parse_overrides,
    signature_consistency,
    ulp_distance,
)
from toolkit.parity.runners.base import Signature, TensorSpec

POLICIES = default_policies()
EPS = float(np.finfo(np.float32).eps)


def outputs(p, logits=None):
    p = np.asarray(p, np.float32).reshape(-1, 1)
    out = {"probabilities": p, "classes": (p > 0.5).astype(np.int64)}
    if logits is not None:
        out["logits"] = np.asarray(logits, np.float32).reshape(-1, 1)
    return out


def classifier():
    return ClassifierSpec("probabilities", ("classes",))


def compare(ref, cand, policy="float", **kwargs):
    return Comparator(kwargs.pop("classifier", None)).compare("eager", ref, "cand", cand, POLICIES[policy], **kwargs)


def test_floor_is_tied_to_the_outputs_scale_in_its_call():
    ref = np.array([100.0, 1.0, 0.0, 2.0], np.float32)
    floor = 64 * EPS * 100  # float policy: 64 ULPs of the largest |value|, 7.6e-4
    inside = ref + np.array([0, floor * 0.9, floor * 0.9, 0], np.float32)
    result = compare({"y": ref}, {"y": inside}).outputs[0]
    # Far more than 64 ULPs of the value 1.0 (and any error is infinitely many ULPs of 0), yet within the scale.
    assert result and not result.bit_exact and result.max_ulp_error > 64
    assert result.max_scale_ulp_error == pytest.approx(0.9 * 64, rel=0.01)
    outside = ref + np.array([0, 0, floor * 1.2, 0], np.float32)
    failed = compare({"y": ref}, {"y": outside}).outputs[0]
    assert not failed and failed.failures == 1 and failed.failed_units == [2] and failed.unit == "row"
    assert failed.worst[0]["unit"] == 2 and failed.worst[0]["abs_error"] == pytest.approx(floor * 1.2, rel=1e-3)


def test_injected_1e_minus_4_fails_every_non_quantized_policy_at_unit_scale():
    ref = {"y": np.linspace(-1, 1, 12, dtype=np.float32).reshape(4, 3)}
    shifted = {"y": ref["y"] + np.float32(1e-4)}
    for policy in ("exact", "session", "float"):
        assert not compare(ref, shifted, policy), policy


def test_exact_policy_fails_on_one_ulp_and_session_policy_allows_a_few():
    a = np.array([0.3, 1.0], np.float32)
    b = np.nextafter(a, np.float32(1))
    exact = compare({"y": a}, {"y": b}, "exact")
    assert not exact and exact.outputs[0].max_ulp_error == 1
    session = compare({"y": a}, {"y": b}, "session")
    assert session and not session.outputs[0].bit_exact


def test_per_output_override_adds_to_the_ulp_bound():
    policies = default_policies(atol=parse_overrides(["probabilities=0.01"], "--atol"))
    assert policies["float"].tolerance("probabilities").atol == 0.01
    assert policies["float"].tolerance("probabilities").ulps == 64
    assert policies["float"].tolerance("logits").atol == 0
    assert policies["session"].tolerance("probabilities").atol == 0.01
    assert policies["quantized"].tolerance("probabilities").atol == 0.15  # --quantized-atol moves this one
    everything = default_policies(rtol=parse_overrides(["1e-3"], "--rtol"), float_ulps=8)
    assert everything["float"].tolerance("anything").rtol == 1e-3 and everything["float"].default.ulps == 8
    with pytest.raises(InputError, match="--atol 'probabilities=x'"):
        parse_overrides(["probabilities=x"], "--atol")


def test_equal_infinities_and_nan_at_the_same_place_agree_without_warnings():
    ref = np.array([np.inf, -np.inf, np.nan, 1.0], np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a numpy RuntimeWarning fails the test
        same = compare({"y": ref}, {"y": ref.copy()}, "exact").outputs[0]
        assert same and same.bit_exact and same.max_abs_error == 0 and same.p99_abs_error == 0
        assert same.max_rel_error == 0 and same.max_scale_ulp_error == 0
        for wrong in ([np.inf, np.inf, np.nan, 1.0], [np.inf, -np.inf, 0.0, 1.0], [1e30, -np.inf, np.nan, 1.0]):
            result = compare({"y": ref}, {"y": np.array(wrong, np.float32)}, "float").outputs[0]
            assert not result and result.failures == 1 and result.max_abs_error == np.inf, wrong
        # rtol * |inf| would accept any candidate: a non-finite reference is matched exactly.
        loose = default_policies(rtol={None: 0.5})["float"]
        assert not Comparator().compare(
            "a", {"y": ref}, "b", {"y": np.array([5, -np.inf, np.nan, 1], np.float32)}, loose
        )


def test_layout_finds_outputs_that_do_not_follow_the_batch():
    def call(rows):
        x = np.ones((rows, 3), np.float32)
        return {
            "y": x,
            "mean": x.mean(0),
            "total": np.float32(x.sum()),
            "fixed": np.arange(4, dtype=np.float32),
            "square": np.ones((rows, rows), np.float32),
        }

    layout = Layout.detect([call(64), call(1), call(4)], [64, 1, 4])
    assert layout.batch_outputs == {"y", "square"}
    assert layout.first_rows == (0, 64, 65) and layout.call_numbers == (0, 1, 2)
    # Calls of one size prove nothing: only a dynamic first dimension in the signature says "batch".
    assert Layout.detect([call(4), call(4)], [4, 4]).batch_outputs == set()
    assert Layout.detect([call(4), call(4)], [4, 4], frozenset({"y"})).batch_outputs == {"y"}
    # A signature without a batch dimension: everything is compared per call.
    assert Layout.detect([call(4)], [None]).batch_outputs == set()


def test_outputs_that_do_not_follow_the_batch_are_compared_per_call():
    ref = [
        {"y": np.ones((3, 2), np.float32), "mean": np.ones(4, np.float32)},
        {"y": np.ones((1, 2), np.float32), "mean": np.ones(4, np.float32)},
        {"y": np.ones((5, 2), np.float32), "mean": np.ones(4, np.float32)},
    ]
    cand = [dict(c) for c in ref]
    cand[2] = {"y": ref[2]["y"].copy(), "mean": ref[2]["mean"] + 0.5}
    cand[2]["y"][1, 0] = 3.0
    layout = Layout.detect(ref, [3, 1, 5])
    pair = compare(ref, cand, layout=layout)
    by_name = {o.output: o for o in pair.outputs}
    assert by_name["mean"].unit == "call" and by_name["mean"].units == 3
    assert by_name["mean"].failed_units == [2] and by_name["mean"].failures == 4  # call 2, not "rows 8-11"
    assert by_name["y"].unit == "row" and by_name["y"].units == 9 and by_name["y"].failed_units == [5]
    # A subset of calls keeps the check's own numbers.
    subset = compare(ref[1:], cand[1:], layout=layout.subset([1, 2]))
    assert {o.output: o.failed_units for o in subset.outputs} == {"mean": [2], "y": [5]}


def test_a_shape_change_in_one_call_names_the_call():
    ref = [{"y": np.zeros((2, 1), np.float32)}, {"y": np.zeros((3, 1), np.float32)}]
    cand = [{"y": np.zeros((2, 1), np.float32)}, {"y": np.zeros((3, 2), np.float32)}]
    result = compare(ref, cand, layout=Layout.detect(ref, [2, 3])).outputs[0]
    assert not result and result.error == "shape [3, 2] differs from the reference's [3, 1] (call 1)"


def test_flip_near_threshold_is_reported_apart_from_real_flips():
    ref = outputs([0.5000001, 0.9, 0.2, 0.7])
    cand = outputs([0.4999999, 0.9, 0.8, 0.7])  # row 0 sits on the threshold, row 2 really flips
    pair = compare(ref, cand, classifier=classifier())
    classes = next(o for o in pair.outputs if o.output == "classes")
    assert classes.near_threshold_rows == [0] and classes.failed_units == [2]
    assert pair.classes.flipped_rows == [2] and pair.classes.near_threshold_rows == [0]
    assert pair.classes.agreement == pytest.approx(0.75)
    assert not pair  # the probabilities are off by 0.6 on row 2


def test_quantized_policy_judges_score_and_agreement_only():
    ref = outputs([0.1, 0.9, 0.3], logits=[-2.2, 2.2, -0.85])
    cand = outputs([0.12, 0.88, 0.31], logits=[-2.0, 2.0, -0.8])  # logits off by 0.2: informational
    pair = compare(ref, cand, "quantized", classifier=classifier())
    logits = next(o for o in pair.outputs if o.output == "logits")
    assert not logits.judged and not logits.passed and bool(logits)
    assert pair and pair.classes.agreement == 1.0
    worse = outputs([0.1, 0.9, 0.49], logits=[-2.2, 2.2, -0.85])  # 0.19 off, beyond atol 0.15
    probs = next(
        o for o in compare(ref, worse, "quantized", classifier=classifier()).outputs if o.output == "probabilities"
    )
    assert probs.judged and not probs and probs.failed_units == [2]


def test_allowed_flips_follow_a_binomial_bound():
    assert [allowed_flips(n, 0.99) for n in (1, 5, 6, 35, 36, 66, 82, 83)] == [0, 0, 1, 1, 2, 2, 2, 3]
    assert allowed_flips(2000, 0.99) == 28  # 1.4%: a calibrated variant's 0.9995 passes
    assert allowed_flips(66, 1.0) == 0 and allowed_flips(66, 0.0) == 66
    # A badly calibrated variant (agreement ~0.65) fails even on few rows.
    assert allowed_flips(20, 0.99) < 20 * 0.35


def test_class_agreement_counts_flips_against_the_bound():
    rng = np.random.default_rng(0)
    p = np.where(rng.random(66) < 0.5, 0.05, 0.95).astype(np.float32)
    two_flips = p.copy()
    two_flips[[3, 40]] = 1 - two_flips[[3, 40]]
    comparator = Comparator(classifier())
    passed = comparator.compare("eager", outputs(p), "int8", outputs(two_flips), POLICIES["quantized"]).classes
    assert passed and passed.flips == 2 and passed.allowed_flips == 2 and passed.rows == 66
    three = two_flips.copy()
    three[7] = 1 - three[7]
    failed = comparator.compare("eager", outputs(p), "int8", outputs(three), POLICIES["quantized"]).classes
    assert not failed and failed.flipped_rows == [3, 7, 40]


def test_ulp_distance_and_nan():
    a = np.array([1.0, -0.0, np.nan, 1.0, -1e-45], np.float32)
    b = np.array([np.nextafter(np.float32(1), np.float32(2)), 0.0, np.nan, np.nan, 1e-45], np.float32)
    d = ulp_distance(a, b)
    assert list(d[:3]) == [1, 0, 0] and d[3] == np.iinfo(np.int64).max and d[4] == 2
    ref = {"y": np.array([np.nan, 1.0], np.float32)}
    assert compare(ref, {"y": np.array([np.nan, 1.0], np.float32)}, "exact")
    bad = compare(ref, {"y": np.array([0.0, 1.0], np.float32)})
    assert not bad and bad.outputs[0].failed_units == [0]


def test_shape_and_missing_output_are_failures_not_crashes():
    ref = {"y": np.zeros((3, 1), np.float32), "z": np.zeros(3, np.float32)}
    cand = {"y": np.zeros((3, 2), np.float32), "extra": np.zeros(3, np.float32)}
    pair = compare(ref, cand)
    errors = {o.output: o.error for o in pair.outputs}
    assert "shape [3, 2]" in errors["y"] and "did not return output z" in errors["z"]
    assert "not produced by eager" in errors["extra"] and not pair


def test_within_runtime_judges_on_the_outputs_scale_and_reports_ulps():
    batched = {"p": np.array([0.0074, 0.5, 0.25], np.float32), "c": np.array([0, 1, 1])}
    alone = {"p": batched["p"] + np.array([1.5e-8, 0, 0], np.float32), "c": batched["c"].copy()}
    (c, p) = Comparator.within_runtime("eager", batched, alone, bound=16, batch_outputs={"p", "c"})
    # ~32 ULPs of 0.0074 but 0.25 ULPs of the output's scale (0.5): a rounding difference, not an error.
    assert p and p.max_ulps > 16 and p.max_scale_ulps < 1 and not p.bit_identical and p.unit == "row"
    assert c and c.bit_identical
    worse = {"p": batched["p"] + np.array([0, 0, 1e-5], np.float32), "c": batched["c"]}
    (_, p) = Comparator.within_runtime("eager", batched, worse, bound=16, batch_outputs={"p", "c"})
    assert not p and p.units_failed == 1 and p.max_abs_error == pytest.approx(1e-5, rel=0.01)
    assert p.max_rel_error == pytest.approx(4e-5, rel=0.01)


def test_within_runtime_names_a_shape_change_instead_of_skipping_it():
    first = {"fixed": np.arange(4, dtype=np.float32), "y": np.zeros((4, 1), np.float32)}
    (fixed, y) = Comparator.within_runtime(
        "grpc", first, {"fixed": np.arange(16, dtype=np.float32)}, bound=64, batch_outputs={"fixed", "y"}
    )
    assert not fixed and fixed.error == "shape [16] differs from the reference's [4]" and fixed.units_failed == 4
    assert not y and y.error == "missing"


def test_signature_drift_is_named():
    f = np.dtype(np.float32)
    ref = Signature({"x": TensorSpec("x", f, (None, 2))}, {"y": TensorSpec("y", f, (None, 1))})
    drift = Signature({"x": TensorSpec("x", np.dtype(np.float64), (1, 2))}, {"z": TensorSpec("z", f, (None, 1))})
    result = signature_consistency("grpc", ref, drift)
    assert not result
    assert result.problems == [
        "input x dtype float64 != float32",
        "input x shape [1,2] != [?,2]",
        "output y missing",
        "unexpected output z",
    ]
    assert signature_consistency("grpc", ref, ref)
