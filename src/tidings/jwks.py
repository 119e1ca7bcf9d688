"""An identity provider's public keys, fetched from its JWKS URL and kept fresh.

Verification never waits for the network except for a token naming a kid
not seen yet (the provider rotated its keys): ``refresh`` fetches then, at
most once per ``min_interval`` seconds (so tokens with made-up kids cannot
make the server hammer the provider), and every handshake waiting meanwhile
shares that one fetch. Besides, ``run`` fetches every ``refresh_every``
seconds in the background. A failed fetch keeps the keys already in use and
is logged; the next background try comes after ``min_interval``.
"""

from __future__ import annotations

import asyncio
import logging
import time

import httpx
import orjson

from tidings import __version__
from tidings.core.keys import BadKeySet, Keys
from tidings.logs import redact_url

log = logging.getLogger("tidings.jwks")

MIN_INTERVAL = 10.0
"""Seconds between two fetches for unknown kids, however many arrive."""
TIMEOUT = 5.0
"""Seconds one fetch may take as a whole."""
MAX_BYTES = 1024 * 1024
"""A JWKS larger than this is refused (a provider's holds a few keys)."""


class JwksSource:
    """Installs the keys of ``url`` into ``keys`` and is its refresher."""

    def __init__(
        self,
        url: str,
        keys: Keys,
        *,
        refresh_every: float = 300.0,
        min_interval: float = MIN_INTERVAL,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.url = url
        self.keys = keys
        self.refresh_every = refresh_every
        self.min_interval = min_interval
        self._client = client or httpx.AsyncClient(
            timeout=httpx.Timeout(TIMEOUT),
            headers={"User-Agent": f"tidings/{__version__}", "Accept": "application/json"},
            follow_redirects=True,
        )
        self._fetching: asyncio.Task[bool] | None = None
        self._last_refresh = -float("inf")
        """When an unknown kid last made it fetch (the background schedule does not count)."""
        self.fetches = 0
        """Fetches tried (for the log and the tests' figures)."""
        keys.refresher = self

    async def refresh(self, kid: str | None) -> bool:
        if kid in self.keys.public:
            return True
        now = time.monotonic()
        if self._fetching is None and now - self._last_refresh >= self.min_interval:
            self._last_refresh = now
            self._fetching = asyncio.create_task(self._fetch())
        if self._fetching is not None:
            await asyncio.shield(self._fetching)
        return kid in self.keys.public or (kid is None and len(self.keys.public) == 1)

    async def fetch(self) -> bool:
        """Fetch now (at start-up and on the background schedule); whether keys were installed."""
        if self._fetching is None:
            self._fetching = asyncio.create_task(self._fetch())
        return await asyncio.shield(self._fetching)

    async def run(self) -> None:
        """Fetch again every ``refresh_every`` seconds (sooner after a failure), until cancelled."""
        while True:
            ok = bool(self.keys.public)
            await asyncio.sleep(self.refresh_every if ok else self.min_interval)
            await self.fetch()

    async def close(self) -> None:
        if self._fetching is not None:
            self._fetching.cancel()
        await self._client.aclose()

    async def _fetch(self) -> bool:
        self.fetches += 1
        where = redact_url(self.url)
        try:
            count = self.keys.install(await self._download())
        except Exception as exc:  # whatever the network or the document did: keep the keys
            reason = f"{type(exc).__name__}: {exc}"
            log.error(
                "JWKS fetch failed; keeping the keys in use", extra={"url": where, "reason": reason}
            )
            return False
        finally:
            self._fetching = None
        log.info("JWKS keys installed", extra={"url": where, "keys": count})
        return True

    async def _download(self) -> object:
        async with asyncio.timeout(TIMEOUT):
            async with self._client.stream("GET", self.url) as response:
                if response.status_code != 200:
                    raise BadKeySet(f"HTTP {response.status_code}")
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_BYTES:
                        raise BadKeySet(f"larger than {MAX_BYTES} bytes")
        return orjson.loads(body)
