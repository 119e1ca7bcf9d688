"""``tidings bench``: load-test a deployment with one user's token."""

from __future__ import annotations

from pathlib import Path

import click

from tidings.cli.common import env, run


class _Unavailable(click.ClickException):
    exit_code = 2


def _check_ws_url(ctx: click.Context, param: click.Parameter, value: str) -> str:
    from tidings.loadtest.wire import url_problem

    problem = url_problem(value)
    if problem is not None:
        raise click.BadParameter(problem)
    return value


@click.command()
@click.option(
    "--url",
    required=True,
    callback=_check_ws_url,
    help="The deployment's WebSocket endpoint, ws://HOST:PORT/ws or wss://HOST/ws "
    "(wss: the certificate is checked against the system's CAs; SSL_CERT_FILE adds one).",
    **env("BENCH_URL"),
)
@click.option(
    "--token",
    required=True,
    help="A user token (tidings token USER). Every connection is that user and every "
    "send is stored in that user's inbox: use a user kept for load tests. No admin "
    "token is needed (sends go over the WebSocket; the server must allow them, "
    "--user-send any or self).",
    **env("TOKEN"),
)
@click.option(
    "--connections",
    default=100,
    type=click.IntRange(1, 50_000),
    show_default=True,
    help="Receiving connections (each gets every send; mind --max-connections-per-user).",
    **env("BENCH_CONNECTIONS"),
)
@click.option(
    "--senders",
    default=1,
    type=click.IntRange(1, 64),
    show_default=True,
    help="Connections that send (they receive every send too).",
    **env("BENCH_SENDERS"),
)
@click.option(
    "--duration",
    default=10.0,
    type=click.FloatRange(0.5, 3600),
    show_default=True,
    help="Seconds of measured sending (then up to 3 s of drain).",
    **env("BENCH_DURATION"),
)
@click.option(
    "--rate",
    default=0.0,
    type=click.FloatRange(0, 1_000_000),
    show_default=True,
    help="Sends a second, for latency at a fixed load; 0: saturation (each sender keeps "
    "8 sends awaiting their acks).",
    **env("BENCH_RATE"),
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Also write the raw results here as JSON.",
    **env("BENCH_OUT"),
)
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
        raise _Unavailable("tidings bench needs picows: pip install 'tidings[bench]'")
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
