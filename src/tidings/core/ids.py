"""Notification ids: 26-character ULIDs, unique and sortable by creation time.

A plain ULID is only sortable to the millisecond; this generator is
*monotonic*: within one millisecond it increments the random part, so ids
minted by one process sort in the order they were minted, and thousands per
millisecond never collide. The 80 random bits keep ids from different nodes
apart.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32
_RANDOM_BITS = 80
_RANDOM_MAX = (1 << _RANDOM_BITS) - 1


def encode(value: int) -> str:
    """Encode a 128-bit integer as 26 Crockford base32 characters."""
    chars = []
    for _ in range(26):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def timestamp_ms(ulid: str) -> int:
    """The creation time (Unix milliseconds) encoded in the first 10 characters."""
    value = 0
    for char in ulid[:10]:
        value = value * 32 + _ALPHABET.index(char)
    return value


def floor_id(ms: int) -> str:
    """The smallest id of millisecond ``ms``: ids >= it were created at or after it."""
    return encode(ms << _RANDOM_BITS)


class IdGenerator:
    """Mints monotonic ULIDs; safe to share between threads."""

    def __init__(
        self,
        *,
        clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
        random_bits: Callable[[], int] = lambda: int.from_bytes(os.urandom(10), "big"),
    ) -> None:
        self._clock_ms = clock_ms
        self._random_bits = random_bits
        self._last_ms = -1
        self._last_random = 0
        self._lock = threading.Lock()

    def new(self) -> str:
        with self._lock:
            ms = self._clock_ms()
            if ms <= self._last_ms:
                # Same millisecond (or the clock stepped back): keep order by
                # counting up from the previous id instead of drawing anew.
                ms = self._last_ms
                rand = self._last_random + 1
                if rand > _RANDOM_MAX:
                    ms += 1
                    rand = self._random_bits() >> 1
            else:
                # Leave headroom so counting up within this millisecond never overflows.
                rand = self._random_bits() >> 1
            self._last_ms, self._last_random = ms, rand
            return encode((ms << _RANDOM_BITS) | rand)


new_id = IdGenerator().new
"""Module-level generator: the one a process normally uses."""
