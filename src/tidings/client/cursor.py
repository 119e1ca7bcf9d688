"""Which notification frames a client hands to its application: each once, in order.

No I/O here. The connection feeds every notification and ``caughtUp`` frame
in; the cursor says deliver, drop (already delivered), or ``Gap`` (a live seq
jump: read that range from the history, deliver it, then this frame). It
tracks the last seq of the user's stream and of each topic, builds the
``since`` / ``topics`` query of the next connection, and drops duplicates by
notificationId.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

PERSONAL = ""
"""Stream key of the user's own stream; topics are keyed by name."""

Frame = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Deliver:
    """Hand the frame to the application."""


@dataclass(frozen=True, slots=True)
class Drop:
    """Already delivered, or replayed only to learn the head: discard."""


@dataclass(frozen=True, slots=True)
class Gap:
    """Live seqs are missing: fetch ``after_seq < seq < before_seq`` of ``stream`` first."""

    stream: str
    after_seq: int
    before_seq: int


DELIVER = Deliver()
DROP = Drop()


class ClientCursor:
    """Delivery positions and dedupe for one user's client.

    ``since=None`` starts at the head ("only what is new"): the first
    connection replays from 0 and the cursor discards that replay, keeping
    the ``caughtUp`` head. An integer starts after that seq (0: everything).
    """

    def __init__(
        self,
        *,
        since: int | None = None,
        topics: dict[str, int | None] | None = None,
        dedupe_window: int = 2000,
    ) -> None:
        self.positions: dict[str, int] = {}
        """Last seq delivered (or skipped past) per stream."""
        if since is not None:
            self.positions[PERSONAL] = since
        self.topics: set[str] = set()
        for name, seq in (topics or {}).items():
            self.topics.add(name)
            if seq is not None:
                self.positions[name] = seq
        self._skip: set[str] = set()
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._dedupe_window = dedupe_window

    # -- connecting --------------------------------------------------------------

    def query(self) -> dict[str, str]:
        """The ``since`` (and ``topics``) of the next connection's URL, not yet encoded.

        Streams without a position replay from 0 to learn their head; that
        replay is dropped, not delivered.
        """
        self._skip.clear()
        since = self.positions.get(PERSONAL)
        if since is None:
            since = 0
            self._skip.add(PERSONAL)
        query = {"since": str(since)}
        parts = []
        for name in sorted(self.topics):
            seq = self.positions.get(name)
            if seq is None:
                seq = 0
                self._skip.add(name)
            parts.append(f"{name}:{seq}")
        if parts:
            query["topics"] = ",".join(parts)
        return query

    def caught_up(self, frame: Frame) -> bool:
        """Take a ``caughtUp`` frame's heads; True when the app should refetch its inbox.

        A head past the last replayed seq means holes at the end of the
        stream (deleted or expired notifications), not a gap.
        """
        heads: dict[str, Any] = {PERSONAL: frame.get("seq"), **(frame.get("topics") or {})}
        for stream, head in heads.items():
            if not isinstance(head, int):
                continue
            if stream != PERSONAL:
                self.topics.add(stream)  # resumed from here next time
            if self.positions.get(stream, -1) < head:
                self.positions[stream] = head
        fresh = PERSONAL not in self._skip
        self._skip.clear()
        return frame.get("complete") is False and fresh

    # -- frames --------------------------------------------------------------------

    def classify(self, frame: Frame, *, replay: bool) -> Deliver | Drop | Gap:
        """What to do with one notification frame (``replay``: it came before caughtUp)."""
        stream = frame.get("topic") or PERSONAL
        seq = frame["seq"]
        if replay and stream in self._skip:
            return DROP
        last = self.positions.get(stream)
        if last is not None and seq <= last:
            return DROP
        if not replay and last is not None and seq > last + 1:
            return Gap(stream, last, seq)
        return DELIVER

    def deliver(self, frame: Frame) -> bool:
        """Advance past ``frame``; False when its notificationId was delivered before."""
        stream = frame.get("topic") or PERSONAL
        seq = frame["seq"]
        if self.positions.get(stream, -1) < seq:
            self.positions[stream] = seq
        if stream != PERSONAL:
            self.topics.add(stream)
        key = frame["notificationId"]
        if key in self._seen:
            return False
        self._seen[key] = None
        if len(self._seen) > self._dedupe_window:
            self._seen.popitem(last=False)
        return True

    # -- persistence -----------------------------------------------------------------

    def position(self) -> dict[str, Any]:
        """``{"seq": N | None, "topics": {name: seq}}``: what to save to resume later."""
        return {
            "seq": self.positions.get(PERSONAL),
            "topics": {k: v for k, v in sorted(self.positions.items()) if k != PERSONAL},
        }

    def restore(self, saved: dict[str, Any]) -> None:
        """Resume from a ``position()`` saved earlier: it replaces the starting point."""
        seq = saved.get("seq")
        if isinstance(seq, int):
            self.positions[PERSONAL] = seq
        for name, topic_seq in (saved.get("topics") or {}).items():
            self.topics.add(name)
            if isinstance(topic_seq, int):
                self.positions[name] = topic_seq
