"""deploy/haproxy.cfg for real, in front of three real nodes configured as
deploy/compose.yaml configures them, on PostgreSQL and on a redis-server run
with the compose file's own command line; then the TLS setups docs/deploy.md
shows, with HAProxy and with nginx, in front of the same nodes.

Of the files only addresses change (the balancers' servers and binds, the
nodes' store, broker and trusted proxy, all on free loopback ports) and the
certificate paths (a self-signed certificate made here). A WebSocket opened
through a balancer gets what is published on each node; the node records the
client's address from the balancer's X-Forwarded-For; and handshakes go on
succeeding while a node drains (HAProxy retries its 503 on another node).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import signal
import ssl
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.deploy_files import HAPROXY, compose, doc_blocks, node_services
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


def wait_until(ready: Callable[[], bool], what: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} never got ready")


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    schema = f"tidings_deploy_{uuid.uuid4().hex[:12]}"
    yield with_query(require_postgres(), f"schema={schema}")
    asyncio.run(pg_fetch(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))


class Cluster:
    """The nodes and one balancer in front of them (over TLS with ``tls``)."""

    def __init__(
        self, nodes: list[ServerProcess], port: int, tls: ssl.SSLContext | None = None
    ) -> None:
        self.nodes = nodes
        self.tls = tls
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
        self.ws_url = f"{'wss' if tls else 'ws'}://127.0.0.1:{port}/ws"
        admin = mint(SECRET, "backend", ttl_seconds=600, admin=True)
        self.admin = {"Authorization": f"Bearer {admin}"}

    async def open(self, user: str) -> ClientConnection:
        ws = await connect(
            f"{self.ws_url}?token={mint(SECRET, user, ttl_seconds=600)}&since=0",
            local_addr=(CLIENT_ADDRESS, 0),
            ping_interval=None,
            ssl=self.tls,
        )
        await recv_until(ws, "caughtUp")
        return ws

    def http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(headers=self.admin, timeout=10, verify=self.tls or True)


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        missing(name, f"apt-get install {name} (make test-deps)")
    return found


@pytest.fixture(scope="module")
def nodes(
    tmp_path_factory: pytest.TempPathFactory, redis_url: str, database: str
) -> Iterator[list[ServerProcess]]:
    """Three nodes with compose.yaml's environment, shared by the tests below,
    in order: the last one drains a node away."""
    tmp_path = tmp_path_factory.mktemp("nodes")
    started = []
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
        started.append(ServerProcess(tmp_path / f"node{number}", *grace, env=env))
    try:
        with ThreadPoolExecutor(len(started)) as starting:
            list(starting.map(ServerProcess.start, started))
        yield started
    finally:
        for node in started:
            node.kill()  # their drain is the compose file's 10 s


@contextlib.contextmanager
def running(
    command: list[str], log: Path, ready: str, tls: ssl.SSLContext | None
) -> Iterator[None]:
    """A balancer process, until the block ends; ``ready`` answers 200 first."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=out)
        try:
            wait_until(lambda: answers(ready, tls), f"{command[0]} ({log})")
            yield
        finally:
            proc.terminate()
            proc.wait(10)


def answers(url: str, tls: ssl.SSLContext | None) -> bool:
    try:
        return httpx.get(url, timeout=1, verify=tls or True).status_code == 200
    except httpx.HTTPError:
        return False


def haproxy_checked(config: Path) -> None:
    check = subprocess.run(
        [tool("haproxy"), "-c", "-f", str(config)], capture_output=True, text=True
    )
    output = check.stdout + check.stderr
    assert check.returncode == 0 and "WARNING" not in output, output


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, nodes: list[ServerProcess]
) -> Iterator[Cluster]:
    """deploy/haproxy.cfg as it is, in front of the nodes."""
    tmp_path = tmp_path_factory.mktemp("haproxy")
    port = free_port()
    config = tmp_path / "haproxy.cfg"
    config.write_text(balancer_config([node.port for node in nodes], port))
    haproxy_checked(config)
    command = [tool("haproxy"), "-db", "-f", str(config)]
    with running(command, tmp_path / "haproxy.log", f"http://127.0.0.1:{port}/lb-health", None):
        yield Cluster(nodes, port)


async def delivered_through(cluster: Cluster, user: str) -> None:
    """A socket through the balancer gets what each node publishes, and its node
    believed the balancer's X-Forwarded-For about the client's address."""
    ws = await cluster.open(user)
    async with cluster.http() as http:
        for number, node in enumerate(cluster.nodes):
            response = await http.post(
                node.url + "/v1/notifications",
                json={"userIds": [user], "message": f"from node {number}"},
            )
            assert response.status_code == 201, response.text
            frame = await recv_json(ws)
            assert (frame["type"], frame["message"]) == ("notification", f"from node {number}")
        presence = await http.get(f"{cluster.url}/v1/users/{user}/presence")
        [connection] = presence.json()["connectionIds"]
        info = (await http.get(f"{cluster.url}/@connections/{connection}")).json()
        assert info["identity"]["sourceIp"] == CLIENT_ADDRESS
    await ws.close()


