"""The config files shown in README.md and docs/ are valid: each ``toml`` block
that starts with ``# tidings.toml`` passes ``tidings config check`` (with the secret in
``TIDINGS_SECRET``, as the snippets say), and each
route table passes as ``--routes``."""

from __future__ import annotations

import re
from pathlib import Path

from tests.server import SECRET
from tests.test_cli import tidings

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def toml_blocks() -> list[tuple[Path, str]]:
    found = []
    for path in DOCS:
        for block in re.findall(r"```toml\n(.*?)```", path.read_text(), flags=re.S):
            found.append((path, block))
    return found


def test_there_are_snippets_to_check() -> None:
    kinds = {block.startswith("# tidings.toml") for _, block in toml_blocks()}
    assert kinds == {True, False}, "expected a settings file and a route table among the docs"


def test_every_settings_file_shown_is_valid(tmp_path: Path) -> None:
    for path, block in toml_blocks():
        if not block.startswith("# tidings.toml"):
            continue
        config = tmp_path / "tidings.toml"
        config.write_text(block)
        done = tidings("config", "check", str(config), env={"TIDINGS_SECRET": SECRET})
        assert done.returncode == 0, f"{path.name}: {done.stderr}"


def test_every_route_table_shown_is_valid(tmp_path: Path) -> None:
    for path, block in toml_blocks():
        if block.startswith("# tidings.toml"):
            continue
        routes = tmp_path / "routes.toml"
        routes.write_text(block)
        config = tmp_path / "tidings.toml"
        config.write_text(f"routes = {str(routes)!r}\n")
        done = tidings("config", "check", str(config))
        assert done.returncode == 0, f"{path.name}: {done.stderr}"
