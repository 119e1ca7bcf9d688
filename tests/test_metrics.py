"""Prometheus metrics of a real server: each family moves by what happened,
no label carries a user id, topic or connection id, and the Grafana
dashboard asks only for metrics a scrape has."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.server import ServerProcess, free_port
from tests.test_cli import tidings
from tests.test_slow_consumer import open_stalled
from tests.wsclient import open_ws, recv_json, recv_until, send_json
from tidings.metrics import names
from tidings.metrics.collector import REFUSAL_KEYS

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "deploy" / "grafana" / "tidings-dashboard.json"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(url: str) -> Samples:
    answer = httpx.get(url)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain; version=")
    return parse(answer.text)


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


class Moves:
    """Differences of the metrics between two scrapes."""

    def __init__(self, before: Samples, after: Samples) -> None:
        self.before, self.after = before, after

    def __call__(self, name: str, **labels: str) -> float:
        return value(self.after, name, **labels) - value(self.before, name, **labels)


async def settle(url: str, name: str, expected: float, **labels: str) -> Samples:
    """Scrape until ``name`` reads ``expected`` (a close is seen a moment later)."""
    deadline = time.monotonic() + 10
    while True:
        samples = scrape(url)
        if value(samples, name, **labels) == expected or time.monotonic() > deadline:
            return samples
        await asyncio.sleep(0.05)


def admin(server: ServerProcess) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.token('backend', admin=True)}"}


@pytest.fixture
def limited(tmp_path: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(
        tmp_path / "metrics",
        "--user-send", "any",
        "--max-connections-per-user", "2",
        "--max-frame-bytes", "1024",
        "--max-fragments", "4",
        "--max-body-bytes", "2048",
    ).start()  # fmt: skip
    yield server
    server.stop()


async def test_each_metric_moves_by_what_happened(limited: ServerProcess) -> None:
    server, metrics = limited, limited.url + "/metrics"
    before = scrape(metrics)
    async with httpx.AsyncClient(base_url=server.url, headers=admin(server)) as http:
        subscribed = await http.post("/v1/topics/news/subscribers", json={"userIds": ["bob"]})
        assert subscribed.status_code == 200, subscribed.text
        bob = await open_ws(server.ws_url, token=server.token("bob"), since=0)
        await recv_until(bob, "caughtUp")
        alice = await open_ws(server.ws_url, token=server.token("alice"))
        await asyncio.sleep(0.2)  # bob's subscriptions load right after the handshake

        await send_json(alice, {"action": "sendNotification", "userId": "bob", "message": "hi"})
        assert (await recv_json(alice))["type"] == "ack"
        list_publish = {"userIds": ["bob", "carol"], "message": "to both"}
        key = {"Idempotency-Key": "metrics-1"}
        assert (await http.post("/v1/notifications", json=list_publish, headers=key)).is_success
        repeat = await http.post("/v1/notifications", json=list_publish, headers=key)
        assert repeat.json()["duplicate"] is True
        topic = await http.post("/v1/notifications", json={"topic": "news", "message": "news"})
        assert topic.is_success
        got = [await recv_json(bob) for _ in range(3)]
        assert [f["message"] for f in got] == ["hi", "to both", "news"]

        # Refused handshakes: a bad token, a third connection of one user.
        with pytest.raises(InvalidStatus):
            await open_ws(server.ws_url, token="not-a-token")
        second = await open_ws(server.ws_url, token=server.token("bob"))
        with pytest.raises(InvalidStatus) as refused:
            await open_ws(server.ws_url, token=server.token("bob"))
        assert refused.value.response.status_code == 429
        await second.close()

        # Error answers on both transports.
        await alice.send("not json")
        assert (await recv_json(alice))["code"] == "bad_request"
        await send_json(alice, {"action": "nope"})
        assert (await recv_json(alice))["code"] == "invalid_route"
        assert (await http.get("/nope")).status_code == 404
        anonymous = await http.post(
            "/v1/notifications", json=list_publish, headers={"Authorization": ""}
        )
        assert anonymous.status_code == 401

        # A frame over --max-frame-bytes closes with 1009.
        eve = await open_ws(server.ws_url, token=server.token("eve"))
        await eve.send("x" * 2000)
        with pytest.raises(ConnectionClosed) as closed:
            await recv_json(eve)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
        # So does a message in more frames than --max-fragments; a body over
        # --max-body-bytes gets 413.
        eve = await open_ws(server.ws_url, token=server.token("eve"))
        await eve.send(iter(["{}"] * 6))
        with pytest.raises(ConnectionClosed) as closed:
            await recv_json(eve)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
        too_big = {"userId": "bob", "message": "x" * 4000}
        assert (await http.post("/v1/notifications", json=too_big)).status_code == 413

        # A replay from the start: bob's two personal notifications.
        await settle(metrics, "tidings_connections", 2, transport="websocket")
        again = await open_ws(server.ws_url, token=server.token("bob"), since=0)
        frames = await recv_until(again, "caughtUp")
        assert [f.get("message") for f in frames[:-1]] == ["hi", "to both"]
        after = await settle(metrics, "tidings_connections", 3, transport="websocket")
        for ws in (bob, alice, again):
            await ws.close()

    moved = Moves(before, after)
    ws = {"transport": "websocket"}
    assert value(after, "tidings_connections", **ws) == 3  # bob twice, alice
    assert moved("tidings_handshakes_total", **ws) == 6  # bob x3, alice, eve x2
    assert moved("tidings_handshake_refusals_total", reason="unauthorized", **ws) == 1
    assert moved("tidings_handshake_refusals_total", reason="too_many_connections", **ws) == 1
    assert moved("tidings_limit_refusals_total", limit="max_connections_per_user") == 1
    assert moved("tidings_limit_refusals_total", limit="max_frame_bytes") == 1
    assert moved("tidings_limit_refusals_total", limit="max_fragments") == 1
    assert moved("tidings_limit_refusals_total", limit="max_body_bytes") == 1
    for kind in names.KINDS:
        assert moved("tidings_notifications_published_total", kind=kind) == 1, kind
    assert moved("tidings_publish_repeats_total") == 1
    assert moved("tidings_deliveries_total") == 3  # each to bob's one live connection
    assert moved("tidings_acks_total", **ws) == 1
    assert moved("tidings_publish_to_ack_seconds_count") == 3
    assert moved("tidings_publish_to_ack_seconds_bucket", le="+Inf") == 3
    assert moved("tidings_publish_to_ack_seconds_sum") > 0
    assert moved("tidings_store_commit_batch_size_sum") == 4  # the repeat too
    assert 1 <= moved("tidings_store_commit_seconds_count") <= 4
    assert moved("tidings_catchup_replays_total") == 2
    assert moved("tidings_catchup_items_total") == 2
    # The subscription event, then one publication per stream: 1 + 1 + 2 + 1.
    assert moved("tidings_broker_published_total") == 5
    assert moved("tidings_broker_received_total") == 5
    assert value(after, "tidings_broker_up") == 1
    assert moved("tidings_errors_total", transport="websocket", code="bad_request") == 1
    assert moved("tidings_errors_total", transport="websocket", code="invalid_route") == 1
    assert moved("tidings_errors_total", transport="http", code="not_found") == 1
    assert moved("tidings_errors_total", transport="http", code="unauthorized") == 1
    assert value(after, "tidings_build_info", version="0.1.0", python=_python(after),
                 store="sqlite", broker="memory") == 1  # fmt: skip

    labels = {pair for _, pairs in after for pair in pairs}
    assert not {v for _, v in labels} & {"bob", "alice", "carol", "eve", "backend", "news"}
    closed_sets = {
        "transport": set(names.ERROR_TRANSPORTS),
        "kind": set(names.KINDS),
        "cause": set(names.REPAIR_CAUSES),
        "limit": set(names.LIMITS),
        "reason": set(REFUSAL_KEYS),
    }
    for name, label in labels:
        if name in closed_sets:
            assert label in closed_sets[name], (name, label)
        elif name == "code":
            assert re.fullmatch("[a-z_]+", label), label


async def test_rate_limit_refusals_are_counted_by_the_rate(tmp_path: Path) -> None:
    server = ServerProcess(
        tmp_path / "rates",
        "--user-send", "any",
        "--connect-rate-per-ip", "1",
        "--publish-rate", "1",
        "--frame-rate", "3",
    ).start()  # fmt: skip
    try:
        metrics = server.url + "/metrics"
        before = scrape(metrics)
        first = await open_ws(server.ws_url, token=server.token("ann"))
        await open_ws(server.ws_url, token=server.token("ann"))  # the burst: 2
        with pytest.raises(InvalidStatus) as refused:
            await open_ws(server.ws_url, token=server.token("ann"))
        assert refused.value.response.status_code == 429
        for i in range(3):  # publish-rate 1, burst 2: the third is refused
            send = {
                "action": "sendNotification",
                "userId": "ann",
                "message": f"{i}",
                "requestId": i,
            }
            await send_json(first, send)
        replies = [await recv_json(first) for _ in range(5)]  # 2 acks, 1 error, 2 deliveries
        assert sorted(r.get("code", r["type"]) for r in replies if r["type"] != "notification") == [
            "ack",
            "ack",
            "rate_limited",
        ]
        for _ in range(8):  # frame-rate 3, burst 6: 3 used already
            await send_json(first, {"action": "ping"})
        answers = [await recv_json(first) for _ in range(8)]
        limited = sum(a.get("code") == "rate_limited" for a in answers)
        assert limited >= 1
        after = scrape(metrics)
    finally:
        server.stop()
    moved = Moves(before, after)
    assert moved("tidings_limit_refusals_total", limit="connect_rate_per_ip") == 1
    assert (
        moved("tidings_handshake_refusals_total", transport="websocket", reason="rate_limited") == 1
    )
    assert moved("tidings_limit_refusals_total", limit="publish_rate") == 1
    assert moved("tidings_limit_refusals_total", limit="frame_rate") == limited
    assert moved("tidings_errors_total", transport="websocket", code="rate_limited") == 1 + limited


def _python(samples: Samples) -> str:
    return next(dict(pairs)["python"] for name, pairs in samples if name == "tidings_build_info")


async def test_a_slow_consumer_close_is_counted(tmp_path: Path) -> None:
    server = ServerProcess(
        tmp_path / "slow", "--user-send", "any", "--send-buffer-limit", "65536"
    ).start()
    try:
        before = scrape(server.url + "/metrics")
        slow = await open_stalled(server, "sloth")
        sender = await open_ws(server.ws_url, token=server.token("alice"))
        for i in range(300):
            message = f"{i} {'x' * 20_000}"
            await send_json(
                sender, {"action": "sendNotification", "userId": "sloth", "message": message}
            )
        for _ in range(300):
            await recv_json(sender, 30)
        after = await settle(server.url + "/metrics", "tidings_slow_consumer_closes_total", 1)
        assert Moves(before, after)("tidings_slow_consumer_closes_total") == 1
        assert value(after, "tidings_connections", transport="websocket") == 1  # the sender
        slow.transport.abort()
        await sender.close()
    finally:
        server.stop()


def test_metrics_on_their_own_listener_or_off(tmp_path: Path) -> None:
    port = free_port()
    own = ServerProcess(tmp_path / "own", "--metrics-listen", f"127.0.0.1:{port}").start()
    try:
        assert httpx.get(own.url + "/metrics").status_code == 404
        samples = scrape(f"http://127.0.0.1:{port}/metrics")
        assert value(samples, "tidings_broker_up") == 1
        assert f"http://127.0.0.1:{port}/metrics" in own.log()
    finally:
        own.stop()
    off = ServerProcess(tmp_path / "off", env={"TIDINGS_METRICS": "off"}).start()
    try:
        assert httpx.get(off.url + "/metrics").status_code == 404
    finally:
        off.stop()


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--metrics-listen", "9090"], "--metrics-listen must be HOST:PORT"),
        (["--metrics-listen", "127.0.0.1:9090", "--metrics", "off"], "--metrics off"),
    ],
)
def test_bad_metrics_settings_are_refused(tmp_path: Path, args: list[str], says: str) -> None:
    done = tidings("serve", "--data-dir", str(tmp_path), "--port", "0", *args)
    assert done.returncode == 1
    assert says in done.stderr


def test_a_busy_metrics_port_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        done = tidings(
            "serve", "--data-dir", str(tmp_path), "--port", "0",
            "--metrics-listen", f"127.0.0.1:{taken}",
        )  # fmt: skip
    assert done.returncode == 1
    assert f"cannot serve metrics on 127.0.0.1:{taken}" in done.stderr


def dashboard_metrics() -> set[str]:
    """Every metric name in the dashboard's PromQL expressions."""
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [
        target["expr"]
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
        if "expr" in target
    ]
    exprs += [
        str(var.get("definition", ""))
        for var in dashboard["templating"]["list"]
        if var.get("type") == "query"
    ]
    assert len(exprs) > 20
    found = set()
    for expr in exprs:
        expr = re.sub(r"\$\w+", "", expr)  # Grafana's variables
        found |= set(re.findall(r"\b(?:tidings|process|python)_[a-z0-9_]+\b", expr))
    return found


def test_the_dashboard_uses_only_metrics_a_scrape_has(limited: ServerProcess) -> None:
    scraped = {name for name, _ in scrape(limited.url + "/metrics")}
    used = dashboard_metrics()
    assert used - scraped == set()
    families = {spec.name for spec in names.ALL}
    shown = {re.sub(r"_(total|bucket|count|sum)$", "", name) for name in used}
    assert families - shown == set(), "families no panel shows"


def test_docs_list_every_metric() -> None:
    text = (ROOT / "docs" / "metrics.md").read_text()
    for spec in names.ALL:
        exposed = spec.name + ("_total" if spec.kind == names.COUNTER else "")
        assert f"`{exposed}`" in text, spec.name
        for label in spec.labels:
            assert f"`{label}`" in text, (spec.name, label)
