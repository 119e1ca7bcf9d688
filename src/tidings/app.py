"""The composition root: builds store, broker, node, cluster, HTTP app and
gateway, wires them together and runs them behind uvicorn. Nothing imports it
but the CLI; a new capability is a module plus a line here.

One port: uvicorn parses HTTP (through ``LimitedHttpProtocol``, which bounds
request heads, bodies and the time to send them) and hands WebSocket
upgrades to ``WebSocketConnection``. SIGTERM/SIGINT start a drain: readiness and new
handshakes answer 503 for the grace period, then in-flight sends finish and
sockets close with 1012; a second signal stops at once.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import resource
import signal
import socket
import time
from types import FrameType

import uvicorn
from starlette.middleware import Middleware

from tidings.aws.web import install as install_gateway
from tidings.broker import open_broker, open_cluster
from tidings.config import Settings
from tidings.core.frames import text_frame
from tidings.jwks import JwksSource
from tidings.logs import redact_url
from tidings.metrics import MetricsExporter
from tidings.node import Node
from tidings.store import open_store
from tidings.web.admin_api import admin_router
from tidings.web.closing import CLOSE_GOING_AWAY_RESTART, CLOSE_TIMEOUT
from tidings.web.heartbeat import run_heartbeat
from tidings.web.http import build_app
from tidings.web.limits import BearerFirst, LimitedHttpProtocol, RequestLimits
from tidings.web.metrics_route import mount_metrics
from tidings.web.presence import presence_router
from tidings.web.revocation import Revoker, revocation_router
from tidings.web.runtime import Runtime
from tidings.web.ws import WebSocketConnection

log = logging.getLogger("tidings.server")

KEEP_ALIVE_TIMEOUT = 5
"""Seconds an idle keep-alive connection stays open after a response (uvicorn's default)."""
GC_THRESHOLD = 10_000
"""Net new container objects between young collections (CPython's default: 700)."""


def build_runtime(settings: Settings) -> Runtime:
    store = open_store(settings.store_url, durable=settings.durable)
    broker = open_broker(settings.broker)
    node = Node(
        store,
        broker,
        encode=text_frame,
        user_send=settings.user_send_policy,
        gap_wait=settings.gap_wait,
        default_ttl=settings.default_ttl,
        limits=settings.limits,
        max_stored_per_user=settings.max_stored_per_user,
    )
    return Runtime(node=node, settings=settings, keys=settings.resolve_keys())


class TidingsServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, runtime: Runtime) -> None:
        super().__init__(config)
        self.runtime = runtime
        self._drain_requested = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._drain_requested:
            self.should_exit = self.force_exit = True
            return
        self._drain_requested = True
        asyncio.get_event_loop().call_soon_threadsafe(self._start_drain, signal.Signals(sig).name)

    def _start_drain(self, reason: str) -> None:
        self.runtime.track(asyncio.get_running_loop().create_task(self.drain(reason)))

    async def drain(self, reason: str) -> None:
        node = self.runtime.node
        grace = self.runtime.settings.drain_grace
        node.draining = True
        log.info("draining", extra={"signal": reason, "grace": grace, "connections": len(node.hub)})
        await asyncio.sleep(grace)
        for conn in node.hub:
            conn.pause_reading()
        try:
            await asyncio.wait_for(node.wait_idle(), timeout=30)
        except TimeoutError:
            log.error("in-flight sends did not finish within 30 s")
        node.hub.close_all(CLOSE_GOING_AWAY_RESTART, "server restarting; reconnect with since")
        self.should_exit = True


