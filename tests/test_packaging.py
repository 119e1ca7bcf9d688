"""What tidings imports is what it declares, and the lock file pins all of it.

Walks ``src/tidings`` with ``ast``: every third-party module imported must
come from a distribution named in ``pyproject.toml`` (the base dependencies,
or the extra that the module's room needs), and every declared distribution
must have an exact version in ``requirements.lock``.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "tidings"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

OPTIONAL = {"asyncpg": "postgres", "redis": "redis", "picows": "bench"}
"""Modules imported only where their extra is needed (a driver, the load generator)."""


def _name(requirement: str) -> str:
    return re.split(r"[<>=~!;\[ ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def imported_modules() -> set[str]:
    found = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
            elif isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
    return {m for m in found if m not in sys.stdlib_module_names and m not in ("tidings",)}


def test_every_imported_package_is_declared() -> None:
    base = {_name(r) for r in PYPROJECT["dependencies"]}
    extras = {k: {_name(r) for r in v} for k, v in PYPROJECT["optional-dependencies"].items()}
    owners = packages_distributions()
    missing = []
    for module in sorted(imported_modules()):
        dists = {d.lower().replace("_", "-") for d in owners.get(module, [module])}
        allowed = extras[OPTIONAL[module]] if module in OPTIONAL else base
        if not dists & allowed:
            missing.append(f"{module} (from {sorted(dists)})")
    assert not missing, "imported but not declared: " + ", ".join(missing)


def test_the_lock_pins_every_declared_package() -> None:
    lock = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==", 1)
            lock[name.strip().lower().replace("_", "-")] = version.strip()
    declared = {_name(r) for r in PYPROJECT["dependencies"]}
    for extra in PYPROJECT["optional-dependencies"].values():
        declared |= {_name(r) for r in extra}
    assert declared - set(lock) == set(), f"not in requirements.lock: {declared - set(lock)}"


def test_make_run_installs_no_development_tools() -> None:
    makefile = (ROOT / "Makefile").read_text()
    run_install = re.search(r"^\$\(RUN_STAMP\):.*?\n((?:\t.*\n)+)", makefile, flags=re.M)
    assert run_install is not None
    extras = re.findall(r"-e '\.\[([a-z,]+)\]'", run_install.group(1))
    assert extras == ["postgres,redis"], extras
    assert re.search(r"^run: \$\(RUN_STAMP\)$", makefile, flags=re.M)
