"""``GET /metrics`` on the main port: the body comes from the metrics exporter,
which the composition root hands in, so the web layer needs no metrics library."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.responses import Response

Render = Callable[[str], tuple[bytes, str]]
"""The request's ``Accept`` header in; the exposition and its content type out."""


def mount_metrics(app: FastAPI, render: Render) -> None:
    async def metrics(request: Request) -> Response:
        body, content_type = render(request.headers.get("accept", ""))
        return Response(body, headers={"Content-Type": content_type})

    app.add_api_route("/metrics", metrics, methods=["GET"], include_in_schema=False)
