"""The deployment files stay true to the code: the compose file has the shape
docs/deploy.md describes, every flag and TIDINGS_* variable the Dockerfile,
the compose file, the systemd unit and the docs use is one the command they
run reads (from cli/schema.py, not a list kept here), the settings they give
are valid together (``tidings config print`` / ``config check``), the unit
passes ``systemd-analyze verify`` and the HAProxy file ``haproxy -c``.

The Dockerfile's build is run for real in test_deploy_image.py, the balancer
in test_deploy_balancer.py.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.deploy_files import (
    COMPOSE,
    CONFIG,
    DEPLOY_DOC,
    ENV_EXAMPLE,
    HAPROXY,
    INSTALLED,
    UNIT,
    UNIT_ENV,
    compose,
    dockerfile_stages,
    exec_form,
    node_services,
    run_by,
    sh_commands,
    unit_values,
    unknown_flags,
    variables_read,
)
from tests.services import missing
from tests.test_cli import tidings

SERVE = ["tidings", "serve"]


def seconds(value: str | float) -> float:
    text = str(value)
    return float(text[:-1]) if text.endswith("s") else float(text)


def env_file(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {key.strip(): value.strip() for key, value in pairs if not key.startswith("#")}


def config_value(key: str) -> Any:
    import tomllib

    return tomllib.loads(CONFIG.read_text())[key]


# -- the compose file ----------------------------------------------------------


def test_compose_runs_three_nodes_on_postgres_and_redis_behind_haproxy() -> None:
    spec = compose()
    services = spec["services"]
    nodes = node_services(spec)
    assert len(nodes) == 3, sorted(services)
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["redis"]["image"].startswith("redis:")
    assert services["lb"]["image"].startswith("haproxy:")
    assert any("haproxy.cfg:" in volume for volume in services["lb"]["volumes"])
    for name in ("postgres", "redis"):
        assert services[name]["healthcheck"]["test"][0] == "CMD", name
    assert services["migrate"]["command"] == ["tidings", "migrate"]
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}

    lb_address = services["lb"]["networks"]["tidings"]["ipv4_address"]
    for name, node in nodes.items():
        env = node["environment"]
        assert env["TIDINGS_SECRET"] == "s" * 64, name  # one secret, from deploy/.env
        assert env["TIDINGS_DB"].startswith("postgresql://tidings:pw-for-tests@postgres:5432/")
        assert env["TIDINGS_BROKER"].startswith("redis://redis:6379/")
        assert env["TIDINGS_FORWARDED_ALLOW_IPS"] == lb_address
        assert node["pull_policy"] == "build"  # never an image pulled by that name
        assert node["depends_on"] == {
            "migrate": {"condition": "service_completed_successfully"},
            "redis": {"condition": "service_healthy"},
        }
        # docker stop waits longer than the drain, which ends before SIGKILL.
        assert seconds(node["stop_grace_period"]) > seconds(env["TIDINGS_DRAIN_GRACE"]) + 5
    assert services["lb"]["depends_on"] == {
        name: {"condition": "service_healthy"} for name in nodes
    }
    # The nodes' health check is the image's.
    (runtime,) = [s for s in dockerfile_stages() if s.name is None]
    assert runtime.all("HEALTHCHECK")


def test_compose_validates_and_refuses_to_start_without_the_secret(tmp_path: Path) -> None:
    """docker-compose (Debian's, v1) checks the file against the compose schema,
    fills in the variables and refuses a missing one with the file's message."""
    if shutil.which("docker-compose") is None:
        missing("docker-compose", "apt-get install docker-compose (make test-deps)")
    values = tmp_path / "values.env"
    values.write_text("TIDINGS_SECRET=" + "s" * 64 + "\nPOSTGRES_PASSWORD=pw-for-tests\n")
    ok = docker_compose(tmp_path, "--env-file", str(values), "config")
    assert ok.returncode == 0, ok.stderr
    assert "postgresql://tidings:pw-for-tests@postgres:5432/tidings" in ok.stdout
    values.write_text("POSTGRES_PASSWORD=pw-for-tests\n")
    refused = docker_compose(tmp_path, "--env-file", str(values), "config")
    assert refused.returncode != 0
    assert "set TIDINGS_SECRET in deploy/.env" in refused.stderr


def test_the_env_example_sets_what_compose_needs() -> None:
    needed = set(re.findall(r"\$\{(\w+):\?", COMPOSE.read_text()))
    assert set(env_file(ENV_EXAMPLE)) == needed == {"TIDINGS_SECRET", "POSTGRES_PASSWORD"}


def docker_compose(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker-compose", "--project-directory", str(COMPOSE.parent), "-f", str(COMPOSE), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "HOME": str(home)},
        check=False,
    )


# -- every name used exists ------------------------------------------------------


def command_lines() -> list[tuple[str, list[str], set[str]]]:
    """(where, tidings command line, TIDINGS_* variables set for it) in every file."""
    spec = compose()
    (runtime,) = [s for s in dockerfile_stages() if s.name is None]
    image_env = {k for k in runtime.env() if k.startswith("TIDINGS_")}
    cmd = exec_form(runtime.all("CMD")[0])
    found = [("Dockerfile CMD", cmd, image_env)]
    for name, service in spec["services"].items():
        if not service.get("image", "").startswith("tidings"):
            continue
        line = service.get("command") or cmd
        found.append((f"compose {name}", line, set(service.get("environment", {}))))
    exec_start = unit_values()["ExecStart"][0].split()
    exec_start[0] = Path(exec_start[0]).name
    found.append(("tidings.service", exec_start, set(env_file(UNIT_ENV))))
    for words in map(run_by, sh_commands()):
        if words[0] == "tidings":
            found.append(("docs/deploy.md", words, set()))
    return found


def test_every_flag_and_variable_used_is_one_tidings_reads() -> None:
    lines = command_lines()
    assert {where.split()[0] for where, _, _ in lines} == {
        "Dockerfile",
        "compose",
        "tidings.service",
        "docs/deploy.md",
    }
    for where, words, variables in lines:
        assert not unknown_flags(words), f"{where}: {' '.join(words)}: {unknown_flags(words)}"
        unread = variables - variables_read(words)
        assert not unread, f"{where}: {' '.join(words[:2])} reads no {sorted(unread)}"


def test_the_settings_given_are_valid_together(tmp_path: Path) -> None:
    """What each file gives ``tidings serve`` passes its checks (``config print``
    runs them, starting nothing), and each variable is taken from where it is set."""
    (runtime,) = [s for s in dockerfile_stages() if s.name is None]
    image_env = {k: v for k, v in runtime.env().items() if k.startswith("TIDINGS_")}
    secret = {"TIDINGS_SECRET": "s" * 64}
    cases = [("Dockerfile", exec_form(runtime.all("CMD")[0]), {**image_env, **secret})]
    for name, node in node_services(compose()).items():
        cases.append((f"compose {name}", SERVE, {**image_env, **node["environment"]}))
    unit = unit_values()["ExecStart"][0].split()
    assert unit[-2:] == ["--config", "/etc/tidings/tidings.toml"]
    cases.append(("tidings.service", [*SERVE, "--config", str(CONFIG)], env_file(UNIT_ENV)))
    for where, words, env in cases:
        done = tidings("config", "print", *words[2:], env={k: str(v) for k, v in env.items()})
        assert done.returncode == 0, f"{where}: {done.stderr}"
        for variable in env:
            key = variable.removeprefix("TIDINGS_").lower().replace("_", "-")
            assert re.search(rf"^(# )?{key} .*# (env|flag)$", done.stdout, re.M), (where, key)


def test_the_config_example_passes_config_check() -> None:
    done = tidings("config", "check", str(CONFIG), env=env_file(UNIT_ENV))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{CONFIG}: ok")


def test_the_docs_commands_exist() -> None:
    """Every program the docs' sh blocks run is one this machine has (tidings:
    its flags are checked above)."""
    programs = {words[0] for words in sh_commands()} | {run_by(w)[0] for w in sh_commands()}
    programs -= {"tidings", f"{INSTALLED}/tidings", f"{INSTALLED}/pip"}
    assert {"docker", "pg_dump", "systemctl"} <= programs
    assert not {p for p in programs if shutil.which(p) is None}, programs


# -- systemd -------------------------------------------------------------------


def test_the_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """Offline, no systemd running needed; verify wants ExecStart's program to
    exist, so the copy checked names this checkout's ``tidings`` instead of
    /opt/tidings/bin/tidings, and nothing else changes."""
    if shutil.which("systemd-analyze") is None:
        missing("systemd-analyze", "apt-get install systemd (make test-deps)")
    program = Path(sys.executable).parent / "tidings"
    unit = tmp_path / "tidings.service"
    unit.write_text(UNIT.read_text().replace("/opt/tidings/bin/tidings", str(program)))
    done = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and done.stderr == "", done.stderr


def test_the_unit_runs_unprivileged_and_outlasts_the_drain() -> None:
    values = {key: items[-1] for key, items in unit_values().items()}
    assert values["User"] == "tidings" and values["Group"] == "tidings"
    assert values["StateDirectory"] == "tidings"
    assert config_value("data-dir") == "/var/lib/tidings"
    assert values["EnvironmentFile"].lstrip("-") == "/etc/tidings/tidings.env"
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "RestrictSUIDSGID"):
        assert values[key] == "yes", key
    assert values["ProtectSystem"] == "strict"
    assert values["CapabilityBoundingSet"] == ""
    assert values["Restart"] == "on-failure"
    assert seconds(values["TimeoutStopSec"]) >= seconds(config_value("drain-grace")) + 5


# -- HAProxy -------------------------------------------------------------------


def test_the_balancer_leaves_a_draining_node_before_it_closes() -> None:
    """HAProxy's health check takes a node out ``inter x fall`` after its /readyz
    turns 503; the nodes' drain grace must be longer than that."""
    text = HAPROXY.read_text()
    check = re.search(r"default-server .*\binter (\d+)s fall (\d+)", text)
    assert check is not None
    assert "option httpchk GET /readyz" in text
    out_after = int(check.group(1)) * int(check.group(2))
    for node in node_services(compose()).values():
        assert out_after < seconds(node["environment"]["TIDINGS_DRAIN_GRACE"])
    assert out_after < seconds(config_value("drain-grace"))
    assert re.search(r"^\s*retry-on .*\b503\b", text, re.M)
    assert "option forwardfor" in text


def test_deploy_doc_names_the_files() -> None:
    text = DEPLOY_DOC.read_text()
    for name in ("Dockerfile", "deploy/compose.yaml", "deploy/haproxy.cfg", UNIT.name, CONFIG.name):
        assert name in text, name
