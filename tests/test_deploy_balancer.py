"""deploy/haproxy.cfg for real, in front of three real nodes configured as
deploy/compose.yaml configures them, on PostgreSQL and on a redis-server run
with the compose file's own command line.

Of the files only addresses change: the HAProxy servers and bind, the nodes'
store, broker and trusted proxy, all of them on free loopback ports. A
WebSocket opened through the balancer gets what is published on each node;
the node records the client's address from HAProxy's X-Forwarded-For; and
handshakes go on succeeding while a node drains (HAProxy retries its 503
on another node).
"""

from __future__ import annotations

import asyncio
import re
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.deploy_files import HAPROXY, compose, node_services
from tests.server import SECRET, ServerProcess, free_port
from tests.services import missing, require_postgres, require_redis, with_query
from tests.test_multinode import pg_fetch
from tests.wsclient import recv_json, recv_until
from tidings.core.tokens import mint

pytestmark = pytest.mark.slow

CLIENT_ADDRESS = "127.0.0.3"
"""The test's clients connect from here; HAProxy reaches the nodes from 127.0.0.1."""


def balancer_config(servers: list[int], port: int) -> str:
    """deploy/haproxy.cfg with the nodes and the bind on this machine's ports."""
    text = HAPROXY.read_text()
    names = re.findall(r"^\s*server (\S+) \S+:8000[ \t]*$", text, flags=re.M)
    assert len(names) == len(servers) == 3, names
    for name, server_port in zip(names, servers, strict=True):
        text = re.sub(
            rf"^(\s*server {name}) \S+:8000[ \t]*$",
            rf"\1 127.0.0.1:{server_port}",
            text,
            flags=re.M,
        )
    text, bound = re.subn(r"^(\s*bind) :8080\b", rf"\1 127.0.0.1:{port}", text, flags=re.M)
    assert bound == 1
    return text


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A redis-server started with compose.yaml's command line, plus a port."""
    require_redis()
    binary = shutil.which("redis-server")
    if binary is None:
        missing("redis-server", "not on PATH")
    command = compose()["services"]["redis"]["command"]
    assert command[0] == "redis-server"
    port = free_port()
    proc = subprocess.Popen(
        [binary, *command[1:], "--port", str(port), "--bind", "127.0.0.1",
         "--logfile", str(tmp_path_factory.mktemp("redis") / "redis.log")],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_until(lambda: ping(port), f"redis-server on {port}")
        yield f"redis://127.0.0.1:{port}/0?prefix=deploy{uuid.uuid4().hex[:8]}"
    finally:
        proc.kill()
        proc.wait()


def ping(port: int) -> bool:
    done = subprocess.run(
        ["redis-cli", "-p", str(port), "ping"], capture_output=True, text=True, check=False
    )
    return done.stdout.strip() == "PONG"


def wait_until(ready: object, what: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} never got ready")


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    schema = f"tidings_deploy_{uuid.uuid4().hex[:12]}"
    yield with_query(require_postgres(), f"schema={schema}")
    asyncio.run(pg_fetch(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))


class Cluster:
    def __init__(self, nodes: list[ServerProcess], port: int) -> None:
        self.nodes = nodes
        self.url = f"http://127.0.0.1:{port}"
        self.ws_url = f"ws://127.0.0.1:{port}/ws"
        admin = mint(SECRET, "backend", ttl_seconds=600, admin=True)
        self.admin = {"Authorization": f"Bearer {admin}"}

    async def open(self, user: str) -> ClientConnection:
        ws = await connect(
            f"{self.ws_url}?token={mint(SECRET, user, ttl_seconds=600)}&since=0",
            local_addr=(CLIENT_ADDRESS, 0),
            ping_interval=None,
        )
        await recv_until(ws, "caughtUp")
        return ws


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, redis_url: str, database: str
) -> Iterator[Cluster]:
    """Shared by the tests below, in order: the last one drains a node away."""
    tmp_path = tmp_path_factory.mktemp("cluster")
    haproxy = shutil.which("haproxy")
    if haproxy is None:
        missing("haproxy", "apt-get install haproxy (make deploy-deps)")
    nodes = []
    for number, service in enumerate(node_services(compose()).values()):
        env = {k: str(v) for k, v in service["environment"].items()}
        assert env["TIDINGS_SECRET"] != SECRET
        env |= {
            "TIDINGS_SECRET": SECRET,
            "TIDINGS_DB": database,
            "TIDINGS_BROKER": redis_url,
            "TIDINGS_FORWARDED_ALLOW_IPS": "127.0.0.1",  # the balancer, here
        }
        # ServerProcess passes a short --drain-grace; the compose file's wins.
        grace = ("--drain-grace", env["TIDINGS_DRAIN_GRACE"])
        nodes.append(ServerProcess(tmp_path / f"node{number}", *grace, env=env))
    try:
        with ThreadPoolExecutor(len(nodes)) as starting:
            list(starting.map(ServerProcess.start, nodes))
        port = free_port()
        config = tmp_path / "haproxy.cfg"
        config.write_text(balancer_config([node.port for node in nodes], port))
        check = subprocess.run([haproxy, "-c", "-f", str(config)], capture_output=True, text=True)
        assert check.returncode == 0 and "WARNING" not in check.stdout + check.stderr, (
            check.stdout + check.stderr
        )
        log = open(tmp_path / "haproxy.log", "wb")  # noqa: SIM115 - closed below
        proc = subprocess.Popen([haproxy, "-db", "-f", str(config)], stdout=log, stderr=log)
        try:
            wait_until(lambda: up(port), "haproxy")
            yield Cluster(nodes, port)
        finally:
            proc.terminate()
            proc.wait(10)
            log.close()
    finally:
        for node in nodes:
            node.kill()  # their drain is the compose file's 10 s


