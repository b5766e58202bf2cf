"""Default bounds of the verdict rules; docs/parity.md gives the evidence for each.

numpy-free on purpose: the CLI shows them in `--help` without importing numpy.
"""

#: our local server (a Session with Grappler's rewrites) against eager, in ULPs of the output's scale
SESSION_ULPS = 4
#: TFLite float32 and remote servers (other kernels, other accumulation order), in ULPs of the output's scale
FLOAT_ULPS = 64
#: batch 1 against batch N, and one call repeated, within one runtime, in ULPs of the output's scale
INVARIANCE_ULPS = 64
#: largest score-output error of a quantized TFLite variant
QUANTIZED_ATOL = 0.15
#: class agreement a quantized variant must plausibly reach (see `allowed_flips`)
MIN_CLASS_AGREEMENT = 0.99
#: a variant fails when its flips would be this unlikely (or less) at MIN_CLASS_AGREEMENT
FLIP_SIGNIFICANCE = 0.05
