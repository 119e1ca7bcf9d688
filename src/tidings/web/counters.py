"""What the transports count for the metrics: handshakes, refusals, acks,
errors, request limits and slow consumers.

One ``+=`` per event on a plain int or a ``Counter`` of a few fixed keys,
read at scrape time by ``tidings.metrics``: no lock and no metrics library
on the paths that count. A key is never a user id, a topic or a connection
id, so every label of the metrics built from these stays bounded.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from dataclasses import dataclass, field

WEBSOCKET = "websocket"
HTTP = "http"

REFUSAL_REASONS = {
    400: "bad_request",
    401: "unauthorized",
    403: "origin",
    404: "not_found",
    429: "too_many_connections",
    503: "draining",
}
"""Why ``handshake.admit`` refused, by the status it answered; a 429 of the
connection rate limits says ``RATE_LIMITED`` instead."""


def refusal_reason(status: int) -> str:
    """The reason ``handshake.admit`` refused with ``status``."""
    return REFUSAL_REASONS.get(status, "other")


RATE_LIMITED = "rate_limited"
"""Too many new connections from the client's address, or to this node (429)."""
ROUTE_REFUSED = "route"
"""An API Gateway ``$connect`` integration said no."""
INVALID_UPGRADE = "invalid_upgrade"
"""python-websockets refused the upgrade request itself (a missing or bad header)."""


RECENT_ERRORS = 100
"""How many error answers ``ErrorCounts.recent`` keeps (the operator page's list)."""


@dataclass(frozen=True, slots=True)
class RecentError:
    at: float
    """Wall-clock seconds (``time.time()``) of the answer."""
    transport: str
    code: str


class ErrorCounts(Counter[tuple[str, str]]):
    """Error answers by (transport, code), and the last ``RECENT_ERRORS`` of
    them with their time: every ``errors[t, c] += 1`` that already counts an
    error also remembers it, so no call site has two things to keep in step."""

    def __init__(self) -> None:
        super().__init__()
        self.recent: deque[RecentError] = deque(maxlen=RECENT_ERRORS)
        """Oldest first; bounded, so a flood of errors costs no memory."""

    def __setitem__(self, key: tuple[str, str], value: int) -> None:
        for _ in range(min(value - self.get(key, 0), RECENT_ERRORS)):
            self.recent.append(RecentError(time.time(), *key))
        super().__setitem__(key, value)


@dataclass(slots=True)
class WebCounters:
    handshakes: int = 0
    """WebSocket handshakes accepted (connections opened)."""
    refusals: Counter[str] = field(default_factory=Counter)
    """WebSocket handshakes refused, by reason (``REFUSAL_REASONS`` and the two above)."""
    acks: int = 0
    """``sendNotification`` actions acknowledged (stored and pushed)."""
    errors: ErrorCounts = field(default_factory=ErrorCounts)
    """Error answers by (transport, error code): WebSocket error frames, HTTP error
    bodies; with the most recent ones and their time."""
    limits: Counter[str] = field(default_factory=Counter)
    """Refusals by the setting whose limit was hit (``max_frame_bytes``, ...)."""
    slow_consumers: int = 0
    """Connections closed with 1008 because their send buffer passed its limit."""
