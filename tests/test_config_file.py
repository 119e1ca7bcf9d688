"""Settings from a TOML file, the environment and flags, through the real command.

Precedence is flag > env > file > default, every flag has its variable and
its file key, and a bad file is refused with the file, the key and why.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from tests.server import SECRET, ServerProcess
from tests.test_cli import tidings
from tests.wsclient import open_ws, recv_json, recv_until, send_json
from tidings.cli.schema import SERVE, Setting
from tidings.cli.serve import serve
from tidings.config import load_or_create_secret
from tidings.core.tokens import mint


def effective(*args: str, env: dict[str, str] | None = None) -> dict[str, tuple[str, str]]:
    """``tidings config print``: key -> (value, where it came from)."""
    done = tidings("config", "print", *args, env=env)
    assert done.returncode == 0, done.stderr
    lines = {}
    for line in done.stdout.splitlines():
        found = re.fullmatch(r"([a-z0-9-]+) = (.*)  # (\w+)", line)
        if found:
            lines[found[1]] = (found[2], found[3])
    return lines


def test_flag_beats_env_beats_file_beats_default(tmp_path: Path) -> None:
    config = tmp_path / "tidings.toml"
    config.write_text("port = 9001\nping-timeout = 7.5\nmax_fragments = 99\nbroker = 'memory://'\n")
    got = effective(
        "--config",
        str(config),
        "--max-fragments",
        "5",
        env={"TIDINGS_PORT": "9002", "TIDINGS_PING_TIMEOUT": "3"},
    )
    assert got["max-fragments"] == ("5", "flag")
    assert got["port"] == ("9002", "env")
    assert got["ping-timeout"] == ("3.0", "env")
    assert got["broker"] == ('"memory://"', "file")
    assert got["ping-interval"] == ("20.0", "default")
    only_file = effective(env={"TIDINGS_CONFIG": str(config)})
    assert only_file["port"] == ("9001", "file") and only_file["max-fragments"] == ("99", "file")


def test_secrets_are_masked(tmp_path: Path) -> None:
    config = tmp_path / "tidings.toml"
    keys = f"aws-access-key-id = 'AKIDEXAMPLE'\naws-secret-access-key = '{'k' * 40}'\n"
    config.write_text(f"secret = '{SECRET}'\n" + keys)
    done = tidings("config", "print", "--config", str(config))
    assert done.returncode == 0, done.stderr
    assert SECRET not in done.stdout and "k" * 40 not in done.stdout
    assert 'secret = "********"  # file' in done.stdout


def test_every_flag_is_an_env_var_and_a_file_key(tmp_path: Path) -> None:
    options = {p.name: p for p in serve.params if p.name != "config"}
    assert set(options) == {s.name for s in SERVE}
    for setting in SERVE:
        assert options[setting.name].envvar == setting.env, setting.flag  # type: ignore[attr-defined]
    config = tmp_path / "all.toml"
    config.write_text("\n".join(f"{s.flag.replace('-', '_')} = {_sample(s)}" for s in SERVE))
    (tmp_path / "routes.toml").write_text("[routes]\n")
    done = tidings("config", "check", str(config))
    assert done.returncode == 0, done.stderr
    assert f"ok ({len(SERVE)} settings)" in done.stdout


def _sample(setting: Setting) -> str:
    samples = {
        "port": "0",
        "data-dir": "'data'",
        "db": "'sqlite:///x.db'",
        "secret": f"'{SECRET}'",
        "old-secret": f"['{'o' * 40}']",
        "jwks-url": "'https://sso.example.com/certs'",
        "token-issuer": "'https://sso.example.com'",
        "token-audience": "'tidings'",
        "user-send": "'self'",
        "durability": "'relaxed'",
        "log-level": "'warning'",
        "routes": "'routes.toml'",
        "route": "['$default=http://127.0.0.1:1/x']",
        "two-way": "['$default']",
        "integration-timeout": "5",
        "aws-secret-access-key": f"'{'k' * 40}'",
        "forwarded-allow-ips": "'127.0.0.1'",
        "route-selection-expression": "'$request.body.action'",
        "stage": "'prod'",
        "domain-name": "'example.com'",
        "aws-access-key-id": "'AKIDEXAMPLE'",
        "host": "'127.0.0.1'",
        "broker": "'memory://'",
        "allowed-origins": "'https://app.example.com'",
    }
    flag = setting.flag
    if flag in samples:
        return samples[flag]
    if setting.is_flag:
        return "false"
    default = setting.default
    if isinstance(default, int | float):
        return repr(default)
    return "'x'" if default is None else repr(str(default))


def test_bad_files_are_refused_naming_the_key(tmp_path: Path) -> None:
    cases = {
        "prot = 1": "unknown key 'prot' (did you mean 'port'?)",
        "port = 'x'": "port = 'x': must be a whole number",
        "port = 70000": "port = 70000: 70000 is not in the range 0<=x<=65535",
        "ping-interval = true": "ping-interval = True: must be a number",
        "allow-user-id = 'yes'": "allow-user-id = 'yes': must be true or false",
        "durability = 'fast'": "durability = 'fast': 'fast' is not one of 'full', 'relaxed'",
        "route = '$connect=x'": "route = '$connect=x': must be a list",
        "[port]\nx = 1": "port = {'x': 1}: must be a single value",
        "[server]\nport = 1": "unknown key 'server'",
        "port = ": "not valid TOML",
        "secret = 'short'": "--secret must be at least 32 characters",
    }
    config = tmp_path / "bad.toml"
    for text, why in cases.items():
        config.write_text(text + "\n")
        for command in (("config", "check", str(config)), ("serve", "--config", str(config))):
            done = tidings(*command)
            assert done.returncode in (1, 2), (text, done.stderr)
            line = done.stderr.strip().splitlines()[-1]
            assert line.startswith("tidings: error: ") and why in line, (text, line)


async def test_a_server_runs_on_its_config_file(tmp_path: Path) -> None:
    config = tmp_path / "tidings.toml"
    config.write_text("user-send = 'none'\nmax-frame-bytes = 2048\n")
    server = ServerProcess(tmp_path / "data", "--config", str(config)).start()
    try:
        assert httpx.get(f"{server.url}/healthz").status_code == 200
        ws = await open_ws(server.ws_url, token=server.token("alice"), since=0)
        await recv_until(ws, "caughtUp")
        send = {"action": "sendNotification", "userId": "alice", "message": "hi"}
        await send_json(ws, {**send, "requestId": 1})
        refused = await recv_until(ws, "error")
        assert refused[-1]["code"] == "forbidden"  # the file's user-send
        await send_json(ws, {**send, "message": "x" * 3000})
        with pytest.raises(ConnectionClosed) as closed:
            await recv_json(ws)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    finally:
        server.stop()


def test_token_check_says_who_and_until_when(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    token = tidings("token", "alice", "--admin", "--data-dir", data).stdout.strip()
    done = tidings("token", "--check", token, "--data-dir", data)
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(
        r"alice \(admin token\), expires \S+Z \(in 29 d 23 h\), jti [\w-]{16}\n", done.stdout
    )
    other = tidings("token", "--check", token, "--secret", "z" * 40, "--data-dir", data)
    assert other.returncode == 1 and "invalid token: Signature" in other.stderr
    expired = mint(load_or_create_secret(Path(data)), "bob", ttl_seconds=-120)
    late = tidings("token", "--check", expired, "--data-dir", data)
    assert late.returncode == 1
    assert re.search(r"token expired at \S+Z \(2 min \d+ s ago\)", late.stderr), late.stderr
    assert expired not in late.stderr and token not in other.stderr
