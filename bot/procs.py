"""Process trees read from /proc: how the bot finds (and tests check) the processes it started."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """`preexec_fn` for a child that must not outlive us: the kernel sends it SIGTERM when its parent
    dies, even by SIGKILL, when no cleanup of ours can run. (Linux only; elsewhere a no-op.)"""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def descendants(root: int | None = None, include_zombies: bool = False) -> set[int]:
    """All live descendant pids of `root` (default: this process). Zombies ('Z') are left out unless
    asked for: their parent's wait() reaps them."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # Field 3 is the state, field 4 the parent pid; the name before ")" may hold spaces.
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] == "Z" and not include_zombies:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    found: set[int] = set()
    stack = [os.getpid() if root is None else root]
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found
