"""The HTTP API (ASGI, FastAPI): publish, health, readiness. OpenAPI at /docs."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from tidings import __version__
from tidings.core.errors import AuthError, BadRequest, Forbidden, TidingsError, Unavailable
from tidings.core.models import iso_ms
from tidings.core.protocol import check_data
from tidings.core.tokens import Identity, verify
from tidings.web.runtime import Runtime


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody


class PublishBody(BaseModel):
    """A notification for one user (``userId``) or several (``userIds``)."""

    model_config = ConfigDict(extra="forbid")
    userId: str | None = Field(default=None, min_length=1, max_length=256)
    userIds: list[Annotated[str, Field(min_length=1, max_length=256)]] | None = Field(
        default=None, min_length=1, max_length=10_000
    )
    message: str = Field(max_length=32_768)
    data: dict[str, Any] | None = None
    idempotencyKey: str | None = Field(default=None, min_length=1, max_length=256)


class Recipient(BaseModel):
    userId: str
    seq: int


class PublishResponse(BaseModel):
    notificationId: str
    createdAt: str
    recipients: list[Recipient]
    duplicate: bool = Field(description="True when an earlier request with this key answered")


def error_response(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


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
    app.include_router(_routes(runtime))

    @app.exception_handler(TidingsError)
    async def on_tidings_error(request: Request, exc: TidingsError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
        message = f"{where}: {first.get('msg', 'invalid')}" if where else first.get("msg", "")
        return error_response(400, "bad_request", message or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        message = str(exc.detail)
        if exc.status_code == 404:
            message = f"no route {request.method} {request.url.path}"
        return error_response(exc.status_code, code, message)

    return app


def identity(request: Request, authorization: Annotated[str | None, Header()] = None) -> Identity:
    """The caller, from ``Authorization: Bearer <token>``."""
    if not authorization or not authorization.lower().startswith("bearer "):
        raise AuthError("missing token: send Authorization: Bearer <token>")
    runtime: Runtime = request.app.state.runtime
    return verify(runtime.secret, authorization[7:].strip())


def admin(who: Annotated[Identity, Depends(identity)]) -> Identity:
    if not who.admin:
        raise Forbidden("this needs an admin token")
    return who


def _routes(runtime: Runtime) -> APIRouter:
    router = APIRouter()

    @router.post(
        "/v1/notifications",
        status_code=201,
        response_model=PublishResponse,
        tags=["publish"],
        summary="Publish a notification to one user or a list of users (admin)",
    )
    async def publish(
        body: PublishBody,
        who: Annotated[Identity, Depends(admin)],
        idempotency_key: Annotated[
            str | None, Header(alias="Idempotency-Key", min_length=1, max_length=256)
        ] = None,
    ) -> PublishResponse:
        """Stores the notification for every recipient in one transaction, pushes it
        to their connections on every node, and answers after the commit."""
        if (body.userId is None) == (body.userIds is None):
            raise BadRequest("give exactly one of userId and userIds")
        recipients = [body.userId] if body.userId is not None else list(body.userIds or [])
        data = check_data(body.data, runtime.settings.limits)
        result = await runtime.node.publish(
            recipients,
            body.message,
            data=data,
            sender=who.user_id,
            idempotency_key=idempotency_key or body.idempotencyKey,
        )
        return PublishResponse(
            notificationId=result.id,
            createdAt=iso_ms(result.created_at),
            recipients=[Recipient(userId=u, seq=s) for u, s in result.seqs],
            duplicate=result.duplicate,
        )

    @router.get("/healthz", tags=["operations"], summary="Liveness: the process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get(
        "/readyz",
        tags=["operations"],
        summary="Readiness: store and broker reachable, not draining",
        responses={503: {"description": "not ready"}},
    )
    async def readyz() -> JSONResponse:
        node = runtime.node
        checks: dict[str, str] = {}
        for name, probe in (("store", node.store.ping), ("broker", node.broker.ping)):
            try:
                await probe()
                checks[name] = "ok"
            except Unavailable as exc:
                checks[name] = exc.message
        ready = not node.draining and all(v == "ok" for v in checks.values())
        status = "draining" if node.draining else ("ready" if ready else "degraded")
        return JSONResponse(
            {"status": status, **checks, "connections": len(node.hub)},
            status_code=200 if ready else 503,
        )

    return router
