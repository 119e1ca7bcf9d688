"""Server-to-client WebSocket framing (RFC 6455 section 5.2), done once per frame (no I/O).

Server frames are unmasked and, with compression off, identical for every
recipient: so the hub builds the bytes once and writes them to many sockets.
"""

from __future__ import annotations

import struct

PING = b"\x89\x00"
"""An empty ping frame, the same bytes for every connection."""


def text_frame(payload: bytes) -> bytes:
    """A final, unfragmented text frame carrying ``payload`` (valid UTF-8 JSON)."""
    return _frame(0x81, payload)


def binary_frame(payload: bytes) -> bytes:
    """A final, unfragmented binary frame (an integration's binary answer)."""
    return _frame(0x82, payload)


def _frame(head: int, payload: bytes) -> bytes:
    length = len(payload)
    if length < 126:
        return bytes((head, length)) + payload
    if length < 65536:
        return struct.pack("!BBH", head, 126, length) + payload
    return struct.pack("!BBQ", head, 127, length) + payload
