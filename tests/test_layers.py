"""Imports point inward: each room of ``src/tidings`` may import only the rooms below it.

Read from the source with ``ast`` (no import runs), so an arrow up the layers
fails here the day it is written, not when a second transport or backend
trips over it.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "tidings"

BASE = {"core", "logs", "batching", "tidings"}
"""Floor 0 and its helpers: anyone may import them (``tidings`` is ``__version__``)."""

ENGINE = {"hub", "catchup", "node"}

MAY_IMPORT: dict[str, set[str]] = {
    "core": {"core"},
    "logs": set(),
    "batching": {"core"},
    "tidings": set(),
    "store": BASE | {"store"},
    "broker": BASE | {"broker"},
    "config": BASE | {"config"},
    "hub": BASE,
    "catchup": BASE | {"store", "hub"},
    "node": BASE | {"store", "broker", "hub", "catchup"},
    "hooks": BASE,
    "jwks": BASE,
    "web": BASE | ENGINE | {"web", "store", "broker", "config", "hooks"},
    "aws": BASE | ENGINE | {"aws", "store", "broker", "config", "hooks"},
    "client": BASE | {"client"},
    "loadtest": BASE | {"loadtest"},
    "metrics": BASE | ENGINE | {"metrics", "web", "store", "broker", "config", "hooks"},
    "app": BASE | ENGINE | {"store", "broker", "config", "web", "aws", "hooks", "metrics", "jwks"},
    "cli": BASE | {"app", "aws", "client", "config", "loadtest", "store"},
    "__main__": {"cli"},
}
"""Room -> the rooms it may import. A room is a top-level module or package."""

PURE = {"aws.routes", "aws.settings"}
"""Modules of a higher room that are plain data and parsing, so ``config`` may
hold the gateway's settings without importing anything that does I/O."""


def room_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "tidings"


def imports() -> list[tuple[str, str, int]]:
    """``(importing module, imported module, line)`` for every ``tidings`` import."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                targets = [node.module]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                continue
            found += [(module, t, node.lineno) for t in targets if t.split(".")[0] == "tidings"]
    return found


def test_every_room_is_known() -> None:
    rooms = {room_of(module) for module, _, _ in imports()}
    assert rooms <= set(MAY_IMPORT), rooms - set(MAY_IMPORT)


def test_no_import_runs_up_the_layers() -> None:
    wrong = []
    for module, target, line in imports():
        source, dest = room_of(module), room_of(target)
        if source == dest or dest in MAY_IMPORT[source]:
            continue
        if source == "config" and target.removeprefix("tidings.") in PURE:
            continue
        wrong.append(f"{module}:{line} imports {target}")
    assert not wrong, "\n".join(wrong)


def test_only_the_cli_imports_the_composition_root() -> None:
    importers = {room_of(m) for m, target, _ in imports() if room_of(target) == "app"}
    assert importers <= {"cli"}, importers


def test_the_walk_finds_the_imports_there_are() -> None:
    """A walk that found nothing would pass the checks above; this one cannot."""
    arrows = {(room_of(m), room_of(t)) for m, t, _ in imports()}
    assert {("node", "store"), ("app", "web"), ("web", "core"), ("cli", "app")} <= arrows


def test_only_the_metrics_room_imports_prometheus_client() -> None:
    """The engine, stores, brokers and transports count with plain ints; the
    metrics library (which locks per increment) stays in ``metrics``."""
    importers = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else []
            )
            if any(name.split(".")[0] == "prometheus_client" for name in names):
                importers.add(path.relative_to(PACKAGE).parts[0])
    assert importers == {"metrics"}, importers
