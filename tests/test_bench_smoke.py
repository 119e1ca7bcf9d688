"""The benchmark harness in smoke mode, so it cannot rot between benchmark runs.

Runs ``python -m bench --smoke`` (a real tidings server and the Python peers
that this venv can run, tiny sizes, a few seconds) and checks that every
workload measured something. No timing is asserted.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.services import missing

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    out = tmp_path_factory.mktemp("bench-smoke")
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"bench --smoke failed:\n{done.stdout}\n{done.stderr}"
    document: dict[str, Any] = json.loads((out / "results.json").read_text())
    return document, out


def _tidings(document: dict[str, Any], workload: str) -> dict[str, Any]:
    result: dict[str, Any] = document["results"][workload]["tidings"]
    assert not result.get("error"), f"{workload} on tidings failed: {result['error']}"
    return result


def test_fanout_delivers(smoke: tuple[dict[str, Any], Path]) -> None:
    document, _ = smoke
    for size, cell in _tidings(document, "fanout").items():
        if size.isdigit():
            assert cell["connections"] == int(size)
            assert cell["count"] > 0, cell
            assert cell["delivered_after_drain"] == cell["expected"], cell


def test_personal_delivers_over_websocket_and_http(smoke: tuple[dict[str, Any], Path]) -> None:
    document, _ = smoke
    result = _tidings(document, "personal")
    assert result["saturate_ws"]["count"] > 0
    assert result["saturate_ws"]["acked"] > 0
    assert result["saturate_http"]["count"] > 0
    rates = [key for key in result if key.startswith("rate_")]
    assert rates
    for key in rates:
        assert result[key]["latency"]["samples"] > 0
    assert result["stalled"]["stalled"] >= 1
    assert result["stalled"]["rss_series"]


def test_capacity_and_catch_up(smoke: tuple[dict[str, Any], Path]) -> None:
    document, _ = smoke
    steps = _tidings(document, "capacity")["steps"]
    assert [step["connections"] for step in steps] == [step["step"] for step in steps]
    assert all(step["rss_per_connection"] is not None for step in steps)
    catchup = _tidings(document, "catchup")
    assert catchup["inbox"] > 0
    assert all(run["replayed"] == catchup["inbox"] and run["caught_up"] for run in catchup["runs"])


def test_peers_ran(smoke: tuple[dict[str, Any], Path]) -> None:
    document, _ = smoke
    peers = [name for name in document["targets"] if name != "tidings"]
    assert peers, "no in-venv Python peer ran (picows and websockets should)"
    for name in peers:
        cell = document["results"]["fanout"][name]
        assert all(value["count"] > 0 for key, value in cell.items() if key.isdigit()), cell


def test_report_written(smoke: tuple[dict[str, Any], Path]) -> None:
    _, out = smoke
    report = (out / "report.md").read_text()
    for heading in ("Broadcast fan-out", "Personal notifications", "Capacity", "Catch-up"):
        assert heading in report


def bench_script(module: str, *args: str, timeout: float = 120) -> str:
    """Run ``python -m <module> args``; its standard output (a failure fails the test)."""
    done = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_hot_path_script_measures_every_delivery(tmp_path: Path) -> None:
    out = tmp_path / "hotpath.json"
    sizes = ["--connections", "20", "--broadcasts", "3", "--repeat", "2"]
    printed = bench_script("bench.hotpath", *sizes, "--out", str(out))
    result = json.loads(out.read_text())
    assert result["connections"] == 20 and len(result["us_per_delivery_runs"]) == 2
    assert result["us_per_delivery_best"] > 0
    assert "µs per delivery" in printed
    printed = bench_script("bench.hotpath", "--personal", "5", "--repeat", "1", "--out", str(out))
    assert json.loads(out.read_text())["personal_publishes"] == 5
    assert "5 personal publishes" in printed
    printed = bench_script("bench.hotpath", "--scrape", "3", "--repeat", "1", "--out", str(out))
    assert json.loads(out.read_text())["scrapes"] == 3 and "µs per scrape" in printed


def test_server_instruction_count_covers_the_broadcasts(tmp_path: Path) -> None:
    if shutil.which("valgrind") is None:
        missing("valgrind", "bench/server_instructions.py runs the server under callgrind")
    out = tmp_path / "server_instructions.json"
    sizes = ["--connections", "3", "--broadcasts", "2"]
    bench_script("bench.server_instructions", *sizes, "--out", str(out), timeout=300)
    result = json.loads(out.read_text())
    assert result["connections"] == 3 and result["broadcasts"] == 2
    # The script fails when a delivery is missing; the dump must hold the window's count.
    assert result["instructions"] > 0
