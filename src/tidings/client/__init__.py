"""The Python SDK: a user's async client and a backend's publisher.

A user's client (``async``)::

    async with TidingsClient("http://127.0.0.1:8000", token=token) as client:
        ack = await client.send("bob", "hi")
        async for notification in client.notifications():
            print(notification["message"])

A backend's publisher (sync; ``AsyncPublisher`` for asyncio)::

    Publisher("http://127.0.0.1:8000", admin_token).publish(["alice", "bob"], "deployed")
"""

from tidings.client.connection import StateStore, TidingsClient
from tidings.client.cursor import ClientCursor
from tidings.client.errors import ClientError, RequestFailed, ServerUnreachable, Unauthorized
from tidings.client.publisher import AsyncPublisher, Publisher

__all__ = [
    "AsyncPublisher",
    "ClientCursor",
    "ClientError",
    "Publisher",
    "RequestFailed",
    "ServerUnreachable",
    "StateStore",
    "TidingsClient",
    "Unauthorized",
]
