"""Soak: mixed traffic against one ``tidings serve`` for N minutes, sampled each minute.

Starts the server (its embedded default: SQLite and the in-process broker;
``--db``/``--broker`` are passed through), connects ``--connections``
devices and runs, all at once: personal sends over WebSocket and HTTP,
broadcasts to the ``everyone`` topic, churn (a device dropped and back
with ``since`` after up to 3 s) and slow consumers (a device stops reading
under a burst, must get the 1008 close and recover everything with
``since``). Every ``--sample-seconds`` it records the server's RSS, open
fds, CPU per delivery and publish-to-delivery p50/p99/p99.9; at the end,
with every device caught up, every acked notification must have reached
each of its subscribers once and in order. Writes bench/results/soak.json
and soak.png; exits 1 on a lost, duplicated or reordered delivery.

    .venv/bin/python -m bench.soak --minutes 5
    .venv/bin/python -m bench.soak --smoke          # < 40 s, what the test runs
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results" / "soak.json"


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak", description=__doc__.splitlines()[0]
    )
    add = parser.add_argument
    add("--minutes", type=float, default=5.0, help="how long the traffic runs")
    add("--smoke", action="store_true", help="0.3 minutes, 100 devices, a sample every 5 s")
    add("--connections", type=int, default=1000, help="devices (one connection each)")
    add("--users", type=int, default=0, help="users the devices belong to (default 80%%)")
    add("--ws-rate", type=float, default=150.0, help="WebSocket sends/s")
    add("--http-rate", type=float, default=100.0, help="HTTP publishes/s (1 in 4 to two users)")
    add("--topic-rate", type=float, default=1.0, help="broadcasts/s to every device")
    add("--churn", type=float, default=5.0, help="devices dropped and reconnected per second")
    add("--slow-per-minute", type=float, default=3.0, help="slow-consumer episodes a minute")
    add("--sample-seconds", type=float, default=60.0)
    add("--send-buffer-limit", default="262144", help="the server's, in bytes")
    add("--db", help="passed to tidings serve (e.g. postgresql://...)")
    add("--broker", help="passed to tidings serve (e.g. redis://...)")
    add("--out", type=Path, default=RESULTS, help="the JSON; the PNG goes next to it")
    add("--plot-only", action="store_true", help="redraw the PNG from an existing JSON")
    args = parser.parse_args(argv)
    if args.smoke:
        args.minutes, args.connections, args.sample_seconds = 0.3, 100, 5.0
        args.ws_rate, args.http_rate, args.churn, args.slow_per_minute = 60.0, 40.0, 4.0, 6.0
    args.users = args.users or max(1, args.connections * 4 // 5)
    return args


def draw(document: dict[str, Any], png: Path, json_path: Path) -> str:
    """The plot, here if matplotlib imports, else with the bench venv's python."""
    from bench.plots import plot_soak

    if importlib.util.find_spec("matplotlib") is None:
        from bench.setup import venv_python

        python = venv_python()
        if not python.exists():
            return "no plot: matplotlib is missing (python -m bench.setup makes bench/.venv)"
        command = [str(python), "-m", "bench.soak", "--plot-only", "--out", str(json_path)]
        done = subprocess.run(
            command, cwd=Path(__file__).parent.parent, stdout=subprocess.DEVNULL, check=False
        )
        return f"plot in {png}" if done.returncode == 0 else "no plot: drawing failed"
    plot_soak(document, png)
    return f"plot in {png}"


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    png = args.out.with_suffix(".png")
    if args.plot_only:
        print(f"soak: {draw(json.loads(args.out.read_text()), png, args.out)}")
        return 0
    import asyncio

    from bench.soak_run import run, summary

    document = asyncio.run(run(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=2) + "\n")
    for line in summary(document):
        print(line)
    print(f"soak: results in {args.out}; {draw(document, png, args.out)}")
    return 0 if document["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
