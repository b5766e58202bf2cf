"""Compare runtimes' outputs. Knows no runtime: it sees named numpy arrays, call by call.

Every result is a value that is truthy when it passes and carries its
statistics, so callers collect all of them and report every mismatch at once.

Rule per element, numpy's isclose with a floor tied to the output's scale:

    |a - b| <= atol + rtol * |b| + ulps * eps * scale

`b` is the reference, `eps` the machine epsilon of the output's dtype and
`scale` the output's scale: the larger of its largest finite |b| in the same
call and its median |b| over every compared call. The last term reads "`ulps`
ULPs of the output's scale". Rounding grows with the size of what was summed
(a wide Dense, a graph rewritten by Grappler), not with the size of each
result, so a value near zero, or a call whose values all sit near zero (rows
on a decision boundary), is judged on its output's usual size. Equal
infinities, and NaN at the same place, agree.

An output that follows the batch (its first dimension is the call's row
count) is compared row by row; any other output (a mean over the batch, a
scalar, a fixed-size vector) call by call: each call is one unit, never
cut into fake rows.

Policies (`toolkit.policies`): `exact` (bit-exact), `session`
(our server: same TensorFlow build run by a Session), `float` (TFLite float32,
remote servers), `quantized` (the score output's error and class agreement).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from toolkit.errors import InputError
from toolkit.parity.runners.base import dtype_name
from toolkit.policies import FLIP_SIGNIFICANCE, Policy, Tolerance, default_policies  # noqa: F401  (re-exported)

#: how many of the worst elements a result lists with their values
WORST_ELEMENTS = 5
#: lists of failed rows or calls are cut to this many; the counts stay exact
LISTED_UNITS = 100


def parse_overrides(values, option: str) -> dict:
    """Parse `[OUTPUT=]VALUE` items into {output or None: float}."""
    parsed = {}
    for item in values:
        name, _, number = item.rpartition("=")
        try:
            value = float(number)
        except ValueError:
            raise InputError(
                f"{option} {item!r}: expected VALUE or OUTPUT=VALUE with a number, e.g. {option} probabilities=1e-6"
            ) from None
        if value < 0:
            raise InputError(f"{option} {item!r}: tolerance must be >= 0")
        parsed[name or None] = value
    return parsed


def allowed_flips(rows: int, min_agreement: float, significance: float = FLIP_SIGNIFICANCE) -> int:
    """Most class flips among `rows` that a true agreement of `min_agreement` still explains.

    One-sided binomial test: k flips fail when P(X >= k) < `significance` for
    X ~ Binomial(rows, 1 - min_agreement). At 0.99 that allows 0 flips up to 5
    rows, 1 up to 35, 2 up to 82 and about 1.4% of 2000 rows, so a single flip
    in a small sample is not a verdict, while a badly calibrated variant still fails.
    """
    p = 1.0 - min_agreement
    if p <= 0:
        return 0
    if p >= 1:
        return rows
    tail = 1.0  # P(X >= k), starting at k = 0
    for k in range(rows):
        log_pmf = (
            math.lgamma(rows + 1)
            - math.lgamma(k + 1)
            - math.lgamma(rows - k + 1)
            + k * math.log(p)
            + (rows - k) * math.log1p(-p)
        )
        tail -= math.exp(log_pmf)  # now P(X >= k + 1)
        if tail < significance:
            return k
    return rows


@dataclass
class ClassifierSpec:
    """Which outputs make a classifier: a score output in [0, 1] and class outputs."""

    score_output: str
    class_outputs: tuple[str, ...] = ()
    threshold: float = 0.5

    @classmethod
    def detect(cls, outputs: dict) -> ClassifierSpec | None:
        """Find a probability output by name (prob*, scores) and integer class* outputs."""
        scores = [
            n
            for n, s in outputs.items()
            if np.dtype(s.dtype).kind == "f" and ("prob" in n.lower() or n.lower() == "scores")
        ]
        if len(scores) != 1:
            return None
        classes = tuple(n for n, s in outputs.items() if np.dtype(s.dtype).kind in "iu" and "class" in n.lower())
        return cls(scores[0], classes)

    def classes(self, scores: np.ndarray) -> np.ndarray:
        scores = _one_row_per_entry(scores)
        if scores.shape[1] == 1:
            return (scores[:, 0] >= self.threshold).astype(np.int64)
        return np.argmax(scores, axis=1)

    def near_threshold(self, scores: np.ndarray, tol: Tolerance) -> np.ndarray:
        """Rows whose reference score sits within tolerance of the decision."""
        scores = _one_row_per_entry(scores).astype(np.float64)
        eps = float(np.finfo(np.float32).eps)
        floor = tol.atol + tol.ulps * eps * (np.abs(scores).max() if scores.size else 0.0)
        if scores.shape[1] == 1:
            p = scores[:, 0]
            return np.abs(p - self.threshold) <= floor + tol.rtol * np.abs(p)
        top = np.sort(scores, axis=1)[:, -2:]
        return top[:, 1] - top[:, 0] <= 2 * (floor + tol.rtol * np.abs(top[:, 1]))


def _one_row_per_entry(a: np.ndarray) -> np.ndarray:
    """View a batch output as a matrix: one row per batch entry, its values flattened."""
    a = np.asarray(a)
    return a.reshape(len(a), int(np.prod(a.shape[1:]))) if a.ndim else a.reshape(1, 1)


@dataclass(frozen=True)
class Layout:
    """Which outputs follow the batch, and where each compared call sits among all calls.

    `first_rows[i]` numbers call i's first row among all rows and
    `call_numbers[i]` numbers call i among all calls, so a comparison of a
    subset of calls still names the check's own rows and calls.
    """

    batch_outputs: frozenset
    first_rows: tuple
    call_numbers: tuple

    @classmethod
    def detect(cls, ref_calls: list[dict], call_rows: list, dynamic_outputs=frozenset()) -> Layout:
        """An output follows the batch when, in every call, its first dimension is the call's row
        count, and either calls of different sizes prove it or the signature declares it dynamic.

        `call_rows[i]`: rows of call i (None: the signature has no batch dimension).
        """
        sizes = set(call_rows)
        batch = set()
        if ref_calls and None not in sizes:
            for name in ref_calls[0]:
                shapes = [np.shape(outputs[name]) for outputs in ref_calls]
                if all(s and s[0] == rows for s, rows in zip(shapes, call_rows, strict=True)) and (
                    len(sizes) > 1 or name in dynamic_outputs
                ):
                    batch.add(name)
        firsts = np.cumsum([0] + [rows or 0 for rows in call_rows])[:-1]
        return cls(frozenset(batch), tuple(int(f) for f in firsts), tuple(range(len(call_rows))))

    @classmethod
    def single_call(cls, outputs: dict) -> Layout:
        """One call whose outputs of rank >= 1 all follow the batch (hand-made arrays)."""
        return cls(frozenset(n for n, v in outputs.items() if np.ndim(v)), (0,), (0,))

    def subset(self, indices) -> Layout:
        """The layout of the calls at `indices` (numbers unchanged)."""
        return Layout(
            self.batch_outputs, tuple(self.first_rows[i] for i in indices), tuple(self.call_numbers[i] for i in indices)
        )

    def unit(self, output: str) -> str:
        return "row" if output in self.batch_outputs else "call"


@dataclass
class OutputComparison:
    """One output of one candidate against the reference, over every compared call.

    `unit` is "row" for an output that follows the batch, else "call";
    `units` counts them and `failed_units` numbers them among the check's rows or calls.
    """

    reference: str
    candidate: str
    output: str
    policy: str
    judged: bool
    passed: bool
    atol: float
    rtol: float
    ulps: float
    unit: str = "row"
    units: int = 0
    elements: int = 0
    bit_exact: bool = False
    max_abs_error: float = 0.0
    mean_abs_error: float = 0.0
    p99_abs_error: float = 0.0
    max_rel_error: float = 0.0
    mean_rel_error: float = 0.0
    p99_rel_error: float = 0.0
    max_ulp_error: int | None = None
    max_scale_ulp_error: float | None = None
    failures: int = 0
    failed_unit_count: int = 0
    failed_units: list[int] = field(default_factory=list)
    near_threshold_rows: list[int] = field(default_factory=list)
    worst: list[dict] = field(default_factory=list)
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
    allowed_flips: int
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

    def mark_informational(self) -> None:
        """Report this comparison without judging it."""
        for out in self.outputs:
            out.judged = False
        if self.classes is not None:
            self.classes.min_agreement = 0.0
            self.classes.allowed_flips = self.classes.rows
            self.classes.passed = True


@dataclass
class WithinRuntime:
    """One output of one runtime against itself: batch 1 vs batch N, or one call repeated.

    Judged with `bound` ULPs of the output's scale; `bit_identical` and
    `max_ulps` (per element) are reported facts.
    """

    runtime: str
    output: str
    unit: str
    units: int
    bit_identical: bool
    max_ulps: int | None
    max_scale_ulps: float | None
    max_abs_error: float
    max_rel_error: float
    units_failed: int
    bound: float
    judged: bool
    passed: bool
    error: str | None = None  # the second run's output is missing or has another shape or dtype

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


@dataclass
class _Errors:
    """Elementwise errors of one candidate array against one reference array (flattened)."""

    abs: np.ndarray
    rel: np.ndarray  # NaN where undefined (reference 0, candidate not)
    scale_ulps: np.ndarray | None  # None: not a float output
    ulps: np.ndarray | None  # None: not the same float dtype
    ok: np.ndarray

    @classmethod
    def of(cls, ref: np.ndarray, cand: np.ndarray, tol: Tolerance, typical: float = 0.0) -> _Errors:
        """Errors of `cand` against `ref` (same shape, numeric) under `tol`; no numpy warnings.

        `typical`: the output's median |value| over the whole comparison (see the module docstring).
        """
        r, c = ref.astype(np.float64).ravel(), cand.astype(np.float64).ravel()
        with np.errstate(all="ignore"):
            same = (r == c) | (np.isnan(r) & np.isnan(c))  # equal infinities too
            abs_err = np.where(same, 0.0, np.abs(c - r))
            abs_err = np.where(np.isnan(abs_err), np.inf, abs_err)  # NaN against a number
            finite = np.isfinite(r)
            magnitude = np.where(finite, np.abs(r), 0.0)
            rel = np.where(
                abs_err == 0, 0.0, np.where(finite, abs_err / np.where(magnitude > 0, magnitude, np.nan), np.inf)
            )
            scale_ulps = None
            floor = 0.0
            if ref.dtype.kind == "f":
                unit = float(np.finfo(ref.dtype).eps) * max(float(magnitude.max()) if r.size else 0.0, typical)
                floor = tol.ulps * unit
                scale_ulps = np.where(abs_err == 0, 0.0, abs_err / unit if unit > 0 else np.inf)
            # A non-finite reference must be matched exactly: rtol * inf would accept anything.
            ok = abs_err <= tol.atol + tol.rtol * magnitude + floor
        ulps = ulp_distance(ref, cand).ravel() if ref.dtype.kind == "f" and ref.dtype == cand.dtype else None
        return cls(abs_err, rel, scale_ulps, ulps, ok)

    def summary(self) -> dict:
        """Max, mean and p99 of absolute and relative errors, max ULPs per element and of the scale."""
        if not self.abs.size:
            return {}
        rel = self.rel[~np.isnan(self.rel)]
        stats = {
            "max_abs_error": _f(self.abs.max()),
            "mean_abs_error": _f(self.abs.mean()),
            # "higher": no interpolation, so no inf - inf
            "p99_abs_error": _f(np.percentile(self.abs, 99, method="higher")),
        }
        if rel.size:
            stats.update(
                max_rel_error=_f(rel.max()),
                mean_rel_error=_f(rel.mean()),
                p99_rel_error=_f(np.percentile(rel, 99, method="higher")),
            )
        if self.ulps is not None:
            stats["max_ulp_error"] = int(self.ulps.max())
        if self.scale_ulps is not None:
            stats["max_scale_ulp_error"] = _f(self.scale_ulps.max())
        return stats

    @classmethod
    def equality(cls, ref: np.ndarray, cand: np.ndarray) -> _Errors:
        """Strings and booleans: equal or not."""
        ok = (ref == cand).ravel()
        zeros = np.zeros(ok.shape)
        return cls(zeros, zeros, None, None, ok)


def _mismatch(a_ref: np.ndarray, a_cand: np.ndarray) -> str | None:
    """Why two arrays cannot be compared element by element, or None."""
    if a_ref.shape != a_cand.shape:
        return f"shape {list(a_cand.shape)} differs from the reference's {list(a_ref.shape)}"
    textual = a_ref.dtype.kind in "SUOb" or a_cand.dtype.kind in "SUOb"
    if not textual and a_ref.dtype.kind != a_cand.dtype.kind:
        return f"dtype {a_cand.dtype.name} differs from the reference's {a_ref.dtype.name}"
    return None


def _errors(a_ref: np.ndarray, a_cand: np.ndarray, tol: Tolerance, typical: float = 0.0) -> _Errors:
    if a_ref.dtype.kind in "SUOb" or a_cand.dtype.kind in "SUOb":
        return _Errors.equality(a_ref, a_cand)
    return _Errors.of(a_ref, a_cand, tol, typical)


def _typical_magnitude(arrays) -> float:
    """Median finite |value| over the arrays (0 for non-float outputs): an output's usual size."""
    values = [np.abs(np.ravel(a)).astype(np.float64) for a in arrays if np.asarray(a).dtype.kind == "f"]
    values = np.concatenate(values) if values else np.zeros(0)
    values = values[np.isfinite(values)]
    return float(np.median(values)) if values.size else 0.0


