"""tfkit's benchmarks: each serving and inference path beside its ceiling on the same machine.

Run `scripts/bench [--quick]`; see the README's Performance section.
"""
