"""The management API, compatible with AWS API Gateway's ``@connections``, and presence.

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

``GET /v1/users/{user}/presence`` (admin, or the user itself; ``me`` works)
says whether the user is online on any node and on how many connections.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from tidings.aws.web import ManagementCaller
from tidings.broker import Cluster, Gone
from tidings.core.errors import BadRequest, Forbidden, Unavailable
from tidings.web.deps import Caller
from tidings.web.runtime import Runtime


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


class PresenceResponse(BaseModel):
    userId: str
    online: bool
    connections: int = Field(description="Open connections of the user, on every node")
    connectionIds: list[str]


def aws_error(status: int, kind: str, message: str) -> JSONResponse:
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


def management_router(runtime: Runtime, cluster: Cluster) -> APIRouter:
    router = APIRouter()

    @router.post(
        "/@connections/{connection_id}",
        tags=["management"],
        summary="Write the request body to one connection as a text frame (admin)",
        responses={
            **_ERRORS,
            413: {"model": AwsError, "description": "PayloadTooLargeException"},
        },
    )
    async def post_to_connection(
        connection_id: str, request: Request, who: ManagementCaller
    ) -> Response:
        data = await request.body()
        limit = runtime.settings.max_frame_bytes
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
    async def get_connection(connection_id: str, who: ManagementCaller) -> JSONResponse:
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
    async def delete_connection(connection_id: str, who: ManagementCaller) -> Response:
        try:
            await cluster.disconnect(connection_id)
        except (Gone, Unavailable) as exc:
            return _failure(exc)
        return Response(status_code=204)

    @router.get(
        "/v1/users/{user}/presence",
        tags=["presence"],
        summary="Whether the user is online, on how many connections (admin or the user)",
        response_model=PresenceResponse,
        responses={503: {"description": "other nodes cannot be asked"}},
    )
    async def presence(user: str, who: Caller) -> JSONResponse:
        user_id = who.user_id if user == "me" else user
        if not who.admin and user_id != who.user_id:
            raise Forbidden("a user token may only ask about its own presence")
        return JSONResponse((await cluster.presence(user_id)).to_json())

    return router
