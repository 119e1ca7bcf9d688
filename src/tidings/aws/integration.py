"""HTTP integrations: POST an event to a route's URL, read back a Lambda proxy result.

One ``httpx.AsyncClient`` for every route and connection, so connections to
a backend are pooled and reused. Each call is bounded by the integration
timeout as a whole (connect, send, wait and read together), API Gateway's 29
seconds by default.

What counts as a failure (``IntegrationFailed``): the backend cannot be
reached, does not answer in time, answers with a status other than 2xx, or
answers something that is not a Lambda proxy result (``events.IntegrationResponse``).
A handler that ran and returned ``{"statusCode": 500}`` is not a failure: that
is its answer.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
import orjson

from tidings import __version__
from tidings.aws.events import BadAnswer, Event, IntegrationResponse
from tidings.aws.routes import Route
from tidings.logs import redact_url

log = logging.getLogger("tidings.aws")

MAX_ANSWER_BYTES = 1024 * 1024
"""An integration's answer is read up to this many bytes; a larger one is a failure."""


class IntegrationFailed(Exception):
    def __init__(self, message: str, *, timed_out: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.timed_out = timed_out


class Integrations:
    """Calls route integrations over one pooled HTTP client."""

    def __init__(self, *, timeout: float, client: httpx.AsyncClient | None = None) -> None:
        self.timeout = timeout
        self.client = client or httpx.AsyncClient(
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=64),
            headers={"User-Agent": f"tidings/{__version__}", "Accept": "application/json"},
            # Backends are the operator's own services: no proxy from the environment.
            trust_env=False,
        )

    async def invoke(self, route: Route, event: Event) -> IntegrationResponse:
        """POST ``event`` to the route's URL; its answer, or ``IntegrationFailed``."""
        try:
            async with asyncio.timeout(self.timeout):
                return await self._post(route, event)
        except TimeoutError:
            raise IntegrationFailed(
                f"no answer from {redact_url(route.url)} within {self.timeout:g} s", timed_out=True
            ) from None
        except httpx.HTTPError as exc:
            raise IntegrationFailed(
                f"{redact_url(route.url)}: {type(exc).__name__}: {exc}"
            ) from None
        except BadAnswer as exc:
            raise IntegrationFailed(f"{redact_url(route.url)}: {exc}") from None

    async def _post(self, route: Route, event: Event) -> IntegrationResponse:
        content = orjson.dumps(event)
        headers = {"Content-Type": "application/json"}
        async with self.client.stream("POST", route.url, content=content, headers=headers) as r:
            if not 200 <= r.status_code < 300:
                raise IntegrationFailed(
                    f"{redact_url(route.url)} answered HTTP {r.status_code}", timed_out=False
                )
            chunks: list[bytes] = []
            size = 0
            async for chunk in r.aiter_bytes():
                size += len(chunk)
                if size > MAX_ANSWER_BYTES:
                    raise BadAnswer(f"the answer is over {MAX_ANSWER_BYTES} bytes")
                chunks.append(chunk)
        return IntegrationResponse.parse(b"".join(chunks))

    async def close(self) -> None:
        await self.client.aclose()


def describe(exc: BaseException) -> dict[str, Any]:
    """Log fields for a failed call."""
    if isinstance(exc, IntegrationFailed):
        return {"error": exc.message, "timedOut": exc.timed_out}
    return {"error": f"{type(exc).__name__}: {exc}"}