def up(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/lb-health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


async def test_a_socket_through_the_balancer_gets_what_every_node_publishes(
    cluster: Cluster,
) -> None:
    ws = await cluster.open("ada")
    async with httpx.AsyncClient(headers=cluster.admin, timeout=10) as http:
        for number, node in enumerate(cluster.nodes):
            response = await http.post(
                node.url + "/v1/notifications",
                json={"userIds": ["ada"], "message": f"from node {number}"},
            )
            assert response.status_code == 201, response.text
            frame = await recv_json(ws)
            assert (frame["type"], frame["message"]) == ("notification", f"from node {number}")

        # The node believed HAProxy's X-Forwarded-For, and only that.
        presence = await http.get(cluster.url + "/v1/users/ada/presence")
        [connection] = presence.json()["connectionIds"]
        info = (await http.get(f"{cluster.url}/@connections/{connection}")).json()
        assert info["identity"]["sourceIp"] == CLIENT_ADDRESS
    await ws.close()


async def test_handshakes_go_elsewhere_while_a_node_drains(cluster: Cluster) -> None:
    draining = cluster.nodes[0]
    draining.signal(signal.SIGTERM)  # drains for the compose file's 10 s
    async with httpx.AsyncClient(timeout=5) as http:
        assert (await http.get(draining.url + "/readyz")).status_code == 503
    sockets = await asyncio.gather(*(cluster.open(f"user{n}") for n in range(6)))
    draining.signal(signal.SIGTERM)  # a second signal: stop now, closing its sockets
    assert draining.wait(15) == 0
    async with httpx.AsyncClient(headers=cluster.admin, timeout=10) as http:
        live = cluster.nodes[1]
        for n, ws in enumerate(sockets):
            response = await http.post(
                live.url + "/v1/notifications", json={"userIds": [f"user{n}"], "message": "hi"}
            )
            assert response.status_code == 201, response.text
            assert (await recv_json(ws))["message"] == "hi"  # none was on the draining node
    for ws in sockets:
        await ws.close()
