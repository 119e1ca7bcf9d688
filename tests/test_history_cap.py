"""The per-user stored-history cap: a stream keeps its newest N notifications."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from tests.server import ServerProcess
from tests.wsclient import open_ws, recv_json, recv_until


async def test_a_stream_keeps_its_newest_notifications_and_tells_the_owner(
    tmp_path: Path,
) -> None:
    server = ServerProcess(
        tmp_path / "data", "--max-stored-per-user", "10", "--sweep-interval", "0.1"
    ).start()
    try:
        bob = await open_ws(server.ws_url, token=server.token("bob"), since=0)
        assert (await recv_json(bob))["type"] == "caughtUp"
        headers = {"Authorization": f"Bearer {server.token('backend', admin=True)}"}
        async with httpx.AsyncClient(base_url=server.url) as http:
            for n in range(1, 26):
                response = await http.post(
                    "/v1/notifications", json={"userId": "bob", "message": f"n{n}"}, headers=headers
                )
                assert response.status_code == 201
            # Trims run while the notifications arrive: their events interleave.
            pushed: list[dict[str, Any]] = []
            gone: list[str] = []
            while len(pushed) < 25 or len(gone) < 15:
                frame = await recv_json(bob)
                if frame["type"] == "notification":
                    pushed.append(frame)
                else:
                    assert frame["type"] == "inbox" and frame["change"]["action"] == "expire"
                    gone += frame["change"]["ids"]
                    event = frame
            assert [f["message"] for f in pushed] == [f"n{n}" for n in range(1, 26)]
            assert gone == [f["notificationId"] for f in pushed[:15]]
            assert event["total"] == event["unread"] == 10
            own = {"Authorization": f"Bearer {server.token('bob')}"}
            inbox = (await http.get("/v1/users/bob/inbox", headers=own)).json()
            assert [i["message"] for i in inbox["items"]] == [f"n{n}" for n in range(25, 15, -1)]
            assert inbox["counts"]["total"] == 10
        await bob.close()
        replay = await open_ws(server.ws_url, token=server.token("bob"), since=0)
        frames = await recv_until(replay, "caughtUp")
        assert [f.get("seq") for f in frames[:-1]] == list(range(16, 26))
        assert frames[-1]["complete"] is False  # what was before is gone
        await replay.close()
    finally:
        server.stop()
