"""Whether the store can write, as its last write found out.

A store whose reads still answer may be unable to write (a full disk): a
ping that only reads would keep the node ready while every publish fails.
The store marks each write that failed or went through; readiness asks
``failure`` and, while it is set, has the store probe with a real write
until one succeeds. The change of state is logged once each way, not once
per failed request.
"""

from __future__ import annotations

import logging

log = logging.getLogger("tidings.store")


class WriteHealth:
    def __init__(self, store: str) -> None:
        self.store = store
        """What the log lines name: the database file."""
        self.failure: str | None = None
        """Why the last write failed; None once a write went through."""

    def failed(self, reason: str) -> None:
        if reason != self.failure:
            log.error("store writes failing", extra={"store": self.store, "error": reason})
        self.failure = reason

    def succeeded(self) -> None:
        if self.failure is not None:
            log.info("store writes work again", extra={"store": self.store})
        self.failure = None
