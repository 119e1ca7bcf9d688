"""The inbox page's routes: redirect, HTML, static files, and the opt-in dev sign-in."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.server import SECRET, ServerProcess
from tidings.core.tokens import verify
from tidings.web.page import STATIC_TYPES, static_path

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ServerProcess]]:
    plain = ServerProcess(tmp_path_factory.mktemp("plain")).start()
    dev = ServerProcess(tmp_path_factory.mktemp("dev"), "--dev-login").start()
    yield {"plain": plain, "dev": dev}
    plain.stop()
    dev.stop()


def test_root_redirects_to_the_inbox_page(servers: dict[str, ServerProcess]) -> None:
    response = httpx.get(servers["plain"].url + "/")
    assert response.status_code == 307 and response.headers["location"] == "/inbox"
    page = httpx.get(servers["plain"].url + "/inbox")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert '<meta name="tidings-dev-login" content="false">' in page.text
    dev = httpx.get(servers["dev"].url + "/inbox")
    assert '<meta name="tidings-dev-login" content="true">' in dev.text


def test_static_files_are_served_and_nothing_else(servers: dict[str, ServerProcess]) -> None:
    base = servers["plain"].url + "/static/"
    for name, media_type in STATIC_TYPES.items():
        response = httpx.get(base + name)
        assert response.status_code == 200, name
        assert response.headers["content-type"] == media_type
        assert response.content == static_path(name).read_bytes()
    missing = httpx.get(base + "inbox.html")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


def test_the_served_client_is_the_js_package(servers: dict[str, ServerProcess]) -> None:
    """clients/js/tidings.js is the only source of /static/tidings.js."""
    response = httpx.get(servers["plain"].url + "/static/tidings.js")
    assert response.status_code == 200
    assert response.content == (ROOT / "clients" / "js" / "tidings.js").read_bytes()


def test_dev_login_exists_only_with_the_flag(servers: dict[str, ServerProcess]) -> None:
    refused = httpx.post(servers["plain"].url + "/dev/login", json={"userId": "alice"})
    assert refused.status_code == 404
    answer = httpx.post(servers["dev"].url + "/dev/login", json={"userId": "alice"})
    assert answer.status_code == 200
    assert verify(SECRET, answer.json()["token"]).user_id == "alice"
    bad = httpx.post(servers["dev"].url + "/dev/login", json={"userId": ""})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "bad_request"
    assert "/dev/login" not in httpx.get(servers["dev"].url + "/openapi.json").text
    assert "dev-login" in servers["dev"].log() and "INSECURE" in servers["dev"].log()


def test_the_operator_page_is_served_like_the_inbox_page(servers: dict[str, ServerProcess]) -> None:
    """/admin holds no secret: the page asks for the token and sends it in a header."""
    page = httpx.get(servers["plain"].url + "/admin")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert 'src="/static/admin.js"' in page.text and 'id="token-form"' in page.text
    script = static_path("admin.js").read_text()
    assert "sessionStorage" in script and "Authorization: `Bearer" in script
    assert "/admin" not in httpx.get(servers["plain"].url + "/openapi.json").json()["paths"]
