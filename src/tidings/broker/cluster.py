"""The cluster interface: which connections exist, on which node, and reaching them.

A ``Cluster`` answers two kinds of question that the hub, which knows only
this node's sockets, cannot: presence (is a user online anywhere, on how many
connections) and the ``@connections`` management calls (write to, describe
or close one connection, wherever it is).

Guarantees every implementation gives:

- A connection id names its node: its first ``NODE_ID_CHARS`` characters are
  the id of the node holding the socket, so a call is routed without a lookup
  and is answered by that node from its own hub, never from a stale copy.
- ``Gone`` (HTTP 410) means the connection is certainly not open: its node
  said so, or its node is dead. When that cannot be known (the link between
  nodes is down, the node does not answer in time) the call raises
  ``Unavailable`` (HTTP 503), never ``Gone``.
- Presence counts this node's connections exactly and other nodes' as last
  registered; entries of a node that died are ignored as soon as its
  heartbeat expires, and removed soon after.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from tidings.core.errors import TidingsError
from tidings.core.models import JSONObject, iso_ms

NODE_ID_CHARS = 8
"""Length of a node id (``secrets.token_urlsafe(6)``) and of every connection id's prefix."""

CONNECTION_ID = re.compile(rf"[A-Za-z0-9_-]{{{NODE_ID_CHARS + 8},64}}")
"""What a connection id can look like; anything else is gone without asking."""


class Gone(TidingsError):
    """The connection is not open (AWS API Gateway's ``GoneException``)."""

    code = "gone"
    status = 410


def node_of(connection_id: str) -> str | None:
    """The id of the node holding ``connection_id``, or None if it is no connection id."""
    if not CONNECTION_ID.fullmatch(connection_id):
        return None
    return connection_id[:NODE_ID_CHARS]


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    """One connection as ``GET /@connections/{id}`` describes it."""

    connection_id: str
    user_id: str
    connected_at: int
    """Unix milliseconds."""
    last_active_at: int
    """Unix milliseconds of the last bytes received from the client."""
    source_ip: str
    user_agent: str

    def to_json(self) -> JSONObject:
        """AWS's ``GetConnection`` shape, plus ``connectionId`` and ``userId``."""
        return {
            "connectionId": self.connection_id,
            "userId": self.user_id,
            "connectedAt": iso_ms(self.connected_at),
            "lastActiveAt": iso_ms(self.last_active_at),
            "identity": {"sourceIp": self.source_ip, "userAgent": self.user_agent},
        }

    def to_message(self) -> JSONObject:
        """For the wire between nodes: the same fields, times as numbers."""
        return {
            "connectionId": self.connection_id,
            "userId": self.user_id,
            "connectedAt": self.connected_at,
            "lastActiveAt": self.last_active_at,
            "sourceIp": self.source_ip,
            "userAgent": self.user_agent,
        }

    @classmethod
    def from_message(cls, message: JSONObject) -> ConnectionInfo:
        return cls(
            connection_id=str(message["connectionId"]),
            user_id=str(message["userId"]),
            connected_at=int(message["connectedAt"]),
            last_active_at=int(message["lastActiveAt"]),
            source_ip=str(message["sourceIp"]),
            user_agent=str(message["userAgent"]),
        )


@dataclass(frozen=True, slots=True)
class Presence:
    user_id: str
    connection_ids: tuple[str, ...]

    def to_json(self) -> JSONObject:
        return {
            "userId": self.user_id,
            "online": bool(self.connection_ids),
            "connections": len(self.connection_ids),
            "connectionIds": list(self.connection_ids),
        }


@dataclass(frozen=True, slots=True)
class NodeLoad:
    """One node as the operator sees it: its open connections and their users."""

    node_id: str
    connections: int
    users: frozenset[str]
    """Distinct users with a connection there (a set, so a cluster total counts each once)."""


class Member(Protocol):
    """One of this node's connections, as the cluster sees it (any transport)."""

    @property
    def id(self) -> str: ...

    @property
    def user_id(self) -> str: ...

    @property
    def connected_at(self) -> float:
        """Wall-clock seconds (``time.time()``) of the handshake."""
        ...

    @property
    def last_active(self) -> float:
        """Wall-clock seconds of the last bytes received from the client."""
        ...

    @property
    def source_ip(self) -> str: ...

    @property
    def user_agent(self) -> str: ...

    def close(self, code: int, reason: str) -> None: ...


MemberHandler = Callable[[Member], None]


class Members(Protocol):
    """This node's connections (the hub): what a cluster reads and acts on."""

    def listen(self, on_add: MemberHandler, on_remove: MemberHandler) -> None:
        """Tell the handlers of each connection joining or leaving from now on."""

    def unlisten(self, on_add: MemberHandler, on_remove: MemberHandler) -> None: ...

    def get(self, connection_id: str) -> Member | None: ...

    def of_user(self, user_id: str) -> Sequence[Member]: ...

    def __iter__(self) -> Iterator[Member]: ...

    def __len__(self) -> int: ...

    def users(self) -> list[str]:
        """The users with at least one connection here, each once."""
        ...

    def post(self, connection_id: str, payload: bytes) -> bool:
        """Write ``payload`` as one text frame to that connection; False if it is not here."""
        ...


Repair = Callable[[], Awaitable[None]]
"""Compares every local stream with the store and replays what is missing: run
after a peer died, since it may have committed notifications it never published."""


class Cluster(Protocol):
    node_id: str

    async def start(self) -> None:
        """Register this node and begin answering other nodes' calls."""

    async def stop(self) -> None:
        """Deregister this node (its connections are closed or about to be)."""

    async def presence(self, user_id: str) -> Presence:
        """The user's open connections on every node; ``Unavailable`` if unknowable."""
        ...

    async def nodes(self) -> list[NodeLoad]:
        """Every live node, this one first: this node's figures exact, others' as
        last registered; ``Unavailable`` if the other nodes cannot be read."""
        ...

    async def describe(self, connection_id: str) -> ConnectionInfo:
        """Raises ``Gone`` or ``Unavailable``."""
        ...

    async def post(self, connection_id: str, data: bytes) -> None:
        """Write ``data`` (UTF-8 text) to the connection as one text frame.
        Raises ``Gone`` or ``Unavailable``."""

    async def disconnect(self, connection_id: str) -> None:
        """Close the connection (code 1000). Raises ``Gone`` or ``Unavailable``."""
