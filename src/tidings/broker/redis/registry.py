"""The connection registry in Redis: who is connected, on which node.

Keys, under the deployment's prefix ``P`` (the ``prefix`` of the broker URL):

    P:nodes              set     ids of the nodes that may have entries
    P:node:<node>        string  heartbeat; expires ``node_ttl`` after the node's last beat
    P:node:<node>:conns  hash    connection id -> user id: all that node registered
    P:user:<user>        set     the user's connection ids, on every node

Redis holds nothing that cannot be rebuilt: every node keeps its own
connections in memory and rewrites its entries whenever they may have been
lost (Redis restarted, the link broke, the heartbeat expired). A node that
dies leaves its entries behind; readers ignore them once its heartbeat has
expired, and the first node to notice removes them in one script, which
checks the heartbeat again inside Redis so it can never race a node that
came back. Plain Redis only: the reap script touches keys it computes, which
Redis Cluster does not allow.
"""

from __future__ import annotations

from typing import Any

from tidings.broker.cluster import node_of

REAP = """
if redis.call('EXISTS', KEYS[1]) == 1 then return -1 end
local entries = redis.call('HGETALL', KEYS[2])
for i = 1, #entries, 2 do
  redis.call('SREM', ARGV[2] .. entries[i + 1], entries[i])
end
redis.call('DEL', KEYS[2])
redis.call('SREM', KEYS[3], ARGV[1])
return #entries / 2
"""
"""KEYS: heartbeat, conns hash, nodes set; ARGV: node id, user key prefix.
Returns -1 if the node is alive, else how many entries it removed."""


class Registry:
    """Key names and the operations on them; the caller owns the client and
    runs every write of one node from one task, so writes stay in order."""

    def __init__(self, prefix: str, node_id: str, *, ttl: float) -> None:
        self.prefix = prefix
        self.node_id = node_id
        self.ttl_ms = max(int(ttl * 1000), 1)
        self.nodes_key = f"{prefix}:nodes"
        self.user_prefix = f"{prefix}:user:"

    def heartbeat_key(self, node_id: str) -> str:
        return f"{self.prefix}:node:{node_id}"

    def conns_key(self, node_id: str) -> str:
        return f"{self.prefix}:node:{node_id}:conns"

    def user_key(self, user_id: str) -> str:
        return self.user_prefix + user_id

    def channel(self, node_id: str) -> str:
        """The pub/sub channel a node listens on for calls and replies."""
        return f"{self.prefix}:node:{node_id}"

    async def beat(self, client: Any) -> bool:
        """Refresh this node's heartbeat. False when it had expired or Redis lost
        it: then the entries may be gone too and the caller must ``rebuild``."""
        async with client.pipeline(transaction=False) as pipe:
            pipe.set(self.heartbeat_key(self.node_id), b"1", px=self.ttl_ms, get=True)
            pipe.sadd(self.nodes_key, self.node_id)
            previous, _ = await pipe.execute()
        return previous is not None

    async def write(self, client: Any, changes: list[tuple[bool, str, str]]) -> None:
        """Apply ``(added, connection id, user id)`` changes, in order, in one round trip."""
        conns = self.conns_key(self.node_id)
        async with client.pipeline(transaction=False) as pipe:
            for added, connection_id, user_id in changes:
                if added:
                    pipe.hset(conns, connection_id, user_id)
                    pipe.sadd(self.user_key(user_id), connection_id)
                else:
                    pipe.hdel(conns, connection_id)
                    pipe.srem(self.user_key(user_id), connection_id)
            await pipe.execute()

    async def rebuild(self, client: Any, live: dict[str, str]) -> None:
        """Make this node's entries exactly ``live`` (connection id -> user id),
        heartbeat included, in one transaction."""
        conns = self.conns_key(self.node_id)
        old = await client.hgetall(conns)
        stale = [(c.decode(), u.decode()) for c, u in old.items() if c.decode() not in live]
        async with client.pipeline(transaction=True) as pipe:
            pipe.set(self.heartbeat_key(self.node_id), b"1", px=self.ttl_ms)
            pipe.sadd(self.nodes_key, self.node_id)
            for connection_id, user_id in stale:
                pipe.hdel(conns, connection_id)
                pipe.srem(self.user_key(user_id), connection_id)
            if live:
                pipe.hset(conns, mapping=live)
                for connection_id, user_id in live.items():
                    pipe.sadd(self.user_key(user_id), connection_id)
            await pipe.execute()

    async def leave(self, client: Any) -> None:
        """Remove this node and all its entries (a clean stop)."""
        await self.rebuild(client, {})
        async with client.pipeline(transaction=True) as pipe:
            pipe.delete(self.heartbeat_key(self.node_id), self.conns_key(self.node_id))
            pipe.srem(self.nodes_key, self.node_id)
            await pipe.execute()

    async def other_nodes(self, client: Any) -> list[str]:
        """The ids of the other nodes that may have entries (alive or not yet reaped)."""
        members = await client.smembers(self.nodes_key)
        return sorted(m.decode() for m in members if m.decode() != self.node_id)

    async def reap(self, client: Any) -> dict[str, int]:
        """Remove the entries of every other node whose heartbeat expired. Returns,
        for each other node, -1 if it is alive, else how many entries it had."""
        others = await self.other_nodes(client)
        if not others:
            return {}
        async with client.pipeline(transaction=False) as pipe:
            for node_id in others:
                keys = (self.heartbeat_key(node_id), self.conns_key(node_id), self.nodes_key)
                pipe.eval(REAP, len(keys), *keys, node_id, self.user_prefix)
            results = await pipe.execute()
        return {node_id: int(r) for node_id, r in zip(others, results, strict=True)}

    async def connections(self, client: Any, user_id: str) -> list[str]:
        """The user's connection ids on other nodes whose heartbeat is alive."""
        members = [m.decode() for m in await client.smembers(self.user_key(user_id))]
        others = [m for m in members if node_of(m) not in (None, self.node_id)]
        nodes = sorted({m[: len(self.node_id)] for m in others})
        if not nodes:
            return []
        async with client.pipeline(transaction=False) as pipe:
            for node_id in nodes:
                pipe.exists(self.heartbeat_key(node_id))
            alive = await pipe.execute()
        live = {node_id for node_id, up in zip(nodes, alive, strict=True) if up}
        return sorted(m for m in others if node_of(m) in live)

    async def others(self, client: Any) -> dict[str, list[str]]:
        """Every other node whose heartbeat is alive: the user ids of its entries."""
        others = await self.other_nodes(client)
        if not others:
            return {}
        async with client.pipeline(transaction=False) as pipe:
            for node_id in others:
                pipe.exists(self.heartbeat_key(node_id))
                pipe.hvals(self.conns_key(node_id))
            found = await pipe.execute()
        return {
            node_id: [user.decode() for user in found[2 * i + 1]]
            for i, node_id in enumerate(others)
            if found[2 * i]
        }

    async def node_alive(self, client: Any, node_id: str) -> bool:
        return bool(await client.exists(self.heartbeat_key(node_id)))
