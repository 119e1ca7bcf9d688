"""Load-test one deployment with one user's token: what ``tidings bench`` runs.

Every connection is the same user, so each send is stored once in that user's
inbox and pushed to every connection. A user token is enough: the sends are
``sendNotification`` actions over the WebSocket (the server must let user
tokens send, ``--user-send any`` or ``self``), never the admin HTTP API. A
first connection makes one send alone, so a refused token, a refused send or
an unreachable server is one clear error rather than a run of failures; that
send is one more notification in the inbox than the run counts.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
from typing import Any
from urllib.parse import urlsplit

import orjson
from picows import WSHandshakeError

from tidings.loadtest.fleet import Fleet
from tidings.loadtest.procstat import raise_fd_limit
from tidings.loadtest.wire import TIDINGS, payload, subject, url_problem
from tidings.loadtest.wsclient import Endpoint, Tally, connect

__all__ = ["LoadTestError", "bench_url", "endpoint_for", "probe", "summary"]

PROBE_SECONDS = 10.0
"""How long the first handshake may take before the server counts as unreachable."""


class LoadTestError(Exception):
    """A run that cannot start or measured nothing; the message is one line."""


def endpoint_for(url: str, *, dialect: str = TIDINGS, server_pid: int | None = None) -> Endpoint:
    """The endpoint behind a ``ws://`` or ``wss://`` URL; the HTTP base is derived from it.

    The token goes in an ``Authorization`` header: a deployment's proxies log URLs.
    """
    problem = url_problem(url)
    if problem is not None:
        raise LoadTestError(f"the URL {problem}")
    parts = urlsplit(url)
    scheme = "https" if parts.scheme == "wss" else "http"
    return Endpoint(
        ws_url=url,
        http_url=f"{scheme}://{parts.netloc}",
        dialect=dialect,
        server_pid=server_pid,
        bearer=True,
    )


def _where(endpoint: Endpoint) -> str:
    parts = urlsplit(endpoint.ws_url)
    port = parts.port if parts.port is not None else (443 if parts.scheme == "wss" else 80)
    return f"{parts.hostname}:{port}"


def _refusal(exc: WSHandshakeError, where: str) -> str:
    """One line for a handshake that got an HTTP answer other than 101."""
    response = exc.response
    if response is None:
        return f"the WebSocket handshake with {where} failed: {exc}"
    status = response.status
    said = ""
    body = (exc.raw_body or b"").decode(errors="replace").strip()
    try:
        said = str(orjson.loads(body)["error"]["message"])
    except (ValueError, KeyError, TypeError):
        if body and not body.startswith("<"):
            said = body.splitlines()[0]
    detail = f" ({said[:160]})" if said else ""
    what = "the token" if status in (401, 403) else "the handshake"
    hint = " (is the path /ws?)" if status == 404 and not said else ""
    return f"{where} refused {what}: HTTP {int(status)} {status.phrase}{detail}{hint}"


async def probe(endpoint: Endpoint, token: str, *, timeout: float = PROBE_SECONDS) -> str:
    """One handshake and one send to itself with ``token``; returns the token's user.

    Raises ``LoadTestError`` saying what failed.
    """
    where = _where(endpoint)
    try:
        client = await connect(endpoint, token, Tally(), timeout=timeout)
    except WSHandshakeError as exc:
        raise LoadTestError(_refusal(exc, where)) from None
    except TimeoutError:
        raise LoadTestError(
            f"no WebSocket handshake answer from {where} in {timeout:g} s"
        ) from None
    except ssl.SSLError as exc:
        reason = getattr(exc, "verify_message", None) or exc.reason or str(exc)
        hint = " (a plain ws:// server?)" if exc.reason == "WRONG_VERSION_NUMBER" else ""
        raise LoadTestError(f"TLS with {where} failed: {reason}{hint}") from None
    except OSError as exc:
        said = exc.strerror if isinstance(exc, socket.gaierror) else None
        if not said and exc.errno:
            said = os.strerror(exc.errno)
        raise LoadTestError(f"cannot reach {where}: {said or exc}") from None
    try:
        user = subject(token)
        answer: asyncio.Future[dict[str, Any] | None] = asyncio.get_running_loop().create_future()

        def answered(reply: dict[str, Any] | None) -> None:
            if not answer.done():
                answer.set_result(reply)

        client.action("sendNotification", {**payload(0), "userId": user}, answered)
        try:
            reply = await asyncio.wait_for(answer, timeout)
        except TimeoutError:
            raise LoadTestError(f"{where} did not answer a send in {timeout:g} s") from None
    except ValueError as exc:
        raise LoadTestError(f"{where} took the token, but {exc}") from None
    finally:
        client.close()
    if reply is None:
        raise LoadTestError(f"{where} closed the connection after a send")
    if reply.get("type") != "ack":
        said = f"{reply.get('code')}: {reply.get('message')}"
        raise LoadTestError(f"{where} refused a send as {user!r} ({said})")
    return user


async def bench_url(
    url: str,
    token: str,
    *,
    connections: int = 100,
    senders: int = 1,
    duration: float = 10.0,
    rate: float | None = None,
    dialect: str = TIDINGS,
    server_pid: int | None = None,
) -> dict[str, Any]:
    """Load-test a deployment with one user's token.

    Opens ``connections`` connections as that user plus ``senders`` sender
    connections (the same user), then sends ``sendNotification`` to that user:
    every send is stored once and delivered to every connection, senders
    included: ``delivered_after_drain == expected_deliveries`` (sends not
    refused x ``copies``) when the server kept up; ``unanswered`` counts
    sends still without an answer after the drain. ``rate=None`` measures
    saturation (closed loop); a number holds that many sends a second.
    Returns handshake, throughput, CPU and latency figures; server CPU and
    RSS only when ``server_pid`` names a local process.
    """
    endpoint = endpoint_for(url, dialect=dialect, server_pid=server_pid)
    needed = connections + senders + 64
    limit = raise_fd_limit(needed)
    if limit < needed:
        raise LoadTestError(
            f"{connections + senders} connections need {needed} open files; "
            f"this process may have {limit} (raise it with ulimit -n)"
        )
    user = await probe(endpoint, token)
    fleet = await Fleet.open(endpoint, [token] * connections, [token] * senders)
    fleet.copies = len(fleet.receivers) + len(fleet.senders)
    connected = fleet.connected
    try:
        if not fleet.receivers:
            first = connected.first_error if connected else None
            raise LoadTestError(f"no connection opened (first error: {first})")
        if not fleet.senders:
            raise LoadTestError(
                f"no sender could connect once {len(fleet.receivers)} connections were open "
                "(a per-user connection limit on the server?)"
            )
        if rate is None:
            result = await fleet.saturate(via="ws", duration=duration)
        else:
            result = await fleet.at_rate(rate=rate, duration=duration)
        dropped = sum(client.closed for client in fleet.receivers + fleet.senders)
    finally:
        await fleet.close()
    seconds = result["seconds"]
    result.update(
        url=url,
        user=user,
        mode="saturation" if rate is None else "rate",
        connections=len(fleet.receivers),
        senders=len(fleet.senders),
        copies=fleet.copies,
        expected_deliveries=(result["sent"] - result["errors"]) * fleet.copies,
        unanswered=result["sent"] - result["acked"] - result["errors"],
        sent_per_second=result["sent"] / seconds if seconds else 0.0,
        disconnected=dropped,
        first_send_error=fleet.first_error,
        failed_connections=connected.failed if connected else 0,
        first_error=connected.first_error if connected else None,
        handshakes_per_second=connected.rate if connected else None,
    )
    return result


def summary(result: dict[str, Any]) -> list[str]:
    """A few human-readable lines about a ``bench_url`` result."""
    mode = (
        "saturation"
        if result["mode"] == "saturation"
        else f"fixed rate {result['target_rate']:,.0f}/s"
    )
    senders = f"{result['senders']:,} sender{'s' if result['senders'] != 1 else ''}"
    lines = [
        f"tidings bench: {result['url']} as {result['user']!r}, {mode}, "
        f"{result['seconds']:.1f} s measured",
        f"  connections  {result['connections']:,} + {senders} opened "
        f"({result['failed_connections']:,} failed), "
        f"{result['handshakes_per_second'] or 0:,.0f} handshakes/s",
        f"  sent         {result['sent']:<11,} {result['sent_per_second']:>11,.0f}/s",
        f"  acked        {result['acked']:<11,} {result['acks_per_second']:>11,.0f}/s"
        + (
            f"   ({result['unanswered']:,} not answered by the end of the drain)"
            if result["unanswered"]
            else ""
        ),
        f"  delivered    {result['count']:<11,} {result['per_second']:>11,.0f}/s   "
        f"(each send to {result['copies']:,} connections; "
        f"{result['delivered_after_drain']:,} of {result['expected_deliveries']:,} "
        "after the drain)",
    ]
    latency = result.get("latency") or {}
    if latency.get("samples"):
        lines.append(
            f"  latency      p50 {latency['p50_ms']:.2f} ms   p99 {latency['p99_ms']:.2f} ms   "
            f"p99.9 {latency['p999_ms']:.2f} ms   max {latency['max_ms']:.2f} ms   "
            f"(send to receipt, {latency['samples']:,} samples)"
        )
    else:
        lines.append("  latency      no samples")
    errors = (
        f"  errors       {result['errors']:,} sends failed, "
        f"{result['disconnected']:,} connections dropped"
    )
    if result["first_error"]:
        errors += f"; first connection error: {result['first_error']}"
    if result["first_send_error"]:
        errors += f"; first send error: {orjson.dumps(result['first_send_error']).decode()}"
    lines.append(errors)
    return lines
