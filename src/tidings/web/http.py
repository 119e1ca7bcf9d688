"""The HTTP API (ASGI, FastAPI): publish, health, readiness. OpenAPI at /docs."""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from tidings import __version__
from tidings.core.errors import BadRequest, RateLimited, TidingsError
from tidings.core.models import iso_ms
from tidings.core.tokens import Identity
from tidings.web import readiness
from tidings.web.admin_page import admin_page_router
from tidings.web.counters import HTTP
from tidings.web.deps import admin
from tidings.web.errors import ErrorResponse, error_response
from tidings.web.inbox_api import inbox_routes, topic_routes
from tidings.web.page import mount_page
from tidings.web.runtime import Runtime


class PublishBody(BaseModel):
    """A notification for one user (``userId``), several (``userIds``), or a topic
    (``topic``; ``everyone`` reaches every user), stored once for a topic."""

    model_config = ConfigDict(extra="forbid")
    userId: str | None = Field(default=None, min_length=1, max_length=256)
    userIds: list[Annotated[str, Field(min_length=1, max_length=256)]] | None = Field(
        default=None, min_length=1, max_length=10_000
    )
    topic: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description="Letters, digits and _ . : - (first a letter or digit); `everyone`: all",
    )
    message: str = Field(max_length=32_768)
    data: dict[str, Any] | None = None
    tags: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        default_factory=list, max_length=16
    )
    expiresAt: datetime | None = Field(
        default=None, description="When it leaves the inbox; default: the server's --default-ttl"
    )
    idempotencyKey: str | None = Field(default=None, min_length=1, max_length=256)


class Recipient(BaseModel):
    userId: str
    seq: int


class PublishResponse(BaseModel):
    notificationId: str
    createdAt: str
    recipients: list[Recipient]
    topic: str | None = Field(default=None, description="For a topic publish")
    seq: int | None = Field(default=None, description="The seq in the topic's stream")
    duplicate: bool = Field(description="True when an earlier request with this key answered")


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's description, minus the 422 it documents everywhere: invalid
    input here is a 400 with the error body (section 7 of the protocol)."""
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        for path in schema["paths"].values():
            for operation in path.values():
                operation.get("responses", {}).pop("422", None)
        for name in ("HTTPValidationError", "ValidationError"):
            schema.get("components", {}).get("schemas", {}).pop(name, None)
        app.openapi_schema = schema
    return app.openapi_schema


def _ms(stamp: datetime | None) -> int | None:
    if stamp is None:
        return None
    if stamp.tzinfo is None:
        raise BadRequest("expiresAt needs a time zone (e.g. a trailing Z)")
    return int(stamp.timestamp() * 1000)


def build_app(runtime: Runtime) -> FastAPI:
    app = FastAPI(
        title="tidings",
        version=__version__,
        description="Self-hosted real-time notifications. WebSocket endpoint: /ws "
        "(see docs/protocol.md).",
        responses={
            400: {"model": ErrorResponse},
            401: {"model": ErrorResponse},
            403: {"model": ErrorResponse},
        },
    )
    app.state.runtime = runtime
    app.openapi = functools.partial(_openapi, app)  # type: ignore[method-assign]
    app.include_router(_routes(runtime))
    app.include_router(inbox_routes())
    app.include_router(topic_routes())
    mount_page(app, runtime)
    app.include_router(admin_page_router())
    if runtime.settings.allowed_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(runtime.settings.allowed_origins),
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key"],
            max_age=600,
        )

    errors = runtime.counters.errors

    @app.exception_handler(TidingsError)
    async def on_tidings_error(request: Request, exc: TidingsError) -> JSONResponse:
        errors[HTTP, exc.code] += 1
        response = error_response(exc.status, exc.code, exc.message)
        if isinstance(exc, RateLimited):
            response.headers["Retry-After"] = exc.retry_after_header
        return response

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors[HTTP, "bad_request"] += 1
        first = exc.errors()[0] if exc.errors() else {}
        if tuple(first.get("loc", ())) == ("body",) and isinstance(first.get("input"), bytes):
            # FastAPI reads a body as JSON only when its Content-Type says JSON (or is absent)
            sent = request.headers.get("content-type", "")
            message = (
                f"the body must be JSON, sent with Content-Type: application/json, not {sent!r}"
            )
            return error_response(400, "bad_request", message)
        where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
        message = f"{where}: {first.get('msg', 'invalid')}" if where else first.get("msg", "")
        return error_response(400, "bad_request", message or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        message = str(exc.detail)
        if exc.status_code == 404:
            message = f"no route {request.method} {request.url.path}"
        errors[HTTP, code] += 1
        return error_response(exc.status_code, code, message)

    return app


def _routes(runtime: Runtime) -> APIRouter:
    router = APIRouter()

    @router.post(
        "/v1/notifications",
        status_code=201,
        response_model=PublishResponse,
        responses={
            409: {"model": ErrorResponse, "description": "idempotency key reused"},
            429: {
                "model": ErrorResponse,
                "description": "over this admin token's publish rate; nothing stored;"
                " retry after the Retry-After header's seconds",
            },
            503: {
                "model": ErrorResponse,
                "description": "store unavailable; nothing stored, unless the message says"
                " the outcome is unknown (retry with the same idempotency key)",
            },
        },
        tags=["publish"],
        summary="Publish a notification to one user or a list of users (admin)",
    )
    async def publish(
        body: PublishBody,
        who: Annotated[Identity, Depends(admin)],
        idempotency_key: Annotated[
            str | None, Header(alias="Idempotency-Key", min_length=1, max_length=256)
        ] = None,
    ) -> Response:
        """Stores the notification for every recipient in one transaction, pushes it
        to their connections on every node, and answers after the commit."""
        if sum(x is not None for x in (body.userId, body.userIds, body.topic)) != 1:
            raise BadRequest("give exactly one of userId, userIds and topic")
        runtime.throttle.publish(who)
        recipients = [body.userId] if body.userId is not None else list(body.userIds or [])
        result = await runtime.node.publish(
            recipients,
            body.message,
            data=body.data,
            sender=who.user_id,
            idempotency_key=idempotency_key or body.idempotencyKey,
            tags=body.tags,
            expires_at=_ms(body.expiresAt),
            topic=body.topic,
        )
        # Encoded here, in PublishResponse's shape: a returned Response skips
        # FastAPI's validation and serialization of the model on the hot path.
        answer = {
            "notificationId": result.id,
            "createdAt": iso_ms(result.created_at),
            "recipients": [{"userId": u, "seq": s} for u, s in result.seqs],
            "topic": result.topic,
            "seq": result.topic_seq or None,
            "duplicate": result.duplicate,
        }
        return Response(orjson.dumps(answer), status_code=201, media_type="application/json")

    @router.get("/healthz", tags=["operations"], summary="Liveness: the process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get(
        "/readyz",
        tags=["operations"],
        summary="Readiness: store and broker reachable, store writes succeed, not draining",
        responses={503: {"description": "not ready"}},
    )
    async def readyz() -> JSONResponse:
        found = await readiness.check(runtime.node)
        return JSONResponse(
            {
                "status": found.status,
                "store": found.store,
                "broker": found.broker,
                "connections": len(runtime.node.hub),
            },
            status_code=200 if found.ready else 503,
        )

    return router
