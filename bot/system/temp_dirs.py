"""Removes a bot's temporary directories even when the bot is killed outright (SIGKILL).

Nothing of ours runs after a SIGKILL, so the removal is handed to a tiny child `sh` that holds the read end
of a pipe whose write end only we hold. When we exit — however — the kernel closes our end, the child's
`read` returns, and it removes the paths. It tries a few times over about two seconds, because the
processes that wrote there (Chromium, through Playwright's driver; Xvfb, through PDEATHSIG) die a moment
after us and may still write a last file.

The child has its own session (a terminal's Ctrl+C must not kill it before it has cleaned up) and no
other file descriptor of ours. On a normal `close()` we remove the paths ourselves first and tell the
child so: it exits at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from pathlib import Path

# `read` returns on "done\n" (a normal close: the paths are already gone) or on EOF (we died).
_SCRIPT = """\
read -r word
if [ "$word" = done ]; then exit 0; fi
for _ in 1 2 3 4 5; do rm -rf -- "$@"; sleep 0.4; done
rm -rf -- "$@"
"""


class Janitor:
    """`await Janitor([dir, ...]).start()`; `await close()` removes the paths and stops the child."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = list(paths)
        self._proc: asyncio.subprocess.Process | None = None
        self._closed = False

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    async def start(self) -> Janitor:
        self._proc = await asyncio.create_subprocess_exec(
            "/bin/sh",
            "-c",
            _SCRIPT,
            "bot-janitor",
            *(str(p) for p in self.paths),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True,
            cwd="/",
        )
        return self

    async def close(self) -> None:
        """Removes the paths now, then lets the child go. Idempotent."""
        if self._closed:
            return
        self._closed = True
        for path in self.paths:
            _remove(path)
        proc = self._proc
        if proc is None:
            return
        if proc.stdin is not None:
            with contextlib.suppress(ConnectionError, RuntimeError):
                proc.stdin.write(b"done\n")
                await proc.stdin.drain()
            proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 5)
        except TimeoutError:
            proc.kill()
            await proc.wait()


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
