"""``GET /v1/users/{user}/presence``: whether a user is online on any node.

Admin, or the user itself (``me`` works). The cluster counts this node's
connections exactly and other nodes' as last registered; 503 when other
nodes cannot be asked.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from tidings.broker import Cluster
from tidings.core.errors import Forbidden
from tidings.web.deps import Caller


class PresenceResponse(BaseModel):
    userId: str
    online: bool
    connections: int = Field(description="Open connections of the user, on every node")
    connectionIds: list[str]


def presence_router(cluster: Cluster) -> APIRouter:
    router = APIRouter()

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
