"""Opening the store when its server may not be up yet.

Services are often started together (``docker compose up``, a Kubernetes
rollout, a host booting), so a node may start before its database accepts
connections. A server that does not answer at all (``Unreachable``) is
waited for, for a bounded time, with a log line that says what is awaited;
a server that answers with a refusal (bad password, no such database, a
schema too new) fails at once, since waiting would not change it.
"""

from __future__ import annotations

import asyncio
import logging
import time

from tidings.core.errors import Unreachable
from tidings.store.base import Store

log = logging.getLogger("tidings.store")

RETRY_DELAY = 0.5
"""Seconds between attempts: the node starts soon after the server does."""
LOG_EVERY = 5.0
"""Seconds between two ``waiting for the store`` lines."""


async def open_store_waiting(store: Store, *, wait: float) -> None:
    """``store.open()``, tried again while it raises ``Unreachable``, for up to
    ``wait`` seconds (0: once). Past that the last error is raised, saying how
    long it waited, for the caller to exit on."""
    started = time.monotonic()
    logged = -LOG_EVERY
    while True:
        try:
            await store.open()
        except Unreachable as exc:
            waited = time.monotonic() - started
            if waited + RETRY_DELAY > wait:
                if wait <= 0:
                    raise
                raise Unreachable(f"{exc.message} (gave up after waiting {waited:.0f} s)") from None
            if waited - logged >= LOG_EVERY:
                logged = waited
                log.warning(
                    "waiting for the store",
                    extra={"error": exc.message, "seconds_left": round(wait - waited)},
                )
            await asyncio.sleep(RETRY_DELAY)
            continue
        if logged >= 0:
            log.info("store reachable", extra={"waited": round(time.monotonic() - started, 1)})
        return
