"""Measured windows and latency summaries, shared by every workload."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from tidings.loadtest.procstat import cpu_seconds, own_cpu_seconds, rss_bytes, run_delay_seconds

CDF_POINTS = 200
"""Quantiles kept per latency distribution for the CDF plot."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    wall: float
    server_cpu: float | None
    own_cpu: float
    count: int
    server_wait: float | None = None
    """Seconds the server's main thread had waited for a CPU (run queue delay)."""


def snapshot(pid: int | None, count: int) -> Snapshot:
    return Snapshot(
        time.perf_counter(), cpu_seconds(pid), own_cpu_seconds(), count, run_delay_seconds(pid)
    )


def window(start: Snapshot, end: Snapshot, *, unit: str = "delivery") -> dict[str, float | None]:
    """Rate of ``count`` between two snapshots, and CPU microseconds per unit on each side."""
    seconds = end.wall - start.wall
    count = end.count - start.count
    server = (
        end.server_cpu - start.server_cpu
        if end.server_cpu is not None and start.server_cpu is not None
        else None
    )
    own = end.own_cpu - start.own_cpu
    wait = (
        end.server_wait - start.server_wait
        if end.server_wait is not None and start.server_wait is not None
        else None
    )
    return {
        "server_wait_share": wait / seconds if wait is not None and seconds > 0 else None,
        "seconds": round(seconds, 3),
        "count": count,
        "per_second": count / seconds if seconds > 0 else 0.0,
        "server_cpu_seconds": server,
        "server_cpu_share": server / seconds if server is not None and seconds > 0 else None,
        f"server_us_per_{unit}": server / count * 1e6 if server is not None and count else None,
        "loadgen_cpu_seconds": own,
        "loadgen_cpu_share": own / seconds if seconds > 0 else 0.0,
        f"loadgen_us_per_{unit}": own / count * 1e6 if count else None,
    }


def latency_summary(samples_ns: Sequence[int]) -> dict[str, object]:
    """p50/p99/p99.9/max in milliseconds, plus ``CDF_POINTS`` quantiles for plotting."""
    if not samples_ns:
        return {"samples": 0}
    ordered = sorted(samples_ns)
    n = len(ordered)

    def quantile(q: float) -> float:
        return ordered[min(n - 1, int(q * n))] / 1e6

    return {
        "samples": n,
        "p50_ms": quantile(0.50),
        "p99_ms": quantile(0.99),
        "p999_ms": quantile(0.999),
        "max_ms": ordered[-1] / 1e6,
        "cdf_ms": [quantile(i / CDF_POINTS) for i in range(CDF_POINTS)] + [ordered[-1] / 1e6],
    }


def rss_now(pid: int | None) -> int | None:
    return rss_bytes(pid)
