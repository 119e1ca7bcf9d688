"""The management API, compatible with AWS API Gateway's ``@connections``.

``POST /@connections/{id}`` writes the raw request body to that socket as one
text frame; ``GET`` describes it; ``DELETE`` closes it. The connection may be
on any node: the cluster routes the call. Errors on these routes have AWS's
shape, ``{"message": ..., "__type": ...}`` with the ``x-amzn-ErrorType``
header, so AWS SDKs (``apigatewaymanagementapi``) raise their usual
exceptions: 410 ``GoneException`` for a connection that is certainly not
open, 413 ``PayloadTooLargeException``, and 503 when the node holding it
cannot be asked (never a 410 then). Auth: an AWS SigV4 signature with the
configured access key, or an admin bearer token (``tidings.aws.web``); a
refusal is a 403 in the same shape.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from tidings.broker import Cluster, Gone
from tidings.core.errors import BadRequest, Unavailable
from tidings.core.tokens import Identity


class AwsError(BaseModel):
    message: str
    type: str = Field(alias="__type")


class ConnectionIdentity(BaseModel):
    sourceIp: str
    userAgent: str


class ConnectionDescription(BaseModel):
    connectionId: str
    userId: str
    connectedAt: str
    lastActiveAt: str
    identity: ConnectionIdentity


def aws_error(status: int, kind: str, message: str) -> JSONResponse:
    """AWS's error shape: the body SDKs parse and the header naming the type."""
    return JSONResponse(
        {"message": message, "__type": kind},
        status_code=status,
        headers={"x-amzn-ErrorType": kind},
    )


def _failure(exc: Gone | Unavailable) -> JSONResponse:
    if isinstance(exc, Gone):
        return aws_error(410, "GoneException", exc.message)
    return aws_error(503, "ServiceUnavailableException", exc.message)


_ERRORS: dict[int | str, dict[str, object]] = {
    403: {"model": AwsError, "description": "not signed (SigV4) or not an admin token"},
    410: {"model": AwsError, "description": "GoneException: the connection is not open"},
    503: {"model": AwsError, "description": "the node holding the connection cannot be asked"},
}


def management_router(
    cluster: Cluster, caller: Callable[[Request], Awaitable[Identity]], max_frame_bytes: int
) -> APIRouter:
    """The ``@connections`` routes; ``caller`` authenticates each call (``aws.web``)."""
    router = APIRouter(dependencies=[Depends(caller)])

    @router.post(
        "/@connections/{connection_id}",
        tags=["management"],
        summary="Write the request body to one connection as a text frame (admin)",
        responses={
            **_ERRORS,
            413: {"model": AwsError, "description": "PayloadTooLargeException"},
        },
    )
    async def post_to_connection(connection_id: str, request: Request) -> Response:
        data = await request.body()
        limit = max_frame_bytes
        if len(data) > limit:
            return aws_error(
                413,
                "PayloadTooLargeException",
                f"the body is {len(data)} bytes; at most {limit} can be sent",
            )
        try:
            data.decode()
        except UnicodeDecodeError:
            raise BadRequest("the body must be UTF-8 text (it is sent as a text frame)") from None
        try:
            await cluster.post(connection_id, data)
        except (Gone, Unavailable) as exc:
            return _failure(exc)
        return Response(status_code=200)

    @router.get(
        "/@connections/{connection_id}",
        tags=["management"],
        summary="Describe one connection (admin)",
        response_model=ConnectionDescription,
        responses=_ERRORS,
    )
    async def get_connection(connection_id: str) -> JSONResponse:
        try:
            info = await cluster.describe(connection_id)
        except (Gone, Unavailable) as exc:
            return _failure(exc)
        return JSONResponse(info.to_json())

    @router.delete(
        "/@connections/{connection_id}",
        status_code=204,
        tags=["management"],
        summary="Close one connection, on whichever node holds it (admin)",
        responses=_ERRORS,
    )
    async def delete_connection(connection_id: str) -> Response:
        try:
            await cluster.disconnect(connection_id)
        except (Gone, Unavailable) as exc:
            return _failure(exc)
        return Response(status_code=204)

    return router
