"""Request dependencies shared by the HTTP routers: who is calling, and for whom."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from tidings.core.errors import AuthError, Forbidden
from tidings.core.keys import Keys
from tidings.core.tokens import Identity, bearer, verify_fresh
from tidings.web.runtime import Runtime


def runtime_of(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


async def identity(
    request: Request, authorization: Annotated[str | None, Header()] = None
) -> Identity:
    """The caller, from ``Authorization: Bearer <token>``. Async on purpose:
    FastAPI runs a plain function dependency in a worker thread, a thread hop
    per request for a check that takes microseconds."""
    verified: Identity | None = request.scope.get(VERIFIED)
    if verified is not None:
        return verified
    return await authenticate(runtime_of(request).keys, authorization)


VERIFIED = "tidings.identity"
"""Scope key of the identity already verified from this request's Authorization
(the check made before the body is read), so a route does not verify it again."""


async def authenticate(keys: Keys, authorization: str | None) -> Identity:
    """The identity a bearer ``Authorization`` value carries; AuthError if none or bad."""
    token = bearer(authorization)
    if token is None:
        raise AuthError("missing token: send Authorization: Bearer <token>")
    return await verify_fresh(keys, token)


async def admin(who: Annotated[Identity, Depends(identity)]) -> Identity:
    if not who.admin:
        raise Forbidden("this needs an admin token")
    return who


def owner(user: str, who: Identity) -> str:
    """The user a path's ``{user}`` names, if the caller may act for them.

    ``me`` is the caller; a user token may name only itself, an admin anyone.
    """
    if user == "me":
        return who.user_id
    if who.admin or user == who.user_id:
        return user
    raise Forbidden("a user token may only use its own inbox")


Caller = Annotated[Identity, Depends(identity)]
Admin = Annotated[Identity, Depends(admin)]
