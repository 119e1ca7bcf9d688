"""The ``tidings`` command: parses arguments and hands off. Errors are one line."""

from __future__ import annotations

import sys

import click

from tidings import __version__
from tidings.cli.backup import backup
from tidings.cli.bench import bench
from tidings.cli.client import listen, revoke, send
from tidings.cli.config import config
from tidings.cli.serve import migrate, serve
from tidings.cli.tokens import token
from tidings.core.errors import TidingsError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tidings")
def cli() -> None:
    """tidings: self-hosted real-time notifications."""


for command in (serve, config, token, migrate, backup, listen, send, revoke, bench):
    cli.add_command(command)


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.UsageError as exc:
        command = exc.ctx.command_path if exc.ctx else "tidings"
        click.echo(f"tidings: error: {exc.format_message()} (see '{command} --help')", err=True)
        sys.exit(2)
    except click.ClickException as exc:
        click.echo(f"tidings: error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except TidingsError as exc:
        click.echo(f"tidings: error: {exc.message}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
