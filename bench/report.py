"""results.json -> report.md (tables ready for BENCHMARKS.md) and PNG plots.

``python -m bench.report OUT`` reads ``OUT/results.json``. Plots need
matplotlib (the bench venv has it); without it the tables are still written.
Ratio columns compare tidings with each server: for throughput
``tidings ÷ server`` (above 1: tidings is faster), for costs the same
division (above 1: tidings spends more).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from bench.plots import plot
from bench.results import Results, get

RESULTS = Path(__file__).resolve().parent / "results"
STORE_NOTE = (
    "Peers store nothing. tidings stores every notification before it acks "
    "(SQLite in WAL mode, fsync on every commit: the default `--durability full`): "
    "a personal notification is one row, a topic broadcast one row for all, a `userIds` "
    "publish one row per user."
)

Row = list[str]
DASH = "\u2013"
"""An empty cell."""
TIMES = "\u00d7"


def num(value: Any, digits: int = 0) -> str:
    if not isinstance(value, int | float):
        return DASH
    return f"{value:,.{digits}f}"


def ratio(mine: Any, theirs: Any) -> str:
    if not isinstance(mine, int | float) or not isinstance(theirs, int | float) or not theirs:
        return DASH
    return f"{mine / theirs:.2f}{TIMES}"


def table(header: Row, rows: Iterable[Row]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


class Report(Results):
    def __init__(self, document: dict[str, Any], out: Path) -> None:
        super().__init__(document)
        self.out = out
        self.image_prefix = "bench/results/" if out.resolve() == RESULTS else ""
        self.plots: list[str] = []

    def error_rows(self, workload: str, width: int) -> list[Row]:
        rows = []
        for name in self.names(workload):
            error = get(self.results, workload, name, "error")
            if error:
                rows.append([self.label(name), f"failed: {str(error)[:80]}"] + [""] * (width - 2))
        return rows

    # -- sections ------------------------------------------------------------

    def header(self) -> str:
        meta = self.meta
        plan = meta.get("plan", {})
        lines = [
            "## Side by side: `make bench`",
            "",
            f"Measured {meta.get('date', '?')} with `make bench` (`python -m bench`) "
            f"in {meta.get('seconds', '?')} s: {meta.get('cpu') or 'unknown CPU'}, "
            f"{meta.get('cpus', '?')} cores, Linux {meta.get('kernel', '?')}, "
            f"Python {meta.get('python', '?')}, node {meta.get('node') or 'n/a'}, "
            f"tidings {meta.get('tidings') or '?'}.",
            "",
            "- Every server runs alone on one core and the load generator on the other "
            f"({meta.get('pinning') or 'pinning unknown'}); all traffic "
            "is on loopback. The load generator is picows on uvloop in one process.",
            "- Server CPU is the server process's own user+system time (all its threads) "
            "from /proc, read at the edges of each measured window; wall throughput is "
            "counted at the receiving clients.",
            f"- Payload: {meta.get('payload_bytes', '?')} bytes of JSON (message + data) "
            "per notification; every server wraps it in tidings' notification envelope "
            "(Socket.IO adds its event prefix). Compression off everywhere.",
            f"- {STORE_NOTE}",
            "- One process per server runs every workload on one growing set of connections, "
            "never closing any (python-socketio's cost of a mass disconnect grows with the "
            "square of the connection count): 1k connected, fan-out; up to 10k (capacity "
            "step), fan-out, personal, slow consumers; up to 20k (capacity step); catch-up. "
            "tidings runs with its defaults except `--log-level warning` (info logs a line "
            "per connection and per HTTP request) "
            "and `--drain-grace 0`.",
            '- Server CPU is a share of one core; "+N% waiting" is the time the server\'s '
            "event loop was runnable but waited for the core (other programs took it). A load "
            "generator CPU share near 100% means it, not the server, set the pace.",
        ]
        load = meta.get("load_average")
        if isinstance(load, list) and load and max(load) > 0.5:
            lines.append(
                f"- **Shared machine**: load average {load[0]:.1f} before the run and "
                f"{load[-1]:.1f} after it; other programs competed for both cores, so "
                "throughput and latency are pessimistic and noisy (CPU per delivery, from "
                "the server's own CPU time, is the steadier figure)."
            )
        if meta.get("profiled"):
            lines.append("- Profiled run (py-spy on tidings): figures slightly pessimistic.")
        if meta.get("smoke"):
            lines.insert(2, "**Smoke run: tiny sizes, the numbers mean nothing.**\n")
        extra = meta.get("notes", [])
        if extra:
            lines.append("- Notes: " + "; ".join(extra) + ".")
        lines.append(
            f"- Durations: fan-out windows {plan.get('fanout_seconds', '?')} s, saturation "
            f"{plan.get('saturate_seconds', '?')} s, fixed rates {plan.get('rate_seconds', '?')}"
            f" s each, slow consumers {plan.get('stalled_seconds', '?')} s."
        )
        return "\n".join(lines)

    def fanout(self) -> str:
        data = self.results.get("fanout", {})
        if not data:
            return ""
        sizes = sorted({int(size) for name in data for size in data[name] if size.isdigit()})
        header = [
            "server",
            "N",
            "deliveries/s",
            "tidings ÷ server",
            "server µs/delivery",
            "server CPU",
            "loadgen µs/delivery",
            "loadgen CPU",
            "latency p50 / p99 ms",
        ]
        rows: list[Row] = []
        reference = "tidings-topic" if get(data, "tidings-topic") else "tidings"
        for size in sizes:
            mine = get(data, reference, size, "per_second")
            for name in self.names("fanout"):
                cell = get(data, name, size)
                if not isinstance(cell, dict):
                    continue
                if cell.get("error") or not cell.get("connections"):
                    rows.append(
                        [
                            self.label(name, "fanout"),
                            num(size),
                            "failed",
                            "",
                            "",
                            "",
                            "",
                            "",
                            str(cell.get("error") or cell.get("first_error"))[:60],
                        ]
                    )
                    continue
                rows.append(
                    [
                        self.label(name, "fanout"),
                        num(size),
                        num(cell.get("per_second")),
                        ratio(mine, cell.get("per_second")),
                        num(cell.get("server_us_per_delivery"), 1),
                        _cpu(cell),
                        num(cell.get("loadgen_us_per_delivery"), 1),
                        _share(cell.get("loadgen_cpu_share")),
                        f"{num(get(cell, 'latency', 'p50_ms'), 1)} / "
                        f"{num(get(cell, 'latency', 'p99_ms'), 1)}",
                    ]
                )
        rows += self.error_rows("fanout", len(header))
        return "\n".join(
            [
                "### 1. Broadcast fan-out",
                "",
                "One message to all N connected clients (each its own user), as fast as the "
                "clients receive them (at most ~20k frames in flight). tidings: one HTTP publish, "
                "either to the topic `everyone` (stored once, one frame for all) or with `userIds` "
                "listing all N users (stored and framed once per user); the ratio column compares "
                f"with {self.label(reference, 'fanout')}. Peers: emit-to-all on an admin "
                "connection, nothing stored. Latency is send-to-receipt under saturation, "
                "queueing included.",
                "",
                table(header, rows),
                self.image("fanout_throughput.png", "deliveries/s against N"),
            ]
        )

    def personal(self) -> str:
        data = self.results.get("personal", {})
        if not data:
            return ""
        mine_ws = get(data, "tidings", "saturate_ws", "per_second")
        header = [
            "server",
            "WS sends: deliveries/s",
            "tidings ÷ server",
            "acks/s",
            "server µs/notification",
            "server CPU",
            "loadgen CPU",
            "HTTP publish: deliveries/s",
            "server µs/notification (HTTP)",
        ]
        rows: list[Row] = []
        for name in self.names("personal"):
            cell = data[name]
            if cell.get("error"):
                continue
            ws = cell.get("saturate_ws", {})
            http = cell.get("saturate_http", {})
            rows.append(
                [
                    self.label(name),
                    num(ws.get("per_second")),
                    ratio(mine_ws, ws.get("per_second")),
                    num(ws.get("acks_per_second")),
                    num(ws.get("server_us_per_delivery"), 1),
                    _cpu(ws),
                    _share(ws.get("loadgen_cpu_share")),
                    num(http.get("per_second")) if http else "n/a",
                    num(http.get("server_us_per_delivery"), 1) if http else "n/a",
                ]
            )
        rows += self.error_rows("personal", len(header))
        rates = sorted(
            {int(key[5:]) for cell in data.values() for key in cell if key.startswith("rate_")}
        )
        lat_header = (
            ["server"]
            + [f"{rate:,}/s p50 / p99 / p99.9 ms" for rate in rates]
            + ["tidings ÷ server (p99 at top rate)"]
        )
        lat_rows: list[Row] = []
        top = f"rate_{rates[-1]}" if rates else ""
        mine_p99 = get(data, "tidings", top, "latency", "p99_ms")
        for name in self.names("personal"):
            cell = data[name]
            if cell.get("error"):
                continue
            row = [self.label(name)]
            for rate in rates:
                phase = cell.get(f"rate_{rate}", {})
                lat = phase.get("latency", {})
                missing = phase.get("missing")
                flag = f" ({num(missing)} late)" if missing else ""
                if (phase.get("per_second") or 0) < 0.95 * rate:
                    flag += f" ‡ {num(phase.get('per_second'))}/s"
                row.append(
                    f"{num(lat.get('p50_ms'), 2)} / {num(lat.get('p99_ms'), 2)} / "
                    f"{num(lat.get('p999_ms'), 2)}{flag}"
                )
            row.append(ratio(mine_p99, get(cell, top, "latency", "p99_ms")))
            lat_rows.append(row)
        connections = next(
            (cell.get("connections") for cell in data.values() if cell.get("connections")), "?"
        )
        return "\n".join(
            [
                "### 2. Personal notifications",
                "",
                f"{num(connections)} connected users (one connection each); senders publish to "
                "random users. Saturation: closed loop, 32 WebSocket senders with 8 sends "
                "outstanding each (`sendNotification`, acked), or 16 HTTP connections "
                "(`POST /v1/notifications` with `userId`; the bare peers have no HTTP API). "
                "tidings stores each notification before the ack.",
                "",
                table(header, rows),
                "",
                "End-to-end latency (send on a sender connection to receipt on the recipient's, "
                "same process clock) at fixed rates over WebSocket, open loop:",
                "",
                table(lat_header, lat_rows),
                "",
                "‡ over capacity: the server delivered less than 95% of the offered rate in the "
                "window (the figure after ‡), so its latency includes a growing queue. "
                '"late": still undelivered 3 s after the window.',
                self.image("latency_cdf.png", "latency CDF at fixed rates"),
            ]
        )

    def capacity(self) -> str:
        data = self.results.get("capacity", {})
        if not data:
            return ""
        steps: list[int] = sorted(
            {
                int(row.get("step") or row.get("connections") or 0)
                for cell in data.values()
                for row in cell.get("steps", [])
                if isinstance(row, dict)
            }
        )
        if not steps:
            return ""
        header = (
            ["server"]
            + [f"RSS/connection at {n:,} (KiB)" for n in steps]
            + [
                f"KiB per connection added up to {steps[-1]:,}",
                "tidings ÷ server (RSS/conn)",
                f"handshakes/s (to {steps[0]:,})",
                "tidings ÷ server",
                "server µs/handshake",
            ]
        )

        def step_of(name: str, step: int) -> dict[str, Any]:
            for row in get(data, name, "steps") or []:
                if isinstance(row, dict) and row.get("step") == step:
                    return row
            return {}

        mine_rss = step_of("tidings", steps[0]).get("rss_per_connection")
        mine_hs = step_of("tidings", steps[0]).get("handshakes_per_second")
        rows: list[Row] = []
        for name in self.names("capacity"):
            if data[name].get("error"):
                continue
            cells = [step_of(name, step) for step in steps]
            first, last = cells[0], cells[-1]
            added = last.get("rss_per_added_connection")
            rows.append(
                [self.label(name)]
                + [_rss_cell(cell, step) for cell, step in zip(cells, steps, strict=True)]
                + [
                    num(added / 1024, 1) if isinstance(added, int | float) else DASH,
                    ratio(mine_rss, first.get("rss_per_connection")),
                    num(first.get("handshakes_per_second")),
                    ratio(mine_hs, first.get("handshakes_per_second")),
                    num(first.get("server_us_per_handshake"), 1),
                ]
            )
        rows += self.error_rows("capacity", len(header))
        return "\n".join(
            [
                "### 3. Capacity",
                "",
                "Idle authenticated connections, each a JWT checked at the handshake and its "
                "own user, 200 handshakes in flight. RSS per connection = (server RSS - RSS "
                "with no connection) / connections, read 2 s after the batch; the session only "
                f"adds connections, so the {steps[-1]:,} step comes after the fan-out and "
                "personal workloads: its RSS includes what they left behind, and the column "
                "after it counts only the connections added in that last batch. Handshakes/s "
                f"and CPU per handshake: the batch up to {steps[0]:,}.",
                "",
                table(header, rows),
            ]
        )

    def slow(self) -> str:
        data = {
            name: cell["stalled"]
            for name, cell in self.results.get("personal", {}).items()
            if isinstance(cell, dict) and isinstance(cell.get("stalled"), dict)
        }
        if not data:
            return ""
        header = [
            "server",
            "others' p50 / p99 / p99.9 ms",
            "p99 without stalled",
            "stalled dropped by server",
            "server RSS start → peak → end (MiB)",
            "late (not stalled)",
        ]
        rows: list[Row] = []
        for name in self.names("personal"):
            cell = data.get(name)
            if not cell:
                continue
            lat = cell.get("latency", {})
            rate = int(cell.get("target_rate", 0))
            base = get(self.results, "personal", name, f"rate_{rate}", "latency", "p99_ms")
            series = [rss for _, rss in cell.get("rss_series", []) if isinstance(rss, int)]
            mib = (
                f"{series[0] / 2**20:.0f} → {max(series) / 2**20:.0f} → {series[-1] / 2**20:.0f}"
                if series
                else DASH
            )
            rows.append(
                [
                    self.label(name),
                    f"{num(lat.get('p50_ms'), 2)} / {num(lat.get('p99_ms'), 2)} / "
                    f"{num(lat.get('p999_ms'), 2)}",
                    num(base, 2),
                    f"{cell.get('stalled_disconnected', 0)} of {cell.get('stalled', 0)}",
                    mib,
                    num(cell.get("missing")),
                ]
            )
        any_cell = next(iter(data.values()))
        return "\n".join(
            [
                "### 4. Slow consumers",
                "",
                f"Workload 2 at {num(any_cell.get('target_rate'))}/s for "
                f"{get(self.meta, 'plan', 'stalled_seconds')} s while "
                f"{any_cell.get('stalled')} clients (1%) stop reading (receive buffer 4 KiB) and "
                f"get {any_cell.get('stalled_share', 0):.0%} of the traffic "
                f"(about {num(_per_stalled(any_cell))} notifications each in the window), so "
                "their backlog fills the kernel buffers and then the server's. Latency is "
                "measured on the other clients.",
                "",
                table(header, rows),
                self.image("slow_rss.png", "server RSS while 1% of clients stall"),
            ]
        )

    def catchup(self) -> str:
        data = self.results.get("catchup", {})
        if not data:
            return ""
        rows: list[Row] = []
        for name in self.names("catchup"):
            cell = data[name]
            if cell.get("error"):
                rows.append([self.label(name), f"failed: {cell['error'][:80]}", "", "", ""])
                continue
            runs = cell.get("runs", [])
            best = max(runs, key=lambda run: run.get("per_second", 0)) if runs else {}
            rows.append(
                [
                    self.label(name),
                    num(cell.get("inbox")),
                    num(cell.get("per_second")),
                    num(best.get("server_us_per_notification"), 1),
                    num(cell.get("fill_per_second")),
                ]
            )
        return "\n".join(
            [
                "### 5. Catch-up (tidings only)",
                "",
                "A user's inbox is filled over HTTP, then a client reconnects with `since=0` "
                "and is timed until `caughtUp` (best of the repeats). The peers keep no history.",
                "",
                table(
                    [
                        "server",
                        "inbox",
                        "replayed/s",
                        "server µs/notification",
                        "fill: stored/s (HTTP, 32 publishers)",
                    ],
                    rows,
                ),
            ]
        )

    def image(self, filename: str, alt: str) -> str:
        if filename not in self.plots:
            return ""
        return f"\n![{alt}]({self.image_prefix}{filename})"

    def render(self) -> str:
        sections = [
            self.header(),
            self.fanout(),
            self.personal(),
            self.capacity(),
            self.slow(),
            self.catchup(),
        ]
        return "\n\n".join(section for section in sections if section) + "\n"


def _per_stalled(cell: dict[str, Any]) -> float | None:
    stalled = cell.get("stalled")
    sent = cell.get("sent_to_stalled")
    return sent / stalled if isinstance(sent, int) and stalled else None


def _rss_cell(cell: dict[str, Any], step: int) -> str:
    per = cell.get("rss_per_connection")
    if not isinstance(per, int | float):
        return DASH
    reached = cell.get("connections", step)
    return num(per / 1024, 1) + (f" (only {num(reached)} connected)" if reached < step else "")


def _share(value: Any) -> str:
    return f"{value:.0%}" if isinstance(value, int | float) else DASH


def _cpu(cell: dict[str, Any]) -> str:
    """The server's CPU share, and the share it spent waiting for a CPU when notable."""
    wait = cell.get("server_wait_share")
    shown = _share(cell.get("server_cpu_share"))
    if isinstance(wait, int | float) and wait >= 0.05:
        shown += f" (+{wait:.0%} waiting)"
    return shown


def build(out: Path, *, draw: Callable[[Results, Path], list[str]] = plot) -> str:
    document = json.loads((out / "results.json").read_text())
    report = Report(document, out)
    report.plots = draw(report, out)
    text = report.render()
    (out / "report.md").write_text(text)
    return text


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    out = Path(args[0]) if args else RESULTS
    build(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
