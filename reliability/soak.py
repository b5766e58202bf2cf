"""Bounded soak: concurrent mixed traffic for a fixed time, with its promises checked.

Promises (each a line in `SoakResult.broken()`): no request failed, every
answer matched the model, and the server's resident memory grew less than
`max_rss_growth` between the end of the warm-up and the end of the run.
A `swap` callback, when given, is called every `swap_every` seconds during the
run to publish a new version (hot swap under load).
"""

from __future__ import annotations

import collections
import dataclasses
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from reliability.reference import ModelReference
from reliability.traffic import Outcome, TrafficClient

DEFAULT_CLIENTS = 16
DEFAULT_DURATION_S = 60.0
MAX_RSS_GROWTH = 0.10
ERRORS_KEPT = 20


def rss_bytes(pid: int) -> int:
    """Resident set size of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise OSError(f"no VmRSS for pid {pid}")


@dataclasses.dataclass
class SoakResult:
    """Figures of one soak run."""

    duration_s: float
    clients: int
    requests: int
    errors: int
    per_kind: dict  # kind -> [requests, errors]
    versions_seen: list  # versions that answered
    p50_ms: float
    p99_ms: float
    rss_start: int | None  # bytes, after warm-up
    rss_end: int | None
    first_errors: list  # up to ERRORS_KEPT "kind: message" strings
    swaps: list  # versions published during the run
    max_rss_growth: float = MAX_RSS_GROWTH

    @property
    def rss_growth(self) -> float | None:
        if not self.rss_start or self.rss_end is None:
            return None
        return self.rss_end / self.rss_start - 1.0

    def broken(self) -> list[str]:
        """The promises this run broke (empty: all kept)."""
        broken = []
        if self.requests == 0:
            broken.append("no request completed")
        if self.errors:
            broken.append(f"{self.errors} of {self.requests} requests failed or answered wrongly")
        growth = self.rss_growth
        if growth is not None and growth >= self.max_rss_growth:
            broken.append(f"server RSS grew {growth:.1%} after warm-up (limit {self.max_rss_growth:.0%})")
        return broken

    def summary(self) -> str:
        """The figures, one per line, as scripts/soak prints them."""
        mib = lambda b: "n/a" if b is None else f"{b / 2**20:.1f} MiB"  # noqa: E731
        growth = self.rss_growth
        lines = [
            f"duration      {self.duration_s:.1f} s, {self.clients} clients",
            f"requests      {self.requests} ({self.requests / max(self.duration_s, 1e-9):.0f}/s)",
            f"errors        {self.errors}",
            "per kind      " + ", ".join(f"{k} {n}/{e} err" for k, (n, e) in sorted(self.per_kind.items())),
            f"latency       p50 {self.p50_ms:.2f} ms, p99 {self.p99_ms:.2f} ms",
            f"server RSS    start {mib(self.rss_start)}, end {mib(self.rss_end)}"
            + ("" if growth is None else f" ({growth:+.1%})"),
            f"versions      answered by {self.versions_seen}"
            + (f"; hot-swapped in {self.swaps}" if self.swaps else ""),
        ]
        lines += [f"error         {e}" for e in self.first_errors]
        return "\n".join(lines)


def run_soak(
    grpc_target: str,
    rest_url: str | None,
    model: str,
    reference: ModelReference,
    *,
    duration_s: float = DEFAULT_DURATION_S,
    clients: int = DEFAULT_CLIENTS,
    server_pid: int | None = None,
    warmup_s: float | None = None,
    swap: Callable[[], int] | None = None,
    swap_every: float = 0.0,
    seed: int = 0,
) -> SoakResult:
    """Run `clients` threads of mixed traffic for `duration_s` seconds and return the figures.

    RSS of `server_pid` is sampled when the warm-up (default: a fifth of the
    run, at most 10 s) ends and when the run ends.
    """
    warmup_s = min(duration_s / 5, 10.0) if warmup_s is None else warmup_s
    outcomes: list[list[Outcome]] = [[] for _ in range(clients)]
    stop = threading.Event()
    start = time.monotonic()
    deadline = start + duration_s

    def client_loop(index: int) -> None:
        client = TrafficClient(grpc_target, rest_url, model, reference, seed=seed * 1000 + index)
        try:
            while not stop.is_set() and time.monotonic() < deadline:
                outcomes[index].append(client.request())
        finally:
            client.close()

    threads = [
        threading.Thread(target=client_loop, args=(i,), name=f"soak-client-{i}", daemon=True) for i in range(clients)
    ]
    for thread in threads:
        thread.start()
    rss_start = rss_end = None
    swaps: list[int] = []
    swap_errors: list[str] = []
    next_swap = start + swap_every if swap and swap_every > 0 else None
    warmed = False
    try:
        while time.monotonic() < deadline:
            now = time.monotonic()
            if not warmed and now - start >= warmup_s:
                warmed = True
                rss_start = rss_bytes(server_pid) if server_pid else None
            if next_swap is not None and now >= next_swap:
                try:
                    swaps.append(swap())
                except Exception as exc:  # a failed publish is a broken run, not a crash of the harness
                    swap_errors.append(f"swap: {type(exc).__name__}: {exc}")
                next_swap = time.monotonic() + swap_every
            time.sleep(0.05)
        if server_pid:
            rss_end = rss_bytes(server_pid)
            rss_start = rss_start or rss_end
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
    return _summarise(
        [o for per_client in outcomes for o in per_client],
        time.monotonic() - start,
        clients,
        rss_start,
        rss_end,
        swaps,
        swap_errors,
    )


def _summarise(outcomes, elapsed, clients, rss_start, rss_end, swaps, swap_errors) -> SoakResult:
    latencies = np.array([o.latency_s for o in outcomes]) * 1000.0
    per_kind: dict = collections.defaultdict(lambda: [0, 0])
    failures = list(swap_errors)
    for outcome in outcomes:
        per_kind[outcome.kind][0] += 1
        if outcome.error is not None:
            per_kind[outcome.kind][1] += 1
            failures.append(f"{outcome.kind}: {outcome.error}")
    return SoakResult(
        duration_s=elapsed,
        clients=clients,
        requests=len(outcomes),
        errors=len(failures),
        per_kind=dict(per_kind),
        versions_seen=sorted({o.version for o in outcomes if o.version is not None}),
        p50_ms=float(np.percentile(latencies, 50)) if len(latencies) else 0.0,
        p99_ms=float(np.percentile(latencies, 99)) if len(latencies) else 0.0,
        rss_start=rss_start,
        rss_end=rss_end,
        first_errors=failures[:ERRORS_KEPT],
        swaps=swaps,
    )
