"""The fenced code blocks of README.md and docs/*.md, and what each kind is checked by.

Every block has an info string. ``KINDS`` says what the doc tests do with each
one; a block of any other kind (or without an info string) fails
``test_every_block_has_a_check``, so a new snippet is never silently
unchecked. ``text`` is the one kind that is skipped: output and diagrams that
only illustrate.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

KINDS = {
    "sh": "run with bash, command by command (servers until /healthz, listeners until they print)",
    "python": "run with this interpreter against the doc's server",
    "js": "run with node against the doc's server (or compared with the file it copies)",
    "html": "run in Chromium as an application's page; its module script parsed by node --check",
    "json": "parsed; a named file is written for the shell blocks, an inbox item is compared",
    "toml": "passed to tidings config check (a settings file or a route table)",
    "nginx": "checked with nginx -t inside an http block",
    "haproxy": "checked with haproxy -c",
    "yaml": "a Prometheus configuration, checked with promtool check config",
    "promql": "each expression (one a line) checked with promtool check rules",
    "text": "skipped: illustrative output or a diagram",
}
SHELLS = {"sh", "bash", "console", "shell"}
_FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.M | re.S)


@dataclass(frozen=True, slots=True)
class Block:
    path: Path
    line: int
    info: str
    text: str
    before: str
    """The prose between the previous block (or the start of the file) and this one."""

    @property
    def kind(self) -> str:
        return "sh" if self.info in SHELLS else self.info

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    @property
    def lead(self) -> str:
        """The last line of prose before the block (what introduces it)."""
        lines = [line for line in self.before.splitlines() if line.strip()]
        return lines[-1] if lines else ""

    @property
    def file_name(self) -> str | None:
        """The file this block is the content of, when the line before it names one
        (``routes.json``:)."""
        match = re.search(r"`([\w.-]+\.(?:json|toml))`", self.lead)
        return match[1] if match and self.kind in {"json", "toml"} else None

    @property
    def copy_of(self) -> Path | None:
        """The repository file the prose says this block is ("this is `path`")."""
        match = re.search(r"this is\s+`([\w./-]+)`", self.before)
        return ROOT / match[1] if match else None


def blocks(path: Path) -> list[Block]:
    source = path.read_text()
    found, end = [], 0
    for match in _FENCE.finditer(source):
        line = source.count("\n", 0, match.start()) + 1
        found.append(Block(path, line, match[1].strip(), match[2], source[end : match.start()]))
        end = match.end()
    return found


def all_blocks() -> list[Block]:
    return [block for path in DOCS for block in blocks(path)]


def commands(text: str, *, prompted: bool = False) -> list[str]:
    """A shell block's commands: continuation lines joined, blank and comment lines dropped
    (``prompted``, a console block: only the lines after a ``$ `` prompt)."""
    joined = re.sub(r"\\\n\s*", " ", text)
    if prompted:
        joined = "\n".join(line[2:] for line in joined.splitlines() if line.startswith("$ "))
    return [
        line.strip()
        for line in joined.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def module_script(html: str) -> str:
    match = re.search(r'<script type="module">\n(.*?)</script>', html, re.S)
    assert match, 'an html block shows a <script type="module">'
    return match[1]
