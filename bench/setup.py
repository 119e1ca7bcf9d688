"""Install the benchmark's peers: ``python -m bench.setup``.

Creates ``bench/.venv`` from ``bench/requirements.txt`` (the Python peers,
the load generator, matplotlib, py-spy) and runs ``npm ci`` for the Node
socket.io peer. Each step is skipped when its lock file has not changed
since it last succeeded, so ``python -m bench`` can call this every time.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
VENV = BENCH / ".venv"
REQUIREMENTS = BENCH / "requirements.txt"
NODE_PEER = BENCH / "peers" / "node-socketio"


@dataclass(frozen=True, slots=True)
class Environment:
    python: Path | None
    """The bench venv's interpreter, or None when it could not be made."""
    node: str | None
    """The ``node`` binary when the Node peer's packages are installed."""
    problems: tuple[str, ...] = ()


def venv_python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _digest(*paths: Path) -> str:
    hasher = hashlib.sha256()
    for path in paths:
        hasher.update(path.read_bytes())
    return hasher.hexdigest()


def ensure_venv(base_python: str = sys.executable) -> Path:
    """The bench venv's python, (re)installed when requirements.txt changed."""
    stamp = VENV / ".requirements.sha256"
    wanted = _digest(REQUIREMENTS)
    python = venv_python()
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    print(
        f"bench setup: creating {VENV.relative_to(BENCH.parent)} from requirements.txt", flush=True
    )
    subprocess.run([base_python, "-m", "venv", "--clear", str(VENV)], check=True)
    subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
            str(REQUIREMENTS),
        ],
        check=True,
    )
    stamp.write_text(wanted)
    return python


def ensure_node() -> str:
    """``npm ci`` in the Node peer's folder when package-lock.json changed."""
    node = shutil.which("node")
    npm = shutil.which("npm")
    if node is None or npm is None:
        raise RuntimeError("node and npm are needed for the Node socket.io peer")
    lock = NODE_PEER / "package-lock.json"
    stamp = NODE_PEER / "node_modules" / ".bench-lock.sha256"
    wanted = _digest(lock, NODE_PEER / "package.json")
    if stamp.exists() and stamp.read_text() == wanted:
        return node
    print("bench setup: npm ci for the Node socket.io peer", flush=True)
    subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=NODE_PEER, check=True
    )
    stamp.write_text(wanted)
    return node


def ensure(*, node: bool = True) -> Environment:
    """Set up whatever can be set up; what failed is named in ``problems``."""
    problems: list[str] = []
    python: Path | None = None
    node_binary: str | None = None
    try:
        python = ensure_venv()
    except (OSError, subprocess.CalledProcessError) as exc:
        problems.append(f"bench venv: {exc}")
    if node:
        try:
            node_binary = ensure_node()
        except (OSError, RuntimeError, subprocess.CalledProcessError) as exc:
            problems.append(f"node peer: {exc}")
    return Environment(python, node_binary, tuple(problems))


def main() -> int:
    env = ensure()
    for problem in env.problems:
        print(f"bench setup: {problem}", file=sys.stderr)
    print(f"bench setup: venv {env.python or 'missing'}, node {env.node or 'missing'}")
    return 1 if env.problems else 0


if __name__ == "__main__":
    sys.exit(main())
