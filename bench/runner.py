"""Runs every workload against every target and writes results.json.

For each target: start the server pinned to one core, run the load
generator (``bench.worker``, all workloads in one session) pinned to the
other, read its JSON, stop the server. Each session has a timeout and the
whole run a deadline; a failure is recorded in the results and the run goes
on with the next target.
"""

from __future__ import annotations

import json
import os
import platform
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.targets import REPO, Runtimes, Server, Target, pinned

WORKLOADS = ("capacity", "fanout", "personal", "slow", "catchup")
"""``slow`` runs inside ``personal`` (same connections, results under ``personal``)."""


@dataclass(frozen=True, slots=True)
class Plan:
    """Sizes and durations of every workload."""

    capacity_steps: tuple[int, ...] = (10_000, 20_000)
    capacity_settle: float = 2.0
    """Seconds idle before RSS is read."""
    capacity_step_seconds: float = 45.0
    """A capacity step stops connecting after this long (a slow server reports fewer)."""
    fanout_sizes: tuple[int, ...] = (1_000, 10_000)
    fanout_seconds: float = 4.0
    personal_connections: int = 10_000
    personal_senders: int = 32
    saturate_seconds: float = 4.0
    rates: tuple[float, ...] = (1_000, 5_000)
    rate_seconds: float = 4.0
    stalled_fraction: float = 0.01
    stalled_share: float = 0.5
    stalled_rate: float = 5_000
    stalled_seconds: float = 6.0
    catchup_inbox: int = 10_000
    catchup_repeats: int = 3
    catchup_wait: float = 30.0
    """Seconds a reconnect may take to reach caughtUp."""
    step_timeout: float = 180.0
    """Seconds for one server's whole session."""
    deadline: float = 540.0
    """Seconds for the whole run; workloads not started by then are skipped."""

    @classmethod
    def smoke(cls) -> Plan:
        return cls(
            capacity_steps=(10, 20),
            capacity_settle=0.2,
            fanout_sizes=(20,),
            fanout_seconds=1.0,
            personal_connections=20,
            personal_senders=2,
            saturate_seconds=1.0,
            rates=(200,),
            rate_seconds=1.0,
            stalled_fraction=0.05,
            stalled_rate=200,
            stalled_seconds=1.0,
            catchup_inbox=200,
            catchup_repeats=1,
            catchup_wait=10.0,
            step_timeout=60.0,
            deadline=240.0,
        )


@dataclass(slots=True)
class Run:
    plan: Plan
    runtimes: Runtimes
    targets: list[Target]
    workloads: list[str]
    out: Path
    loadgen_python: str
    smoke: bool = False
    profile: str | None = None
    """py-spy binary: profile tidings during each phase (results in OUT/profiles)."""
    max_connections: int = 20_000
    """Connections one process may hold (its file descriptor limit, less a margin)."""
    notes: list[str] = field(default_factory=list)
    pinning: str = ""
    results: dict[str, dict[str, Any]] = field(default_factory=dict)


def cores() -> tuple[int | None, int | None, str]:
    """(server core, load generator core, how they were chosen)."""
    try:
        allowed = sorted(os.sched_getaffinity(0))
    except AttributeError:
        return None, None, "no CPU affinity on this platform: nothing pinned"
    if len(allowed) < 2:
        return None, None, f"only {len(allowed)} CPU allowed: nothing pinned"
    return allowed[0], allowed[1], f"server on CPU {allowed[0]}, load generator on CPU {allowed[1]}"


