"""The async client: notifications that resume across reconnects, and sends with acks.

One WebSocket, kept open in a background task. It reconnects with
exponential backoff and full jitter, resumes with ``since`` (and ``topics``),
and hands each notification to ``notifications()`` once, in seq order per
stream: duplicates are dropped by notificationId, and a live seq jump is
filled from the HTTP history before what follows (or, if the history cannot
be read, by reconnecting with ``since``, the protocol's own remedy).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import suppress
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol
from urllib.parse import urlencode

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from tidings.client.api import UserApi
from tidings.client.base import USER_AGENT, backoff_delay, new_key, server_urls, unreachable_reason
from tidings.client.cursor import DROP, ClientCursor, Frame, Gap
from tidings.client.errors import ClientError, RequestFailed, ServerUnreachable, Unauthorized

log = logging.getLogger("tidings.client")

TokenFactory = Callable[[], str | Awaitable[str]]
"""Returns a fresh token; called for every connection and after an HTTP 401."""

HISTORY_PAGE = 200
CLOSE_RESYNC = 4000


class StateStore(Protocol):
    """Where a client keeps its position so that a new process resumes (e.g. a file)."""

    def load(self) -> dict[str, Any] | None: ...

    def save(self, position: dict[str, Any]) -> None: ...


@dataclass(slots=True)
class _Pending:
    text: str
    future: asyncio.Future[Frame]


class _Closed:
    """Queue sentinel: the client was closed."""


_CLOSED = _Closed()
_QueueItem = tuple[Frame | None, dict[str, Any]] | ClientError | _Closed


class TidingsClient:
    """A user's connection to tidings.

    ``url`` is the server (``http://host:port`` or its ``ws://`` form). Give
    ``token`` or ``token_factory``. ``since=None`` starts with what is new;
    an integer starts after that seq (0: everything still stored). A
    ``state`` store saves the position after each notification the
    application has taken, and at each catch-up, so a new process resumes.

    Use it as ``async with TidingsClient(...) as client:``, or call
    ``connect()`` and ``close()``. ``notifications()`` and ``send()``
    connect on first use.
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        token_factory: TokenFactory | None = None,
        since: int | None = None,
        topics: Iterable[str] = (),
        state: StateStore | None = None,
        min_delay: float = 0.5,
        max_delay: float = 30.0,
        open_timeout: float = 10.0,
        on_state: Callable[[str], None] | None = None,
        on_refetch: Callable[[], None] | None = None,
    ) -> None:
        if (token is None) == (token_factory is None):
            raise ValueError("give exactly one of token and token_factory")
        self.urls = server_urls(url)
        self.cursor = ClientCursor(since=since, topics=dict.fromkeys(topics))
        self.state = "idle"
        """idle, connecting, connected, reconnecting or closed."""
        self._token = token
        self._token_factory = token_factory
        self._state_store = state
        self._min_delay = min_delay
        self._max_delay = max_delay
        self._open_timeout = open_timeout
        self._on_state = on_state
        self._on_refetch = on_refetch
        self._pending: dict[str, _Pending] = {}
        self._queue: asyncio.Queue[_QueueItem] = asyncio.Queue()
        self._ws: ClientConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._refreshing: set[asyncio.Task[None]] = set()
        self._api = UserApi(
            self.urls.http, self._token_value, refreshable=token_factory is not None
        )
        self.request = self._api.request
        """One call to the HTTP API as this client's user; the answer's JSON."""
        self._closed = False

    async def __aenter__(self) -> TidingsClient:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- lifecycle -----------------------------------------------------------------

    async def connect(self, *, retry: bool = False) -> None:
        """Open the first connection, then keep one open in the background.

        Raises ``ServerUnreachable`` or ``RequestFailed`` (``Unauthorized``
        for a refused token) when the first connection fails; with
        ``retry=True`` it waits for an unreachable server instead. Later
        disconnections are repaired in the background.
        """
        if self._closed:
            raise ClientError("the client is closed")
        if self._task is not None:
            return
        if self._state_store is not None:
            saved = self._state_store.load()
            if saved:
                self.cursor.restore(saved)
        self._set_state("connecting")
        attempt = 0
        while True:
            try:
                ws = await self._open()
                break
            except (ServerUnreachable, RequestFailed) as exc:
                if not retry or isinstance(exc, Unauthorized):
                    self._set_state("closed")
                    raise
                await asyncio.sleep(self._delay(attempt))
                attempt += 1
        self._task = asyncio.create_task(self._run(ws), name="tidings-client")

    async def close(self) -> None:
        """Close the connection; waiting sends fail and ``notifications()`` ends."""
        if self._closed:
            return
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
        if self._ws is not None:
            await self._ws.close()
        self._reject_pending(ClientError("the client was closed before an answer"))
        self._queue.put_nowait(_CLOSED)
        await self._api.aclose()
        self._set_state("closed")

    @property
    def position(self) -> dict[str, Any]:
        """``{"seq": N | None, "topics": {...}}``: the last seq taken per stream."""
        return self.cursor.position()

    def _set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            if self._on_state is not None:
                self._on_state(state)

    def _delay(self, attempt: int) -> float:
        return backoff_delay(attempt, min_delay=self._min_delay, max_delay=self._max_delay)

    # -- notifications ------------------------------------------------------------------

    async def notifications(self) -> AsyncIterator[Frame]:
        """Each notification once, in seq order per stream, across reconnects.

        Ends when the client is closed; raises ``Unauthorized`` when the
        server stops accepting the token. The position is saved (with a
        ``state`` store) when the loop asks for the next notification, so a
        crash redelivers at most the one being handled.
        """
        if self._task is None:
            await self.connect()
        while True:
            item = await self._queue.get()
            if isinstance(item, _Closed):
                return
            if isinstance(item, ClientError):
                raise item
            frame, position = item
            if frame is not None:
                yield frame
            if self._state_store is not None:
                self._state_store.save(position)

    # -- sending ------------------------------------------------------------------------

    async def send(
        self,
        user_id: str,
        message: str,
        data: dict[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
        timeout: float | None = None,
    ) -> Frame:
        """Send a notification to ``user_id``; returns the ack (``notificationId``, ``seq``).

        Raises ``RequestFailed`` with the error frame's code. A send made
        while disconnected waits for the connection; one whose ack was lost
        is sent again on reconnect with the same idempotency key, so it is
        stored once.
        """
        if self._closed:
            raise ClientError("the client is closed")
        if self._task is None:
            await self.connect()
        request_id = new_key()
        frame: dict[str, Any] = {
            "action": "sendNotification",
            "userId": user_id,
            "message": message,
            "requestId": request_id,
            "idempotencyKey": idempotency_key or new_key(),
        }
        if data is not None:
            frame["data"] = data
        pending = _Pending(orjson.dumps(frame).decode(), asyncio.get_running_loop().create_future())
        self._pending[request_id] = pending
        try:
            if self._ws is not None:
                with suppress(ConnectionClosed):
                    await self._ws.send(pending.text)
            return await asyncio.wait_for(pending.future, timeout)
        finally:
            self._pending.pop(request_id, None)

    def _settle(self, frame: Frame) -> None:
        pending = self._pending.get(str(frame.get("requestId")))
        if pending is None or pending.future.done():
            return
        if frame["type"] == "ack":
            pending.future.set_result(frame)
        else:
            pending.future.set_exception(
                RequestFailed(
                    str(frame.get("code")),
                    str(frame.get("message")),
                    request_id=frame.get("requestId"),
                )
            )

    def _reject_pending(self, error: ClientError) -> None:
        for pending in self._pending.values():
            if not pending.future.done():
                pending.future.set_exception(error)

    # -- the connection -----------------------------------------------------------------

    async def _token_value(self, *, fresh: bool) -> str:
        if self._token_factory is None:
            assert self._token is not None
            return self._token
        if fresh or self._token is None:
            value = self._token_factory()
            self._token = await value if inspect.isawaitable(value) else value
        return self._token

    async def _open(self) -> ClientConnection:
        for attempt in range(2):
            token = await self._token_value(fresh=self._token_factory is not None)
            uri = f"{self.urls.ws}?{urlencode(self.cursor.query())}"
            try:
                return await connect(
                    uri,
                    additional_headers={"Authorization": f"Bearer {token}"},
                    user_agent_header=USER_AGENT,
                    open_timeout=self._open_timeout,
                    max_size=None,
                    compression=None,
                )
            except InvalidStatus as exc:
                status = exc.response.status_code
                reason = (
                    exc.response.body.decode(errors="replace").strip() if exc.response.body else ""
                )
                if status == 401:
                    if attempt == 0 and self._token_factory is not None:
                        continue  # one more fresh token, then give up
                    raise Unauthorized(f"the server refused the token ({reason or 401})") from None
                raise RequestFailed(
                    "handshake_refused", f"handshake refused: {status} {reason}", status=status
                ) from None
            except (OSError, TimeoutError, InvalidHandshake) as exc:
                raise ServerUnreachable(
                    f"cannot reach the server at {self.urls.http} ({unreachable_reason(exc)})"
                ) from None
        raise AssertionError("unreachable")

    async def _run(self, ws: ClientConnection | None) -> None:
        attempt = 0
        while not self._closed:
            if ws is not None:
                self._set_state("connected")
                if await self._serve(ws):
                    attempt = 0
                self._ws = None
                if self._closed:
                    return
                self._set_state("reconnecting")
            await asyncio.sleep(self._delay(attempt))
            attempt += 1
            try:
                ws = await self._open()
            except Unauthorized as exc:
                self._fail(exc)
                return
            except ClientError as exc:
                log.debug("reconnect failed: %s", exc.message)
                ws = None

    def _fail(self, error: ClientError) -> None:
        self._set_state("closed")
        self._reject_pending(error)
        self._queue.put_nowait(error)

    async def _serve(self, ws: ClientConnection) -> bool:
        """Read one connection until it closes; True if it got as far as caughtUp."""
        self._ws = ws
        replay = True
        caught_up = False
        try:
            for pending in list(self._pending.values()):
                await ws.send(pending.text)
            async for raw in ws:
                frame: Frame = orjson.loads(raw)
                kind = frame.get("type")
                if kind in ("ack", "error") and "requestId" in frame:
                    self._settle(frame)
                elif kind == "notification":
                    action = self.cursor.classify(frame, replay=replay)
                    if isinstance(action, Gap):
                        if not await self._fill(action):
                            await ws.close(CLOSE_RESYNC, "resync")
                            break
                        # Seqs still missing after the fill are holes (deleted, expired).
                        action = self.cursor.classify(frame, replay=True)
                    if action is not DROP:
                        self._deliver(frame)
                elif kind == "caughtUp":
                    replay = False
                    caught_up = True
                    refetch = self.cursor.caught_up(frame)
                    self._queue.put_nowait((None, self.cursor.position()))
                    if refetch and self._on_refetch is not None:
                        self._on_refetch()
                elif kind == "tokenExpiring":
                    self._spawn_refresh(ws)
                elif kind == "error":
                    log.warning("error frame: %s", frame.get("message"))
        except ConnectionClosed:
            pass
        return caught_up

    def _spawn_refresh(self, ws: ClientConnection) -> None:
        """The token expires soon: send a fresh one from the factory over this
        connection (a fixed token cannot be renewed: the server closes with 4401)."""
        if self._token_factory is None:
            return
        task = asyncio.get_running_loop().create_task(self._refresh(ws))
        self._refreshing.add(task)
        task.add_done_callback(self._refreshing.discard)

    async def _refresh(self, ws: ClientConnection) -> None:
        try:
            token = await self._token_value(fresh=True)
            await ws.send(orjson.dumps({"action": "refreshToken", "token": token}).decode())
        except ConnectionClosed:
            pass
        except Exception as exc:  # the application's token factory failed
            log.warning("cannot refresh the token: %s", exc)

    def _deliver(self, frame: Frame) -> None:
        if self.cursor.deliver(frame):
            self._queue.put_nowait((frame, self.cursor.position()))

    async def _fill(self, gap: Gap) -> bool:
        """Deliver ``gap`` from the history; False when it cannot be read."""
        after = gap.after_seq
        try:
            while True:
                page = await self.history(
                    after_seq=after,
                    before_seq=gap.before_seq,
                    limit=HISTORY_PAGE,
                    topic=gap.stream or None,
                )
                items: list[Frame] = page.get("items", [])
                for item in items:
                    if item["seq"] > self.cursor.positions.get(gap.stream, -1):
                        self._deliver({"type": "notification", **item})
                if len(items) < HISTORY_PAGE:
                    return True
                after = items[-1]["seq"]
        except ClientError as exc:
            log.warning("cannot fill a gap from the history (%s); reconnecting", exc)
            return False

    # -- HTTP ------------------------------------------------------------------------------

    async def history(
        self,
        *,
        after_seq: int | None = None,
        before_seq: int | None = None,
        limit: int | None = None,
        topic: str | None = None,
    ) -> dict[str, Any]:
        """One stream by seq range, oldest first: ``{"items": [...], "head": N}``."""
        params = {"afterSeq": after_seq, "beforeSeq": before_seq, "limit": limit, "topic": topic}
        page: dict[str, Any] = await self.request("GET", "/v1/users/me/history", params=params)
        return page
