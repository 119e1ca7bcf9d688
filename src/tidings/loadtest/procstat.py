"""What a process costs, read from /proc: CPU seconds (all threads), resident memory
and open file descriptors.

The benchmark charges a server for its own CPU time, read before and after a
measured window, so time spent in the load generator or in other programs on
the machine never counts against it. Linux only; elsewhere every reader
returns ``None`` and the report leaves the column empty.
"""

from __future__ import annotations

import os
import resource

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU seconds of ``pid`` so far, all its threads included."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            raw = stat.read()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: split after the last ')'.
    fields = raw[raw.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def run_delay_seconds(pid: int | None) -> float | None:
    """Seconds ``pid``'s main thread has waited for a CPU while runnable.

    On a machine shared with other programs this is the time they took from
    the server (the event loop runs on the main thread).
    """
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/schedstat", "rb") as stat:
            return int(stat.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return None


def rss_bytes(pid: int | None) -> int | None:
    """Resident set size of ``pid`` in bytes."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE
    except OSError:
        return None


def open_fds(pid: int | None) -> int | None:
    """File descriptors ``pid`` holds open (sockets included): a leak shows as growth."""
    if pid is None:
        return None
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def own_cpu_seconds() -> float:
    """User + system CPU seconds of this process (the load generator)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def raise_fd_limit(wanted: int) -> int:
    """Raise RLIMIT_NOFILE towards ``wanted`` (past the hard limit only as root); returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return soft
    if hard != resource.RLIM_INFINITY and hard < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
            return wanted
        except (ValueError, OSError):
            wanted = hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return wanted
