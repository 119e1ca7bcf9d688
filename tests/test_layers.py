"""The layers: every import inside tidings points inward, never up.

Read from the source with ``ast`` (imports under ``TYPE_CHECKING`` count
too: a type that needs a higher layer is a seam in the wrong place).
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "tidings"

BASE = {"core", "logs", "batching", "tidings"}
"""What every room may import: the I/O-free core, logging, the batcher and the
package's version."""

MAY_IMPORT: dict[str, set[str]] = {
    "core": set(),
    "logs": set(),
    "batching": set(),
    "aws.routes": {"core"},
    "aws.settings": {"core", "aws.routes"},
    "config": {"core", "aws.settings"},
    "store": BASE,
    "broker": BASE,
    "hub": BASE,
    "catchup": BASE | {"hub", "store"},
    "node": BASE | {"hub", "catchup", "store", "broker"},
    "web": BASE | {"hub", "node", "store", "broker", "config"},
    "aws": BASE | {"hub", "node", "broker", "config"},
    "app": BASE | {"hub", "node", "store", "broker", "config", "web", "aws"},
    "cli": BASE | {"config", "app", "client", "loadtest", "store", "aws"},
    "client": BASE,
    "loadtest": BASE,
}
"""For each room (a package, a top-level module, or a pure module named whole),
the rooms it may import besides itself. The composition root (``app``) is the
only room that sees both transports; nothing but the CLI sees the root."""

PURE = {"aws.routes", "aws.settings"}
"""Modules of a higher package that hold only settings and parsing, which the
configuration layer may read."""


def room(module: str) -> str:
    """``tidings.store.sqlite.inbox`` -> ``store``; the modules in ``PURE`` stay whole."""
    parts = module.split(".")[1:]
    if not parts:
        return "tidings"
    if ".".join(parts[:2]) in PURE:
        return ".".join(parts[:2])
    return parts[0]


def imports_of(path: Path) -> list[tuple[int, str]]:
    module = "tidings." + ".".join(path.relative_to(SRC).with_suffix("").parts)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                name = f"{base}.{node.module}" if node.module else base
            else:
                name = node.module or ""
            found.append((node.lineno, name))
    return [(line, name) for line, name in found if name.split(".")[0] == "tidings"]


def test_every_import_points_inward() -> None:
    arrows_up = []
    for path in sorted(SRC.rglob("*.py")):
        here = room("tidings." + ".".join(path.relative_to(SRC).with_suffix("").parts))
        if here in ("__main__", "tidings", "__init__"):
            continue
        allowed = MAY_IMPORT.get(here)
        assert allowed is not None, f"{path.relative_to(SRC)}: a room with no rule; add one"
        for line, name in imports_of(path):
            target = room(name)
            if target.split(".")[0] != here.split(".")[0] and target not in allowed:
                arrows_up.append(f"{path.relative_to(SRC)}:{line} imports {name}")
    assert arrows_up == []


def test_nothing_below_the_root_imports_it() -> None:
    users = [
        f"{path.relative_to(SRC)}:{line}"
        for path in SRC.rglob("*.py")
        if path.name not in ("app.py", "cli.py", "__main__.py")
        for line, name in imports_of(path)
        if room(name) == "app"
    ]
    assert users == []
