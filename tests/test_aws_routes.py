"""The route table: files, flags, the selection expression and route precedence."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tidings.aws.gateway import is_builtin
from tidings.aws.options import gateway_settings
from tidings.aws.routes import (
    Route,
    RouteTable,
    SelectionExpression,
    build_table,
    load_file,
    parse_file,
)
from tidings.core.errors import ConfigError

URL = "http://127.0.0.1:3000/ws"


def table(expression: str = "$request.body.action", **routes: Route) -> RouteTable:
    return RouteTable(
        {key.replace("S_", "$"): route for key, route in routes.items()},
        SelectionExpression.parse(expression),
    )


def route_of(t: RouteTable, frame: object) -> str | None:
    data = frame if isinstance(frame, bytes) else json.dumps(frame).encode()
    route = t.for_message(data, is_builtin)
    return None if route is None else route.key


def test_selection_expression_paths_and_templates() -> None:
    action = SelectionExpression.parse("$request.body.action")
    assert action.evaluate({"action": "send"}) == "send"
    assert action.evaluate({"other": 1}) is None
    assert action.evaluate({"action": {"nested": 1}}) is None
    assert action.evaluate({"action": 7}) == "7"
    nested = SelectionExpression.parse("$request.body.meta.kind")
    assert nested.evaluate({"meta": {"kind": "a"}}) == "a"
    assert nested.evaluate({"meta": "a"}) is None
    template = SelectionExpression.parse("${request.body.service}/${request.body.op}")
    assert template.evaluate({"service": "mail", "op": "send"}) == "mail/send"
    assert template.evaluate({"service": "mail"}) is None
    # The API Gateway console's spelling without the leading $ works too.
    assert SelectionExpression.parse("request.body.action").evaluate({"action": "x"}) == "x"
    for bad in ("$request.header.x", "$request.body", "${context.routeKey}", "action"):
        with pytest.raises(ConfigError, match="route selection expression"):
            SelectionExpression.parse(bad)


def test_precedence_custom_then_builtin_then_default() -> None:
    t = table(
        custom=Route("custom", URL),
        sendNotification=Route("sendNotification", URL),
        S_default=Route("$default", URL),
    )
    # A custom route takes over a built-in action's name.
    assert route_of(t, {"action": "sendNotification", "userId": "b", "message": "m"}) == (
        "sendNotification"
    )
    assert route_of(t, {"action": "custom"}) == "custom"
    # Built-in actions stay reachable while $default is set.
    assert route_of(t, {"action": "ping"}) is None
    assert route_of(t, {"action": "markRead", "ids": []}) is None
    assert route_of(t, {"action": "subscribe"}) is None  # tidings answers bad_request
    # Everything else goes to $default: unknown actions, no action, not JSON.
    assert route_of(t, {"action": "nope"}) == "$default"
    assert route_of(t, {"message": "no action"}) == "$default"
    assert route_of(t, b"plain text") == "$default"
    assert route_of(t, b"\xff\xfe binary") == "$default"
    assert route_of(t, [1, 2]) == "$default"
    # $-keys are never chosen by a message.
    assert route_of(t, {"action": "$connect"}) == "$default"


def test_without_default_unknown_actions_are_left_to_tidings() -> None:
    t = table(custom=Route("custom", URL))
    assert route_of(t, {"action": "custom"}) == "custom"
    assert route_of(t, {"action": "nope"}) is None  # tidings: invalid_route
    assert route_of(t, b"not json") is None  # tidings: bad_request


def test_builtin_actions_are_recognised_by_name() -> None:
    for action in ("sendNotification", "ping", "subscribe", "unsubscribe", "markRead", "archive"):
        assert is_builtin(action), action
    for action in ("sendnotification", "createMessage", "", "$default"):
        assert not is_builtin(action), action


def test_other_selection_expression_picks_custom_routes_only() -> None:
    t = table("$request.body.type", chat=Route("chat", URL))
    assert route_of(t, {"type": "chat", "action": "ping"}) == "chat"
    assert route_of(t, {"type": "other", "action": "ping"}) is None


def test_route_file_json_and_toml(tmp_path: Path) -> None:
    json_file = tmp_path / "routes.json"
    json_file.write_text(
        json.dumps(
            {
                "routeSelectionExpression": "$request.body.op",
                "integrationTimeout": 5,
                "routes": {
                    "$connect": URL,
                    "$disconnect": {"url": URL},
                    "echo": {"url": URL, "twoWay": True},
                },
            }
        )
    )
    loaded = load_file(json_file)
    assert loaded.expression == "$request.body.op" and loaded.timeout == 5.0
    assert loaded.routes["echo"] == Route("echo", URL, two_way=True)
    assert loaded.routes["$connect"] == Route("$connect", URL)

    toml_file = tmp_path / "routes.toml"
    toml_file.write_text(
        f'integrationTimeout = 2.5\n[routes]\n"$default" = "{URL}"\n'
        f'echo = {{ url = "{URL}", twoWay = true }}\n'
    )
    loaded = load_file(toml_file)
    assert loaded.timeout == 2.5 and loaded.expression is None
    assert set(loaded.routes) == {"$default", "echo"} and loaded.routes["echo"].two_way


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ([], "expected an object"),
        ({"route": {}}, "unknown keys"),
        ({"routes": {"$custom": URL}}, "the only \\$-keys"),
        ({"routes": {"x": "ftp://host/"}}, "not an http"),
        ({"routes": {"x": {"url": URL, "twoway": True}}}, "unknown keys"),
        ({"routes": {"x": {"url": URL, "twoWay": "yes"}}}, "twoWay must be"),
        ({"routes": {"x": {}}}, "needs a url"),
        ({"integrationTimeout": 0}, "positive number"),
        ({"routeSelectionExpression": 3}, "must be a string"),
    ],
)
def test_bad_route_files_name_the_problem(raw: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_file(raw, "routes.json")


def test_unreadable_route_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="No such file"):
        load_file(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(ConfigError, match=r"broken\.json"):
        load_file(broken)


def test_flags_win_over_the_file_and_two_way_marks_routes() -> None:
    file = parse_file({"routes": {"echo": {"url": URL, "twoWay": True}, "$default": URL}}, "f")
    t = build_table(file, ["echo=http://other:1/", "send=http://x:2/"], ["send"])
    assert t.routes["echo"] == Route("echo", "http://other:1/", two_way=True)
    assert t.routes["send"].two_way and not t.routes["$default"].two_way
    assert t.expression.text == "$request.body.action"
    with pytest.raises(ConfigError, match="expected KEY=URL"):
        build_table(None, ["no-equals"])
    with pytest.raises(ConfigError, match="no such route"):
        build_table(None, [], ["ghost"])
    with pytest.raises(ConfigError, match="only message routes"):
        build_table(None, [f"$connect={URL}"], ["$connect"])


def test_settings_from_cli_options(tmp_path: Path) -> None:
    file = tmp_path / "r.json"
    file.write_text(json.dumps({"integrationTimeout": 3, "routes": {"$default": URL}}))
    settings = gateway_settings(
        {
            "routes_file": file,
            "route_flags": (f"$connect={URL}",),
            "two_way": ("$default",),
            "route_selection_expression": None,
            "integration_timeout": None,
            "stage": "production",
            "domain_name": None,
            "aws_access_key_id": "AKIDTIDINGS",
            "aws_secret_access_key": "s" * 40,
        }
    )
    assert settings.integration_timeout == 3.0 and settings.stage_name == "production"
    assert set(settings.routes.routes) == {"$connect", "$default"} and settings.sigv4
    assert "s" * 40 not in repr(settings)
    assert gateway_settings({}).stage_name == "$default"
    assert gateway_settings({}).integration_timeout == 29.0
    for bad, message in (
        ({"stage": "a/b"}, "--stage"),
        ({"aws_access_key_id": "AKIDTIDINGS"}, "go together"),
        ({"aws_access_key_id": "AKIDTIDINGS", "aws_secret_access_key": "short"}, "32"),
    ):
        with pytest.raises(ConfigError, match=message):
            gateway_settings(bad)


def test_serve_reports_a_bad_route_table_in_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "routes.json"
    bad.write_text(json.dumps({"routes": {"$custom": URL}}))
    for args in (["--routes", str(bad)], ["--route", "no-url"], ["--two-way", "ghost"]):
        result = subprocess.run(
            [sys.executable, "-m", "tidings", "serve", "--data-dir", str(tmp_path), *args],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 1, result.stderr
        [line] = result.stderr.strip().splitlines()
        assert line.startswith("tidings: error: ")
