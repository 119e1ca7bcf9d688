"""The command line: tokens, one-line errors, the data directory's secret."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

from tidings.core.tokens import verify


def tidings(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    return subprocess.run(
        [sys.executable, "-m", "tidings", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={**clean, **(env or {})},
    )


def test_token_and_serve_agree_on_a_generated_secret(tmp_path: Path) -> None:
    data = tmp_path / "data"
    out = tidings("token", "alice", "--data-dir", str(data))
    assert out.returncode == 0, out.stderr
    secret_file = data / "secret"
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    secret = secret_file.read_text().strip()
    assert verify(secret, out.stdout.strip()).user_id == "alice"
    again = tidings("token", "ops", "--admin", "--ttl", "60", env={"TIDINGS_DATA_DIR": str(data)})
    identity = verify(secret, again.stdout.strip())
    assert identity.admin and identity.user_id == "ops"
    assert secret_file.read_text().strip() == secret  # generated once


def test_bad_flag_is_one_line(tmp_path: Path) -> None:
    out = tidings("serve", "--bogus")
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "--bogus" in lines[0] and lines[0].startswith("tidings: error:")
    out = tidings("serve", "--port", "99999")
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1


def test_a_bad_proxy_address_is_one_line(tmp_path: Path) -> None:
    out = tidings("serve", "--data-dir", str(tmp_path), "--forwarded-allow-ips", "10.0.0.1,lb")
    lines = out.stderr.strip().splitlines()
    assert out.returncode != 0 and len(lines) == 1, out.stderr
    assert lines[0] == (
        "tidings: error: --forwarded-allow-ips: 'lb' is not an IP address or network"
    )


def test_port_in_use_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = tidings("serve", "--port", str(port), "--data-dir", str(tmp_path))
    assert out.returncode == 1
    assert out.stderr.strip() == (
        f"tidings: error: port {port} on 127.0.0.1 is in use (choose another with --port)"
    )


def test_unwritable_data_dir_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    out = tidings("serve", "--data-dir", str(blocker / "sub"), "--port", "0")
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "not writable" in lines[0], out.stderr


def test_broker_without_explicit_secret_refuses_to_start(tmp_path: Path) -> None:
    out = tidings("serve", "--broker", "redis://127.0.0.1:6379/0", "--data-dir", str(tmp_path))
    assert out.returncode == 1
    assert "needs an explicit --secret" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_env_vars_configure_serve(tmp_path: Path) -> None:
    out = tidings("serve", env={"TIDINGS_USER_SEND": "everyone"})
    assert out.returncode == 2 and "everyone" in out.stderr
    help_text = tidings("serve", "--help").stdout
    for var in ("TIDINGS_PORT", "TIDINGS_DB", "TIDINGS_SECRET", "TIDINGS_ALLOW_USER_ID"):
        assert var in help_text


def test_migrate_creates_the_schema(tmp_path: Path) -> None:
    out = tidings("migrate", "--data-dir", str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "tidings.db").exists()
