"""Small pieces shared by the client and the publisher: URLs, backoff, ids, answers."""

from __future__ import annotations

import random
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from tidings import __version__
from tidings.client.errors import RequestFailed, Unauthorized

USER_AGENT = f"tidings-python/{__version__}"


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


def answer(response: httpx.Response) -> Any:
    """The JSON of a successful answer, or ``RequestFailed`` with the error's code."""
    if response.status_code == 204:
        return None
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.is_success:
        return body
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        code, message = str(error.get("code")), str(error.get("message"))
    else:
        code, message = "http_error", f"HTTP {response.status_code}"
    if response.status_code == 401:
        raise Unauthorized(f"the server refused the token ({message})")
    raise RequestFailed(code, message, status=response.status_code)
