"""``GET /v1/admin/overview``: what an operator watches, in one answer.

Assembled from what the node already keeps: the cluster's live nodes (every
node on Redis, this one otherwise) with their connections and users, this
node's connections by transport, its readiness (store and broker), its
lifetime counters (publishes, deliveries, handshakes) and its recent error
answers. Rates are left to the caller: two answers from the same ``nodeId``
a few seconds apart give them exactly, with no window kept here. Admin token.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from tidings import __version__
from tidings.broker import Cluster
from tidings.broker.local import load as local_load
from tidings.core.errors import Unavailable
from tidings.core.models import iso_ms
from tidings.web import readiness
from tidings.web.counters import WEBSOCKET
from tidings.web.deps import Admin, runtime_of
from tidings.web.errors import ErrorResponse


class NodeModel(BaseModel):
    nodeId: str
    local: bool = Field(description="True for the node that answered")
    connections: int
    users: int = Field(description="Distinct users connected to this node")


class ConnectionsModel(BaseModel):
    total: int = Field(description="Open connections on every live node")
    byTransport: dict[str, int] = Field(description="This node's connections by transport")


class HealthModel(BaseModel):
    status: str = Field(description="This node's readiness: ready, degraded or draining")
    store: str = Field(description="ok, or why the store cannot serve")
    broker: str = Field(description="ok, or why the broker link is down")
    cluster: str = Field(description="ok, or why the other nodes cannot be listed")


class CountersModel(BaseModel):
    publishes: int = Field(description="Publish requests stored by this node since it started")
    deliveries: int = Field(description="Live notification frames this node wrote")
    handshakes: int = Field(description="WebSocket handshakes this node accepted")
    errors: int = Field(description="Error answers this node gave (HTTP and WebSocket)")


class ErrorCountModel(BaseModel):
    transport: str
    code: str
    count: int


class RecentErrorModel(BaseModel):
    at: str = Field(description="When it was answered (ISO 8601, UTC)")
    transport: str
    code: str


class ErrorsModel(BaseModel):
    counts: list[ErrorCountModel] = Field(description="Since start, by transport and code")
    recent: list[RecentErrorModel] = Field(description="The latest error answers, newest first")


EXAMPLE: dict[str, Any] = {
    "nodeId": "q3XbT0aZ",
    "version": __version__,
    "time": "2026-12-04T21:30:00.000Z",
    "startedAt": "2026-12-04T20:00:00.000Z",
    "health": {"status": "ready", "store": "ok", "broker": "ok", "cluster": "ok"},
    "nodes": [
        {"nodeId": "q3XbT0aZ", "local": True, "connections": 2, "users": 2},
        {"nodeId": "Vd81kLmw", "local": False, "connections": 1, "users": 1},
    ],
    "connections": {"total": 3, "byTransport": {"websocket": 2}},
    "usersOnline": 2,
    "counters": {"publishes": 120, "deliveries": 240, "handshakes": 9, "errors": 1},
    "errors": {
        "counts": [{"transport": "http", "code": "unauthorized", "count": 1}],
        "recent": [{"at": "2026-12-04T21:29:58.120Z", "transport": "http", "code": "unauthorized"}],
    },
}


class Overview(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [EXAMPLE]})
    nodeId: str = Field(description="The node that answered; rates compare answers of one node")
    version: str
    time: str = Field(description="When this answer was assembled (ISO 8601, UTC, ms)")
    startedAt: str = Field(description="When this node started serving")
    health: HealthModel
    nodes: list[NodeModel] = Field(description="Every live node, the answering one first")
    connections: ConnectionsModel
    usersOnline: int = Field(description="Distinct users with a connection on any live node")
    counters: CountersModel
    errors: ErrorsModel


def admin_router(cluster: Cluster) -> APIRouter:
    router = APIRouter(prefix="/v1/admin", tags=["operations"])
    started = time.time()

    @router.get(
        "/overview",
        response_model=Overview,
        summary="Nodes, connections, users online, counters, health, recent errors (admin)",
        responses={
            401: {"model": ErrorResponse, "description": "no token, or a bad one"},
            403: {"model": ErrorResponse, "description": "not an admin token"},
        },
    )
    async def overview(request: Request, who: Admin) -> dict[str, Any]:
        """Poll it every second or two; its counters only grow while ``nodeId`` stays."""
        runtime = runtime_of(request)
        node, counters = runtime.node, runtime.counters
        ready = await readiness.check(node)
        cluster_state = readiness.OK
        try:
            loads = await cluster.nodes()
        except Unavailable as exc:
            cluster_state = exc.message
            loads = [local_load(node.hub, node.node_id)]
        errors = counters.errors
        return {
            "nodeId": node.node_id,
            "version": __version__,
            "time": iso_ms(int(time.time() * 1000)),
            "startedAt": iso_ms(int(started * 1000)),
            "health": {
                "status": ready.status,
                "store": ready.store,
                "broker": ready.broker,
                "cluster": cluster_state,
            },
            "nodes": [
                {
                    "nodeId": load.node_id,
                    "local": load.node_id == node.node_id,
                    "connections": load.connections,
                    "users": len(load.users),
                }
                for load in loads
            ],
            "connections": {
                "total": sum(load.connections for load in loads),
                "byTransport": {WEBSOCKET: len(node.hub)},
            },
            "usersOnline": len(frozenset().union(*(load.users for load in loads))),
            "counters": {
                "publishes": sum(node.published.values()),
                "deliveries": node.hub.deliveries,
                "handshakes": counters.handshakes,
                "errors": sum(errors.values()),
            },
            "errors": {
                "counts": [
                    {"transport": transport, "code": code, "count": count}
                    for (transport, code), count in sorted(errors.items())
                ],
                "recent": [
                    {"at": iso_ms(int(e.at * 1000)), "transport": e.transport, "code": e.code}
                    for e in reversed(errors.recent)
                ],
            },
        }

    return router
