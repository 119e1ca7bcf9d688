"""Every fenced block of README.md and docs/*.md is exercised, so none rots.

Each kind has its check (``doc_blocks.KINDS``); a block of a kind without one
fails ``test_every_block_has_a_check``. The blocks of one doc file run in
order against one server (``doc_scene.Scene``), so a block may use what an
earlier one stored. The config files: each ``toml`` block that starts with
``# tidings.toml`` passes ``tidings config check`` (with the secret in
``TIDINGS_SECRET``, as the snippets say), and each route table (``toml`` or
named ``.json``) passes as ``routes``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.doc_blocks import DOCS, KINDS, ROOT, Block, all_blocks, blocks
from tests.doc_runs import RUNS, run_pages, write_named_files
from tests.doc_scene import PLACEHOLDERS, Scene
from tests.server import SECRET
from tests.test_cli import tidings


def test_every_block_has_a_check() -> None:
    assert KINDS.keys() == RUNS.keys()
    unchecked = [f"{b.where}: ```{b.info}" for b in all_blocks() if b.kind not in KINDS]
    assert not unchecked, (
        "no check runs these blocks; add one to tests/doc_runs.py, or mark the block ```text "
        f"if it only illustrates: {unchecked}"
    )


def test_every_placeholder_is_still_shown() -> None:
    shown = "".join(block.text for block in all_blocks())
    assert [key for key in PLACEHOLDERS if key not in shown] == []


def test_there_are_snippets_to_check() -> None:
    kinds = {block.text.startswith("# tidings.toml") for block in toml_blocks()}
    assert kinds == {True, False}, "expected a settings file and a route table among the docs"
    assert {b.kind for b in all_blocks()} == KINDS.keys()


@pytest.fixture
def scene(tmp_path: Path) -> Iterator[Scene]:
    scene = Scene(tmp_path)
    yield scene
    scene.close()


@pytest.mark.parametrize("doc", [path.relative_to(ROOT).as_posix() for path in DOCS])
def test_every_block_of_the_doc_runs(doc: str, scene: Scene) -> None:
    shown = blocks(ROOT / doc)
    write_named_files(scene, shown)
    for block in shown:
        run = RUNS.get(block.kind)
        assert run, f"{block.where}: no check runs ```{block.info} blocks"
        run(scene, block)


def test_every_page_snippet_runs_in_chromium(scene: Scene) -> None:
    run_pages(scene, [block for block in all_blocks() if block.kind == "html"])


def toml_blocks() -> list[Block]:
    return [block for block in all_blocks() if block.kind == "toml"]


def route_tables() -> list[Block]:
    named = [b for b in all_blocks() if b.kind == "json" and b.file_name]
    return [b for b in toml_blocks() if not b.text.startswith("# tidings.toml")] + named


def test_every_settings_file_shown_is_valid(tmp_path: Path) -> None:
    for block in toml_blocks():
        if not block.text.startswith("# tidings.toml"):
            continue
        config = tmp_path / "tidings.toml"
        config.write_text(block.text)
        done = tidings("config", "check", str(config), env={"TIDINGS_SECRET": SECRET})
        assert done.returncode == 0, f"{block.where}: {done.stderr}"


def test_every_route_table_shown_is_valid(tmp_path: Path) -> None:
    tables = route_tables()
    assert {block.kind for block in tables} == {"toml", "json"}
    for block in tables:
        routes = tmp_path / f"routes.{block.kind}"
        routes.write_text(block.text)
        config = tmp_path / "tidings.toml"
        config.write_text(f"routes = {str(routes)!r}\n")
        done = tidings("config", "check", str(config))
        assert done.returncode == 0, f"{block.where}: {done.stderr}"
