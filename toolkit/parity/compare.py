"""Compare runtimes' outputs. Knows no runtime: it sees named numpy arrays.

Every result is a value that is truthy when it passes and carries its
statistics, so callers collect all of them and report every mismatch at once.

Rule per element (numpy's isclose): |a - b| <= atol + rtol * |b|, where `b` is
the reference. Tolerances come from a `Policy`: `exact` (same TF build: must be
bit-exact), `float` (another float32 engine: TFLite, a remote server) or
`quantized` (judged on class agreement and the score output's error only).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from toolkit.errors import InputError
from toolkit.parity.runners.base import dtype_name

#: how many of the worst rows a result lists with their values
WORST_ROWS = 5
#: row lists (failed, flipped) are cut to this many; the counts stay exact
LISTED_ROWS = 100


@dataclass(frozen=True)
class Tolerance:
    atol: float
    rtol: float


@dataclass
class Policy:
    """How a candidate runtime is judged against the reference."""

    name: str
    default: Tolerance
    per_output: dict[str, Tolerance] = field(default_factory=dict)
    #: quantized: only the score output and class agreement decide the verdict
    quantized: bool = False
    #: smallest fraction of rows whose class must agree (flips near the threshold excluded)
    min_class_agreement: float = 1.0

    def tolerance(self, output: str) -> Tolerance:
        return self.per_output.get(output, self.default)


def default_policies(atol: dict | None = None, rtol: dict | None = None, quantized_atol: float = 0.05,
                     min_class_agreement: float = 0.99) -> dict[str, Policy]:
    """The three policies, with user overrides applied to `exact` and `float`.

    `atol`/`rtol` map an output name (or None for every output) to a value,
    as parsed by `parse_overrides` from `--atol [OUTPUT=]VALUE`.
    """
    policies = {
        "exact": Policy("exact", Tolerance(0.0, 0.0)),
        "float": Policy("float", Tolerance(1e-6, 1e-6)),
        "quantized": Policy("quantized", Tolerance(quantized_atol, 0.0), quantized=True,
                            min_class_agreement=min_class_agreement),
    }
    atol, rtol = atol or {}, rtol or {}
    for policy in (policies["exact"], policies["float"]):
        base = Tolerance(atol.get(None, policy.default.atol), rtol.get(None, policy.default.rtol))
        policy.default = base
        for name in (set(atol) | set(rtol)) - {None}:
            policy.per_output[name] = Tolerance(atol.get(name, base.atol), rtol.get(name, base.rtol))
    return policies


def parse_overrides(values, option: str) -> dict:
    """Parse `[OUTPUT=]VALUE` items into {output or None: float}."""
    parsed = {}
    for item in values:
        name, _, number = item.rpartition("=")
        try:
            value = float(number)
        except ValueError:
            raise InputError(f"{option} {item!r}: expected VALUE or OUTPUT=VALUE with a number, e.g. "
                             f"{option} probabilities=1e-6") from None
        if value < 0:
            raise InputError(f"{option} {item!r}: tolerance must be >= 0")
        parsed[name or None] = value
    return parsed


@dataclass
class ClassifierSpec:
    """Which outputs make a classifier: a score output in [0, 1] and class outputs."""

    score_output: str
    class_outputs: tuple[str, ...] = ()
    threshold: float = 0.5

    @classmethod
    def detect(cls, outputs: dict) -> "ClassifierSpec | None":
        """Find a probability output by name (prob*, scores) and integer class* outputs."""
        scores = [n for n, s in outputs.items() if np.dtype(s.dtype).kind == "f"
                  and ("prob" in n.lower() or n.lower() == "scores")]
        if len(scores) != 1:
            return None
        classes = tuple(n for n, s in outputs.items() if np.dtype(s.dtype).kind in "iu" and "class" in n.lower())
        return cls(scores[0], classes)

    def classes(self, scores: np.ndarray) -> np.ndarray:
        scores = _rows2d(scores)
        if scores.shape[1] == 1:
            return (scores[:, 0] >= self.threshold).astype(np.int64)
        return np.argmax(scores, axis=1)

    def near_threshold(self, scores: np.ndarray, tol: Tolerance) -> np.ndarray:
        """Rows whose reference score sits within tolerance of the decision."""
        scores = _rows2d(scores).astype(np.float64)
        if scores.shape[1] == 1:
            p = scores[:, 0]
            return np.abs(p - self.threshold) <= tol.atol + tol.rtol * np.abs(p)
        top = np.sort(scores, axis=1)[:, -2:]
        return top[:, 1] - top[:, 0] <= 2 * (tol.atol + tol.rtol * np.abs(top[:, 1]))


def _rows2d(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    return a.reshape(len(a), -1) if a.ndim else a.reshape(1, 1)


@dataclass
class OutputComparison:
    """One output of one candidate against the reference."""

    reference: str
    candidate: str
    output: str
    policy: str
    judged: bool
    passed: bool
    atol: float
    rtol: float
    rows: int = 0
    elements: int = 0
    bit_exact: bool = False
    max_abs_error: float = 0.0
    mean_abs_error: float = 0.0
    p99_abs_error: float = 0.0
    max_rel_error: float = 0.0
    mean_rel_error: float = 0.0
    p99_rel_error: float = 0.0
    max_ulp_error: int | None = None
    failures: int = 0
    failed_row_count: int = 0
    failed_rows: list[int] = field(default_factory=list)
    near_threshold_rows: list[int] = field(default_factory=list)
    worst_rows: list[dict] = field(default_factory=list)
    error: str | None = None

    def __bool__(self):
        return self.passed or not self.judged

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class ClassAgreement:
    """Do reference and candidate predict the same class for each row?"""

    reference: str
    candidate: str
    output: str
    rows: int
    flips: int
    agreement: float
    min_agreement: float
    flipped_rows: list[int]
    near_threshold_rows: list[int]
    passed: bool

    def __bool__(self):
        return self.passed

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class PairComparison:
    """Every output of one candidate against the reference."""

    reference: str
    candidate: str
    policy: str
    outputs: list[OutputComparison]
    classes: ClassAgreement | None = None

    def __bool__(self):
        return all(self.outputs) and (self.classes is None or bool(self.classes))


@dataclass
class BatchInvariance:
    """The same rows run alone (batch 1) and inside a batch, within one runtime."""

    runtime: str
    output: str
    rows: int
    max_ulps: int
    rows_differing: int
    bound: int
    judged: bool
    passed: bool

    def __bool__(self):
        return self.passed or not self.judged

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class SignatureConsistency:
    """One runtime's view of the signature against the SavedModel's SignatureDef."""

    runtime: str
    problems: list[str]

    def __bool__(self):
        return not self.problems

    def to_json(self) -> dict:
        return {"runtime": self.runtime, "passed": bool(self), "problems": self.problems}


def ulp_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Elementwise distance in units in the last place (float arrays of one dtype).

    Both NaN counts as 0, one NaN as the largest int64.
    """
    a, b = np.asarray(a), np.asarray(b)
    dtype = np.result_type(a, b)
    if dtype.kind != "f":
        return np.abs(a.astype(np.int64) - b.astype(np.int64))
    ints = {2: np.int16, 4: np.int32, 8: np.int64}[dtype.itemsize]

    def ordered(x):
        i = x.astype(dtype).view(ints).astype(np.int64)
        # Map sign-magnitude floats onto a monotonic integer line.
        return np.where(i < 0, np.iinfo(ints).min - i, i)

    with np.errstate(over="ignore"):
        d = np.abs(ordered(a) - ordered(b))
    nan_a, nan_b = np.isnan(a), np.isnan(b)
    d = np.where(nan_a & nan_b, 0, d)
    return np.where(nan_a ^ nan_b, np.iinfo(np.int64).max, d)


