"""A real Prometheus scrapes a real tidings, and every query of the Grafana
dashboard evaluates there to at least one series."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import httpx

from tests.server import ServerProcess, free_port
from tests.services import missing
from tests.test_metrics import DASHBOARD, admin

GRAFANA_VARIABLES = {"$__rate_interval": "30s", "$job": ".*", "$instance": ".*"}


def dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for name, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(name, value)
            queries.append(expr)
    return queries


def test_every_dashboard_query_returns_series_from_a_real_prometheus(tmp_path: Path) -> None:
    binary = shutil.which("prometheus")
    if binary is None:
        missing("Prometheus", "no prometheus on PATH (Debian package prometheus)")
    server = ServerProcess(tmp_path / "tidings").start()
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: tidings\n    static_configs: [{{targets: ['127.0.0.1:{server.port}']}}]\n"
    )
    log = (tmp_path / "prometheus.log").open("wb")
    prometheus = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        api = f"http://127.0.0.1:{port}/api/v1/query"
        for i in range(3):
            answer = httpx.post(
                server.url + "/v1/notifications",
                json={"userId": "u", "message": f"{i}"},
                headers=admin(server),
            )
            assert answer.status_code == 201
        deadline = time.monotonic() + 60
        while True:  # rate() needs two scrapes in its window
            try:
                found = httpx.get(api, params={"query": "count_over_time(tidings_build_info[1m])"})
                result = found.json()["data"]["result"]
                if result and float(result[0]["value"][1]) >= 3:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "prometheus.log").read_text()
            time.sleep(0.5)
        empty = []
        for query in dashboard_queries():
            answer = httpx.get(api, params={"query": query}).json()
            assert answer["status"] == "success", (query, answer)
            if not answer["data"]["result"]:
                empty.append(query)
        assert not empty, "queries with no series: " + "\n".join(empty)
    finally:
        prometheus.terminate()
        prometheus.wait(30)
        log.close()
        server.stop()
