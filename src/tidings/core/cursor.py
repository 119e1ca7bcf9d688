"""Delivery rules for one connection on one stream: each seq once, in order.

Live frames arrive from the broker; a replay or a gap repair reads the store.
The cursor decides, per live frame, whether it can be written now, is a
duplicate, must wait for a sync in progress, or reveals a gap. It holds the
waiting frames and hands them back, in order, once the sync has caught up.
No I/O here: the hub writes what the cursor allows, the node reads the store
when the cursor asks.
"""

from __future__ import annotations

DELIVER = 0
"""Write this frame now."""
DROP = 1
"""Already delivered (or older than the replay start): discard."""
HOLD = 2
"""A sync is running: the frame was kept and will come back from ``drain_held``."""
GAP = 3
"""A seq is missing before this one: the frame was kept; the caller must sync."""

MAX_HELD = 10_000
"""Past this many held frames, drop them and let the sync re-read the store."""


class StreamCursor:
    __slots__ = ("held", "last", "overflowed", "syncing")

    def __init__(self, last: int | None = None, *, syncing: bool = False) -> None:
        self.last = last
        """The last seq this connection has been sent; None until a live-only
        connection's first push sets the baseline."""
        self.syncing = syncing
        """True while a replay or gap repair reads the store."""
        self.held: dict[int, bytes] = {}
        self.overflowed = False

    def offer(self, seq: int, frame: bytes) -> int:
        """Classify one live frame; DELIVER also advances the cursor."""
        last = self.last
        if last is None:
            if self.syncing:
                return self._hold(seq, frame)
            self.last = seq
            return DELIVER
        if seq <= last:
            return DROP
        if self.syncing:
            return self._hold(seq, frame)
        if seq == last + 1:
            self.last = seq
            return DELIVER
        self.syncing = True
        self._hold(seq, frame)
        return GAP

    def _hold(self, seq: int, frame: bytes) -> int:
        if len(self.held) >= MAX_HELD:
            self.held.clear()
            self.overflowed = True
        else:
            self.held[seq] = frame
        return HOLD

    def delivered(self, seq: int) -> None:
        """A sync wrote ``seq`` from the store."""
        if self.last is None or seq > self.last:
            self.last = seq

    def skip_to(self, head: int) -> None:
        """The store has nothing more up to ``head``: seqs missing there are holes."""
        if self.last is None or head > self.last:
            self.last = head

    def drain_held(self) -> tuple[list[bytes], bool]:
        """Pop the held frames that now follow on, in order.

        Returns them and whether the sync must go on (a seq is still missing
        before a held one, or held frames were dropped on overflow). When it
        need not, the cursor is live again.
        """
        frames: list[bytes] = []
        held = self.held
        if held:
            last = self.last if self.last is not None else min(held) - 1
            for seq in sorted(held):
                if seq <= last:
                    del held[seq]
                elif seq == last + 1:
                    frames.append(held.pop(seq))
                    last = seq
                else:
                    break
            self.last = last
        more = bool(held) or self.overflowed
        self.overflowed = False
        self.syncing = more
        return frames, more
