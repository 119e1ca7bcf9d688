"""Whether this node can serve: store and broker reachable, store writes work,
not draining. One check, read by ``/readyz`` and by the operator overview."""

from __future__ import annotations

from dataclasses import dataclass

from tidings.core.errors import Unavailable
from tidings.node import Node

OK = "ok"


@dataclass(frozen=True, slots=True)
class Readiness:
    status: str
    """``ready``, ``degraded`` (a check failed) or ``draining``."""
    store: str
    """``ok``, or why the store cannot serve (unreachable, writes failing)."""
    broker: str
    """``ok``, or why the broker link is down."""

    @property
    def ready(self) -> bool:
        return self.status == "ready"


async def check(node: Node) -> Readiness:
    """Ping the store (which probes a write after a failed one) and the broker."""
    checks: dict[str, str] = {}
    for name, probe in (("store", node.store.ping), ("broker", node.broker.ping)):
        try:
            await probe()
            checks[name] = OK
        except Unavailable as exc:
            checks[name] = exc.message
    healthy = all(value == OK for value in checks.values())
    status = "draining" if node.draining else ("ready" if healthy else "degraded")
    return Readiness(status, checks["store"], checks["broker"])
