"""What the commands share: env var names, common options, running a coroutine."""

from __future__ import annotations

import asyncio
from typing import Any

import click

from tidings.cli.schema import BY_KEY


def env(name: str) -> dict[str, Any]:
    return {"envvar": f"TIDINGS_{name}", "show_envvar": True}


data_dir_option = BY_KEY["data-dir"].option()
secret_option = BY_KEY["secret"].option()
db_option = BY_KEY["db"].option()
store_wait_option = BY_KEY["store-wait"].option()
"""The same flags, variables and help as ``serve``'s, for the other commands."""


url_option = click.option(
    "--url", default="http://127.0.0.1:8000", show_default=True, help="The server.", **env("URL")
)


def run(main: Any) -> Any:
    try:
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(main)
    except ImportError:
        return asyncio.run(main)
