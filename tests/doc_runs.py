"""How each kind of doc block is exercised (``RUNS``), in the ``Scene`` of its doc file.

Shell blocks run command by command: ``tidings serve`` (and what ``make run``
would run) is started on a free port until ``/healthz`` answers, then
stopped; ``tidings listen`` keeps running while the block's later commands
run, then must print a notification the test publishes to its user; ``make``
targets are dry-run (their commands must exist) rather than run, so ``make
test`` does not run the suite inside itself. Every other command must exit
0 (``curl`` fails on an HTTP error status).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx

from tests import node_tests
from tests.doc_blocks import ROOT, Block, commands, module_script
from tests.doc_scene import PYTHON_GIVEN, Scene, require_program, uses
from tests.server import free_port

SHELL_PRELUDE = """set -euo pipefail
curl() { command curl --fail-with-body --silent --show-error "$@"; }
jq() { stdbuf -oL jq "$@"; }  # line by line, as on a terminal
"""
SERVE_AT = 'tidings() { command tidings "$@" $DOC_SERVE_AT; }\n'
"""A doc's ``tidings serve`` runs on the test's port and data directory (later flags win)."""
_SERVE = re.compile(r"^(\S*/)?tidings serve\b")
_LISTEN = re.compile(r"^(\S*/)?tidings listen\b")
FED = "fed by the doc test"
"""What the test publishes to the user of a snippet that listens for notifications,
once the block has run: the listener must print it."""


class Background:
    """A command running in its own process group, its output in a file."""

    def __init__(self, scene: Scene, script: str, extra_env: dict[str, str] | None = None) -> None:
        self.out = scene.tmp / f"background-{uuid.uuid4().hex[:8]}.out"
        with self.out.open("wb") as out:
            self.proc = subprocess.Popen(
                ["bash", "-c", SHELL_PRELUDE + script],
                cwd=scene.cwd,
                env={**scene.env(script), **(extra_env or {})},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.script = script

    def output(self) -> str:
        return self.out.read_text(errors="replace")

    def printed(self, text: str) -> bool:
        return text in self.output()

    def alive(self) -> None:
        assert self.proc.poll() is None, f"{self.script!r} exited:\n{self.output()}"

    def stop(self) -> str:
        """Interrupt the command (the first of a pipeline, so the others see its end and
        flush), then whatever of its process group is left."""
        if self.proc.poll() is None:
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
            pids = [int(pid) for pid in children.read_text().split()] if children.exists() else []
            with contextlib.suppress(ProcessLookupError):
                os.kill(min(pids, default=self.proc.pid), signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        return self.output()


def wait_for(
    check: Callable[[], bool], what: str, proc: Background | None = None, timeout: float = 20
) -> None:
    """Until ``check()``; fails after ``timeout`` or when ``proc`` exits, with its output."""
    deadline = time.monotonic() + timeout
    while not check():
        if proc is not None:
            proc.alive()
        output = proc.output() if proc is not None else ""
        assert time.monotonic() < deadline, f"{what}: not after {timeout} s\n{output}"
        time.sleep(0.1)


def serve(scene: Scene, script: str) -> None:
    """Start a ``tidings serve`` command on a free port, wait for /healthz, stop it."""
    port = free_port()
    at = f"--host 127.0.0.1 --port {port} --data-dir {scene.tmp / f'serve-{port}'} --drain-grace 0"
    server = Background(scene, SERVE_AT + script, {"DOC_SERVE_AT": at})

    def healthy() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(healthy, f"{script!r} serving /healthz", server)
    finally:
        output = server.stop()
    assert server.proc.returncode == 0, f"{script!r} did not stop cleanly:\n{output}"


def make(scene: Scene, command: str) -> None:
    """Dry-run a make command: the target exists, every command it runs exists, and what
    it serves starts."""
    where = f"-C {shlex.quote(str(ROOT))} VENV={shlex.quote(sys.prefix)}"
    dry = subprocess.run(
        ["bash", "-c", f"make -n --no-print-directory {where} {command[5:]}"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert dry.returncode == 0, f"{command!r}: {dry.stderr}"
    for line in commands(dry.stdout):
        program = next(word for word in line.split() if not re.match(r"\w+=", word))
        found = subprocess.run(["bash", "-c", 'type -t "$1"', "_", program], capture_output=True)
        assert found.returncode == 0, f"{command!r} runs {program!r}, which does not exist: {line}"
        if _SERVE.match(line):
            serve(scene, f"{line} $DOC_SERVE_AT")


def listen(scene: Scene, script: str) -> tuple[str, Background]:
    """Start a ``tidings listen`` command; return its user once it is connected."""
    found = re.search(r"--user\s+(\S+)", script)
    assert found, f"{script!r}: tidings listen names its --user"
    user = found[1]

    def connections() -> int:
        count: int = scene.presence(user)["connections"]  # type: ignore[assignment]
        return count

    before = connections()
    listener = Background(scene, script)
    wait_for(lambda: connections() > before, f"{script!r} connecting", listener)
    return user, listener


HOST_PROGRAMS = frozenset(
    ("docker", "systemctl", "useradd", "install", "runuser", "pg_dump", "pg_restore")
)
"""Programs of a procedure on the reader's host (an image, a service unit, users,
a production database): such a block is checked, not run, since running it would
change this machine or needs a Docker engine. tests/test_deploy_*.py run what
those blocks build (the Dockerfile's steps, the unit, the balancer) for real."""
_REPO_PATH = re.compile(
    r"(?<![\w/.-])((?:deploy|docs|clients)/[\w./-]+|Dockerfile|requirements\.lock)"
)


def check_host_procedure(shown: list[str]) -> None:
    """Every program a host procedure runs exists here, and every project file it
    names is in the repository (``deploy/.env`` excepted: the procedure makes it)."""
    for command in shown:
        program = command.split()[0]
        found = subprocess.run(["bash", "-c", 'type -t "$1"', "_", program], capture_output=True)
        assert found.returncode == 0 or program.startswith("/opt/"), (
            f"{command!r} runs {program!r}, which does not exist"
        )
        for path in _REPO_PATH.findall(command):
            if path != "deploy/.env":
                assert (ROOT / path).exists(), f"{command!r} names {path}, not in the repository"


def run_sh(scene: Scene, block: Block) -> None:
    exports: list[str] = []
    listeners: list[tuple[str, Background]] = []
    try:
        shown = commands(block.text, prompted=block.info == "console")
        if any(command.split()[0] in HOST_PROGRAMS for command in shown):
            check_host_procedure(shown)
            return
        for command in map(scene.fill, shown):
            script = "\n".join([*exports, command])
            if command.startswith("export "):
                exports.append(command)
            elif command.startswith("make "):
                make(scene, command)
            elif _SERVE.match(command):
                serve(scene, script)
            elif _LISTEN.match(command):
                listeners.append(listen(scene, script))
            else:
                for program in ("curl", "jq"):
                    if uses(command, program):
                        require_program(program)
                done = subprocess.run(
                    ["bash", "-c", SHELL_PRELUDE + script],
                    cwd=scene.cwd,
                    env=scene.env(script),
                    capture_output=True,
                    text=True,
                    timeout=60,
                )
                assert done.returncode == 0, f"{command!r}:\n{done.stdout}{done.stderr}"
        for user in {user for user, _ in listeners}:
            scene.publish(user, FED)
        for _, listener in listeners:
            wait_for(functools.partial(listener.printed, FED), f"{listener.script!r}", listener)
    finally:
        for _, listener in listeners:
            listener.stop()


def run_python(scene: Scene, block: Block) -> None:
    given = scene.given(block.text + " ALICE_TOKEN")
    code = "".join(f"{name} = {value!r}\n" for name, value in given.items()) + PYTHON_GIVEN
    path = scene.cwd / f"block_{block.line}.py"
    path.write_text(code + scene.fill(block.text))
    if ".notifications()" not in block.text:
        done = subprocess.run(
            [sys.executable, str(path)], cwd=scene.cwd, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, f"{block.where}:\n{done.stdout}{done.stderr}"
    else:  # it prints alice's notifications until stopped: give it one
        listener = Background(scene, f"exec {sys.executable} -u {path}")
        try:
            wait_for(functools.partial(_fed, scene, listener), f"{block.where}", listener)
        finally:
            listener.stop()
    if "connection_id" in given:
        assert scene.socket.recv(timeout=10), f"{block.where}: nothing reached the connection"


def _fed(scene: Scene, listener: Background) -> bool:
    if FED in listener.output():
        return True
    scene.publish("alice", FED)
    time.sleep(0.4)
    return False


JS_PRELUDE = """
const docOrigin = %(origin)s;
const docFetch = globalThis.fetch;
// Relative URLs resolve against the page's origin (the doc's server); an HTTP error fails.
globalThis.fetch = async (url, init) => {
  const answer = await docFetch(new URL(url, docOrigin), init);
  if (!answer.ok) throw new Error(`${url}: ${answer.status} ${await answer.clone().text()}`);
  return answer;
};
const docSockets = [];
globalThis.WebSocket = class extends globalThis.WebSocket {
  constructor(...args) {
    super(...args);
    const entry = { socket: this, open: false, messages: 0, error: null, done: false };
    docSockets.push(entry);
    this.addEventListener("open", () => { entry.open = true; });
    this.addEventListener("message", () => { entry.messages += 1; });
    this.addEventListener("close", (e) => { if (!entry.done) entry.error ??= `closed ${e.code}`; });
  }
};
"""
JS_EPILOGUE = """
// Every socket opened; every one with a message handler got a message.
const docSettled = (e) => e.error || (e.open && (e.socket.onmessage === null || e.messages > 0));
const docUntil = Date.now() + 10000;
while (!docSockets.every(docSettled) && Date.now() < docUntil) {
  await new Promise((resolve) => setTimeout(resolve, 50));
}
const docBad = docSockets.filter((e) => e.error || !e.open || (e.socket.onmessage && !e.messages));
for (const e of docSockets) { e.done = true; e.socket.close(); }
if (docBad.length) {
  console.error("sockets:", docBad.map((e) => ({ url: e.socket.url, ...e, socket: undefined })));
  process.exit(1);
}
process.exit(0);
"""


def run_js(scene: Scene, block: Block) -> None:
    if block.copy_of is not None:  # that file is run by its own tests
        assert block.copy_of.read_text() == block.text, (
            f"{block.where} differs from {block.copy_of}"
        )
        return
    require_program("node")
    consts = "".join(f"const {k} = {json.dumps(v)};\n" for k, v in scene.given(block.text).items())
    path = scene.cwd / f"block_{block.line}.mjs"
    origin = json.dumps(scene.server.url)
    path.write_text(consts + JS_PRELUDE % {"origin": origin} + scene.fill(block.text) + JS_EPILOGUE)
    done = subprocess.run(
        ["node", "--experimental-websocket", "--no-warnings", str(path)],
        cwd=scene.cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, f"{block.where}:\n{done.stdout}{done.stderr}"


def run_html(scene: Scene, block: Block) -> None:
    require_program("node")
    path = scene.cwd / f"block_{block.line}.mjs"
    path.write_text(module_script(block.text))
    done = subprocess.run(["node", "--check", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, f"{block.where}:\n{done.stderr}"


def run_pages(scene: Scene, blocks: list[Block]) -> None:
    """Run html blocks in Chromium as alice's pages (``clients/js/test/page_snippet.mjs``);
    what they send must be stored."""
    node_tests.require_js("playwright-core")
    node_tests.require_chromium()
    paths = [scene.cwd / f"block_{block.path.stem}_{block.line}.html" for block in blocks]
    for path, block in zip(paths, blocks, strict=True):
        path.write_text(block.text)
    given = scene.given("ALICE_TOKEN ADMIN_TOKEN")
    done = subprocess.run(
        ["node", str(node_tests.TEST_DIR / "page_snippet.mjs"), scene.server.url, *map(str, paths)],
        cwd=node_tests.JS_DIR,
        capture_output=True,
        text=True,
        timeout=120,
        env={
            **os.environ,
            "DOC_USER": "alice",
            "DOC_TOKEN": given["ALICE_TOKEN"],
            "DOC_ADMIN_TOKEN": given["ADMIN_TOKEN"],
        },
    )
    assert done.returncode == 0, f"{done.stdout}{done.stderr}"
    for block in blocks:
        for user, message in re.findall(r'\.send\("([^"]+)", "([^"]+)"', block.text):
            wait_for(functools.partial(stored, scene, user, message), f"{block.where} sending")


def stored(scene: Scene, user: str, message: str) -> bool:
    """Whether ``user``'s inbox holds ``message`` from alice."""
    with scene.http() as http:
        items = http.get(f"/v1/users/{user}/inbox").json()["items"]
    return ("alice", message) in [(item["sender"], item["message"]) for item in items]


def run_json(scene: Scene, block: Block) -> None:
    shown = json.loads(block.text)
    if isinstance(shown, dict) and {"notificationId", "readAt"} <= shown.keys():
        scene.publish("doc-inbox", "an inbox item")
        with scene.http() as http:
            real = http.get("/v1/users/doc-inbox/inbox").json()["items"][0]
        assert shown.keys() == real.keys(), f"{block.where}: the server sends {sorted(real)}"


def run_nginx(scene: Scene, block: Block) -> None:
    require_program("nginx")
    conf = scene.tmp / f"nginx-{block.line}.conf"
    conf.write_text(
        f"pid {scene.tmp}/nginx.pid;\nerror_log stderr;\nevents {{}}\n"
        f"http {{\n{scene.fill(block.text)}}}\n"
    )
    check(["nginx", "-t", "-q", "-p", str(scene.tmp), "-c", str(conf)], block)


def run_haproxy(scene: Scene, block: Block) -> None:
    """A whole configuration is checked as it is; a block of sections alone (no
    ``defaults``: "this frontend replaces the one above") in place of the same
    sections of the doc's configuration before it."""
    require_program("haproxy")
    sections = _haproxy_sections(scene.fill(block.text))
    if "defaults" not in sections and scene.haproxy:
        sections = {**scene.haproxy, **sections}
    else:
        scene.haproxy = sections
    conf = scene.tmp / f"haproxy-{block.line}.cfg"
    conf.write_text("".join(sections.values()))
    check(["haproxy", "-c", "-q", "-f", str(conf)], block)


def _haproxy_sections(text: str) -> dict[str, str]:
    """Sections by their header line (``frontend notify``), each with its body."""
    sections: dict[str, str] = {}
    for part in re.split(r"(?m)^(?=\S)", text):
        if part.strip():
            sections[part.splitlines()[0].strip()] = part if part.endswith("\n") else part + "\n"
    return sections


def run_prometheus_config(scene: Scene, block: Block) -> None:
    require_program("promtool")
    config = scene.tmp / "prometheus.yml"
    config.write_text(block.text)
    check(["promtool", "check", "config", str(config)], block)


def run_promql(scene: Scene, block: Block) -> None:
    """Each line's expression, its comment dropped, as a recording rule."""
    require_program("promtool")
    exprs = [line.split("#")[0].strip() for line in block.text.splitlines()]
    rules = [{"record": f"doc:expr_{i}", "expr": e} for i, e in enumerate(exprs) if e]
    assert rules, f"{block.where}: no expression"
    path = scene.tmp / "rules.json"  # JSON is YAML
    path.write_text(json.dumps({"groups": [{"name": "doc", "rules": rules}]}))
    check(["promtool", "check", "rules", str(path)], block)


def check(argv: list[str], block: Block) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, f"{block.where}:\n{done.stdout}{done.stderr}"


def nothing(scene: Scene, block: Block) -> None:
    """toml blocks have tests of their own; text blocks only illustrate."""


RUNS: dict[str, Callable[[Scene, Block], None]] = {
    "sh": run_sh,
    "python": run_python,
    "js": run_js,
    "html": run_html,
    "json": run_json,
    "toml": nothing,
    "nginx": run_nginx,
    "haproxy": run_haproxy,
    "yaml": run_prometheus_config,
    "promql": run_promql,
    "text": nothing,
}


def write_named_files(scene: Scene, blocks: list[Block]) -> None:
    """Blocks that are the content of a named file (``routes.json``), written where
    the doc's commands look for them."""
    for block in blocks:
        if block.file_name:
            Path(scene.cwd / block.file_name).write_text(block.text)
