"""py-spy around a measured phase: collapsed stacks plus a short summary.

Opt-in (``python -m bench --profile``): the sampler runs on the load
generator's core, so a profiled run's figures are a little pessimistic.
``<target>-<phase>.txt`` holds collapsed stacks (speedscope or flamegraph.pl
read them); ``.summary.txt`` lists where the server's threads were busy.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path


class Profiler:
    def __init__(self, py_spy: str, pid: int, out: Path, prefix: str, *, rate: int = 200) -> None:
        self.py_spy = py_spy
        self.pid = pid
        self.out = out
        self.prefix = prefix
        self.rate = rate

    @contextlib.asynccontextmanager
    async def phase(self, name: str) -> AsyncIterator[None]:
        self.out.mkdir(parents=True, exist_ok=True)
        raw = self.out / f"{self.prefix}-{name}.txt"
        log = (self.out / f"{self.prefix}-{name}.py-spy.log").open("wb")
        proc = await asyncio.create_subprocess_exec(
            self.py_spy,
            "record",
            "--pid",
            str(self.pid),
            "--rate",
            str(self.rate),
            "--format",
            "raw",
            "--nonblocking",
            "--threads",
            "--output",
            str(raw),
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        try:
            yield
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except TimeoutError:
                proc.kill()
            log.close()
            if raw.exists():
                raw.with_suffix(".summary.txt").write_text(summarize(raw))


def summarize(raw: Path, top: int = 30) -> str:
    """Busiest frames by own samples and by inclusive samples, as text."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        samples = int(count)
        total += samples
        frames = stack.split(";")
        threads[frames[0]] += samples
        frames = frames[1:] or frames
        own[frames[-1]] += samples
        for frame in set(frames):
            inclusive[frame] += samples
    if not total:
        return "no samples\n"
    lines = [f"{total} samples (busy threads only)", "", "by thread:"]
    lines += [f"{n / total:6.1%}  {thread}" for thread, n in threads.most_common()]
    lines += ["", "own time:"]
    lines += [f"{n / total:6.1%}  {frame}" for frame, n in own.most_common(top)]
    lines += ["", "inclusive time:"]
    lines += [f"{n / total:6.1%}  {frame}" for frame, n in inclusive.most_common(top * 2)]
    return "\n".join(lines) + "\n"
