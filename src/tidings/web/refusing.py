"""Refusing a client message past a limit, for ``WebSocketConnection``.

Past ``--frame-rate`` a message is answered with a ``rate_limited`` error
frame and not handled; a client that keeps on is closed with
``RATE_LIMIT_CLOSE``. Past ``--max-fragments`` or ``--max-fragment-bytes``
the connection closes with 1009 and the message is never handled.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from websockets.frames import CloseCode
from websockets.server import ServerProtocol

from tidings.core.errors import RateLimited
from tidings.core.protocol import error_frame, request_id_of
from tidings.web.counters import WEBSOCKET
from tidings.web.fragments import MessageRefused
from tidings.web.runtime import Runtime
from tidings.web.throttle import RATE_LIMIT_CLOSE, FrameAllowance

log = logging.getLogger("tidings.ws")


class Refusing:
    """Mixed into ``WebSocketConnection``, whose state it reads and sets."""

    if not TYPE_CHECKING:  # no dict of its own; mypy would check its assignments
        __slots__ = ()

    runtime: Runtime
    id: str
    user_id: str
    ws: ServerProtocol | None
    loop: asyncio.AbstractEventLoop
    open: bool
    closing: bool
    _frame_allowance: FrameAllowance | None

    if TYPE_CHECKING:  # declared only: the connection defines them

        def send(self, payload: bytes) -> None: ...

        def close(self, code: int, reason: str, *, timeout: float = ...) -> None: ...

        def _detach(self) -> None: ...

    def _refuse_message(self, refused: MessageRefused) -> None:
        """Close with 1009: a message past ``--max-fragments`` or ``--max-fragment-bytes``."""
        self.runtime.counters.limits[refused.setting] += 1
        log.warning(
            "message refused",
            extra={"conn": self.id, "user": self.user_id, "code": 1009, "reason": refused.reason},
        )
        if self.open and not self.closing:
            self.closing = True
            self._detach()
        assert self.ws is not None
        self.ws.fail(CloseCode.MESSAGE_TOO_BIG, refused.reason)

    def _over_frame_rate(self, wait: float, message: bytes | bytearray | memoryview | None) -> bool:
        """Whether a client message (or ping) that must ``wait`` is refused: each
        one is answered with a ``rate_limited`` error frame (with its
        ``requestId``, so a client waiting for the answer gets one); after
        ``STRIKES`` of them the client is closed with ``RATE_LIMIT_CLOSE``.
        The caller took the frame from the allowance, so that a frame in time
        costs one call."""
        if not wait:
            return False
        self.runtime.counters.limits["frame_rate"] += 1
        allowance = self._frame_allowance
        assert allowance is not None
        if allowance.strike(self.loop.time()):
            log.warning(
                "rate limit: client closed",
                extra={"conn": self.id, "user": self.user_id, "code": RATE_LIMIT_CLOSE},
            )
            self.close(RATE_LIMIT_CLOSE, "rate limit: too many frames; reconnect later")
        elif message is not None:
            error = RateLimited("too many frames on this connection", retry_after=wait)
            self.runtime.counters.errors[WEBSOCKET, error.code] += 1
            self.send(error_frame(error.code, error.message, request_id_of(message)))
        return True
