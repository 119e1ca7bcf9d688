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
_PAIRS = [first + second for first in _ALPHABET for second in _ALPHABET]
"""Two characters for each 10-bit value: half as many steps as one per 5 bits."""
_SHIFTS = tuple(range(120, -10, -10))
_LOW_40 = (1 << 40) - 1
_POOL_BYTES = 4000
"""Random bytes drawn at once: 400 milliseconds' worth of ids per ``os.urandom`` call."""


def encode(value: int) -> str:
    """Encode a 128-bit integer as 26 Crockford base32 characters."""
    pairs = _PAIRS
    return "".join([pairs[(value >> shift) & 1023] for shift in _SHIFTS])


def _encode_random(rand: int) -> str:
    """The last 16 characters of an id: its 80 random bits, as two 40-bit halves."""
    pairs = _PAIRS
    high, low = rand >> 40, rand & _LOW_40
    return (
        pairs[high >> 30]
        + pairs[(high >> 20) & 1023]
        + pairs[(high >> 10) & 1023]
        + pairs[high & 1023]
        + pairs[low >> 30]
        + pairs[(low >> 20) & 1023]
        + pairs[(low >> 10) & 1023]
        + pairs[low & 1023]
    )


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
        random_bits: Callable[[], int] | None = None,
    ) -> None:
        """``random_bits`` returns 80 random bits; by default from ``os.urandom``."""
        self._clock_ms = clock_ms
        self._random_bits = random_bits or self._pooled_bits
        self._pool = b""
        self._pool_used = 0
        self._last_ms = -1
        self._last_random = 0
        self._prefix = ""
        """The first 10 characters (the millisecond) of ids minted in ``_last_ms``."""
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
            if ms != self._last_ms:
                self._prefix = encode(ms << _RANDOM_BITS)[:10]
            self._last_ms, self._last_random = ms, rand
            return self._prefix + _encode_random(rand)

    def _pooled_bits(self) -> int:
        """80 bits from ``os.urandom``, read in bulk (called under the lock): one
        system call per 400 milliseconds of ids instead of one per millisecond."""
        start = self._pool_used
        if start + 10 > len(self._pool):
            self._pool = os.urandom(_POOL_BYTES)
            start = 0
        self._pool_used = start + 10
        return int.from_bytes(self._pool[start : start + 10], "big")


new_id = IdGenerator().new
"""Module-level generator: the one a process normally uses."""