def _f(x) -> float:
    return float(x)


def _concat(parts: list[_Errors]) -> _Errors:
    def joined(name):
        arrays = [getattr(p, name) for p in parts]
        return None if any(a is None for a in arrays) else np.concatenate(arrays)

    return _Errors(joined("abs"), joined("rel"), joined("scale_ulps"), joined("ulps"), joined("ok"))


class Comparator:
    """Compares named outputs of a candidate runtime with the reference's."""

    def __init__(self, classifier: ClassifierSpec | None = None):
        self.classifier = classifier

    def compare(
        self, reference: str, ref, candidate: str, cand, policy: Policy, layout: Layout | None = None
    ) -> PairComparison:
        """Compare every output of the reference with the same output of the candidate.

        `ref`/`cand`: the outputs of each call (lists of {output: array}, in the
        same order), or of one call (a dict). `layout` says which outputs follow
        the batch (default for one call: every output of rank >= 1).
        """
        ref_calls, cand_calls = ([ref], [cand]) if isinstance(ref, dict) else (ref, cand)
        layout = layout or Layout.single_call(ref_calls[0])
        names = sorted(ref_calls[0]) if ref_calls else []
        spec = self.classifier
        if spec is None or spec.score_output not in names or spec.score_output not in layout.batch_outputs:
            spec = None
        outputs = [
            self._output(reference, candidate, name, ref_calls, cand_calls, policy, layout, spec) for name in names
        ]
        extra = sorted(set().union(*(c.keys() for c in cand_calls)) - set(names)) if cand_calls else []
        outputs += [
            OutputComparison(
                reference,
                candidate,
                name,
                policy.name,
                True,
                False,
                0.0,
                0.0,
                0.0,
                error=f"output {name} is not produced by {reference}",
            )
            for name in extra
        ]
        classes = None
        if spec is not None and all(spec.score_output in c for c in cand_calls):
            classes = self._classes(reference, candidate, spec, ref_calls, cand_calls, policy, layout)
        return PairComparison(reference, candidate, policy.name, outputs, classes)

    def _output(self, reference, candidate, name, ref_calls, cand_calls, policy, layout, spec) -> OutputComparison:
        tol = policy.tolerance(name)
        judged = not policy.quantized or spec is None or name == spec.score_output
        unit = layout.unit(name)
        result = OutputComparison(
            reference, candidate, name, policy.name, judged, False, tol.atol, tol.rtol, tol.ulps, unit=unit
        )
        # Class flips where the reference score sits on the threshold are expected, not failures.
        near_rule = (
            spec is not None
            and name in spec.class_outputs
            and unit == "row"
            and spec.score_output in layout.batch_outputs
        )
        parts, numbers, worst, near_rows, exact = [], [], [], [], True
        typical = _typical_magnitude(r[name] for r in ref_calls)
        for i, (ref_out, cand_out) in enumerate(zip(ref_calls, cand_calls, strict=True)):
            a_ref = np.asarray(ref_out[name])
            if name not in cand_out:
                result.error = f"{candidate} did not return output {name}"
                return result
            a_cand = np.asarray(cand_out[name])
            problem = _mismatch(a_ref, a_cand)
            if problem:
                where = f" (call {layout.call_numbers[i]})" if len(ref_calls) > 1 else ""
                result.error = problem + where
                return result
            errors = _errors(a_ref, a_cand, tol, typical)
            number = _unit_numbers(a_ref, unit, layout.first_rows[i], layout.call_numbers[i])
            if near_rule:
                near = spec.near_threshold(ref_out[spec.score_output], policy.tolerance(spec.score_output))
                near = np.repeat(near, a_ref.size // max(len(near), 1))
                near_rows += sorted({int(n) for n in number[~errors.ok & near]})
                errors.ok = errors.ok | near
            exact = exact and np.array_equal(a_ref, a_cand, equal_nan=a_ref.dtype.kind == "f")
            result.units += len(a_ref) if unit == "row" else 1
            parts.append(errors)
            numbers.append(number)
            worst += _worst(errors, a_ref, a_cand, number)
        if not parts:
            result.passed = True
            return result
        errors, number = _concat(parts), np.concatenate(numbers)
        for key, value in errors.summary().items():
            setattr(result, key, value)
        failed = sorted({int(n) for n in number[~errors.ok]})
        result.elements = int(errors.abs.size)
        result.bit_exact = bool(exact)
        result.near_threshold_rows = near_rows[:LISTED_UNITS]
        result.failures = int(np.count_nonzero(~errors.ok))
        result.failed_unit_count = len(failed)
        result.failed_units = failed[:LISTED_UNITS]
        result.worst = sorted(worst, key=lambda w: -w["abs_error"])[:WORST_ELEMENTS]
        result.passed = result.failures == 0
        return result

    def _classes(self, reference, candidate, spec, ref_calls, cand_calls, policy, layout) -> ClassAgreement:
        score = spec.score_output
        s_ref = np.concatenate([_one_row_per_entry(c[score]) for c in ref_calls])
        s_cand = np.concatenate([_one_row_per_entry(c[score]) for c in cand_calls])
        rows = np.concatenate(
            [np.arange(first, first + len(c[score])) for first, c in zip(layout.first_rows, ref_calls, strict=True)]
        ).astype(int)
        c_ref, c_cand = spec.classes(s_ref), spec.classes(s_cand)
        near = spec.near_threshold(s_ref, policy.tolerance(score))
        differ = c_ref != c_cand
        flips = rows[differ & ~near]
        allowed = allowed_flips(len(rows), policy.min_class_agreement)
        agreement = 1.0 - len(flips) / len(rows) if len(rows) else 1.0
        return ClassAgreement(
            reference,
            candidate,
            score,
            len(rows),
            len(flips),
            agreement,
            policy.min_class_agreement,
            allowed,
            [int(r) for r in flips[:LISTED_UNITS]],
            [int(r) for r in rows[differ & near][:LISTED_UNITS]],
            passed=len(flips) <= allowed,
        )

    @staticmethod
    def within_runtime(
        runtime: str, first: dict, second: dict, bound: float, batch_outputs=frozenset(), judged: bool = True
    ) -> list[WithinRuntime]:
        """Each output of `first` against the same output of `second`, from one runtime, within
        `bound` ULPs of the output's scale (`first` gives the scale). Outputs in `batch_outputs`
        count rows, the others one call."""
        results = []
        for name in sorted(first):
            a, b = np.asarray(first[name]), second.get(name)
            unit = "row" if name in batch_outputs else "call"
            units = len(a) if unit == "row" else 1
            problem = "missing" if b is None else _mismatch(a, np.asarray(b))
            if problem:
                results.append(
                    WithinRuntime(
                        runtime,
                        name,
                        unit,
                        units,
                        False,
                        None,
                        None,
                        0.0,
                        0.0,
                        units,
                        bound,
                        judged,
                        False,
                        error=problem,
                    )
                )
                continue
            b = np.asarray(b)
            errors = _errors(a, b, Tolerance(ulps=bound))
            number = _unit_numbers(a, unit)
            stats = errors.summary()
            results.append(
                WithinRuntime(
                    runtime,
                    name,
                    unit,
                    units,
                    bool(np.array_equal(a, b, equal_nan=a.dtype.kind == "f")),
                    stats.get("max_ulp_error"),
                    stats.get("max_scale_ulp_error"),
                    stats.get("max_abs_error", 0.0),
                    stats.get("max_rel_error", 0.0),
                    len(np.unique(number[~errors.ok])),
                    bound,
                    judged,
                    bool(errors.ok.all()),
                )
            )
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


def _unit_numbers(a: np.ndarray, unit: str, first_row: int = 0, call_number: int = 0) -> np.ndarray:
    """For each element of one call's array: the number of its row (unit "row") or its call."""
    if unit == "call":
        return np.full(a.size, call_number, dtype=np.int64)
    return np.repeat(np.arange(first_row, first_row + len(a)), a.size // max(len(a), 1))


def _worst(errors: _Errors, a_ref: np.ndarray, a_cand: np.ndarray, number: np.ndarray) -> list[dict]:
    """The largest nonzero errors of one call's array, with where they sit and both values."""
    flat = errors.abs
    if not flat.size or not flat.max() > 0:
        return []
    order = np.argsort(-flat, kind="stable")[:WORST_ELEMENTS]
    shape = a_ref.shape if a_ref.ndim else (1,)
    return [
        {
            "unit": int(number[i]),
            "index": [int(x) for x in np.unravel_index(i, shape)],
            "reference": _f(a_ref.ravel()[i]),
            "candidate": _f(a_cand.ravel()[i]),
            "abs_error": _f(flat[i]),
        }
        for i in order
        if flat[i] > 0
    ]
