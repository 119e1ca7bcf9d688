"""The operator page at ``/admin``: plain HTML and an ES module polling
``GET /v1/admin/overview`` (``web/admin_api.py``).

The page holds no secret: it asks for an admin token, keeps it in the tab's
sessionStorage and sends it in the Authorization header, never in the URL.
Its script and stylesheet are served with the inbox page's files.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from tidings.web.page import PAGE_HEADERS, STATIC_DIR


def admin_page_router() -> APIRouter:
    html = (STATIC_DIR / "admin.html").read_text(encoding="utf-8")
    router = APIRouter(include_in_schema=False)

    @router.get("/admin")
    async def admin_page() -> HTMLResponse:
        return HTMLResponse(html, headers=PAGE_HEADERS)

    return router