class Comparator:
    """Compares named outputs of a candidate runtime with the reference's."""

    def __init__(self, classifier: ClassifierSpec | None = None):
        self.classifier = classifier

    def compare(self, reference: str, ref: dict, candidate: str, cand: dict, policy: Policy) -> PairComparison:
        """Compare every output of `ref` with the same output of `cand`."""
        spec = self.classifier if self.classifier and self.classifier.score_output in ref else None
        near = None
        if spec is not None:
            near = spec.near_threshold(ref[spec.score_output], policy.tolerance(spec.score_output))
        outputs = [self._output(reference, candidate, name, ref[name], cand.get(name), policy, spec, near)
                   for name in sorted(ref)]
        outputs += [OutputComparison(reference, candidate, name, policy.name, True, False, 0.0, 0.0,
                                     error=f"output {name} is not produced by {reference}")
                    for name in sorted(set(cand) - set(ref))]
        classes = None
        if spec is not None and spec.score_output in cand:
            classes = self._classes(reference, candidate, spec, ref[spec.score_output],
                                    cand[spec.score_output], policy, near)
        return PairComparison(reference, candidate, policy.name, outputs, classes)

    def _output(self, reference, candidate, name, a_ref, a_cand, policy, spec, near) -> OutputComparison:
        tol = policy.tolerance(name)
        judged = not policy.quantized or spec is None or name == spec.score_output
        result = OutputComparison(reference, candidate, name, policy.name, judged, False, tol.atol, tol.rtol)
        if a_cand is None:
            result.error = f"{candidate} did not return output {name}"
            return result
        a_ref, a_cand = np.asarray(a_ref), np.asarray(a_cand)
        if a_ref.shape != a_cand.shape:
            result.error = f"shape {list(a_cand.shape)} differs from the reference's {list(a_ref.shape)}"
            return result
        result.rows = int(a_ref.shape[0]) if a_ref.ndim else 1
        result.elements = int(a_ref.size)
        if a_ref.dtype.kind in "SUOb" or a_cand.dtype.kind in "SUOb":
            return self._equal_only(result, a_ref, a_cand)
        if a_ref.dtype.kind != a_cand.dtype.kind:
            result.error = f"dtype {a_cand.dtype.name} differs from the reference's {a_ref.dtype.name}"
            return result
        ref64, cand64 = a_ref.astype(np.float64), a_cand.astype(np.float64)
        with np.errstate(invalid="ignore"):
            abs_err = np.abs(cand64 - ref64)
        both_nan = np.isnan(ref64) & np.isnan(cand64)
        # One side NaN (or inf vs finite) is an infinite error; both NaN is agreement.
        abs_err = np.where(both_nan, 0.0, np.where(np.isnan(abs_err), np.inf, abs_err))
        nonzero = ref64 != 0
        with np.errstate(invalid="ignore", divide="ignore"):
            rel_err = np.where(nonzero, abs_err / np.abs(np.where(nonzero, ref64, 1.0)), np.nan)
        rel_err = np.where(abs_err == 0, 0.0, rel_err)  # relative error is undefined only at ref == 0
        with np.errstate(invalid="ignore"):
            ok = (abs_err <= tol.atol + tol.rtol * np.abs(ref64)) | both_nan
        result.bit_exact = bool(np.array_equal(a_ref, a_cand, equal_nan=a_ref.dtype.kind == "f"))
        if a_ref.size:
            result.max_abs_error = _f(abs_err.max())
            result.mean_abs_error = _f(abs_err.mean())
            with np.errstate(invalid="ignore"):  # inf in the array: inf - inf while interpolating
                result.p99_abs_error = _f(np.percentile(abs_err, 99))
            rel = rel_err[np.isfinite(rel_err)]
            if rel.size:
                result.max_rel_error, result.mean_rel_error = _f(rel.max()), _f(rel.mean())
                result.p99_rel_error = _f(np.percentile(rel, 99))
            if a_ref.dtype.kind == "f" and a_ref.dtype == a_cand.dtype:
                result.max_ulp_error = int(ulp_distance(a_ref, a_cand).max())
        bad_rows = _rows_of(~ok, a_ref.shape)
        if spec is not None and name in spec.class_outputs and near is not None and len(near) == result.rows:
            # A class flip on a row whose score sits on the threshold is expected.
            result.near_threshold_rows = [r for r in bad_rows if near[r]]
            bad_rows = [r for r in bad_rows if not near[r]]
            ok = ok | near.reshape((-1,) + (1,) * (ok.ndim - 1))
        result.failures = int(np.count_nonzero(~ok))
        result.failed_row_count = len(bad_rows)
        result.failed_rows = bad_rows[:LISTED_ROWS]
        result.worst_rows = _worst(abs_err, a_ref, a_cand)
        result.passed = result.failures == 0
        return result

    def _equal_only(self, result, a_ref, a_cand):
        ok = a_ref == a_cand
        result.bit_exact = bool(np.all(ok))
        result.failures = int(np.count_nonzero(~ok))
        bad_rows = _rows_of(~ok, a_ref.shape)
        result.failed_row_count = len(bad_rows)
        result.failed_rows = bad_rows[:LISTED_ROWS]
        result.passed = result.failures == 0
        return result

    def _classes(self, reference, candidate, spec, s_ref, s_cand, policy, near) -> ClassAgreement:
        c_ref, c_cand = spec.classes(s_ref), spec.classes(s_cand)
        differ = c_ref != c_cand
        flips = np.flatnonzero(differ & ~near)
        rows = len(c_ref)
        agreement = 1.0 - len(flips) / rows if rows else 1.0
        return ClassAgreement(
            reference, candidate, spec.score_output, rows, len(flips), agreement, policy.min_class_agreement,
            [int(r) for r in flips[:LISTED_ROWS]], [int(r) for r in np.flatnonzero(differ & near)[:LISTED_ROWS]],
            passed=agreement >= policy.min_class_agreement,
        )

    @staticmethod
    def batch_invariance(runtime: str, alone: dict, batched: dict, bound: int, judged: bool) -> list[BatchInvariance]:
        """ULP distance between outputs of rows run alone and the same rows run in a batch."""
        results = []
        for name in sorted(alone):
            a, b = np.asarray(alone[name]), np.asarray(batched.get(name))
            if a.dtype.kind != "f" or b is None or a.shape != b.shape:
                continue
            ulps = ulp_distance(a, b)
            worst = int(ulps.max()) if ulps.size else 0
            differing = len(_rows_of(ulps > 0, a.shape))
            results.append(BatchInvariance(runtime, name, int(a.shape[0]) if a.ndim else 1, worst, differing,
                                           bound, judged, worst <= bound))
        return results


