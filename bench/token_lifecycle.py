"""What the token lifecycle costs and how fast a revocation lands.

1. ``verify`` per token, in one process: the HS256 fast path (the shape
   ``tidings token`` mints, with its kid), a kid-less token signed with an
   old secret (each secret tried), RS256 and ES256 tokens of an identity
   provider, and the fast path again with 10,000 users and 10,000 jtis
   revoked.
2. The token clock: watching and forgetting a connection's countdown.
3. With ``--nodes`` (PostgreSQL and Redis on 127.0.0.1): two nodes, N
   connections of one user on the second, a revocation posted to the first;
   seconds from the POST until every one of them got its 4403 close frame.

Prints the figures and writes bench/results/token_lifecycle.json.

    .venv/bin/python -m bench.token_lifecycle [--nodes] [--connections 200] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import tempfile
import time
import timeit
import uuid
from pathlib import Path

import httpx
from tests.jwks_server import AUDIENCE, ISSUER, SigningKey
from tests.server import SECRET, ServerProcess
from tests.services import POSTGRES_URL, REDIS_URL, with_query
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tidings.core.keys import Keys
from tidings.core.revocation import TOKEN, USER, Revocation
from tidings.core.tokens import mint, verify
from tidings.web.expiry import TokenClock

RESULTS = Path(__file__).parent / "results" / "token_lifecycle.json"
OLD = "old-secret-" + "o" * 32


def per_call_us(fn: object, number: int) -> float:
    """Best of five runs, microseconds per call."""
    runs = timeit.repeat(fn, number=number, repeat=5)  # type: ignore[arg-type]
    return round(min(runs) / number * 1e6, 2)


def verify_costs() -> dict[str, float]:
    keys = Keys.of(SECRET, old=[OLD, "older-" + "z" * 32], issuer=ISSUER, audience=AUDIENCE)
    rsa, ec = SigningKey("r1", "RS256"), SigningKey("e1", "ES256")
    keys.install({"keys": [rsa.jwk, ec.jwk]})
    plain = mint(keys, "alice", ttl_seconds=3600)
    rotated = mint("older-" + "z" * 32, "alice", ttl_seconds=3600)
    rs, es = rsa.token("alice", ttl=3600), ec.token("alice", ttl=3600)
    figures = {
        "hs256_fast_path_us": per_call_us(lambda: verify(keys, plain), 20_000),
        "hs256_kidless_third_secret_us": per_call_us(lambda: verify(keys, rotated), 5_000),
        "rs256_jwks_us": per_call_us(lambda: verify(keys, rs), 2_000),
        "es256_jwks_us": per_call_us(lambda: verify(keys, es), 2_000),
    }
    for n in range(10_000):
        keys.revoked.add(Revocation(USER, f"user-{n}", 1_000))
        keys.revoked.add(Revocation(TOKEN, f"jti-{n}", 1_000))
    figures["hs256_fast_path_10k_revoked_us"] = per_call_us(lambda: verify(keys, plain), 20_000)
    return figures


class Conn:
    """The attributes the clock reads (a bench stand-in for a connection)."""

    def __init__(self, n: int, expires_at: int) -> None:
        from tidings.core.tokens import Identity

        self.id = f"c{n}"
        self.user_id = f"u{n}"
        self.open = True
        self.identity = Identity(self.user_id, expires_at=expires_at)

    def send(self, payload: bytes) -> None: ...

    def close(self, code: int, reason: str) -> None: ...


async def clock_costs(count: int = 100_000) -> dict[str, float]:
    clock = TokenClock(notice=60, keys=Keys.of(SECRET), spawn=lambda task: None)
    now = int(time.time())
    conns = [Conn(n, now + 3600 + n % 86_400) for n in range(count)]
    start = time.perf_counter()
    for conn in conns:
        clock.watch(conn)
    watched = time.perf_counter() - start
    start = time.perf_counter()
    for conn in conns:
        clock.forget(conn)
    forgot = time.perf_counter() - start
    return {
        "clock_watch_us": round(watched / count * 1e6, 2),
        "clock_forget_us": round(forgot / count * 1e6, 2),
    }


async def revocation_delay(connections: int, rounds: int) -> dict[str, object]:
    pg, redis = POSTGRES_URL, REDIS_URL
    schema = f"tidings_bench_rv_{uuid.uuid4().hex[:10]}"
    db, broker = with_query(pg, f"schema={schema}"), with_query(redis, f"prefix={schema}")
    base = Path(tempfile.mkdtemp(prefix="tidings-bench-rv-"))
    nodes = [
        ServerProcess(
            base / f"n{i}",
            *("--db", db, "--broker", broker, "--node-ttl", "1.5"),
            # One user's many connections from one address, opened at once.
            *("--max-connections-per-user", "0", "--connect-rate-per-ip", "0"),
            *("--connect-rate", "0"),
        )
        for i in range(2)
    ]
    delays: list[float] = []
    try:
        for node in nodes:
            node.start()
        here, there = nodes
        admin = {"Authorization": f"Bearer {here.token('ops', admin=True)}"}
        async with httpx.AsyncClient(base_url=here.url, headers=admin) as http:
            for round_ in range(rounds):
                user = f"bench-{round_}"
                token = there.token(user)
                sockets = [
                    await connect(
                        there.ws_url, additional_headers={"Authorization": f"Bearer {token}"}
                    )
                    for _ in range(connections)
                ]
                start = time.perf_counter()
                answer = await http.post("/v1/revocations", json={"userId": user})
                assert answer.status_code == 201, answer.text
                closes = await asyncio.gather(*(closed_at(ws) for ws in sockets))
                delays.append(max(closes) - start)
    finally:
        for node in nodes:
            node.stop()
        import asyncpg  # type: ignore[import-untyped,unused-ignore]

        conn = await asyncpg.connect(pg)
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await conn.close()
    return {
        "connections": connections,
        "rounds": rounds,
        "all_closed_s_median": round(statistics.median(delays), 4),
        "all_closed_s_max": round(max(delays), 4),
    }


async def closed_at(ws: object) -> float:
    from websockets.asyncio.client import ClientConnection

    assert isinstance(ws, ClientConnection)
    try:
        while True:
            await asyncio.wait_for(ws.recv(), 10)
    except ConnectionClosed as exc:
        assert exc.rcvd is not None and exc.rcvd.code == 4403, exc
    return time.perf_counter()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", action="store_true", help="also the two-node revocation delay")
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    figures: dict[str, object] = {**verify_costs(), **await clock_costs()}
    if args.nodes:
        figures["revocation_two_nodes"] = await revocation_delay(args.connections, args.rounds)
    figures["machine"] = {
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "load": os.getloadavg(),
    }
    print(json.dumps(figures, indent=2))
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
