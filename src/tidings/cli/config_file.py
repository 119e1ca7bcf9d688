"""``tidings serve --config FILE``: settings from a TOML file, checked like flags.

Keys are the flags' names (``max-frame-bytes`` or ``max_frame_bytes``). An
unknown key, a value of the wrong type or out of range is refused with the
file and the key; nothing is half-applied. Relative paths in the file are
relative to the file. The values become click's ``default_map``, so a flag or
an environment variable still wins over the file.
"""

from __future__ import annotations

import difflib
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from tidings.cli.schema import BY_KEY, Setting
from tidings.core.errors import ConfigError

F = TypeVar("F", bound=Callable[..., Any])


def load(path: Path, command: click.Command) -> dict[str, Any]:
    """The file's settings by parameter name, each converted as its flag would be."""
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read config file {str(path)!r}: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    params = {param.name: param for param in command.params}
    ctx = click.Context(command)
    values: dict[str, Any] = {}
    for key, value in data.items():
        setting = BY_KEY.get(key.replace("_", "-"))
        if setting is None:
            raise ConfigError(f"{path}: unknown key {key!r}{_suggest(key)}")
        values[setting.name] = _convert(path, key, setting, params[setting.name], ctx, value)
    return values


def _convert(
    path: Path, key: str, setting: Setting, param: click.Parameter, ctx: click.Context, value: Any
) -> Any:
    def refuse(why: str) -> ConfigError:
        return ConfigError(f"{path}: {key} = {value!r}: {why}")

    whole = isinstance(param.type, click.types.IntParamType)
    number = whole or isinstance(param.type, click.types.FloatParamType)
    if setting.multiple:
        if not isinstance(value, list):
            raise refuse("must be a list")
    elif isinstance(value, dict | list):
        raise refuse("must be a single value")
    elif setting.is_flag:
        if not isinstance(value, bool):
            raise refuse("must be true or false")
    elif number:
        if isinstance(value, bool) or not isinstance(value, int if whole else int | float):
            raise refuse("must be a whole number" if whole else "must be a number")
    elif not isinstance(value, str):
        raise refuse("must be a string")
    if isinstance(param.type, click.Path) and isinstance(value, str):
        value = str((path.parent / value) if not Path(value).is_absolute() else value)
    try:
        return param.type_cast_value(ctx, value)
    except click.BadParameter as exc:
        raise refuse(exc.message) from None


def _suggest(key: str) -> str:
    close = difflib.get_close_matches(key.replace("_", "-"), list(BY_KEY), n=1)
    return f" (did you mean {close[0]!r}?)" if close else " (see tidings serve --help)"


def config_option(command: F) -> F:
    """``--config FILE`` (``TIDINGS_CONFIG``), read before every other option."""

    def read(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
        if value is not None:
            ctx.default_map = {**(ctx.default_map or {}), **load(value, ctx.command)}
        return value

    return click.option(
        "--config",
        type=click.Path(dir_okay=False, path_type=Path),
        is_eager=True,
        expose_value=False,
        callback=read,
        envvar="TIDINGS_CONFIG",
        show_envvar=True,
        help="A TOML file of settings (keys: these flags' names); flags and "
        "TIDINGS_* variables win over it.",
    )(command)
