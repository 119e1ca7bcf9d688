"""Small pieces shared by the client and the publisher: URLs, backoff, ids."""

from __future__ import annotations

import random
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx


@dataclass(frozen=True, slots=True)
class ServerUrls:
    http: str
    """``http[s]://host[:port][/prefix]``: the HTTP API's base."""
    ws: str
    """``ws[s]://host[:port][/prefix]/ws``: the WebSocket endpoint."""


def server_urls(url: str) -> ServerUrls:
    """Both URLs of a server given either one (http, https, ws or wss)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https", "ws", "wss") or not parts.netloc:
        raise ValueError(f"a server URL looks like http://host:port, not {url!r}")
    secure = parts.scheme in ("https", "wss")
    prefix = parts.path.rstrip("/")
    if prefix.endswith("/ws"):
        prefix = prefix[:-3]
    return ServerUrls(
        http=f"{'https' if secure else 'http'}://{parts.netloc}{prefix}",
        ws=f"{'wss' if secure else 'ws'}://{parts.netloc}{prefix}/ws",
    )


def backoff_delay(
    attempt: int, *, min_delay: float, max_delay: float, rand: random.Random | None = None
) -> float:
    """Full jitter: uniform in [0, min(max_delay, min_delay * 2**attempt))."""
    cap = min(max_delay, min_delay * (1 << min(attempt, 30)))
    return (rand.random() if rand else random.random()) * cap


def new_key() -> str:
    """A random idempotency key or request id."""
    return secrets.token_hex(16)


def unreachable_reason(exc: BaseException) -> str:
    """A few words on why a connection failed, for a one-line error."""
    if isinstance(exc, ConnectionRefusedError) or "refused" in str(exc).lower():
        return "connection refused"
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        return "timed out"
    return str(exc) or type(exc).__name__
