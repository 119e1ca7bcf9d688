"""The deployment files read as their tools read them, for the tests that keep
them true: the Dockerfile's instructions by stage, the compose file with its
``${VAR}`` references filled in, the systemd unit's keys, the commands of
docs' ``sh`` blocks, and what a ``tidings`` command line asks of the CLI."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import yaml

from tidings.cli import cli

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = DEPLOY / "compose.yaml"
HAPROXY = DEPLOY / "haproxy.cfg"
UNIT = DEPLOY / "tidings.service"
CONFIG = DEPLOY / "tidings.toml"
ENV_EXAMPLE = DEPLOY / "env.example"
"""What compose.yaml's ``${VAR}`` references need (copied to deploy/.env)."""
UNIT_ENV = DEPLOY / "tidings.env"
"""The unit's EnvironmentFile, /etc/tidings/tidings.env."""
DEPLOY_DOC = ROOT / "docs" / "deploy.md"
INSTALLED = "/opt/tidings/bin"
"""Where the image and the systemd unit have ``tidings``."""


# -- Dockerfile ----------------------------------------------------------------


@dataclass
class Stage:
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, instruction: str) -> list[str]:
        return [args for name, args in self.instructions if name == instruction]

    def env(self) -> dict[str, str]:
        """ENV lines (``KEY=VALUE`` pairs, shell-quoted), ``$VAR`` left as written."""
        found: dict[str, str] = {}
        for args in self.all("ENV"):
            for pair in shlex.split(args):
                key, _, value = pair.partition("=")
                found[key] = value
        return found


def dockerfile_stages(path: Path = DOCKERFILE) -> list[Stage]:
    lines = path.read_text().splitlines()
    logical: list[str] = []
    pending = ""
    for line in lines:
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if pending and line.lstrip().startswith("#"):
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        logical.append(pending.strip())
        pending = ""
    stages: list[Stage] = []
    for line in logical:
        instruction, _, args = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            words = args.split()
            stages.append(Stage(words[2] if len(words) > 2 else None))
        stages[-1].instructions.append((instruction, args.strip()))
    return stages


def exec_form(args: str) -> list[str]:
    """A JSON-array instruction argument (CMD, HEALTHCHECK ... CMD)."""
    value = json.loads(args[args.index("[") :])
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def strip_run_options(args: str) -> str:
    """A RUN line's shell command, without BuildKit's ``--mount=...`` options."""
    return re.sub(r"^(?:--\w+=\S+\s+)+", "", args)


def dockerignored(relative: str, path: Path = ROOT / ".dockerignore") -> bool:
    """Whether Docker leaves ``relative`` out of the build context (last match wins)."""
    ignored = False
    for raw in path.read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        parts = relative.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        hit = any(
            fnmatch.fnmatchcase(p, pattern) or fnmatch.fnmatchcase(p, pattern.removeprefix("**/"))
            for p in prefixes
        ) or (pattern.startswith("**/") and any(fnmatch.fnmatchcase(x, pattern[3:]) for x in parts))
        if hit:
            ignored = not negate
    return ignored


# -- compose -------------------------------------------------------------------

COMPOSE_VALUES = {"TIDINGS_SECRET": "s" * 64, "POSTGRES_PASSWORD": "pw-for-tests"}


def interpolate(text: str, values: dict[str, str]) -> str:
    """Compose's ``${NAME}``, ``${NAME:?error}`` and ``${NAME:-default}``."""

    def one(match: re.Match[str]) -> str:
        name, op, rest = match.group(1), match.group(2), match.group(3)
        if name in values:
            return values[name]
        if op == ":-":
            return rest or ""
        raise KeyError(f"{name} is not set: {rest}")

    return re.sub(r"\$\{(\w+)(?:(:[?-])([^}]*))?\}", one, text)


def compose(values: dict[str, str] | None = None) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(
        interpolate(COMPOSE.read_text(), values or COMPOSE_VALUES)
    )
    return loaded


def node_services(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services that run ``tidings serve`` (the image's CMD when no command)."""
    return {
        name: service
        for name, service in spec["services"].items()
        if service.get("image", "").startswith("tidings") and not service.get("command")
    }


# -- systemd, docs -------------------------------------------------------------


def unit_values(path: Path = UNIT) -> dict[str, list[str]]:
    """``Key`` -> its values in the unit, in order (a key may repeat)."""
    found: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def doc_blocks(language: str, path: Path = DEPLOY_DOC) -> list[str]:
    """The fenced blocks of ``language`` in docs/deploy.md, in order."""
    return re.findall(rf"```{language}\n(.*?)```", path.read_text(), flags=re.S)


def run_by(words: list[str]) -> list[str]:
    """The command a line runs: past ``runuser ... --`` and ``docker exec NAME``,
    with the installed ``/opt/tidings/bin/tidings`` as ``tidings``."""
    if words[0] == "runuser" and "--" in words:
        words = words[words.index("--") + 1 :]
    if words[:2] == ["docker", "exec"]:
        words = words[3:]
    if words[0].startswith(f"{INSTALLED}/"):
        words = [Path(words[0]).name, *words[1:]]
    return words


def sh_commands(path: Path = DEPLOY_DOC) -> list[list[str]]:
    """Each command of the ``sh`` blocks, split into words (comments dropped)."""
    found = []
    for block in doc_blocks("sh", path):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            while words and "=" in words[0] and not words[0].startswith("-"):
                words = words[1:]  # VAR=value prefixes
            if words and words[0] != "export":
                found.append(words)
    return found


# -- the CLI -------------------------------------------------------------------


def command_of(words: list[str]) -> tuple[click.Command, list[str]]:
    """The ``tidings`` (sub)command ``words`` run and the arguments it gets."""
    assert words[0] == "tidings", words
    command: click.Command = cli
    rest = words[1:]
    while isinstance(command, click.Group) and rest and not rest[0].startswith("-"):
        sub = command.get_command(click.Context(command), rest[0])
        assert sub is not None, f"no command {rest[0]!r} in {' '.join(words)!r}"
        command, rest = sub, rest[1:]
    return command, rest


def unknown_flags(words: list[str]) -> list[str]:
    command, rest = command_of(words)
    known = {opt for param in command.params for opt in param.opts}
    known |= {"--help", "-h"}
    return [w.split("=")[0] for w in rest if w.startswith("-") and w.split("=")[0] not in known]


def variables_read(words: list[str]) -> set[str]:
    """The TIDINGS_* variables the command ``words`` runs reads."""
    command, _ = command_of(words)
    return {
        param.envvar
        for param in command.params
        if isinstance(param, click.Option) and isinstance(param.envvar, str)
    }
