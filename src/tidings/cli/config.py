"""``tidings config check FILE`` and ``tidings config print``: a config file
checked before a deploy, and the settings a ``tidings serve`` would run with."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from tidings.cli.schema import SERVE, Setting
from tidings.cli.serve import serve, settings_from

MASK = "********"

SOURCES = {
    ParameterSource.COMMANDLINE: "flag",
    ParameterSource.ENVIRONMENT: "env",
    ParameterSource.DEFAULT_MAP: "file",
    ParameterSource.DEFAULT: "default",
}


@click.group()
def config() -> None:
    """Check a config file, or print the settings a server would run with."""


@config.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def check(file: Path) -> None:
    """Check FILE: every key known, every value valid, the settings consistent."""
    context = serve.make_context("serve", ["--config", str(file)])  # reads and checks it
    settings_from(context.params)
    click.echo(f"{file}: ok ({len(context.default_map or {})} settings)")


@config.command(
    "print", context_settings={"ignore_unknown_options": True, "allow_extra_args": True}
)
@click.pass_context
def print_(ctx: click.Context) -> None:
    """The effective settings as TOML (secrets masked), each with where it came from.

    Takes what ``tidings serve`` takes (``--config FILE``, flags) and reads the
    same TIDINGS_* variables.
    """
    context = serve.make_context("serve", list(ctx.args))
    settings_from(context.params)
    for setting in SERVE:
        source = SOURCES.get(context.get_parameter_source(setting.name), "default")  # type: ignore[arg-type]
        click.echo(_line(setting, context.params[setting.name], source))


def _line(setting: Setting, value: Any, source: str) -> str:
    key = setting.flag
    if value is None or value == () or value == "":
        return f"# {key} is not set  # {source}"
    if setting.secret:
        return f'{key} = "{MASK}"  # {source}'
    return f"{key} = {_toml(value)}  # {source}"


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    return json.dumps(str(value))
