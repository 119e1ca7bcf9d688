"""The wheel carries the inbox page and the JavaScript client, and serves the client from itself.

The client's only source is clients/js/tidings.js, outside the package; the
build copies it in (setup.py). The wheel is built with pip from the files an
sdist carries, so a missing MANIFEST.in or package-data entry shows here.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tidings.web.page import STATIC_TYPES

ROOT = Path(__file__).resolve().parent.parent
CLIENT = ROOT / "clients" / "js" / "tidings.js"
BUILD_INPUTS = ["pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "clients/js/tidings.js"]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tree = tmp_path_factory.mktemp("tree")
    for name in BUILD_INPUTS:
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, tree / name)
    shutil.copytree(
        ROOT / "src",
        tree / "src",
        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "tidings.js"),
    )
    dist = tmp_path_factory.mktemp("dist")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(dist), str(tree)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"pip wheel failed:\n{done.stdout}\n{done.stderr}"
    (built,) = dist.glob("tidings-*.whl")
    return built


def test_the_wheel_carries_the_page_and_the_client(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        pages = [*STATIC_TYPES, "inbox.html", "admin.html"]
        needed = {f"tidings/web/static/{name}" for name in pages}
        assert needed <= names, f"the wheel misses {sorted(needed - names)}"
        assert archive.read("tidings/web/static/tidings.js") == CLIENT.read_bytes()


def test_an_installed_wheel_serves_its_own_client(wheel: Path, tmp_path: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(tmp_path)
    where = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; sys.path.insert(0, sys.argv[1]); "
            "from tidings.web.page import static_path; print(static_path('tidings.js'))",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert Path(where.stdout.strip()) == tmp_path / "tidings" / "web" / "static" / "tidings.js"