async def test_a_socket_through_the_balancer_gets_what_every_node_publishes(
    cluster: Cluster,
) -> None:
    await delivered_through(cluster, "ada")


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, ssl.SSLContext]:
    """A self-signed certificate for 127.0.0.1, its key, and a context trusting it."""
    where = tmp_path_factory.mktemp("tls")
    cert, key = where / "cert.pem", where / "key.pem"
    done = subprocess.run(
        [tool("openssl"), "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return cert, key, ssl.create_default_context(cafile=cert)


def replaced(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, (old, text)
    return text.replace(old, new)


def pem_of(certificate: tuple[Path, Path, ssl.SSLContext], where: Path) -> Path:
    """The certificate and its key in one file, as HAProxy's ``crt`` takes them."""
    cert, key, _ = certificate
    pem = where / "notify.pem"
    pem.write_text(cert.read_text() + key.read_text())
    return pem


def test_the_docs_haproxy_core_is_a_valid_file(
    tmp_path: Path, certificate: tuple[Path, Path, ssl.SSLContext]
) -> None:
    (core,) = [b for b in doc_blocks("haproxy") if b.startswith("defaults")]
    config = tmp_path / "haproxy.cfg"
    config.write_text(replaced(core, "/etc/haproxy/notify.pem", str(pem_of(certificate, tmp_path))))
    haproxy_checked(config)


async def test_haproxy_terminates_tls_as_the_docs_show(
    tmp_path: Path, nodes: list[ServerProcess], certificate: tuple[Path, Path, ssl.SSLContext]
) -> None:
    """The docs' TLS frontend in place of deploy/haproxy.cfg's."""
    pem, context = pem_of(certificate, tmp_path), certificate[2]
    https, plain = free_port(), free_port()
    (frontend,) = [b for b in doc_blocks("haproxy") if b.startswith("frontend notify")]
    bind = "bind :443 ssl crt /etc/haproxy/notify.pem"
    frontend = replaced(frontend, bind, f"bind 127.0.0.1:{https} ssl crt {pem}")
    frontend = replaced(frontend, "bind :80\n", f"bind 127.0.0.1:{plain}\n")
    base = balancer_config([node.port for node in nodes], free_port())
    section = re.compile(r"^frontend notify\n.*?(?=^backend )", flags=re.S | re.M)
    text, count = section.subn(frontend + "\n", base)
    assert count == 1
    config = tmp_path / "haproxy.cfg"
    config.write_text(text)
    haproxy_checked(config)
    command = [tool("haproxy"), "-db", "-f", str(config)]
    with running(command, tmp_path / "haproxy.log", f"https://127.0.0.1:{https}/healthz", context):
        await delivered_through(Cluster(nodes, https, context), "tess")
        redirect = httpx.get(f"http://127.0.0.1:{plain}/healthz", timeout=5)
        assert redirect.status_code == 301
        assert redirect.headers["location"] == "https://127.0.0.1:" + f"{plain}/healthz"


async def test_nginx_as_the_docs_show_proxies_websockets_over_tls(
    tmp_path: Path, nodes: list[ServerProcess], certificate: tuple[Path, Path, ssl.SSLContext]
) -> None:
    """The docs' nginx server block, in an ``http`` block of its own."""
    cert, key, context = certificate
    (block,) = [b for b in doc_blocks("nginx") if "upstream tidings" in b]
    ports = iter(node.port for node in nodes)
    block, count = re.subn(
        r"server 10\.0\.0\.\d+:8000", lambda _: f"server 127.0.0.1:{next(ports)}", block
    )
    assert count == len(nodes)
    port = free_port()
    block = replaced(block, "listen 443 ssl;", f"listen 127.0.0.1:{port} ssl;")
    block = replaced(block, "/etc/nginx/tls/notify.example.com.fullchain.pem", str(cert))
    block = replaced(block, "/etc/nginx/tls/notify.example.com.key", str(key))
    config = tmp_path / "nginx.conf"
    config.write_text("events {}\nhttp {\n" + block + "}\n")
    (tmp_path / "logs").mkdir()
    settings = f"daemon off; pid {tmp_path}/nginx.pid; error_log {tmp_path}/logs/error.log;"
    command = [tool("nginx"), "-p", str(tmp_path), "-c", str(config), "-g", settings]
    test = subprocess.run([*command, "-t"], capture_output=True, text=True, check=False)
    assert test.returncode == 0, test.stderr
    with running(command, tmp_path / "nginx.log", f"https://127.0.0.1:{port}/healthz", context):
        await delivered_through(Cluster(nodes, port, context), "nia")


async def test_handshakes_go_elsewhere_while_a_node_drains(cluster: Cluster) -> None:
    draining = cluster.nodes[0]
    draining.signal(signal.SIGTERM)  # drains for the compose file's 10 s
    wait_until(lambda: httpx.get(draining.url + "/readyz").status_code == 503, "the drain")
    sockets = await asyncio.gather(*(cluster.open(f"user{n}") for n in range(6)))
    draining.signal(signal.SIGTERM)  # a second signal: stop now, closing its sockets
    assert draining.wait(15) == 0
    async with cluster.http() as http:
        live = cluster.nodes[1]
        for n, ws in enumerate(sockets):
            response = await http.post(
                live.url + "/v1/notifications", json={"userIds": [f"user{n}"], "message": "hi"}
            )
            assert response.status_code == 201, response.text
            assert (await recv_json(ws))["message"] == "hi"  # none was on the draining node
    for ws in sockets:
        await ws.close()
