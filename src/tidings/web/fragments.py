"""A client message sent in several frames, put back together within a bound.

Without one, 100,000 one-byte continuation frames would be kept and joined
while every other connection waits; past ``limit`` frames the message is
refused (the transport closes with 1009).
"""

from __future__ import annotations

from websockets.frames import Frame, Opcode

NO_PARTS: list[bytes] = []
"""Shared while no message is being reassembled (never appended to)."""


class TooManyFragments(Exception):
    pass


class Reassembly:
    __slots__ = ("_parts", "limit")
    """One per connection: slots keep 10,000 of them small."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._parts: list[bytes] = NO_PARTS

    def add(self, frame: Frame) -> bytes | bytearray | memoryview | None:
        """The whole message once ``frame`` ends one, else None (control frames too).

        Joined once, at the end: linear in the message's size.
        """
        opcode = frame.opcode
        if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
            if frame.fin:
                return frame.data
            self._parts = [bytes(frame.data)]
        elif opcode is Opcode.CONT:
            parts = self._parts
            if len(parts) >= self.limit:
                self._parts = NO_PARTS
                raise TooManyFragments
            if parts is NO_PARTS:  # the parser lets no continuation come first
                parts = self._parts = []
            parts.append(bytes(frame.data))
            if frame.fin:
                self._parts = NO_PARTS
                return b"".join(parts)
        return None
