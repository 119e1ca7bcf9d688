"""The Dockerfile's build steps, run for real without a Docker engine.

Its build stage's COPY sources are copied into a fresh directory (each one
checked against .dockerignore, so a file the build needs cannot be left out of
the context) and its RUN lines run there with ``sh -e``, as written, with the
stage's ENV; only the virtualenv's place (``VIRTUAL_ENV``) and the data
volume are directories of the test instead of /opt/tidings and
/var/lib/tidings. The runtime stage's CMD then serves with the image's ENV,
and its HEALTHCHECK command is run against it, and again once it stopped.
What cannot run here: ``useradd`` (the image's user) and the layering itself.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.deploy_files import (
    ROOT,
    Stage,
    dockerfile_stages,
    dockerignored,
    exec_form,
    strip_run_options,
)
from tests.server import free_port

pytestmark = pytest.mark.slow

VENV = "/opt/tidings"
VOLUME = "/var/lib/tidings"


def stage(name: str | None) -> Stage:
    (found,) = [s for s in dockerfile_stages() if s.name == name]
    return found


def copy_context(build: Stage, workdir: Path) -> None:
    """What the build stage's COPY lines put in its WORKDIR, from this checkout."""
    for args in build.all("COPY"):
        *sources, dest = shlex.split(args)
        for source in sources:
            assert not dockerignored(source), f"COPY {source}: left out by .dockerignore"
            origin = ROOT / source
            target = workdir / dest / Path(source).name if dest.endswith("/") else workdir / dest
            if origin.is_dir():
                for path in sorted(origin.rglob("*")):
                    relative = path.relative_to(ROOT).as_posix()
                    if path.is_file() and not dockerignored(relative):
                        out = target / path.relative_to(origin)
                        out.parent.mkdir(parents=True, exist_ok=True)
                        shutil.copy2(path, out)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, target)


def image_env(values: dict[str, str], venv: Path, base: dict[str, str]) -> dict[str, str]:
    """A stage's ENV over ``base``, with the virtualenv at ``venv`` and ``$PATH`` expanded."""
    env = dict(base)
    for key, value in values.items():
        env[key] = value.replace(VENV, str(venv)).replace("$PATH", env.get("PATH", ""))
    return env


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The build stage run: the virtualenv the runtime stage copies."""
    build = stage("build")
    root = tmp_path_factory.mktemp("image")
    workdir = root / build.all("WORKDIR")[-1].lstrip("/")
    workdir.mkdir(parents=True)
    copy_context(build, workdir)
    venv = root / VENV.lstrip("/")
    python_dir = str(Path(sys.executable).parent)  # a python 3.11 as the base image has
    base = {"PATH": f"{python_dir}:/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root")}
    env = image_env(build.env(), venv, base)
    assert env["VIRTUAL_ENV"] == str(venv)
    for args in build.all("RUN"):
        done = subprocess.run(
            ["sh", "-ec", strip_run_options(args)],
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, f"RUN {args}\n{done.stdout}\n{done.stderr}"
    return venv


def test_the_image_installs_the_locked_versions_with_the_drivers(image: Path) -> None:
    lock = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==")
            lock[name.lower().replace("_", "-")] = version
    frozen = subprocess.run(
        [str(image / "bin" / "python"), "-m", "pip", "list", "--format=freeze"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    installed = {}
    for line in frozen:
        name, version = line.split("==")
        installed[name.lower().replace("_", "-")] = version
    assert {"asyncpg", "redis", "tidings"} <= set(installed)
    assert not {"pytest", "mypy", "ruff", "boto3", "schemathesis"} & set(installed)
    off = {n: v for n, v in installed.items() if n in lock and lock[n] != v}
    assert not off, f"not the locked versions: {off}"
    assert set(installed) - set(lock) <= {"tidings", "pip", "setuptools", "wheel"}


def test_the_image_serves_and_its_healthcheck_says_so(image: Path, tmp_path: Path) -> None:
    runtime = stage(None)
    copied = [args for args in runtime.all("COPY") if args.startswith("--from=build")]
    assert copied == [f"--from=build {VENV} {VENV}"]
    assert runtime.all("USER") == ["tidings"] and "tidings" in runtime.all("RUN")[0]
    assert runtime.all("VOLUME") == [VOLUME]
    port = free_port()
    env = image_env(runtime.env(), image, {"PATH": "/usr/bin:/bin"})
    assert env["TIDINGS_DATA_DIR"] == VOLUME and env["TIDINGS_PORT"] == "8000"
    env |= {"TIDINGS_DATA_DIR": str(tmp_path / "volume"), "TIDINGS_PORT": str(port)}
    (tmp_path / "volume").mkdir()

    version = subprocess.run(["tidings", "--version"], env=env, capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout.startswith("tidings, version ")

    health = exec_form(runtime.all("HEALTHCHECK")[0])
    assert health[0] == "python"
    server = subprocess.Popen(
        exec_form(runtime.all("CMD")[0]),
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        assert wait_healthy(health, env, server), "the HEALTHCHECK never passed"
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
        assert ready.status_code == 200, ready.text
        assert (tmp_path / "volume" / "tidings.db").exists()  # the store is on the volume
    finally:
        server.send_signal(signal.SIGINT)
        server.send_signal(signal.SIGINT)  # no drain grace
        assert server.wait(15) == 0
    after = subprocess.run(health, env=env, capture_output=True, timeout=10)
    assert after.returncode != 0  # a stopped server fails the check


def wait_healthy(health: list[str], env: dict[str, str], server: subprocess.Popen[bytes]) -> bool:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert server.poll() is None, server.stderr.read() if server.stderr else ""
        if subprocess.run(health, env=env, capture_output=True, timeout=10).returncode == 0:
            return True
        time.sleep(0.2)
    return False