async def serve(settings: Settings, sock: socket.socket) -> None:
    raise_fd_limit()
    runtime = build_runtime(settings)
    if settings.allow_user_id:
        log.warning(
            "INSECURE: --allow-user-id accepts ?userId= without a token; anyone can "
            "connect as any user. Use it only for the seed's client during migration."
        )
    metrics = MetricsExporter(runtime) if settings.metrics else None
    metrics_address = settings.metrics_address
    if metrics is not None and metrics_address is not None:
        metrics_address = (metrics_address[0], metrics.listen(*metrics_address))
    node = runtime.node
    await node.start(store_wait=settings.store_wait)
    jwks = None
    if settings.jwks_url:
        jwks = JwksSource(
            settings.jwks_url,
            runtime.keys,
            refresh_every=settings.jwks_refresh,
            min_interval=settings.jwks_min_interval,
        )
        await jwks.fetch()
    cluster = open_cluster(
        settings.broker, node.hub, node.node_id, node.repair_all, node_ttl=settings.node_ttl
    )
    await cluster.start()
    revoker = Revoker(node, runtime.keys)
    await revoker.load()
    app = build_app(runtime)
    app.include_router(presence_router(cluster))
    app.include_router(revocation_router(revoker))
    app.include_router(admin_router(cluster))
    if metrics is not None and metrics_address is None:
        mount_metrics(app, metrics.render)
    gateway = install_gateway(
        app, settings.gateway, runtime.keys, cluster, settings.max_frame_bytes
    )
    runtime.gateway = gateway
    # Innermost (appended, not added): inside CORS, so a 401 carries its headers.
    app.user_middleware.append(
        Middleware(BearerFirst, keys=runtime.keys, counters=runtime.counters)
    )
    limits = RequestLimits(
        max_header_bytes=settings.max_header_bytes,
        max_headers=settings.max_headers,
        max_body_bytes=settings.max_body_bytes,
        header_timeout=settings.header_timeout,
        body_timeout=settings.body_timeout,
        max_incomplete=settings.max_incomplete_requests,
        counters=runtime.counters,
    )
    background = [
        asyncio.create_task(
            run_heartbeat(node.hub, interval=settings.ping_interval, timeout=settings.ping_timeout)
        ),
        asyncio.create_task(node.run_sweeper(settings.sweep_interval)),
        asyncio.create_task(revoker.run(settings.revocation_reload)),
    ]
    if jwks is not None:
        background.append(asyncio.create_task(jwks.run()))
    config = uvicorn.Config(
        app,
        ws=functools.partial(WebSocketConnection, runtime),  # type: ignore[arg-type]
        http=functools.partial(LimitedHttpProtocol, limits),  # type: ignore[arg-type]
        timeout_keep_alive=KEEP_ALIVE_TIMEOUT,
        lifespan="off",
        log_config=None,
        access_log=True,
        timeout_graceful_shutdown=int(CLOSE_TIMEOUT) + 1,
        proxy_headers=True,
        forwarded_allow_ips=list(settings.forwarded_allow_ips),
        server_header=False,
    )
    server = TidingsServer(config, runtime)
    tune_gc()
    host, port = sock.getsockname()[:2]
    log.info(
        "tidings listening",
        extra={
            "url": f"http://{host}:{port}",
            "ws": f"ws://{host}:{port}/ws",
            "store": redact_url(settings.store_url),
            "broker": settings.broker,
            "durable": settings.durable,
            "metrics": _metrics_url(metrics, metrics_address, f"http://{host}:{port}"),
        },
    )
    try:
        await server.serve(sockets=[sock])
    finally:
        for task in background:
            task.cancel()
        await gateway.close()
        if jwks is not None:
            await jwks.close()
        await cluster.stop()
        await node.stop()
        if metrics is not None:
            metrics.close()
        log.info("stopped")


def _metrics_url(
    metrics: MetricsExporter | None, address: tuple[str, int] | None, main: str
) -> str | None:
    if metrics is None:
        return None
    if address is None:
        return main + "/metrics"
    host, port = address
    return f"http://[{host}]:{port}/metrics" if ":" in host else f"http://{host}:{port}/metrics"


def tune_gc() -> None:
    """Keep the cyclic garbage collector off the hot paths of a long-running server.

    Everything alive once started (modules, the app, the settings) lives as
    long as the process: frozen, full collections no longer walk it. A young
    collection every 700 net allocations (the default) keeps promoting
    objects still in use (a new connection's dozen objects, sends awaiting
    their commit), and the old generation growing that way triggers full
    collections that walk every open connection again: seven of about 90 ms
    each while 10,000 clients connect. Garbage without reference cycles is
    freed by reference counting either way.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, *gc.get_threshold()[1:])
    gc.callbacks.append(_log_long_pause)


GC_PAUSE_LOGGED = 0.05
"""A collection longer than this (seconds) is logged: it delays every frame."""

_gc_started = 0.0


def _log_long_pause(phase: str, info: dict[str, int]) -> None:
    """Log a collection that stopped the event loop for long (whole-heap ones
    grow with the number of open connections)."""
    global _gc_started
    if phase == "start":
        _gc_started = time.perf_counter()
        return
    paused = time.perf_counter() - _gc_started
    if paused >= GC_PAUSE_LOGGED:
        log.warning(
            "long garbage collection",
            extra={
                "ms": round(paused * 1000, 1),
                "generation": info.get("generation"),
                "collected": info.get("collected"),
            },
        )


def raise_fd_limit() -> int:
    """Lift the soft open-files limit to the hard one: every client is a socket."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def bind(host: str, port: int) -> socket.socket:
    """Bind the listening socket up front so a busy port is a clear error."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock
