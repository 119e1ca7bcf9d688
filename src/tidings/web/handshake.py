"""Who may open a stream, decided without I/O: request path and headers in,
an ``Admission`` or a ``HandshakeRefused`` (status and text) out.

Every transport that opens a stream (the WebSocket upgrade, and any other
that arrives with a path and headers) asks ``admit``; so the rules on paths,
draining, origins, tokens, the seed's ``?userId=``, ``since``/``topics`` and
connections per user live once, and are tested without a socket.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import functools
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from websockets.datastructures import MultipleValuesError
from websockets.exceptions import InvalidHeader
from websockets.headers import parse_subprotocol
from websockets.http11 import MAX_LINE_LENGTH, MAX_NUM_HEADERS
from websockets.utils import accept_key

from tidings.config import Settings
from tidings.core.errors import AuthError, BadRequest, RateLimited
from tidings.core.forwarded import TrustedProxies
from tidings.core.inbox import check_topic
from tidings.core.keys import Keys
from tidings.core.tokens import BEARER_PREFIX, SUBPROTOCOL, Identity, UnknownKey, bearer, verify
from tidings.web.counters import RATE_LIMITED, refusal_reason

WS_PATH = "/ws"
MAX_TOPIC_POSITIONS = 100


class HandshakeRefused(Exception):
    def __init__(
        self,
        status: int,
        text: str,
        *,
        retry_after: str | None = None,
        reason: str | None = None,
    ) -> None:
        super().__init__(text)
        self.status = status
        self.text = text
        self.retry_after = retry_after
        """The ``Retry-After`` header's value, for a 429."""
        self.reason = reason or refusal_reason(status)
        """Why, in a word the metrics count (``web.counters.REFUSAL_REASONS``)."""


class KeyNotFetched(HandshakeRefused):
    """The token names a public key not known yet: fetch the JWKS, then admit again."""

    def __init__(self, kid: str | None, text: str) -> None:
        super().__init__(401, text)
        self.kid = kid


@dataclass(frozen=True, slots=True)
class Admission:
    """A stream the server agreed to open."""

    identity: Identity
    since: int | None
    """Replay the personal stream after this seq; None: live only."""
    topics: dict[str, int] | None
    """Topic positions to replay from (only with ``since``)."""
    source_ip: str
    """The client's address: the peer's, or what a trusted proxy forwarded."""
    subprotocol: str | None = None
    """The ``Sec-WebSocket-Protocol`` to answer: ``tidings.v1`` when offered."""


def admit(
    path: str,
    headers: Mapping[str, str],
    *,
    settings: Settings,
    keys: Keys,
    proxies: TrustedProxies,
    peer_ip: str,
    draining: bool,
    connections_of: Callable[[str], int],
    also_serves: Callable[[str], bool] | None = None,
    throttle: Callable[[str], None] | None = None,
) -> Admission:
    """Admit or refuse one stream; ``headers`` answer lower-case names.

    ``connections_of(user)`` counts the user's open connections on this node;
    ``also_serves(path)`` accepts paths beyond ``/ws`` (API Gateway stages);
    ``throttle(client_ip)`` raises ``RateLimited`` past the connection rates,
    checked before the token, so that guessing tokens is rate limited too.
    """
    url = urlsplit(path)
    if url.path.rstrip("/") != WS_PATH and not (also_serves and also_serves(url.path)):
        raise HandshakeRefused(404, f"no WebSocket endpoint at {url.path!r}; use {WS_PATH}")
    if draining:
        raise HandshakeRefused(503, "server is draining; reconnect to another node")
    forwarded = headers.get_all("x-forwarded-for") if hasattr(headers, "get_all") else []
    source_ip = proxies.client(
        peer_ip, ", ".join(forwarded) if forwarded else headers.get("x-forwarded-for")
    )
    if throttle is not None:
        try:
            throttle(source_ip)
        except RateLimited as exc:
            raise HandshakeRefused(
                429, exc.message, retry_after=exc.retry_after_header, reason=RATE_LIMITED
            ) from None
    origin = _one_header(headers, "origin")
    allowed = settings.allowed_origins
    if allowed and origin is not None and origin not in allowed and "*" not in allowed:
        raise HandshakeRefused(403, f"origin {origin!r} is not allowed")
    query = parse_qs(url.query)
    authorization = bearer(_one_header(headers, "authorization"))
    offered = _subprotocols(headers)
    token = _first(query, "token") or authorization or _offered_token(offered)
    identity = _identity(query, token, settings, keys)
    since = _first(query, "since")
    since_seq: int | None = None
    if since is not None:
        if not since.isdigit():
            raise HandshakeRefused(400, f"since must be a non-negative integer, not {since!r}")
        since_seq = int(since)
    topics = _positions(_first(query, "topics"))
    if topics and since_seq is None:
        raise HandshakeRefused(400, "topics= resumes topics only together with since=")
    limit = settings.max_connections_per_user
    if limit and connections_of(identity.user_id) >= limit:
        raise HandshakeRefused(429, f"too many connections for this user (limit {limit})")
    subprotocol = SUBPROTOCOL if SUBPROTOCOL in offered else None
    return Admission(identity, since_seq, topics, source_ip, subprotocol)


def _subprotocols(headers: Mapping[str, str]) -> list[str]:
    """The subprotocols offered, in order (the header may come more than once)."""
    values = (
        headers.get_all("sec-websocket-protocol")
        if hasattr(headers, "get_all")
        else [value for value in [headers.get("sec-websocket-protocol")] if value is not None]
    )
    try:
        return [protocol for value in values for protocol in parse_subprotocol(value)]
    except InvalidHeader:
        raise HandshakeRefused(400, "malformed Sec-WebSocket-Protocol header") from None


