"""A client message sent in several frames, put back together within bounds.

Without one, 100,000 one-byte continuation frames would be kept and joined
while every other connection waits; past ``limit`` frames the message is
refused (the transport closes with 1009). ``max_frame_bytes``, when set,
refuses any single frame larger than that the same way, as API Gateway does
past 32 KiB (a whole message may still be larger, in several frames).
"""

from __future__ import annotations

from websockets.frames import Frame, Opcode

NO_PARTS: list[bytes] = []
"""Shared while no message is being reassembled (never appended to)."""


class MessageRefused(Exception):
    """A message the connection must close for (1009); ``setting`` names the limit."""

    def __init__(self, setting: str, reason: str) -> None:
        super().__init__(reason)
        self.setting = setting
        self.reason = reason


class Reassembly:
    __slots__ = ("_parts", "limit", "max_frame_bytes")
    """One per connection: slots keep 10,000 of them small."""

    def __init__(self, limit: int, max_frame_bytes: int = 0) -> None:
        self.limit = limit
        self.max_frame_bytes = max_frame_bytes
        """0: no limit per frame (the message's size limit still holds)."""
        self._parts: list[bytes] = NO_PARTS

    def add(self, frame: Frame) -> bytes | bytearray | memoryview | None:
        """The whole message once ``frame`` ends one, else None (control frames too).

        Joined once, at the end: linear in the message's size.
        """
        opcode = frame.opcode
        if self.max_frame_bytes and len(frame.data) > self.max_frame_bytes:
            self._parts = NO_PARTS
            raise MessageRefused(
                "max_fragment_bytes",
                f"frame too big: more than {self.max_frame_bytes} bytes in one frame",
            )
        if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
            if frame.fin:
                return frame.data
            self._parts = [bytes(frame.data)]
        elif opcode is Opcode.CONT:
            parts = self._parts
            if len(parts) >= self.limit:
                self._parts = NO_PARTS
                raise MessageRefused(
                    "max_fragments", f"message too big: more than {self.limit} fragments"
                )
            if parts is NO_PARTS:  # the parser lets no continuation come first
                parts = self._parts = []
            parts.append(bytes(frame.data))
            if frame.fin:
                self._parts = NO_PARTS
                return b"".join(parts)
        return None
