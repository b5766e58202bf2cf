"""How a candidate runtime is judged against the reference: tolerances, the four policies with
their default bounds (docs/parity.md gives the evidence for each), and their JSON form.

numpy-free and outside the layers on purpose: the CLI shows the bounds in `--help` without
importing numpy, the export records the policies in golden files, parity judges with them,
and the device checker (toolkit.edge) reads them back.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: our local server (a Session with Grappler's rewrites) against eager, in ULPs of the output's scale
SESSION_ULPS = 4
#: TFLite float32 and remote servers (other kernels, other accumulation order), in ULPs of the output's scale
FLOAT_ULPS = 64
#: batch 1 against batch N, and one call repeated, within one runtime, in ULPs of the output's scale
INVARIANCE_ULPS = 64
#: largest score-output error of a quantized TFLite variant
QUANTIZED_ATOL = 0.15
#: class agreement a quantized variant must plausibly reach (see `toolkit.parity.compare.allowed_flips`)
MIN_CLASS_AGREEMENT = 0.99
#: a variant fails when its flips would be this unlikely (or less) at MIN_CLASS_AGREEMENT
FLIP_SIGNIFICANCE = 0.05


@dataclass(frozen=True)
class Tolerance:
    """`|a - b| <= atol + rtol * |b| + ulps * eps * scale` (the rule in `toolkit.parity.compare`)."""

    atol: float = 0.0
    rtol: float = 0.0
    ulps: float = 0.0


@dataclass
class Policy:
    """How a candidate runtime is judged against the reference."""

    name: str
    default: Tolerance
    per_output: dict[str, Tolerance] = field(default_factory=dict)
    #: quantized: only the score output and class agreement decide the verdict
    quantized: bool = False
    #: class agreement the candidate must plausibly reach (flips near the threshold excluded)
    min_class_agreement: float = 1.0

    def tolerance(self, output: str) -> Tolerance:
        return self.per_output.get(output, self.default)


def default_policies(
    atol: dict | None = None,
    rtol: dict | None = None,
    quantized_atol: float = QUANTIZED_ATOL,
    min_class_agreement: float = MIN_CLASS_AGREEMENT,
    session_ulps: float = SESSION_ULPS,
    float_ulps: float = FLOAT_ULPS,
) -> dict[str, Policy]:
    """The four policies, with the user's `--atol`/`--rtol` added to `exact`, `session` and `float`.

    `atol`/`rtol` map an output name (or None for every output) to a value,
    as parsed by `parse_overrides` from `--atol [OUTPUT=]VALUE`.
    """
    policies = {
        "exact": Policy("exact", Tolerance()),
        "session": Policy("session", Tolerance(ulps=session_ulps)),
        "float": Policy("float", Tolerance(ulps=float_ulps)),
        "quantized": Policy(
            "quantized", Tolerance(atol=quantized_atol), quantized=True, min_class_agreement=min_class_agreement
        ),
    }
    atol, rtol = atol or {}, rtol or {}
    for policy in (policies["exact"], policies["session"], policies["float"]):
        ulps = policy.default.ulps
        base = Tolerance(atol.get(None, 0.0), rtol.get(None, 0.0), ulps)
        policy.default = base
        for name in (set(atol) | set(rtol)) - {None}:
            policy.per_output[name] = Tolerance(atol.get(name, base.atol), rtol.get(name, base.rtol), ulps)
    return policies


def policies_json(policies: dict[str, Policy]) -> dict:
    """{name: {atol, rtol, ulps, per_output, quantized, min_class_agreement}}, as report.json and golden files hold them."""
    return {
        name: {
            "atol": p.default.atol,
            "rtol": p.default.rtol,
            "ulps": p.default.ulps,
            "per_output": {o: {"atol": t.atol, "rtol": t.rtol, "ulps": t.ulps} for o, t in p.per_output.items()},
            "quantized": p.quantized,
            "min_class_agreement": p.min_class_agreement,
        }
        for name, p in policies.items()
    }


def policies_from_json(document: dict) -> dict[str, Policy]:
    """The policies `policies_json` wrote (KeyError/TypeError/ValueError on a malformed document)."""
    return {
        name: Policy(
            name,
            Tolerance(float(p["atol"]), float(p["rtol"]), float(p["ulps"])),
            {o: Tolerance(float(t["atol"]), float(t["rtol"]), float(t["ulps"])) for o, t in p["per_output"].items()},
            bool(p["quantized"]),
            float(p["min_class_agreement"]),
        )
        for name, p in document.items()
    }
