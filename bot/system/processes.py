"""Processes read from /proc: how the bot finds (and tests check) the processes it started, and what the
benchmarks measure of them. All /proc parsing lives here."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
from pathlib import Path
from typing import NamedTuple

_PR_SET_PDEATHSIG = 1

CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")
"""The unit of the CPU times in /proc (`ProcStat.cpu_ticks`, `machine_cpu_ticks()`)."""


def die_with_parent() -> None:
    """`preexec_fn` for a child that must not outlive us: the kernel sends it SIGTERM when its parent
    dies, even by SIGKILL, when no cleanup of ours can run. (Linux only; elsewhere a no-op.)"""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def descendants(root: int | None = None, include_zombies: bool = False) -> set[int]:
    """All live descendant pids of `root` (default: this process). Zombies ('Z') are left out unless
    asked for: their parent's wait() reaps them."""
    by_parent: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = read_stat(int(entry.name))
        except OSError:
            continue
        if stat.state == "Z" and not include_zombies:
            continue
        by_parent.setdefault(stat.ppid, []).append(int(entry.name))
    found: set[int] = set()
    stack = [os.getpid() if root is None else root]
    while stack:
        for child in by_parent.get(stack.pop(), []):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


class ProcStat(NamedTuple):
    """The parts of /proc/<pid>/stat the bot uses."""

    name: str  # the executable's name (comm: at most 15 characters), e.g. "chromium", "python3"
    state: str  # "R" running, "S" sleeping, "Z" zombie, ...
    ppid: int
    cpu_ticks: int  # user + system CPU time so far, in 1/CLOCK_TICKS_PER_S s


def read_stat(pid: int) -> ProcStat:
    """/proc/<pid>/stat of a process. Raises OSError when it is gone."""
    text = Path(f"/proc/{pid}/stat").read_text()
    # "pid (name) state ppid ...": the name may hold spaces and parentheses, so it ends at the last ")".
    name = text[text.index("(") + 1 : text.rindex(")")]
    fields = text.rsplit(")", 1)[1].split()  # fields[0] is field 3 of proc(5)
    return ProcStat(name, fields[0], int(fields[1]), int(fields[11]) + int(fields[12]))  # utime + stime


def cpu_ticks(pid: int) -> int:
    """User + system CPU time of a process so far, in 1/CLOCK_TICKS_PER_S s. Raises OSError if it is gone."""
    return read_stat(pid).cpu_ticks


def rss_kb(pid: int) -> int:
    """Resident set size (VmRSS of /proc/<pid>/status) in kB; 0 for a process without memory (a zombie).
    Raises OSError when it is gone."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def pss_kb(pid: int) -> int:
    """Proportional set size (/proc/<pid>/smaps_rollup) in kB: shared pages split between the processes
    sharing them. Raises OSError when the process is gone."""
    total = 0
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            total += int(line.split()[1])
    return total


def environ(pid: int) -> dict[str, str]:
    """The environment a process started with."""
    items = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace").split("\0")
    return dict(item.split("=", 1) for item in items if "=" in item)


def children(pid: int) -> list[int]:
    """The direct children of a process's main thread (/proc/<pid>/task/<pid>/children), zombies included;
    [] when there is no such file (the process is gone, or the kernel does not offer it)."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(x) for x in path.read_text().split()] if path.exists() else []


def machine_cpu_ticks() -> tuple[float, float]:
    """(busy, total) CPU time of all cores since boot, in 1/CLOCK_TICKS_PER_S s, from /proc/stat."""
    fields = [float(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


async def stop_process(proc: asyncio.subprocess.Process | None, timeout_s: float = 5.0) -> None:
    """Stops a child we started: SIGTERM, then SIGKILL after `timeout_s`; waits until it has exited.

    Does nothing for a child that already exited, so every owner can call it from an idempotent close.
    """
    if proc is None or proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), timeout_s)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
