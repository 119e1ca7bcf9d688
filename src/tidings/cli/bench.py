"""``tidings bench``: load-test a deployment with one user's token."""

from __future__ import annotations

from pathlib import Path

import click

from tidings.cli.common import run
from tidings.cli.schema import Setting, options


class _Unavailable(click.ClickException):
    exit_code = 2


def _check_ws_url(ctx: click.Context, param: click.Parameter, value: str) -> str:
    from tidings.loadtest.wire import url_problem

    problem = url_problem(value)
    if problem is not None:
        raise click.BadParameter(problem)
    return value


BENCH = (
    Setting(
        "url",
        "The deployment's WebSocket endpoint, ws://HOST:PORT/ws or wss://HOST/ws "
        "(wss: the certificate is checked against the system's CAs; SSL_CERT_FILE adds one).",
        required=True,
        callback=_check_ws_url,
        variable="BENCH_URL",
    ),
    Setting(
        "token",
        "A user token (tidings token USER). Every connection is that user and every "
        "send is stored in that user's inbox: use a user kept for load tests. No admin "
        "token is needed (sends go over the WebSocket; the server must allow them, "
        "--user-send any or self).",
        required=True,
    ),
    Setting(
        "connections",
        "Receiving connections (each gets every send; mind --max-connections-per-user).",
        100,
        click.IntRange(1, 50_000),
        variable="BENCH_CONNECTIONS",
    ),
    Setting(
        "senders",
        "Connections that send (they receive every send too).",
        1,
        click.IntRange(1, 64),
        variable="BENCH_SENDERS",
    ),
    Setting(
        "duration",
        "Seconds of measured sending (then up to 3 s of drain).",
        10.0,
        click.FloatRange(0.5, 3600),
        variable="BENCH_DURATION",
    ),
    Setting(
        "rate",
        "Sends a second, for latency at a fixed load; 0: saturation (each sender keeps "
        "8 sends awaiting their acks).",
        0.0,
        click.FloatRange(0, 1_000_000),
        variable="BENCH_RATE",
        show_default=True,
    ),
    Setting(
        "out",
        "Also write the raw results here as JSON.",
        type=click.Path(dir_okay=False, writable=True, path_type=Path),
        variable="BENCH_OUT",
    ),
)


@click.command()
@options(BENCH)
def bench(
    url: str,
    token: str,
    connections: int,
    senders: int,
    duration: float,
    rate: float,
    out: Path | None,
) -> None:
    """Load-test a deployment with one user's token, using the benchmark's load generator.

    Opens the connections, sends notifications to that user for --duration
    seconds and prints connections, handshakes/s, sends, acks and deliveries
    per second, latency (send to receipt) and errors. Needs picows. Exit
    status 1: the server refused or could not be reached; 2: bad options or no
    picows.
    """
    import importlib.util
    import json

    if importlib.util.find_spec("picows") is None:
        raise _Unavailable("tidings bench needs picows (the bench extra): pip install picows")
    from tidings.loadtest import deployment

    try:
        result = run(
            deployment.bench_url(
                url,
                token,
                connections=connections,
                senders=senders,
                duration=duration,
                rate=rate or None,
            )
        )
    except deployment.LoadTestError as exc:
        raise click.ClickException(str(exc)) from None
    if out is not None:
        try:
            out.write_text(json.dumps(result, indent=1) + "\n")
        except OSError as exc:
            raise click.ClickException(f"cannot write {out}: {exc.strerror}") from None
    for line in deployment.summary(result):
        click.echo(line)
    if out is not None:
        click.echo(f"  results      {out}")
