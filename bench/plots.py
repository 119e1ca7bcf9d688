"""PNG plots for report.md: fan-out throughput against N, latency CDFs, RSS
while clients stall. matplotlib is imported only here, and only when drawing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.results import Results, get


def plot(run: Results, out: Path) -> list[str]:
    """Draw what the results allow; returns the file names written."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    written = []
    for filename, draw in (
        ("fanout_throughput.png", _plot_fanout),
        ("latency_cdf.png", _plot_latency),
        ("slow_rss.png", _plot_slow),
    ):
        figure = draw(plt, run)
        if figure is not None:
            figure.savefig(out / filename, dpi=110, bbox_inches="tight")
            plt.close(figure)
            written.append(filename)
    return written


def _plot_fanout(plt: Any, run: Results) -> Any:
    data = run.results.get("fanout", {})
    if not data:
        return None
    figure, axis = plt.subplots(figsize=(6.5, 4))
    for name in run.names("fanout"):
        points = sorted(
            (int(size), cell["per_second"])
            for size, cell in data[name].items()
            if size.isdigit() and isinstance(cell, dict) and cell.get("per_second")
        )
        if points:
            label = run.label(name, "fanout").replace("`", "")
            axis.plot(*zip(*points, strict=True), marker="o", label=label)
    axis.set_xscale("log")
    axis.set_yscale("log")
    axis.set_xlabel("connections N (one broadcast reaches all)")
    axis.set_ylabel("deliveries / s")
    axis.set_title("Broadcast fan-out at saturation")
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(fontsize=8)
    return figure


def _plot_latency(plt: Any, run: Results) -> Any:
    data = run.results.get("personal", {})
    rates = sorted(
        {
            int(key[5:])
            for cell in data.values()
            if isinstance(cell, dict)
            for key in cell
            if key.startswith("rate_")
        }
    )
    if not rates:
        return None
    figure, axes = plt.subplots(1, len(rates), figsize=(5.5 * len(rates), 4), squeeze=False)
    for axis, rate in zip(axes[0], rates, strict=True):
        for name in run.names("personal"):
            cdf = get(data, name, f"rate_{rate}", "latency", "cdf_ms")
            if cdf:
                fractions = [i / (len(cdf) - 1) for i in range(len(cdf))]
                axis.plot(cdf, fractions, label=run.label(name))
        axis.set_xscale("log")
        axis.set_xlabel("end-to-end latency (ms)")
        axis.set_ylabel("fraction of notifications")
        axis.set_title(f"Personal notifications at {rate:,}/s")
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=8)
    return figure


def _plot_slow(plt: Any, run: Results) -> Any:
    data = run.results.get("personal", {})
    series = {name: get(data, name, "stalled", "rss_series") for name in run.names("personal")}
    series = {name: points for name, points in series.items() if points}
    if not series:
        return None
    figure, axis = plt.subplots(figsize=(6.5, 4))
    for name, points in series.items():
        xs = [t for t, rss in points if isinstance(rss, int)]
        ys = [rss / 2**20 for _, rss in points if isinstance(rss, int)]
        axis.plot(xs, ys, marker=".", label=run.label(name))
    axis.set_xlabel("seconds since 1% of clients stopped reading")
    axis.set_ylabel("server RSS (MiB)")
    axis.set_title("Server memory with slow consumers")
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize=8)
    return figure


def plot_soak(document: dict[str, Any], png: Path) -> None:
    """The soak's per-minute series (bench/soak.py): RSS, fds, CPU per delivery, latency."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = document.get("series", [])
    minutes = [row["minute"] for row in series]
    figure, axes = plt.subplots(2, 2, figsize=(10, 6.5), sharex=True)
    panels = (
        (axes[0][0], "server RSS (MiB)", {"RSS": [row["rss_mib"] for row in series]}),
        (axes[0][1], "server open fds", {"fds": [row["fds"] for row in series]}),
        (
            axes[1][0],
            "server CPU µs per delivery",
            {"µs/delivery": [row["server_us_per_delivery"] for row in series]},
        ),
        (
            axes[1][1],
            "publish to delivery (ms)",
            {
                name: [row["latency"].get(key) for row in series]
                for name, key in (("p50", "p50_ms"), ("p99", "p99_ms"), ("p99.9", "p999_ms"))
            },
        ),
    )
    for axis, title, lines in panels:
        for label, values in lines.items():
            points = [(x, y) for x, y in zip(minutes, values, strict=True) if y is not None]
            if points:
                axis.plot(*zip(*points, strict=True), marker=".", label=label)
        axis.set_title(title, fontsize=10)
        axis.grid(True, alpha=0.3)
        axis.set_ylim(bottom=0)
    axes[1][1].legend(fontsize=8)
    for axis in axes[1]:
        axis.set_xlabel("minutes")
    figure.suptitle(
        f"Soak: {document.get('connections', 0):,} devices, {document.get('minutes', 0):g} min",
        fontsize=11,
    )
    figure.savefig(png, dpi=110, bbox_inches="tight")
    plt.close(figure)