def _offered_token(offered: list[str]) -> str | None:
    """The token of a ``bearer.<token>`` subprotocol (browsers cannot set headers),
    which needs ``tidings.v1`` offered too: the server answers with that one,
    never with the token."""
    for protocol in offered:
        if protocol.startswith(BEARER_PREFIX):
            if SUBPROTOCOL not in offered:
                raise HandshakeRefused(
                    400, f"a {BEARER_PREFIX}<token> subprotocol needs {SUBPROTOCOL} offered too"
                )
            return protocol[len(BEARER_PREFIX) :]
    return None


def _identity(
    query: dict[str, list[str]], token: str | None, settings: Settings, keys: Keys
) -> Identity:
    if token is not None:
        try:
            return verify(keys, token)
        except UnknownKey as exc:
            if keys.refresher is None:
                raise HandshakeRefused(401, exc.message) from None
            raise KeyNotFetched(exc.kid, exc.message) from None
        except AuthError as exc:
            raise HandshakeRefused(401, exc.message) from None
    user_id = _first(query, "userId")
    if user_id is None:
        raise HandshakeRefused(
            401,
            f"missing token: pass Authorization: Bearer, subprotocols {SUBPROTOCOL} and "
            f"{BEARER_PREFIX}<token>, or ?token=",
        )
    if not settings.allow_user_id:
        raise HandshakeRefused(
            401, "?userId= without a token is refused (the server needs --allow-user-id)"
        )
    if not 0 < len(user_id) <= settings.limits.max_user_id_chars or not user_id.isprintable():
        raise HandshakeRefused(400, "userId must be 1 to 256 printable characters")
    return Identity(user_id=user_id)


_TOKEN = re.compile(r"[-!#$%&'*+.^_`|~0-9a-zA-Z]+")
_HEADER_LINE = re.compile(r"[-!#$%&'*+.^_`|~0-9a-zA-Z]+:[\t\x20-\x7e]*")


def plain_upgrade(data: bytes) -> tuple[str, dict[str, str]] | None:
    """Path and headers (lower-case names) of a plain WebSocket upgrade, or None.

    Plain: one complete ``GET ... HTTP/1.1`` request in ASCII, each header at
    most once, ``Upgrade: websocket``, ``Connection`` listing ``upgrade``,
    version 13, a key of 16 bytes in base64, no body. python-websockets
    accepts all of these; anything else (including what it refuses, with its
    own error response) returns None.
    """
    if not data.endswith(b"\r\n\r\n"):
        return None
    try:
        lines = data[:-4].decode("ascii").split("\r\n")
    except UnicodeDecodeError:
        return None
    method, _, target = lines[0].partition(" ")
    path, _, protocol = target.partition(" ")
    if (
        method != "GET"
        or protocol != "HTTP/1.1"
        or not path
        or len(lines[0]) > MAX_LINE_LENGTH
        or len(lines) > MAX_NUM_HEADERS + 1
    ):
        return None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if len(line) > MAX_LINE_LENGTH or not _HEADER_LINE.fullmatch(line):
            return None
        name, _, value = line.partition(":")
        name = name.lower()
        if name in headers:
            return None
        headers[name] = value.strip(" \t")
    options = [option.strip(" \t") for option in headers.get("connection", "").split(",")]
    if (
        headers.get("upgrade", "").lower() != "websocket"
        or not all(_TOKEN.fullmatch(option) for option in options)
        or "upgrade" not in (option.lower() for option in options)
        or headers.get("sec-websocket-version") != "13"
        or headers.get("content-length", "0") != "0"
        or "transfer-encoding" in headers
    ):
        return None
    try:
        if len(base64.b64decode(headers.get("sec-websocket-key", ""), validate=True)) != 16:
            return None
    except binascii.Error:
        return None
    return path, headers


def _positions(raw: str | None) -> dict[str, int] | None:
    """``news:5,everyone:12`` as {topic: seq}; refused with 400 when malformed."""
    if not raw:
        return None
    positions: dict[str, int] = {}
    for part in raw.split(","):
        topic, _, seq = part.rpartition(":")
        try:
            check_topic(topic)
        except BadRequest as exc:
            raise HandshakeRefused(400, f"topics: {exc.message}") from None
        if not seq.isdigit():
            raise HandshakeRefused(400, f"topics: {part!r} is not topic:seq")
        positions[topic] = int(seq)
    if len(positions) > MAX_TOPIC_POSITIONS:
        raise HandshakeRefused(400, f"topics: at most {MAX_TOPIC_POSITIONS} topics")
    return positions


def _one_header(headers: Mapping[str, str], name: str) -> str | None:
    """A header that may appear once; twice is a bad request, not a crash."""
    try:
        return headers.get(name)
    except MultipleValuesError:
        raise HandshakeRefused(400, f"more than one {name.title()} header") from None


def _first(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[0] if values else None


def switching_protocols(key: str, subprotocol: str | None = None) -> bytes:
    """The ``101`` answer to a plain upgrade with ``Sec-WebSocket-Key: key``,
    byte for byte what python-websockets sends."""
    chosen = b"Sec-WebSocket-Protocol: %s\r\n" % subprotocol.encode() if subprotocol else b""
    return (
        b"HTTP/1.1 101 Switching Protocols\r\nDate: %s\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n%s\r\n"
        % (_http_date(int(time.time())), accept_key(key).encode(), chosen)
    )


@functools.lru_cache(maxsize=2)
def _http_date(second: int) -> bytes:
    """The ``Date`` header value for a Unix second (the same for every client in it)."""
    return email.utils.formatdate(second, usegmt=True).encode()
