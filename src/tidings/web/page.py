"""The live inbox page at ``/inbox``, its static files, and the opt-in dev sign-in.

The page is plain HTML, CSS and an ES module on top of the JavaScript client,
served as ``/static/tidings.js``: ``clients/js/tidings.js``, copied into the
package by a wheel build, or read from the checkout when running from source.
It asks for a token, kept in the tab's sessionStorage. With ``--dev-login``
it can instead sign in by user id through ``POST /dev/login``, which mints a
token for anyone who asks: that route exists only with the flag, for local
development, and start-up logs a warning when it is on.
"""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from tidings.core.tokens import mint
from tidings.web.runtime import Runtime

log = logging.getLogger("tidings.page")

STATIC_DIR = Path(__file__).with_name("static")
STATIC_TYPES = {
    "tidings.js": "text/javascript; charset=utf-8",
    "inbox.js": "text/javascript; charset=utf-8",
    "inbox-view.js": "text/javascript; charset=utf-8",
    "inbox-alerts.js": "text/javascript; charset=utf-8",
    "inbox.css": "text/css; charset=utf-8",
    "admin.js": "text/javascript; charset=utf-8",
    "admin.css": "text/css; charset=utf-8",
}
"""The files under ``/static/`` and their media types; nothing else is served."""
CHECKOUT_CLIENT = Path(__file__).resolve().parents[3] / "clients" / "js" / "tidings.js"
"""The JavaScript client's only source, in a source checkout (and editable installs)."""
DEV_TOKEN_TTL = 86400
"""Seconds a dev sign-in token lasts; the page mints a new one before it expires."""
DEV_LOGIN_META = '<meta name="tidings-dev-login" content="false">'
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
PAGE_HEADERS = {"Content-Security-Policy": CONTENT_SECURITY_POLICY, "Cache-Control": "no-cache"}
"""Sent with every page: scripts and connections to this origin only, never framed."""


class DevLoginBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    userId: str = Field(min_length=1, max_length=256)


class DevLoginResponse(BaseModel):
    userId: str
    token: str


def static_path(name: str) -> Path:
    """Where ``/static/{name}`` is read from.

    The client is in the package when it was installed from a wheel; a source
    checkout has it only at ``clients/js/tidings.js``, so there is one file to edit.
    """
    packaged = STATIC_DIR / name
    if name == "tidings.js" and not packaged.exists():
        if not CHECKOUT_CLIENT.exists():
            raise RuntimeError(
                f"tidings.js is neither in the package ({packaged}) nor in a source "
                f"checkout ({CHECKOUT_CLIENT}): reinstall tidings"
            )
        return CHECKOUT_CLIENT
    return packaged


def mount_page(app: FastAPI, runtime: Runtime) -> None:
    """Add ``/``, ``/inbox``, ``/static/*`` and, with ``--dev-login``, ``/dev/login``."""
    dev_login = runtime.settings.dev_login
    html = (STATIC_DIR / "inbox.html").read_text(encoding="utf-8")
    if DEV_LOGIN_META not in html:
        raise RuntimeError(f"inbox.html lost its {DEV_LOGIN_META!r} marker")
    if dev_login:
        html = html.replace(DEV_LOGIN_META, DEV_LOGIN_META.replace("false", "true"))
        log.warning(
            "INSECURE: --dev-login lets anyone who reaches this server sign in as any "
            "user at /inbox. Use it only for local development."
        )
    files = {name: static_path(name).read_bytes() for name in STATIC_TYPES}
    router = APIRouter(include_in_schema=False)

    @router.get("/")
    async def root() -> RedirectResponse:
        return RedirectResponse("/inbox", status_code=307)

    @router.get("/inbox")
    async def inbox() -> HTMLResponse:
        return HTMLResponse(html, headers=PAGE_HEADERS)

    @router.get("/static/{name}")
    async def static(name: str) -> Response:
        if name not in files:
            raise StarletteHTTPException(404)
        return Response(
            files[name], media_type=STATIC_TYPES[name], headers={"Cache-Control": "no-cache"}
        )

    if dev_login:

        @router.post("/dev/login")
        async def login(body: DevLoginBody) -> DevLoginResponse:
            token = mint(runtime.keys, body.userId, ttl_seconds=DEV_TOKEN_TTL)
            return DevLoginResponse(userId=body.userId, token=token)

    app.include_router(router)
