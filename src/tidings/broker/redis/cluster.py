"""The cluster over Redis: the connection registry, and calls routed to a node.

Every node keeps one pub/sub subscription to its own channel
(``<prefix>:node:<node id>``) and one small pool for commands. A call on a
connection of another node (``@connections``) is a request published on that
node's channel and a reply published on the caller's, matched by request id:

- nobody subscribed to the channel: if the node's heartbeat has expired the
  node is dead and the connection gone (410); otherwise the node is alive
  but unreachable right now (503);
- no reply within ``timeout``: 503; the link down on the caller's side: 503.

A node beats every ``node_ttl / 3`` seconds, reaps the entries of nodes whose
heartbeat expired, and rewrites its own entries (``Registry.rebuild``) when
its heartbeat or its link was lost. When a peer's heartbeat disappears, and
every ``audit_interval`` in any case, it asks the node to compare its
connections with the store's heads (the ``repair`` it was handed): the safety
net for a notification that a node committed and then died before publishing.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import Any

import orjson

from tidings.broker import local
from tidings.broker.cluster import (
    ConnectionInfo,
    Gone,
    Member,
    Members,
    NodeLoad,
    Presence,
    Repair,
    node_of,
)
from tidings.broker.redis import link
from tidings.broker.redis.registry import Registry
from tidings.core.errors import Unavailable
from tidings.core.models import JSONObject

log = logging.getLogger("tidings.cluster")


class RedisCluster:
    def __init__(
        self,
        members: Members,
        node_id: str,
        repair: Repair,
        url: str,
        *,
        prefix: str = "tidings",
        node_ttl: float = 10.0,
        audit_interval: float = 30.0,
        backoff: link.Backoff = link.DEFAULT_BACKOFF,
    ) -> None:
        self.members = members
        self.node_id = node_id
        self.repair = repair
        self.url = url
        self.registry = Registry(prefix, node_id, ttl=node_ttl)
        self.node_ttl = node_ttl
        self.timeout = backoff.timeout
        """Seconds a routed call may take before it answers 503."""
        self.backoff = backoff
        self.audit_interval = audit_interval
        self.up = False
        """True while this node's subscription holds: calls can be routed."""
        self._client: Any = None
        self._live: dict[str, str] = {}
        """This node's open connections (id -> user id): the truth the registry mirrors."""
        self._changes: list[tuple[bool, str, str]] = []
        self._rebuild = True
        self._wake = asyncio.Event()
        self._pending: dict[str, asyncio.Future[JSONObject]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._replies: set[asyncio.Task[None]] = set()
        self._peers: set[str] = set()
        """Other nodes alive at the last beat."""

    @classmethod
    def from_url(
        cls, members: Members, node_id: str, repair: Repair, url: str, *, node_ttl: float = 10.0
    ) -> RedisCluster:
        """The broker's URL: the same Redis and ``prefix``."""
        url, prefix = link.split_prefix(url)
        return cls(members, node_id, repair, url, prefix=prefix, node_ttl=node_ttl)

    # -- lifecycle -----------------------------------------------------------

    async def start(self) -> None:
        """Begin mirroring this node's connections; never fails for a Redis that is
        down: the link keeps trying, and the registry is written once it holds."""
        self._client = link.connect(self.url, self.timeout)
        self._live = {conn.id: conn.user_id for conn in self.members}
        self.members.listen(self._added, self._removed)
        watch = link.hold(
            self._client,
            self.registry.channel(self.node_id),
            name="Redis cluster",
            on_message=self._on_message,
            on_up=self._link_up,
            on_down=self._link_down,
            backoff=self.backoff,
        )
        for name, loop in (("watch", watch), ("beat", self._beat()), ("write", self._write())):
            self._tasks.append(asyncio.create_task(loop, name=f"tidings-cluster-{name}"))

    async def stop(self) -> None:
        self.members.unlisten(self._added, self._removed)
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.up = False
        for future in self._pending.values():
            if not future.done():
                future.set_exception(Unavailable("this node is stopping"))
        if self._client is None:
            return
        try:
            async with asyncio.timeout(self.timeout):
                await self.registry.leave(self._client)
        except (*link.LINK_ERRORS, TimeoutError) as exc:
            log.warning("could not deregister; peers reap us later", extra={"error": str(exc)})
        await self._client.aclose()
        self._client = None

    # -- the registry --------------------------------------------------------

    def _added(self, conn: Member) -> None:
        self._live[conn.id] = conn.user_id
        self._change(True, conn.id, conn.user_id)

    def _removed(self, conn: Member) -> None:
        user_id = self._live.pop(conn.id, None)
        if user_id is not None:
            self._change(False, conn.id, user_id)

    def _change(self, added: bool, connection_id: str, user_id: str) -> None:
        if self.up and not self._rebuild:
            self._changes.append((added, connection_id, user_id))
        else:
            self._rebuild = True
        self._wake.set()

    async def _write(self) -> None:
        """The one writer of this node's entries: changes in order, or a rebuild."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not self.up:
                continue
            try:
                if self._rebuild:
                    self._rebuild = False
                    self._changes.clear()
                    await self.registry.rebuild(self._client, dict(self._live))
                    report = log.info if self._live else log.debug
                    report("registered connections", extra={"connections": len(self._live)})
                elif self._changes:
                    changes, self._changes = self._changes, []
                    await self.registry.write(self._client, changes)
            except Exception as exc:
                # A link error is expected; anything else is a bug, yet the writer must live on.
                report = log.debug if isinstance(exc, link.LINK_ERRORS) else log.exception
                report("registry write failed; rebuilding later", extra={"error": str(exc)})
                self._rebuild = True

    async def _beat(self) -> None:
        interval = self.node_ttl / 3
        loop = asyncio.get_running_loop()
        audited = loop.time()
        while True:
            lost: set[str] = set()
            try:
                if not await self.registry.beat(self._client):
                    self._rebuild = True
                if self._rebuild:
                    self._wake.set()
                peers = await self.registry.reap(self._client)
                for node_id, entries in peers.items():
                    if entries >= 0:
                        extra = {"node": node_id, "entries": entries}
                        log.warning("reaped a dead node", extra=extra)
                alive = {node_id for node_id, entries in peers.items() if entries < 0}
                lost, self._peers = self._peers - alive, alive
            except Exception as exc:
                report = log.debug if isinstance(exc, link.LINK_ERRORS) else log.exception
                report("heartbeat failed", extra={"error": str(exc)})
            # A node that died may have committed notifications it never published.
            due = self.audit_interval and loop.time() - audited >= self.audit_interval
            if lost or due:
                audited = loop.time()
                try:
                    await self.repair()
                except Exception:
                    log.exception("repair failed")
            await asyncio.sleep(interval)

    # -- the link ------------------------------------------------------------

    def _link_up(self) -> None:
        self.up = True
        self._rebuild = True
        self._wake.set()

    def _link_down(self) -> None:
        self.up = False

    # -- calls between nodes ---------------------------------------------------

    def _on_message(self, data: bytes) -> None:
        head, _, body = data.partition(b"\n")
        try:
            message = orjson.loads(head)
            if "re" in message:
                future = self._pending.get(message["re"])
                if future is not None and not future.done():
                    future.set_result(message)
                return
            reply: JSONObject = {"re": message["id"]}
            connection_id, op = str(message["conn"]), message["op"]
            reply_to = str(message["from"])
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            log.error("dropped a cluster message that is not ours", extra={"error": str(exc)})
            return
        try:
            if op == "describe":
                reply["info"] = local.describe(self.members, connection_id).to_message()
            elif op == "post":
                local.post(self.members, connection_id, body)
            elif op == "close":
                local.disconnect(self.members, connection_id)
            else:
                reply["error"] = f"unknown call {op!r}"
        except Gone as exc:
            reply["gone"] = exc.message
        task = asyncio.ensure_future(self._reply(reply_to, reply))
        self._replies.add(task)
        task.add_done_callback(self._replies.discard)

    async def _reply(self, node_id: str, reply: JSONObject) -> None:
        try:
            await self._client.publish(self.registry.channel(node_id), orjson.dumps(reply))
        except link.LINK_ERRORS as exc:
            log.warning("could not answer a call", extra={"node": node_id, "error": str(exc)})

    async def _call(self, connection_id: str, op: str, body: bytes = b"") -> JSONObject:
        """Run ``op`` on the node holding ``connection_id``; raises Gone or Unavailable."""
        target = node_of(connection_id)
        if target is None:
            raise Gone(f"no open connection {connection_id!r}")
        if not self.up or self._client is None:
            raise Unavailable(
                f"connection {connection_id!r} is on node {target!r}, which cannot be "
                "reached: the link to Redis is down"
            )
        request_id = secrets.token_hex(8)
        future: asyncio.Future[JSONObject] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        head = {"op": op, "id": request_id, "conn": connection_id, "from": self.node_id}
        message = orjson.dumps(head) + b"\n" + body
        try:
            async with asyncio.timeout(self.timeout):
                heard = await self._client.publish(self.registry.channel(target), message)
                if not heard:
                    if not await self.registry.node_alive(self._client, target):
                        raise Gone(f"no open connection {connection_id!r} (its node is gone)")
                    raise Unavailable(f"node {target!r} holding {connection_id!r} is not listening")
                reply = await future
        except TimeoutError:
            raise Unavailable(
                f"node {target!r} holding {connection_id!r} did not answer in {self.timeout:g}s"
            ) from None
        except link.LINK_ERRORS as exc:
            raise Unavailable(f"cannot reach node {target!r}: {exc}") from None
        finally:
            self._pending.pop(request_id, None)
        if "gone" in reply:
            raise Gone(str(reply["gone"]))
        if "error" in reply:
            raise Unavailable(f"node {target!r} refused the call: {reply['error']}")
        return reply

    def _is_local(self, connection_id: str) -> bool:
        return node_of(connection_id) == self.node_id

    async def describe(self, connection_id: str) -> ConnectionInfo:
        if self._is_local(connection_id):
            return local.describe(self.members, connection_id)
        reply = await self._call(connection_id, "describe")
        return ConnectionInfo.from_message(reply["info"])

    async def post(self, connection_id: str, data: bytes) -> None:
        if self._is_local(connection_id):
            local.post(self.members, connection_id, data)
        else:
            await self._call(connection_id, "post", data)

    async def disconnect(self, connection_id: str) -> None:
        if self._is_local(connection_id):
            local.disconnect(self.members, connection_id)
        else:
            await self._call(connection_id, "close")

    async def presence(self, user_id: str) -> Presence:
        here = local.local_ids(self.members, user_id)
        if not self.up or self._client is None:
            raise Unavailable("presence on other nodes is unknown: the link to Redis is down")
        try:
            elsewhere = await self.registry.connections(self._client, user_id)
        except link.LINK_ERRORS as exc:
            raise Unavailable(f"presence on other nodes is unknown: {exc}") from None
        return Presence(user_id, tuple(here + elsewhere))

    async def nodes(self) -> list[NodeLoad]:
        here = local.load(self.members, self.node_id)
        if not self.up or self._client is None:
            raise Unavailable("other nodes are unknown: the link to Redis is down")
        try:
            others = await self.registry.others(self._client)
        except link.LINK_ERRORS as exc:
            raise Unavailable(f"other nodes are unknown: {exc}") from None
        loads = [NodeLoad(n, len(users), frozenset(users)) for n, users in others.items()]
        return [here, *loads]
