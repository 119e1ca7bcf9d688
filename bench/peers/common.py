"""What the Python peers share: the token check and tidings' frame envelope.

Every peer sends the same ``notification`` frame as tidings (same keys, same
order) so the bytes on the wire match; none of them stores anything. Each
peer is a script started by the harness with ``--port`` and ``--secret``.
"""

from __future__ import annotations

import argparse
import itertools
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
import orjson

_ids = itertools.count(1)


def parse_args(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--secret", required=True)
    return parser.parse_args()


def identity(secret: str, token: str | None) -> tuple[str, bool] | None:
    """``(user, admin)`` for a valid HS256 token, else None (same check as tidings)."""
    if not token:
        return None
    try:
        claims = jwt.decode(
            token, secret, algorithms=["HS256"], options={"require": ["sub", "exp"]}, leeway=5
        )
    except jwt.InvalidTokenError:
        return None
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        return None
    return sub, claims.get("admin") is True


def token_from_target(target: str) -> str | None:
    """The ``token`` query parameter of a request target such as ``/ws?token=...``."""
    values = parse_qs(urlsplit(target).query).get("token")
    return values[0] if values else None


def _iso_ms(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


class Frames:
    """Builds notification and ack frames; keeps only a per-user counter for ``seq``."""

    def __init__(self) -> None:
        self._seqs: dict[str, int] = {}
        self._broadcasts = 0

    def notification(
        self, user: str | None, sender: str, body: dict[str, Any]
    ) -> tuple[dict[str, Any], str, int]:
        """The frame (as a dict, for Socket.IO) for ``user``, or for everyone when None."""
        if user is None:
            self._broadcasts += 1
            seq = self._broadcasts
        else:
            seq = self._seqs.get(user, 0) + 1
            self._seqs[user] = seq
        ms = time.time_ns() // 1_000_000
        notification_id = f"{ms:012x}{next(_ids):014x}"
        frame = {
            "type": "notification",
            "notificationId": notification_id,
            "seq": seq,
            "userId": user if user is not None else "*",
            "sender": sender,
            "message": body.get("message", ""),
            "data": body.get("data") or {},
            "createdAt": _iso_ms(ms),
        }
        return frame, notification_id, seq

    def encoded(self, user: str | None, sender: str, body: dict[str, Any]) -> tuple[bytes, bytes]:
        """``(notification frame, ack frame)`` as JSON bytes, for the bare peers."""
        frame, notification_id, seq = self.notification(user, sender, body)
        ack = {
            "type": "ack",
            "requestId": body.get("requestId"),
            "notificationId": notification_id,
            "seq": seq,
        }
        return orjson.dumps(frame), orjson.dumps(ack)


def error(request_id: object, message: str) -> bytes:
    return orjson.dumps(
        {"type": "error", "code": "bad_request", "message": message, "requestId": request_id}
    )
