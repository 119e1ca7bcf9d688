"""The soak command in smoke mode, so it cannot rot between soak runs.

Runs ``python -m bench.soak --smoke`` (a real server, 100 devices, every kind
of traffic for 18 s) and checks the JSON it writes: its shape, something
measured each interval, the slow consumers closed with 1008, and no acked
notification lost, duplicated or reordered. No timing is asserted.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def soak(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("soak") / "soak.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.soak", "--smoke", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, f"bench.soak --smoke failed:\n{done.stdout}\n{done.stderr}"
    assert "lost 0, duplicated 0, reordered 0" in done.stdout
    document: dict[str, Any] = json.loads(out.read_text())
    return document


def test_every_acked_notification_reached_every_device_once_in_order(
    soak: dict[str, Any],
) -> None:
    counts = soak["counts"]
    assert soak["ok"] is True
    assert counts["acked_notifications"] > 0 and counts["owed"] > 0
    assert (counts["lost"], counts["duplicated"], counts["reordered"]) == (0, 0, 0), counts
    assert counts["faulty_users"] == {}
    assert counts["delivered"] >= counts["owed"]
    assert soak["catch_up_at_end"]["done"] is True
    assert soak["events"].get("publish_errors", 0) == 0, soak["first_error"]


def test_every_kind_of_traffic_ran(soak: dict[str, Any]) -> None:
    events = soak["events"]
    assert events["churned"] > 0
    assert events["connects"] > soak["connections"]  # the reconnects
    assert soak["replayed"] > 0  # catch-up with since brought frames back
    slow = soak["slow_consumers"]
    assert slow["episodes"] >= 1
    assert slow["closed_1008"] == slow["episodes"], slow["runs"]
    assert all(run["dropped_by_server"] for run in slow["runs"])


def test_each_interval_is_sampled(soak: dict[str, Any]) -> None:
    series = soak["series"]
    assert len(series) >= 3
    for row in series:
        assert row["rss_mib"] > 0 and row["fds"] > 0
        assert row["deliveries"] > 0 and row["server_us_per_delivery"] is not None
        assert row["acked"] > 0
        latency = row["latency"]
        assert latency["samples"] > 0
        assert latency["p50_ms"] <= latency["p99_ms"] <= latency["p999_ms"]
    assert [row["minute"] for row in series] == sorted(row["minute"] for row in series)
