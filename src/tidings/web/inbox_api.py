"""The inbox over HTTP: list, history, counts, marks, delete, erasure and export.

``{user}`` in a path is a user id or ``me``; a user token may only name itself,
an admin token anyone (see ``deps.owner``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from tidings.core.errors import BadRequest, TidingsError
from tidings.core.inbox import (
    MAX_IDS,
    CursorCodec,
    InboxFilter,
    InboxQuery,
    Mark,
    check_id,
    parse_time,
)
from tidings.web.deps import Admin, Caller, owner, runtime_of
from tidings.web.errors import ErrorResponse

UserPath = Annotated[str, Path(min_length=1, max_length=256, description="A user id, or `me`")]
TopicPath = Annotated[
    str,
    Path(min_length=1, max_length=128, description="Letters, digits and _ . : - (first alnum)"),
]
MarkAction = Literal["read", "unread", "seen", "archive", "unarchive"]


class NotFound(TidingsError):
    code = "not_found"
    status = 404


class Item(BaseModel):
    notificationId: str
    userId: str
    topic: str | None
    seq: int
    sender: str | None
    message: str
    data: dict[str, Any]
    tags: list[str]
    createdAt: str
    expiresAt: str | None
    readAt: str | None
    seenAt: str | None
    archivedAt: str | None


class CountsModel(BaseModel):
    total: int = Field(description="Not archived, not expired")
    unread: int = Field(description="Not read, not archived, not expired")
    unseen: int = Field(description="Not seen, not archived, not expired")


class InboxPage(BaseModel):
    items: list[Item]
    next: str | None = Field(description="Cursor for the next page (`after=`); null at the end")
    counts: CountsModel


class History(BaseModel):
    items: list[dict[str, Any]] = Field(description="Notification frames, oldest first")
    head: int = Field(description="The stream's highest seq so far")


class FilterModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    read: bool | None = None
    seen: bool | None = None
    archived: Literal["exclude", "include", "only"] = "exclude"
    tags: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        default_factory=list, max_length=16
    )
    createdAfter: str | None = None
    createdBefore: str | None = None


class CountsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    filters: dict[Annotated[str, Field(min_length=1, max_length=64)], FilterModel] = Field(
        min_length=1, max_length=20, description="One filter per inbox tab, by name"
    )


class CountsAnswer(BaseModel):
    counts: dict[str, int]


class MarkBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ids: list[str] | None = Field(default=None, min_length=1, max_length=MAX_IDS)
    upTo: str | None = Field(
        default=None, description="Everything with a notification id at or below this one"
    )


class MarkAnswer(BaseModel):
    changed: int
    counts: CountsModel


class TopicEntry(BaseModel):
    topic: str
    since: int = Field(description="The subscription covers seqs after this one")


class Topics(BaseModel):
    topics: list[TopicEntry]


class Subscription(BaseModel):
    topic: str
    userId: str
    since: int


class SubscribeMany(BaseModel):
    model_config = ConfigDict(extra="forbid")
    userIds: list[Annotated[str, Field(min_length=1, max_length=256)]] = Field(
        min_length=1, max_length=10_000
    )


class Subscribed(BaseModel):
    topic: str
    subscribed: int


class Erased(BaseModel):
    erased: int


def inbox_routes() -> APIRouter:
    router = APIRouter(
        prefix="/v1/users",
        tags=["inbox"],
        responses={
            400: {"model": ErrorResponse},
            401: {"model": ErrorResponse},
            403: {"model": ErrorResponse},
            503: {"model": ErrorResponse, "description": "store unavailable"},
        },
    )

    @router.get("/{user}/inbox", response_model=InboxPage, summary="List a user's inbox")
    async def list_inbox(
        request: Request,
        user: UserPath,
        who: Caller,
        order: Literal["newest", "oldest"] = "newest",
        after: Annotated[str | None, Query(max_length=512)] = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        read: bool | None = None,
        seen: bool | None = None,
        archived: Literal["exclude", "include", "only"] = "exclude",
        tags: Annotated[str | None, Query(max_length=1100, description="a,b: any of")] = None,
        createdAfter: Annotated[str | None, Query(max_length=64)] = None,
        createdBefore: Annotated[str | None, Query(max_length=64)] = None,
    ) -> dict[str, Any]:
        """Newest first by default, with opaque cursor pages; each page carries the
        whole-inbox counts so a badge needs no second call."""
        user_id = owner(user, who)
        runtime = runtime_of(request)
        codec = CursorCodec(runtime.secret)
        inbox_filter = InboxFilter(
            read=read,
            seen=seen,
            archived=archived,
            tags=tuple(t for t in (tags or "").split(",") if t),
            created_after=parse_time(createdAfter, "createdAfter"),
            created_before=parse_time(createdBefore, "createdBefore"),
        )
        newest = order == "newest"
        last = None
        if after is not None:
            last = codec.decode(after, user_id, newest_first=newest, filter=inbox_filter)
        query = InboxQuery(inbox_filter, newest_first=newest, after=last, limit=limit)
        store = runtime.node.store
        items, more = await store.list_inbox(user_id, query)
        counts = await store.counts(user_id)
        cursor = codec.encode(user_id, query, items[-1].notification.id) if more else None
        return {
            "items": [item.to_json() for item in items],
            "next": cursor,
            "counts": counts.to_json(),
        }

    @router.get("/{user}/history", response_model=History, summary="A stream by seq range")
    async def history(
        request: Request,
        user: UserPath,
        who: Caller,
        afterSeq: Annotated[int, Query(ge=0, le=2**53)] = 0,
        beforeSeq: Annotated[int | None, Query(ge=1, le=2**53)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> dict[str, Any]:
        """Notifications with afterSeq < seq < beforeSeq, oldest first: what a client
        uses to fill a gap it saw in the live stream."""
        page = await runtime_of(request).node.store.history(
            owner(user, who), after_seq=afterSeq, before_seq=beforeSeq, limit=limit
        )
        return {"items": [n.to_wire() for n in page.items], "head": page.head}

    @router.get("/{user}/counts", response_model=CountsModel, summary="Whole-inbox counts")
    async def counts(request: Request, user: UserPath, who: Caller) -> dict[str, int]:
        return (await runtime_of(request).node.store.counts(owner(user, who))).to_json()

    @router.post(
        "/{user}/counts", response_model=CountsAnswer, summary="Exact counts for several filters"
    )
    async def count_filters(
        request: Request, user: UserPath, who: Caller, body: CountsRequest
    ) -> dict[str, Any]:
        filters = {
            name: InboxFilter.from_json(f.model_dump(exclude_none=True))
            for name, f in body.filters.items()
        }
        result = await runtime_of(request).node.store.count_filters(owner(user, who), filters)
        return {"counts": result}

    @router.post(
        "/{user}/notifications/{action}",
        response_model=MarkAnswer,
        summary="Mark read / unread / seen / archived / unarchived, by ids or up to an id",
    )
    async def mark(
        request: Request, user: UserPath, action: MarkAction, who: Caller, body: MarkBody
    ) -> dict[str, Any]:
        """Every connection of the user gets the change and the new counts."""
        change = Mark(action, ids=tuple(body.ids) if body.ids else None, up_to=body.upTo)
        changed, counts = await runtime_of(request).node.mark(owner(user, who), change)
        return {"changed": len(changed), "counts": counts.to_json()}

    @router.delete(
        "/{user}/notifications/{notificationId}",
        status_code=204,
        summary="Delete one notification",
        responses={404: {"model": ErrorResponse, "description": "not in this inbox"}},
    )
    async def delete(
        request: Request, user: UserPath, notificationId: str, who: Caller
    ) -> Response:
        user_id = owner(user, who)
        deleted, _ = await runtime_of(request).node.delete(user_id, [_id(notificationId)])
        if not deleted:
            raise NotFound(f"no notification {notificationId!r} in this inbox")
        return Response(status_code=204)

    @router.get("/{user}/topics", response_model=Topics, tags=["topics"], summary="Subscriptions")
    async def topics(request: Request, user: UserPath, who: Caller) -> dict[str, Any]:
        subscribed = await runtime_of(request).node.store.subscriptions(owner(user, who))
        return {"topics": [{"topic": t, "since": seq} for t, seq in sorted(subscribed.items())]}

    @router.delete(
        "/{user}", response_model=Erased, tags=["users"], summary="Erase all of a user's data"
    )
    async def erase(request: Request, user: UserPath, who: Admin) -> dict[str, int]:
        return {"erased": await runtime_of(request).node.store.erase(owner(user, who))}

    @router.get("/{user}/export", tags=["users"], summary="Export all of a user's data as JSON")
    async def export(request: Request, user: UserPath, who: Admin) -> dict[str, Any]:
        return await runtime_of(request).node.store.export(owner(user, who))

    return router


def topic_routes() -> APIRouter:
    router = APIRouter(
        prefix="/v1/topics",
        tags=["topics"],
        responses={
            400: {"model": ErrorResponse},
            401: {"model": ErrorResponse},
            403: {"model": ErrorResponse},
        },
    )

    @router.put(
        "/{topic}/subscribers/{user}",
        response_model=Subscription,
        summary="Subscribe a user (admin, or the user itself)",
    )
    async def subscribe(
        request: Request, topic: TopicPath, user: UserPath, who: Caller
    ) -> dict[str, Any]:
        """From the topic's current head on, its notifications are in the user's inbox
        and pushed to every connection of the user."""
        user_id = owner(user, who)
        starts = await runtime_of(request).node.subscribe([user_id], topic)
        return {"topic": topic, "userId": user_id, "since": starts[user_id]}

    @router.post(
        "/{topic}/subscribers",
        response_model=Subscribed,
        summary="Subscribe many users at once (admin)",
    )
    async def subscribe_many(
        request: Request, topic: TopicPath, who: Admin, body: SubscribeMany
    ) -> dict[str, Any]:
        starts = await runtime_of(request).node.subscribe(list(dict.fromkeys(body.userIds)), topic)
        return {"topic": topic, "subscribed": len(starts)}

    @router.delete(
        "/{topic}/subscribers/{user}",
        status_code=204,
        summary="Unsubscribe a user",
        responses={404: {"model": ErrorResponse, "description": "not subscribed"}},
    )
    async def unsubscribe(
        request: Request, topic: TopicPath, user: UserPath, who: Caller
    ) -> Response:
        if not await runtime_of(request).node.unsubscribe(owner(user, who), topic):
            raise NotFound(f"not subscribed to {topic!r}")
        return Response(status_code=204)

    return router


def _id(value: str) -> str:
    try:
        return check_id(value)
    except BadRequest:
        raise NotFound(f"no notification {value!r:.40} in this inbox") from None
