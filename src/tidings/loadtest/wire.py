"""What the load generator puts on the wire: dialect names, the URL, the
payload, and the user a token names."""

from __future__ import annotations

import base64
import json
import time
from typing import Any
from urllib.parse import urlsplit

TIDINGS = "tidings"
"""tidings' JSON frames (the bare picows and websockets peers speak them too)."""
SOCKETIO = "socketio"
"""Engine.IO 4 / Socket.IO 5 packets straight over a WebSocket."""


def url_problem(url: str) -> str | None:
    """What is wrong with a WebSocket endpoint URL (one line), or ``None``."""
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss"):
        given = f"{parts.scheme}://" if parts.scheme else repr(url)
        return f"must start with ws:// or wss://, not {given} (e.g. ws://127.0.0.1:8000/ws)"
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number in range
    except ValueError as exc:
        return f"has a bad port ({exc})"
    if not parts.hostname:
        return "names no host (e.g. ws://127.0.0.1:8000/ws)"
    if parts.query or parts.fragment:
        return "must have no query (the token is given on its own)"
    return None


MESSAGE = "Benchmark notification: your report is ready, open it when you have a minute."
PAD = "x" * 64


def payload(index: int) -> dict[str, Any]:
    """About 200 bytes of JSON (message + data), stamped with the send time.

    ``ts`` is ``time.monotonic_ns()`` of the sending process; the receiver is
    the same process, so latency needs no clock agreement.
    """
    return {"message": MESSAGE, "data": {"ts": time.monotonic_ns(), "i": index, "pad": PAD}}


def subject(token: str) -> str:
    """The ``sub`` claim, read without checking the signature (the server checks it)."""
    try:
        part = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except (IndexError, ValueError):
        raise ValueError("token is not a JWT") from None
    sub = claims.get("sub") if isinstance(claims, dict) else None
    if not isinstance(sub, str):
        raise ValueError(f"token has no string sub claim: {sub!r}")
    return sub
