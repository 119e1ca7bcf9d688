"""Stream admission without a socket: path and headers in, identity or refusal out."""

from __future__ import annotations

from typing import Any

import pytest
from websockets.datastructures import Headers

from tidings.config import Settings
from tidings.core.forwarded import TrustedProxies
from tidings.core.tokens import mint
from tidings.web.handshake import Admission, HandshakeRefused, admit

SECRET = "s" * 32


def decide(path: str, headers: dict[str, str] | Headers | None = None, **options: Any) -> Admission:
    settings = options.pop("settings", Settings(secret=SECRET))
    return admit(
        path,
        headers if headers is not None else {},
        settings=settings,
        keys=settings.resolve_keys(),
        proxies=TrustedProxies(settings.forwarded_allow_ips),
        peer_ip=options.pop("peer_ip", "10.0.0.7"),
        draining=options.pop("draining", False),
        connections_of=options.pop("connections_of", lambda user: 0),
        **options,
    )


def refusal(
    path: str, headers: dict[str, str] | Headers | None = None, **options: Any
) -> tuple[int, str]:
    with pytest.raises(HandshakeRefused) as caught:
        decide(path, headers, **options)
    return caught.value.status, caught.value.text


def test_a_token_in_the_query_or_the_header_admits_its_user() -> None:
    token = mint(SECRET, "bob", ttl_seconds=60)
    for path, headers in (
        (f"/ws?token={token}", {}),
        ("/ws", {"authorization": f"Bearer {token}"}),
        ("/ws/", {"authorization": f"bearer  {token}"}),
    ):
        admission = decide(path, headers)
        assert admission.identity.user_id == "bob" and not admission.identity.admin
        assert (admission.since, admission.topics, admission.source_ip) == (None, None, "10.0.0.7")


def test_a_token_offered_as_a_subprotocol_admits_and_only_tidings_v1_is_answered() -> None:
    token = mint(SECRET, "bob", ttl_seconds=60)
    for headers in (
        {"sec-websocket-protocol": f"tidings.v1, bearer.{token}"},
        {"sec-websocket-protocol": f"bearer.{token},tidings.v1"},
        Headers(
            [
                ("Sec-WebSocket-Protocol", "tidings.v1"),
                ("Sec-WebSocket-Protocol", f"bearer.{token}"),
            ]
        ),
    ):
        admission = decide("/ws?since=0", headers)
        assert admission.identity.user_id == "bob" and admission.since == 0
        assert admission.subprotocol == "tidings.v1"
    assert decide(f"/ws?token={token}", {"sec-websocket-protocol": "tidings.v1"}).subprotocol
    assert decide(f"/ws?token={token}", {"sec-websocket-protocol": "chat"}).subprotocol is None
    assert decide(f"/ws?token={token}").subprotocol is None
    status, text = refusal("/ws", {"sec-websocket-protocol": f"bearer.{token}"})
    assert status == 400 and "tidings.v1" in text and token not in text
    assert refusal("/ws", {"sec-websocket-protocol": "tidings.v1, bearer.junk"})[0] == 401
    assert refusal("/ws", {"sec-websocket-protocol": "tidings.v1"})[0] == 401
    assert refusal("/ws", {"sec-websocket-protocol": "a b"}) == (
        400,
        "malformed Sec-WebSocket-Protocol header",
    )


def test_since_and_topics_are_positions_to_resume_from() -> None:
    token = mint(SECRET, "bob", ttl_seconds=60)
    admission = decide(f"/ws?token={token}&since=7&topics=news:5,everyone:12")
    assert admission.since == 7 and admission.topics == {"news": 5, "everyone": 12}
    cases = {
        "since=-1": "since must be a non-negative integer",
        "topics=news:5": "only together with since=",
        "since=0&topics=news:x": "is not topic:seq",
        "since=0&topics=bad%20name:1": "topics:",
    }
    for query, text in cases.items():
        status, message = refusal(f"/ws?token={token}&{query}")
        assert status == 400 and text in message, (query, message)


def test_who_is_refused_and_with_which_status() -> None:
    token = mint(SECRET, "bob", ttl_seconds=60)
    assert refusal("/other")[0] == 404
    assert refusal(f"/ws?token={token}", draining=True)[0] == 503
    assert refusal("/ws")[0] == 401
    assert refusal("/ws?token=junk")[0] == 401
    assert refusal(f"/ws?token={mint('t' * 32, 'bob', ttl_seconds=60)}")[0] == 401
    assert refusal("/ws?userId=alice")[1].endswith("(the server needs --allow-user-id)")
    seed = Settings(secret=SECRET, allow_user_id=True)
    assert decide("/ws?userId=alice", settings=seed).identity.user_id == "alice"
    assert refusal("/ws?userId=a%0Ab", settings=seed)[0] == 400
    limited = Settings(secret=SECRET, max_connections_per_user=2)
    assert decide(f"/ws?token={token}", settings=limited, connections_of=lambda user: 1)
    status, text = refusal(f"/ws?token={token}", settings=limited, connections_of=lambda u: 2)
    assert status == 429 and "limit 2" in text


def test_origins_and_headers_given_twice() -> None:
    token = mint(SECRET, "bob", ttl_seconds=60)
    strict = Settings(secret=SECRET, allowed_origins=("https://app.example",))
    path = f"/ws?token={token}"
    assert decide(path, {"origin": "https://app.example"}, settings=strict)
    assert decide(path, {}, settings=strict)  # not a browser
    assert refusal(path, {"origin": "https://evil.example"}, settings=strict)[0] == 403
    twice = Headers([("Origin", "https://a"), ("Origin", "https://b")])
    assert refusal(path, twice) == (400, "more than one Origin header")


def test_the_client_address_comes_from_a_trusted_proxy_only() -> None:
    token = mint(SECRET, "bob", ttl_seconds=60)
    path = f"/ws?token={token}"
    forwarded = {"x-forwarded-for": "203.0.113.9, 127.0.0.1"}
    assert decide(path, forwarded, peer_ip="127.0.0.1").source_ip == "203.0.113.9"
    assert decide(path, forwarded, peer_ip="10.0.0.7").source_ip == "10.0.0.7"


def test_extra_paths_are_served_only_when_asked() -> None:
    token = mint(SECRET, "bob", ttl_seconds=60)
    assert refusal(f"/prod?token={token}")[0] == 404
    served = decide(f"/prod?token={token}", also_serves=lambda path: path == "/prod")
    assert served.identity.user_id == "bob"