def signature_consistency(runtime: str, reference, candidate) -> SignatureConsistency:
    """Names, dtypes and dynamic dimensions of `candidate` against `reference` (Signatures)."""
    problems = []
    for kind in ("inputs", "outputs"):
        ref, cand = getattr(reference, kind), getattr(candidate, kind)
        for name in sorted(set(ref) - set(cand)):
            problems.append(f"{kind[:-1]} {name} missing")
        for name in sorted(set(cand) - set(ref)):
            problems.append(f"unexpected {kind[:-1]} {name}")
        for name in sorted(set(ref) & set(cand)):
            r, c = ref[name], cand[name]
            if np.dtype(r.dtype) != np.dtype(c.dtype):
                problems.append(f"{kind[:-1]} {name} dtype {dtype_name(c.dtype)} != {dtype_name(r.dtype)}")
            if r.shape is not None and c.shape is not None and r.shape != c.shape:
                problems.append(f"{kind[:-1]} {name} shape {c.dims()} != {r.dims()}")
    return SignatureConsistency(runtime, problems)


def _rows_of(mask: np.ndarray, shape: tuple) -> list[int]:
    if not mask.ndim:
        return [0] if bool(mask) else []
    return [int(r) for r in np.flatnonzero(mask.reshape(shape[0], -1).any(axis=1))]


def _worst(abs_err: np.ndarray, a_ref: np.ndarray, a_cand: np.ndarray) -> list[dict]:
    if not abs_err.size or not abs_err.max() > 0:
        return []
    flat = abs_err.ravel()
    order = np.argsort(-flat, kind="stable")[:WORST_ROWS]
    shape = abs_err.shape if abs_err.ndim else (1,)
    worst = []
    for i in order:
        if flat[i] == 0:
            break
        index = np.unravel_index(i, shape)
        worst.append({"row": int(index[0]), "index": [int(x) for x in index],
                      "reference": _f(a_ref.ravel()[i]), "candidate": _f(a_cand.ravel()[i]),
                      "abs_error": _f(flat[i])})
    return worst


def _f(x) -> float:
    return float(x)