def _params(run: Run, target: Target) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """The workloads this target runs and each one's parameters."""
    plan = run.plan
    chosen = [w for w in WORKLOADS if w in run.workloads and (w != "catchup" or target.stores)]
    top = min(max(plan.capacity_steps), run.max_connections)
    steps = sorted({min(step, top) for step in plan.capacity_steps})
    params: dict[str, dict[str, Any]] = {
        "capacity": {
            "steps": steps,
            "settle": plan.capacity_settle,
            "step_seconds": plan.capacity_step_seconds,
        },
        "fanout": {"sizes": list(plan.fanout_sizes), "duration": plan.fanout_seconds},
        "personal": {
            "connections": plan.personal_connections,
            "senders": plan.personal_senders,
            "saturate_seconds": plan.saturate_seconds if "personal" in chosen else 0,
            "rates": list(plan.rates) if "personal" in chosen else [],
            "rate_seconds": plan.rate_seconds,
            "stalled_fraction": plan.stalled_fraction,
            "stalled_share": plan.stalled_share,
            "stalled_rate": plan.stalled_rate,
            "stalled_seconds": plan.stalled_seconds if "slow" in chosen else 0,
        },
        "catchup": {
            "inbox": plan.catchup_inbox,
            "repeats": plan.catchup_repeats,
            "wait": plan.catchup_wait,
        },
    }
    return chosen, params


