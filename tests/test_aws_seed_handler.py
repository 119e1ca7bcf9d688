"""The seed's own Lambda handler (Node, AWS SDK v3) served as tidings' HTTP integration.

The handler in tests/aws/seed_handler/handler.mjs is the seed's code with five
marked one-line fixes; it keeps its routeKey dispatch and its SDK calls:
DynamoDB (here a small local stand-in) and ``PostToConnectionCommand`` from
``@aws-sdk/client-apigatewaymanagementapi``, signed with SigV4 and sent to
tidings at ``http://{domainName}/{stage}``. Clients connect as the seed's
frontend does, to ``/production?userId=``.

Needs Node.js and the fixture's npm packages: the test runs ``npm ci`` when
they are missing. In CI (``CI`` set) anything missing fails the test; locally
it skips, naming what is missing.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.aws.fake_dynamodb import Table, fake_dynamodb
from tests.server import ServerProcess
from tests.services import missing
from tests.wsclient import open_ws, send_json

HANDLER_DIR = Path(__file__).resolve().parent / "aws" / "seed_handler"
PACKAGES = ("@aws-sdk/client-apigatewaymanagementapi", "@aws-sdk/client-dynamodb")
KEY_ID = "AKIDSEEDHANDLER0001"
SECRET = "seed-handler-test-secret-0123456789abcdef"


def require(what: str, ok: bool) -> None:
    """Fail (CI) or skip (elsewhere) unless ``ok``."""
    if not ok:
        missing(what, "not installed here")


def installed() -> bool:
    return all((HANDLER_DIR / "node_modules" / name).is_dir() for name in PACKAGES)


def require_handler_deps() -> None:
    require("Node.js (node on PATH)", shutil.which("node") is not None)
    if installed():
        return
    npm = shutil.which("npm")
    require("npm (to install tests/aws/seed_handler's packages)", npm is not None)
    assert npm is not None
    result = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund"],
        cwd=HANDLER_DIR,
        capture_output=True,
        text=True,
        timeout=600,
    )
    require(
        f"the npm packages {', '.join(PACKAGES)} (npm ci in tests/aws/seed_handler failed: "
        f"{result.stderr.strip()[-500:]})",
        result.returncode == 0 and installed(),
    )


@dataclass
class Stack:
    server: ServerProcess
    table: Table
    handler_log: Path

    @property
    def seed_url(self) -> str:
        """What the seed's frontend connects to, with only the host changed."""
        return f"ws://127.0.0.1:{self.server.port}/production"


def start_handler(dynamodb_url: str, log_path: Path) -> tuple[subprocess.Popen[str], int]:
    env = {
        **os.environ,
        "PORT": "0",
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": KEY_ID,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_ENDPOINT_URL_DYNAMODB": dynamodb_url,
        "MANAGEMENT_SCHEME": "http",
    }
    log = open(log_path, "w")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(
        ["node", "serve.mjs"],
        cwd=HANDLER_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    stdout = proc.stdout
    assert stdout is not None
    first: list[str] = []
    reader = threading.Thread(target=lambda: first.append(stdout.readline()), daemon=True)
    reader.start()
    reader.join(30)
    if not first or not first[0].strip():
        proc.kill()
        raise RuntimeError(f"the handler did not start:\n{log_path.read_text()}")
    return proc, int(json.loads(first[0])["listening"])


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    require_handler_deps()
    with fake_dynamodb() as (dynamodb_url, table):
        handler_log = tmp_path / "handler.log"
        handler, port = start_handler(dynamodb_url, handler_log)
        url = f"http://127.0.0.1:{port}/"
        server = ServerProcess(
            tmp_path / "data",
            "--allow-user-id",
            "--stage",
            "production",
            "--route",
            f"$connect={url}",
            "--route",
            f"$disconnect={url}",
            "--route",
            f"sendNotification={url}",
            "--aws-access-key-id",
            KEY_ID,
            "--aws-secret-access-key",
            SECRET,
        )
        try:
            server.start()
            yield Stack(server, table, handler_log)
        finally:
            server.stop()
            handler.terminate()
            handler.wait(10)


async def until(check: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


def connections(table: Table, user: str) -> set[str]:
    return {sk for sk, item in table.rows(user).items() if "message" not in item}


async def test_seed_handler_sends_through_tidings_and_cleans_up_stale_connections(
    stack: Stack,
) -> None:
    table = stack.table
    bob = await open_ws(stack.seed_url, userId="bob")
    alice = await open_ws(stack.seed_url, userId="alice")
    # $connect ran the handler's PutItem before the handshake completed.
    [bob_id] = connections(table, "bob")
    assert len(connections(table, "alice")) == 1

    await send_json(alice, {"action": "sendNotification", "userId": "bob", "message": "hi bob"})
    received = json.loads(await asyncio.wait_for(bob.recv(), 10))
    assert set(received) == {"notificationId", "message"}  # the seed's frame, as the seed sent it
    assert received["message"] == "hi bob"
    stored = table.rows("bob")[received["notificationId"]]
    assert stored["message"] == {"S": "hi bob"}
    with pytest.raises(TimeoutError):  # a one-way route: the sender hears nothing
        await asyncio.wait_for(alice.recv(), 0.3)

    # A second connection of bob's closes: $disconnect deletes its item...
    bob2 = await open_ws(stack.seed_url, userId="bob")
    [bob2_id] = connections(table, "bob") - {bob_id}
    await bob2.close()
    await until(lambda: connections(table, "bob") == {bob_id})
    # ...and if that $disconnect had been lost, the item would linger: put it back.
    table.put({"pk": {"S": "bob"}, "sk": {"S": bob2_id}})

    await send_json(alice, {"action": "sendNotification", "userId": "bob", "message": "again"})
    assert json.loads(await asyncio.wait_for(bob.recv(), 10))["message"] == "again"
    # PostToConnection to the closed connection got a 410 GoneException; the
    # handler's cleanup deleted the stale item.
    await until(lambda: connections(table, "bob") == {bob_id})
    deletes = [
        body["Key"]["sk"]["S"] for operation, body in table.calls if operation == "DeleteItem"
    ]
    assert deletes.count(bob2_id) == 2  # once by $disconnect, once by the 410 cleanup

    await bob.close()
    await alice.close()
    await until(lambda: not connections(table, "bob") and not connections(table, "alice"))
    assert "Error processing request" not in stack.handler_log.read_text()


async def test_seed_handler_user_id_from_token_connections(stack: Stack) -> None:
    # With a token instead of ?userId=, the handler's user is the authorizer's principalId.
    carol = await open_ws(stack.seed_url, token=stack.server.token("carol"))
    await until(lambda: len(connections(stack.table, "carol")) == 1)
    await carol.close()
    await until(lambda: not connections(stack.table, "carol"))
    assert "Error processing request" not in stack.handler_log.read_text()
