"""The route table: route keys to HTTP integrations, and which route a message takes.

Route keys are API Gateway's: ``$connect`` (may refuse the handshake),
``$disconnect`` (told about every closed connection), ``$default`` (messages
no other route takes) and custom keys chosen by the route selection
expression, ``$request.body.action`` unless configured otherwise.

A message frame goes to, in order: the custom route its key names (a custom
route may take over the name of a built-in action), tidings' own action of
that ``action`` name (``sendNotification``, ``ping``, ``markRead``, ...),
``$default``, and otherwise tidings answers ``invalid_route``.

Pure: no I/O, no event loop.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

from tidings.core.errors import ConfigError

CONNECT = "$connect"
DISCONNECT = "$disconnect"
DEFAULT = "$default"
RESERVED = (CONNECT, DISCONNECT, DEFAULT)
DEFAULT_EXPRESSION = "$request.body.action"
MAX_KEY_CHARS = 128

_TEMPLATE_PART = re.compile(r"\$\{([^}]*)\}")
_FILE_KEYS = {"routes", "routeSelectionExpression", "integrationTimeout"}
_ROUTE_KEYS = {"url", "twoWay"}


@dataclass(frozen=True, slots=True)
class Route:
    key: str
    url: str
    two_way: bool = False
    """Send the integration's ``body`` back to the client (API Gateway's route response)."""


@dataclass(frozen=True, slots=True)
class SelectionExpression:
    """``$request.body.a.b``, or a template such as ``${request.body.kind}:${request.body.op}``.

    ``parts`` holds literal strings and paths into the JSON body.
    """

    text: str
    parts: tuple[str | tuple[str, ...], ...]

    @classmethod
    def parse(cls, text: str) -> SelectionExpression:
        if "${" in text:
            parts: list[str | tuple[str, ...]] = []
            at = 0
            for match in _TEMPLATE_PART.finditer(text):
                if match.start() > at:
                    parts.append(text[at : match.start()])
                parts.append(_body_path(match[1], text))
                at = match.end()
            if at < len(text):
                parts.append(text[at:])
            return cls(text, tuple(parts))
        return cls(text, (_body_path(text.removeprefix("$"), text),))

    def evaluate(self, body: Mapping[str, Any]) -> str | None:
        """The route key for ``body``, or None when a path is missing or not a scalar."""
        out: list[str] = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            value: Any = body
            for name in part:
                if not isinstance(value, Mapping) or name not in value:
                    return None
                value = value[name]
            if isinstance(value, str):
                out.append(value)
            elif isinstance(value, bool | int | float):
                out.append(json.dumps(value))
            else:
                return None
        return "".join(out)


def _body_path(inner: str, whole: str) -> tuple[str, ...]:
    names = inner.split(".")
    if names[:2] != ["request", "body"] or len(names) < 3 or not all(names[2:]):
        raise ConfigError(
            f"route selection expression {whole!r}: only $request.body.<field> paths "
            "(or ${request.body.<field>} templates) are supported"
        )
    return tuple(names[2:])


@dataclass(frozen=True, slots=True)
class RouteTable:
    routes: Mapping[str, Route]
    expression: SelectionExpression

    @classmethod
    def empty(cls) -> RouteTable:
        return cls({}, SelectionExpression.parse(DEFAULT_EXPRESSION))

    def __bool__(self) -> bool:
        return bool(self.routes)

    def get(self, key: str) -> Route | None:
        return self.routes.get(key)

    def for_message(self, data: bytes, is_builtin: Callable[[str], bool]) -> Route | None:
        """The route that takes this message, or None when tidings answers it itself.

        ``is_builtin(action)`` says whether tidings has an action of that name.
        A frame that is not a JSON object goes to ``$default``, as on API Gateway.
        """
        try:
            body = orjson.loads(data)
        except orjson.JSONDecodeError:
            body = None
        if isinstance(body, dict):
            key = self.expression.evaluate(body)
            if key is not None and not key.startswith("$") and key in self.routes:
                return self.routes[key]
            action = body.get("action")
            if isinstance(action, str) and is_builtin(action):
                return None
        return self.routes.get(DEFAULT)


def check_key(key: str) -> str:
    if key.startswith("$") and key not in RESERVED:
        raise ConfigError(f"route key {key!r}: the only $-keys are {', '.join(RESERVED)}")
    if not 0 < len(key) <= MAX_KEY_CHARS or not key.isprintable():
        raise ConfigError(f"route key {key!r} must be 1 to {MAX_KEY_CHARS} printable characters")
    return key


def check_url(url: str, key: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"route {key!r}: {url!r} is not an http:// or https:// URL")
    return url


def parse_flag(text: str) -> tuple[str, str]:
    """``KEY=URL`` (``--route``) as (key, url)."""
    key, sep, url = text.partition("=")
    if not sep or not key or not url:
        raise ConfigError(f"--route {text!r}: expected KEY=URL, e.g. '$connect=http://app/ws'")
    return check_key(key), check_url(url, key)


@dataclass(frozen=True, slots=True)
class RouteFile:
    """What a ``--routes`` file says; every field is optional."""

    routes: Mapping[str, Route]
    expression: str | None = None
    timeout: float | None = None


def load_file(path: Path) -> RouteFile:
    """Read a JSON or TOML (``.toml``) route file.

    ``{"routeSelectionExpression": "$request.body.action", "integrationTimeout": 29,
    "routes": {"$connect": "http://app/ws", "sendNotification": {"url": "http://app/ws",
    "twoWay": true}}}``
    """
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"--routes {str(path)!r}: {exc.strerror}") from None
    try:
        raw = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"--routes {str(path)!r}: {exc}") from None
    return parse_file(raw, str(path))


def parse_file(raw: object, where: str) -> RouteFile:
    if not isinstance(raw, dict):
        raise ConfigError(f"--routes {where!r}: expected an object at the top")
    unknown = set(raw) - _FILE_KEYS
    if unknown:
        raise ConfigError(f"--routes {where!r}: unknown keys {sorted(unknown)!r}")
    entries = raw.get("routes", {})
    if not isinstance(entries, dict):
        raise ConfigError(f"--routes {where!r}: routes must be an object of KEY: URL")
    routes = {}
    for key, entry in entries.items():
        routes[check_key(key)] = _route(key, entry, where)
    expression = raw.get("routeSelectionExpression")
    if expression is not None and not isinstance(expression, str):
        raise ConfigError(f"--routes {where!r}: routeSelectionExpression must be a string")
    timeout = raw.get("integrationTimeout")
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0
    ):
        raise ConfigError(f"--routes {where!r}: integrationTimeout must be a positive number")
    return RouteFile(routes, expression, None if timeout is None else float(timeout))


def _route(key: str, entry: object, where: str) -> Route:
    if isinstance(entry, str):
        return Route(key, check_url(entry, key))
    if not isinstance(entry, dict) or not isinstance(entry.get("url"), str):
        raise ConfigError(f"--routes {where!r}: route {key!r} needs a url")
    unknown = set(entry) - _ROUTE_KEYS
    if unknown:
        raise ConfigError(f"--routes {where!r}: route {key!r}: unknown keys {sorted(unknown)!r}")
    two_way = entry.get("twoWay", False)
    if not isinstance(two_way, bool):
        raise ConfigError(f"--routes {where!r}: route {key!r}: twoWay must be true or false")
    return Route(key, check_url(entry["url"], key), two_way)


def build_table(
    file: RouteFile | None,
    flags: Iterable[str] = (),
    two_way: Iterable[str] = (),
    expression: str | None = None,
) -> RouteTable:
    """The table from a file, then ``--route`` flags (which win), then ``--two-way`` keys."""
    routes: dict[str, Route] = dict(file.routes) if file else {}
    for text in flags:
        key, url = parse_flag(text)
        routes[key] = Route(key, url, routes[key].two_way if key in routes else False)
    for key in two_way:
        if key not in routes:
            raise ConfigError(f"--two-way {key!r}: no such route (add it with --route or --routes)")
        if key in (CONNECT, DISCONNECT):
            raise ConfigError(f"--two-way {key!r}: only message routes answer the client")
        routes[key] = Route(key, routes[key].url, True)
    for route in routes.values():
        if route.two_way and route.key in (CONNECT, DISCONNECT):
            raise ConfigError(f"route {route.key!r}: only message routes can be two-way")
    text = expression or (file.expression if file else None) or DEFAULT_EXPRESSION
    return RouteTable(routes, SelectionExpression.parse(text))
