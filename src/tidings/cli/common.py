"""What the commands share: env var names, common options, running a coroutine."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import click

from tidings.config import default_data_dir


def env(name: str) -> dict[str, Any]:
    return {"envvar": f"TIDINGS_{name}", "show_envvar": True}


data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=default_data_dir,
    show_default="$XDG_DATA_HOME/tidings",
    help="Holds the SQLite file and the generated secret.",
    **env("DATA_DIR"),
)
secret_option = click.option(
    "--secret",
    help="HS256 signing secret (32+ chars); default: generated once in the data dir.",
    **env("SECRET"),
)


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
