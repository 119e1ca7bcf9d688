"""PNG plots for report.md: fan-out throughput against N, latency CDFs, RSS
while clients stall. matplotlib is imported only here, and only when drawing."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bench.report import _get

if TYPE_CHECKING:
    from bench.report import Report


def plot(report: Report) -> list[str]:
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
        figure = draw(plt, report)
        if figure is not None:
            figure.savefig(report.out / filename, dpi=110, bbox_inches="tight")
            plt.close(figure)
            written.append(filename)
    return written


def _plot_fanout(plt: Any, report: Report) -> Any:
    data = report.results.get("fanout", {})
    if not data:
        return None
    figure, axis = plt.subplots(figsize=(6.5, 4))
    for name in report.names("fanout"):
        points = sorted(
            (int(size), cell["per_second"])
            for size, cell in data[name].items()
            if size.isdigit() and isinstance(cell, dict) and cell.get("per_second")
        )
        if points:
            label = report.label(name, "fanout").replace("`", "")
            axis.plot(*zip(*points, strict=True), marker="o", label=label)
    axis.set_xscale("log")
    axis.set_yscale("log")
    axis.set_xlabel("connections N (one broadcast reaches all)")
    axis.set_ylabel("deliveries / s")
    axis.set_title("Broadcast fan-out at saturation")
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(fontsize=8)
    return figure


def _plot_latency(plt: Any, report: Report) -> Any:
    data = report.results.get("personal", {})
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
        for name in report.names("personal"):
            cdf = _get(data, name, f"rate_{rate}", "latency", "cdf_ms")
            if cdf:
                fractions = [i / (len(cdf) - 1) for i in range(len(cdf))]
                axis.plot(cdf, fractions, label=report.label(name))
        axis.set_xscale("log")
        axis.set_xlabel("end-to-end latency (ms)")
        axis.set_ylabel("fraction of notifications")
        axis.set_title(f"Personal notifications at {rate:,}/s")
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=8)
    return figure


def _plot_slow(plt: Any, report: Report) -> Any:
    data = report.results.get("personal", {})
    series = {name: _get(data, name, "stalled", "rss_series") for name in report.names("personal")}
    series = {name: points for name, points in series.items() if points}
    if not series:
        return None
    figure, axis = plt.subplots(figsize=(6.5, 4))
    for name, points in series.items():
        xs = [t for t, rss in points if isinstance(rss, int)]
        ys = [rss / 2**20 for _, rss in points if isinstance(rss, int)]
        axis.plot(xs, ys, marker=".", label=report.label(name))
    axis.set_xlabel("seconds since 1% of clients stopped reading")
    axis.set_ylabel("server RSS (MiB)")
    axis.set_title("Server memory with slow consumers")
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize=8)
    return figure
