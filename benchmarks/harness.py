"""Results, their ceilings and targets, the machine, the table and results.json.

A measurement is repeated; its value is the median of the repeats, and so is
its ceiling's. `ratio` is value / ceiling for rates and ceiling / value for
times (seconds, milliseconds) and memory (MB), so above 1 always means "better
than the ceiling" and every target reads "ratio >= X".
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import statistics
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

# Units where less is better: the ratio is ceiling / value.
TIME_UNITS = ("s", "ms", "us", "MB")
PACKAGES = ("tensorflow", "tensorflow-serving-api", "grpcio", "protobuf", "numpy", "ai-edge-litert")


class BenchError(Exception):
    """A measurement could not be made (a failed command, failed requests)."""


@dataclasses.dataclass
class Result:
    """One row of results.json, plus what the table shows beside it."""

    name: str
    value: float
    unit: str
    ceiling: float
    ceiling_of: str  # what the ceiling is, for the table
    target: float | None = None  # minimum ratio, when the issue sets one

    @property
    def ratio(self) -> float:
        if not self.value or not self.ceiling:
            return float("nan")
        return self.ceiling / self.value if self.unit in TIME_UNITS else self.value / self.ceiling

    @property
    def verdict(self) -> str:
        if self.target is None:
            return ""
        return "ok" if self.ratio >= self.target else "MISS"

    def as_json(self) -> dict:
        return {
            "name": self.name,
            "value": _round(self.value),
            "unit": self.unit,
            "ceiling": _round(self.ceiling),
            "ratio": _round(self.ratio),
        }


def result(
    name: str,
    values: Sequence[float],
    unit: str,
    ceilings: Sequence[float],
    ceiling_of: str,
    target: float | None = None,
) -> Result:
    """A Result from the repeats of a value and of its ceiling (medians of each)."""
    return Result(name, statistics.median(values), unit, statistics.median(ceilings), ceiling_of, target)


def _round(x: float) -> float:
    return float(f"{x:.4g}")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    """What the figures were measured on (the load average says how busy it was)."""
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "tf": versions["tensorflow"],
        "packages": versions,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _fmt(x: float) -> str:
    if x != x:  # NaN
        return "-"
    if abs(x) >= 1e5:
        return f"{x:.3g}"
    if abs(x) >= 100:
        return f"{x:.0f}"
    return f"{x:.3g}"


def table(results: Sequence[Result]) -> str:
    """The results as an aligned text table."""
    head = ("name", "value", "unit", "ceiling", "ceiling is", "ratio", "target")
    rows = [head] + [
        (
            r.name,
            _fmt(r.value),
            r.unit,
            _fmt(r.ceiling),
            r.ceiling_of,
            f"{r.ratio:.2f}",
            f">= {r.target:.2g} {r.verdict}" if r.target is not None else "",
        )
        for r in results
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    right = {1, 3, 5}
    lines = [
        "  ".join(
            cell.rjust(w) if i in right else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths))
        ).rstrip()
        for row in rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def write_results(path: Path, machine_info: dict, results: Sequence[Result]) -> None:
    """results.json: {"machine": {...}, "results": [{name, value, unit, ceiling, ratio}]}."""
    machine_info = {**machine_info, "load_average_at_end": [round(x, 2) for x in os.getloadavg()]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"machine": machine_info, "results": [r.as_json() for r in results]}, indent=2) + "\n")
