"""``python -m bench``: set up the peers, run every workload, write the report.

    python -m bench                  # full run (< 10 min), results in bench/results/
    python -m bench --smoke          # seconds: tiny sizes, tidings + in-venv Python peers
    python -m bench --targets tidings,picows --workloads fanout
    python -m bench --report-only    # redraw report.md and plots from results.json

Argument parsing only; the work is in ``bench.setup``, ``bench.runner`` and
``bench.report``.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.runner import WORKLOADS, Plan, Run, default_runtimes, execute
from bench.targets import REPO, TARGETS, Runtimes
from tidings.loadtest.procstat import raise_fd_limit

RESULTS = REPO / "bench" / "results"
SMOKE_MODULES = {
    "picows": ("picows", "uvloop", "orjson", "jwt"),
    "websockets": ("websockets", "uvloop", "orjson", "jwt"),
    "python-socketio": ("socketio", "uvicorn", "uvloop", "orjson", "jwt"),
}


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--smoke", action="store_true", help="tiny sizes, a few seconds, no npm and no bench venv"
    )
    parser.add_argument("--targets", help=f"comma-separated subset of {','.join(TARGETS)}")
    parser.add_argument("--workloads", help=f"comma-separated subset of {','.join(WORKLOADS)}")
    parser.add_argument(
        "--sizes",
        choices=("full", "smoke"),
        help="workload sizes (default: smoke with --smoke, else full)",
    )
    parser.add_argument(
        "--out", type=Path, help="results folder (default: bench/results; smoke: a temp folder)"
    )
    parser.add_argument(
        "--skip-setup", action="store_true", help="use bench/.venv and node_modules as they are"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="py-spy tidings during each phase (OUT/profiles; slightly slower)",
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="only regenerate report.md and plots from OUT/results.json",
    )
    return parser.parse_args(argv)


def _choose(names: str | None, known: tuple[str, ...] | list[str], what: str) -> list[str]:
    if not names:
        return list(known)
    chosen = [name.strip() for name in names.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in known]
    if unknown:
        raise SystemExit(f"bench: unknown {what} {unknown!r}; choose from {list(known)!r}")
    return chosen


def _importable(*modules: str) -> bool:
    return all(importlib.util.find_spec(module) is not None for module in modules)


def _py_spy(runtimes: Runtimes) -> str | None:
    """py-spy from the bench venv, else from PATH."""
    if runtimes.peer_python:
        candidate = Path(runtimes.peer_python).parent / "py-spy"
        if candidate.exists():
            return str(candidate)
    return shutil.which("py-spy")


def write_report(out: Path, plot_python: str | None) -> None:
    """report.md and plots; plots need matplotlib (the bench venv has it).

    A run into bench/results/ also replaces the side-by-side section of
    BENCHMARKS.md, between its two ``bench:`` markers."""
    if _importable("matplotlib") or plot_python is None:
        from bench.report import main as report_main

        report_main([str(out)])
    else:
        subprocess.run([plot_python, "-m", "bench.report", str(out)], cwd=REPO, check=True)
    if out.resolve() == RESULTS.resolve():
        splice(REPO / "BENCHMARKS.md", (out / "report.md").read_text())


BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def splice(document: Path, section: str) -> None:
    """Put ``section`` between the markers of ``document`` (appended if absent)."""
    text = document.read_text() if document.exists() else ""
    block = f"{BEGIN}\n{section.strip()}\n{END}"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + block + rest.split(END, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    document.write_text(text)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    out: Path = args.out or (
        Path(tempfile.mkdtemp(prefix="tidings-bench-smoke-")) if args.smoke else RESULTS
    )
    if args.report_only:
        if not (out / "results.json").exists():
            raise SystemExit(f"bench: no results.json in {out}; run the benchmark first")
        write_report(out, None)
        print(f"bench: report in {out / 'report.md'}")
        return 0
    names = _choose(args.targets, list(TARGETS), "target")
    workloads = _choose(args.workloads, WORKLOADS, "workload")
    notes: list[str] = []
    if args.smoke:
        if not _importable("picows", "uvloop", "orjson"):
            raise SystemExit("bench: the smoke run needs picows (pip install -e '.[dev]')")
        runtimes = default_runtimes(peer_python=sys.executable, node=None)
        if not args.targets:
            names = ["tidings"] + [
                name for name, modules in SMOKE_MODULES.items() if _importable(*modules)
            ]
        loadgen_python = sys.executable
        plot_python = None
    else:
        if args.skip_setup:
            from bench.setup import NODE_PEER, venv_python

            python = venv_python() if venv_python().exists() else None
            node = "node" if (NODE_PEER / "node_modules").exists() else None
            env_python, env_node = (str(python) if python else None), node
        else:
            from bench.setup import ensure

            env = ensure(node="node-socketio" in names)
            notes.extend(env.problems)
            env_python, env_node = (str(env.python) if env.python else None), env.node
        if env_python is None:
            raise SystemExit("bench: no bench venv; see the setup errors above")
        runtimes = default_runtimes(peer_python=env_python, node=env_node)
        loadgen_python = env_python
        plot_python = env_python
    targets = []
    for name in names:
        target = TARGETS[name]
        if target.available(runtimes):
            targets.append(target)
        else:
            notes.append(f"{name} skipped: its runtime is not installed")
    limit = raise_fd_limit(65536)
    max_connections = min(20_000, limit - 100)
    if max_connections < 20_000:
        notes.append(
            f"at most {max_connections:,} connections per process (file descriptor limit {limit:,})"
        )
    run = Run(
        plan=Plan.smoke()
        if (args.sizes or ("smoke" if args.smoke else "full")) == "smoke"
        else Plan(),
        runtimes=runtimes,
        targets=targets,
        workloads=workloads,
        out=out,
        loadgen_python=loadgen_python,
        smoke=args.smoke,
        profile=_py_spy(runtimes) if args.profile else None,
        max_connections=max_connections,
        notes=notes,
    )
    execute(run)
    write_report(out, plot_python)
    print(f"bench: results in {out / 'results.json'}, report in {out / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
