"""The HTTP side of API Gateway compatibility: who may call ``@connections``, AWS's
error shape, and the ``/{stage}/@connections`` paths.

``management_caller`` accepts an AWS Signature Version 4 signed with the
configured access key (what ``boto3`` and ``@aws-sdk/client-apigatewaymanagementapi``
send) or an admin bearer token. Anything else is a 403 in AWS's shape
(``{"message", "__type"}`` and ``x-amzn-ErrorType``), so SDKs raise their usual
exceptions: ``MissingAuthenticationTokenException`` (nothing sent),
``UnrecognizedClientException`` (unknown access key), ``InvalidSignatureException``
(wrong secret, altered request, clock off by more than 15 minutes),
``IncompleteSignatureException`` (malformed), ``ForbiddenException`` (a bad or
non-admin token).

``install`` wires it into the app: the error handler, the stage prefix and
the ``@connections`` routes; it returns the ``Gateway`` the WebSocket
transport calls.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from tidings.aws.gateway import Gateway
from tidings.aws.management import aws_error, management_router
from tidings.aws.settings import SIGNATURE_WINDOW, GatewaySettings
from tidings.aws.sigv4 import SignatureError, SignedRequest, Verifier
from tidings.broker import Cluster
from tidings.core.errors import AuthError, Forbidden
from tidings.core.keys import Keys
from tidings.core.tokens import Identity, bearer, verify_fresh
from tidings.logs import redact_url

log = logging.getLogger("tidings.aws")


class AwsAuthError(Forbidden):
    """A refused ``@connections`` call; ``kind`` is the AWS error type."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


async def on_aws_auth_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AwsAuthError)
    return aws_error(exc.status, exc.kind, exc.message)


def signed_request(request: Request, body: bytes) -> SignedRequest:
    scope = request.scope
    raw_path = scope.get("raw_path") or scope["path"].encode()
    return SignedRequest(
        method=request.method,
        raw_path=raw_path.decode("latin-1"),
        raw_query=scope.get("query_string", b"").decode("latin-1"),
        headers=tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]),
        body=body,
    )


def management_caller(
    settings: GatewaySettings, keys: Keys
) -> Callable[[Request], Awaitable[Identity]]:
    """Who calls a management route: a valid SigV4 signature, or an admin token."""

    async def caller(request: Request) -> Identity:
        return await _caller(request, settings, keys)

    return caller


async def _caller(request: Request, settings: GatewaySettings, keys: Keys) -> Identity:
    header = request.headers.get("authorization")
    if not header:
        raise AwsAuthError("MissingAuthenticationTokenException", "Missing Authentication Token")
    if header.startswith("AWS4-"):
        if settings.access_key_id is None or settings.secret_access_key is None:
            log.warning(
                "SigV4-signed management call refused: no --aws-access-key-id is configured"
            )
            raise AwsAuthError(
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
            )
        verifier = Verifier(
            settings.access_key_id, settings.secret_access_key, window=SIGNATURE_WINDOW
        )
        try:
            key = verifier.verify(signed_request(request, await request.body()))
        except SignatureError as exc:
            log.warning(
                "SigV4-signed management call refused",
                extra={"kind": exc.kind, "reason": exc.detail, "path": request.url.path},
            )
            raise AwsAuthError(exc.kind, exc.message) from None
        return Identity(user_id=f"aws:{key}", admin=True)
    token = bearer(header)
    if token is not None:
        try:
            who = await verify_fresh(keys, token)
        except AuthError as exc:
            raise AwsAuthError("ForbiddenException", exc.message) from None
        if not who.admin:
            raise AwsAuthError(
                "ForbiddenException", "this needs an admin token or an AWS SigV4 signature"
            )
        return who
    raise AwsAuthError(
        "IncompleteSignatureException",
        "Authorization must be AWS4-HMAC-SHA256 (AWS SigV4) or Bearer <admin token>",
    )


class StagePrefix:
    """Serves ``/{stage}/@connections/...`` as ``/@connections/...``.

    The prefix moves into ``root_path``, so routing sees the short path while
    ``raw_path`` (what a SigV4 signature covers) stays as the client sent it.
    """

    def __init__(self, app: ASGIApp, stage: str) -> None:
        self.app = app
        self.prefix = f"/{stage}"
        self._connections = f"/{stage}/@connections/"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(self._connections):
            scope = {**scope, "root_path": scope.get("root_path", "") + self.prefix}
        await self.app(scope, receive, send)


def install(
    app: FastAPI, settings: GatewaySettings, keys: Keys, cluster: Cluster, max_frame_bytes: int
) -> Gateway:
    """Wire API Gateway compatibility into the app; the gateway the transport will call."""
    app.add_exception_handler(AwsAuthError, on_aws_auth_error)
    app.add_middleware(StagePrefix, stage=settings.stage_name)
    app.include_router(
        management_router(cluster, management_caller(settings, keys), max_frame_bytes)
    )
    gateway = Gateway(settings)
    if gateway.active:
        log.info(
            "routes",
            extra={
                "routes": {
                    key: redact_url(route.url) + (" (two-way)" if route.two_way else "")
                    for key, route in settings.routes.routes.items()
                },
                "routeSelectionExpression": settings.routes.expression.text,
                "integrationTimeout": settings.integration_timeout,
                "stage": settings.stage_name,
            },
        )
    return gateway