def run_session(
    run: Run,
    target: Target,
    *,
    secret: str,
    scratch: Path,
    server_cpu: int | None,
    loadgen_cpu: int | None,
    timeout: float,
) -> dict[str, Any]:
    """One server process and one load generator process for all of this
    target's workloads; returns the worker's results by workload."""
    workloads, params = _params(run, target)
    data = Path(tempfile.mkdtemp(prefix="data-", dir=scratch))
    log = scratch / f"{target.name}.log"
    log.write_text("")
    server = Server(target, run.runtimes, secret=secret, data=data, log=log, cpu=server_cpu)
    spec_path = scratch / f"{target.name}.spec.json"
    out_path = scratch / f"{target.name}.out.json"
    try:
        with server:
            spec = {
                "target": {
                    "name": target.name,
                    "dialect": target.dialect,
                    "ws_url": target.ws_url(server.port),
                    "http_url": target.http_url(server.port),
                    "broadcast": target.broadcast,
                    "broadcast_topic": target.broadcast_topic,
                },
                "server_pid": server.pid,
                "secret": secret,
                "workloads": workloads,
                "params": params,
            }
            if run.profile and target.name == "tidings":
                spec["profile"] = {"py_spy": run.profile, "dir": str(run.out / "profiles")}
            spec_path.write_text(json.dumps(spec))
            problem = None
            try:
                subprocess.run(
                    [run.loadgen_python, "-m", "bench.worker", str(spec_path), str(out_path)],
                    cwd=REPO,
                    # The bench venv has no tidings installed: the load generator
                    # (tidings.loadtest) is imported from the source tree.
                    env={
                        **os.environ,
                        "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "src")]),
                    },
                    preexec_fn=pinned(loadgen_cpu),
                    timeout=timeout,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                problem = f"load generator stopped after {timeout:.0f} s (session time limit)"
            result: dict[str, Any] = json.loads(out_path.read_text()) if out_path.exists() else {}
            if server.proc is not None and server.proc.poll() is not None:
                problem = (problem or "") + (
                    f" server exited with {server.proc.returncode}: {server.log_tail(5)}"
                )
            for workload in workloads:
                if workload == "slow":
                    continue
                if workload not in result:
                    result[workload] = {"error": problem or "not run"}
                elif problem and isinstance(result[workload], dict):
                    result[workload].setdefault("warning", problem)
            if problem or _failed(result):
                kept = run.out / "logs" / log.name
                kept.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(log, kept)
            return result
    except RuntimeError as exc:
        return {workload: {"error": str(exc)} for workload in workloads if workload != "slow"}
    finally:
        shutil.rmtree(data, ignore_errors=True)


def _failed(result: dict[str, Any]) -> bool:
    """Whether any workload, or any phase of one, reported an error."""
    for value in result.values():
        if isinstance(value, dict) and (
            value.get("error")
            or any(isinstance(part, dict) and part.get("error") for part in value.values())
        ):
            return True
    return False


def filesystem_of(path: str) -> str | None:
    """The type of the file system holding ``path`` (ext4, tmpfs, ...), from /proc/mounts."""
    try:
        mounts = open("/proc/mounts").read().splitlines()  # noqa: SIM115
    except OSError:
        return None
    real = os.path.realpath(path)
    best, kind = "", None
    for line in mounts:
        fields = line.split()
        if len(fields) < 3 or len(fields[1]) < len(best):
            continue
        if real == fields[1] or real.startswith(fields[1].rstrip("/") + "/"):
            best, kind = fields[1], fields[2]
    return kind


def execute(run: Run) -> dict[str, Any]:
    """Run the plan; returns (and writes) the results document."""
    load_before = _load()
    server_cpu, loadgen_cpu, pinning = cores()
    run.pinning = pinning
    secret = "bench-" + secrets.token_hex(24)
    started = time.monotonic()
    scratch = Path(tempfile.mkdtemp(prefix="tidings-bench-"))
    filesystem = filesystem_of(str(scratch))
    run.notes.append(f"tidings' SQLite file on {filesystem or 'an unknown file system'}")
    if filesystem in ("tmpfs", "ramfs"):
        run.notes.append("fsync costs nothing on a memory file system: set TMPDIR to a disk")
    try:
        for target in run.targets:
            left = run.plan.deadline - (time.monotonic() - started)
            if left < 30:
                run.notes.append(f"{target.name} skipped: run deadline reached")
                continue
            began = time.monotonic()
            print(f"bench: {target.label} ...", end="", flush=True)
            result = run_session(
                run,
                target,
                secret=secret,
                scratch=scratch,
                server_cpu=server_cpu,
                loadgen_cpu=loadgen_cpu,
                timeout=min(run.plan.step_timeout, left),
            )
            seconds = round(time.monotonic() - began, 1)
            failed = []
            if "fanout_topic" in result:
                run.results.setdefault("fanout", {})[f"{target.name}-topic"] = result.pop(
                    "fanout_topic"
                )
            for workload, value in result.items():
                if workload in WORKLOADS:
                    run.results.setdefault(workload, {})[target.name] = value
                    if isinstance(value, dict) and value.get("error"):
                        failed.append(workload)
            print(
                f" {'failed: ' + ', '.join(failed) if failed else 'ok'} ({seconds} s)", flush=True
            )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    document = {
        "meta": {**meta(run, time.monotonic() - started), "load_average": [load_before, _load()]},
        "targets": _labels(run.targets),
        "results": run.results,
    }
    run.out.mkdir(parents=True, exist_ok=True)
    (run.out / "results.json").write_text(json.dumps(document, indent=1))
    return document


def _labels(targets: list[Target]) -> dict[str, dict[str, Any]]:
    labels: dict[str, dict[str, Any]] = {}
    for target in targets:
        if target.broadcast_topic:
            labels[f"{target.name}-topic"] = {
                "label": f"{target.label} (topic `{target.broadcast_topic}`)",
                "stores": target.stores,
                "note": "broadcast stored once, one frame for all",
            }
        labels[target.name] = {"label": target.label, "stores": target.stores, "note": target.note}
        if target.broadcast_topic:
            labels[target.name]["fanout_label"] = f"{target.label} (`userIds` list)"
    return labels


def meta(run: Run, seconds: float) -> dict[str, Any]:
    cpu_model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    node_version = None
    if run.runtimes.node:
        node_version = subprocess.run(
            [run.runtimes.node, "--version"], capture_output=True, text=True, check=False
        ).stdout.strip()
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "smoke": run.smoke,
        "seconds": round(seconds, 1),
        "cpu": cpu_model,
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "node": node_version,
        "tidings": _tidings_version(run.runtimes.project_python),
        "plan": asdict(run.plan),
        "notes": run.notes,
        "pinning": run.pinning,
        "loadgen": "picows on uvloop, one process",
        "profiled": bool(run.profile),
        "payload_bytes": _payload_bytes(),
    }


def _load() -> float:
    """The 1-minute load average (what else ran on the machine meanwhile)."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return 0.0


def _tidings_version(python: str) -> str | None:
    done = subprocess.run(
        [python, "-c", "import tidings; print(tidings.__version__)"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() or None


def _payload_bytes() -> int:
    from tidings.loadtest.wire import payload

    body = payload(0)
    return len(json.dumps(body, separators=(",", ":")))


def default_runtimes(*, peer_python: str | None, node: str | None) -> Runtimes:
    return Runtimes(project_python=sys.executable, peer_python=peer_python, node=node)
