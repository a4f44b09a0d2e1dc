"""A private X display per bot: Debian's Xvfb run as the bot's own child, for a headful Chromium.

Why a display at all: Meet and Zoom treat a headless browser as a bot (its user agent says "Headless", its
window has no frame) and Meet drops guests whose clicks and keys are synthesized by the browser. A headful
Chromium on a virtual display, driven by OS-level input (`bot.browser.input.xtest`), presents like a desktop
browser. See docs/platforms.md "What the platforms check".

How it is kept private and tidy, like the bot's PulseAudio daemon (`bot.audio.devices.PulseDaemon`):
- Xvfb picks a free display number itself (`-displayfd`): no race between bots choosing numbers.
- Its own auth: a fresh MIT-MAGIC-COOKIE in an Xauthority file in a private `bot-display-*` directory
  (`-auth`), no TCP listener; only holders of that file (our Chromium, our XTEST connection) can connect.
- It dies with the bot: our child with PDEATHSIG (SIGTERM, on which Xvfb removes its socket and lock
  file), stopped by its handle in `close()`; the directory goes with the bot even after a SIGKILL
  (`bot.system.temp_dirs`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shutil
import socket
import struct
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bot.aio import cancel_and_wait
from bot.system.processes import die_with_parent, stop_process
from bot.system.temp_dirs import Janitor

log = logging.getLogger(__name__)

_START_TIMEOUT_S = 10.0
_COOKIE_NAME = b"MIT-MAGIC-COOKIE-1"
_FAMILY_LOCAL = 256  # Xauthority family of local (unix socket) connections, keyed by host name
_FAMILY_WILD = 0xFFFF  # any address; with an empty display number, any display (libXau)


class DisplayError(RuntimeError):
    """The virtual display could not be started."""


@dataclass(frozen=True)
class ScreenSize:
    width: int = 1280
    height: int = 800

    @classmethod
    def parse(cls, text: str) -> ScreenSize:
        """ "1280x800" → ScreenSize(1280, 800); ValueError names what is wrong."""
        w, sep, h = text.lower().partition("x")
        if not sep or not w.strip().isdigit() or not h.strip().isdigit():
            raise ValueError(f"expected WIDTHxHEIGHT such as 1280x800 (got {text!r})")
        size = cls(int(w), int(h))
        if not (640 <= size.width <= 7680 and 480 <= size.height <= 4320):
            raise ValueError(f"{text!r} is not a desktop screen size (640x480 to 7680x4320)")
        return size

    def __str__(self) -> str:
        return f"{self.width}x{self.height}"


class VirtualDisplay:
    """One Xvfb server. `await start()`, then give `env()` to the processes that draw on it."""

    def __init__(self, size: ScreenSize | None = None, depth: int = 24) -> None:
        self.size = size or ScreenSize()
        self.depth = depth
        self._dir: Path | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._janitor: Janitor | None = None
        self._number: int | None = None
        self._drain: asyncio.Task[None] | None = None
        self._started = False
        self._closed = False

    @property
    def name(self) -> str:
        """The X display name, e.g. ":3"."""
        if self._number is None:
            raise DisplayError("the display is not started")
        return f":{self._number}"

    @property
    def number(self) -> int | None:
        return self._number

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def auth_file(self) -> Path:
        if self._dir is None:
            raise DisplayError("the display is not started")
        return self._dir / "Xauthority"

    def env(self) -> dict[str, str]:
        """What an X client needs: the display and its cookie. (Chromium must not pick Wayland: the
        caller drops WAYLAND_DISPLAY from the environment it passes on.)"""
        return {"DISPLAY": self.name, "XAUTHORITY": str(self.auth_file)}

    async def start(self) -> VirtualDisplay:
        if self._started or self._closed:
            raise DisplayError("a VirtualDisplay starts once")
        self._started = True
        binary = shutil.which("Xvfb")
        if binary is None:
            raise DisplayError("Xvfb is not installed: run scripts/setup (Debian package xvfb)")
        self._dir = Path(tempfile.mkdtemp(prefix="bot-display-"))
        try:
            self._janitor = await Janitor([self._dir]).start()
            _write_xauthority(self.auth_file, secrets.token_bytes(16))
            await self._spawn(binary)
        except BaseException:
            await self.close()
            raise
        log.info("xvfb %s (pid %s) %s", self.name, self.pid, self.size)
        return self

    async def _spawn(self, binary: str) -> None:
        read_fd, write_fd = os.pipe()
        try:
            self._proc = await asyncio.create_subprocess_exec(
                binary,
                "-displayfd",
                str(write_fd),
                "-screen",
                "0",
                f"{self.size}x{self.depth}",
                "-auth",
                str(self.auth_file),
                "-nolisten",
                "tcp",
                "-noreset",
                # No GLX: Chromium draws WebGL with SwiftShader whether the server has GLX or not (the
                # page reads the same renderer), and without it Xvfb does not load Mesa and LLVM: 10 MB
                # PSS instead of 65 MB per bot (docs/benchmarks.md "Browser levers").
                "-extension",
                "GLX",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                pass_fds=(write_fd,),
                # Own process group (a terminal's Ctrl+C reaches us, and we stop it in order); and
                # if we are killed outright, the kernel sends it SIGTERM.
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        finally:
            os.close(write_fd)
        try:
            # Xvfb writes the display number once it accepts connections; EOF if it exits first.
            line = await asyncio.wait_for(_read_line(read_fd), _START_TIMEOUT_S)
        except TimeoutError:
            raise DisplayError(f"Xvfb did not start within {_START_TIMEOUT_S:.0f} s") from None
        finally:
            os.close(read_fd)
        if not line.strip().isdigit():
            err = b""
            if self._proc.stderr is not None:
                with contextlib.suppress(TimeoutError):
                    err = await asyncio.wait_for(self._proc.stderr.read(), 2)
            raise DisplayError(f"Xvfb exited at start: {err.decode(errors='replace').strip()[-500:]}")
        self._number = int(line)
        # Nothing reads its stderr from now on: do not let a chatty server block on a full pipe.
        if self._proc.stderr is not None:
            self._drain = asyncio.create_task(_drain(self._proc.stderr))

    async def close(self) -> None:
        """Stops Xvfb by its handle and removes the auth directory. Idempotent."""
        if self._closed:
            return
        self._closed = True
        await stop_process(self._proc)
        drain, self._drain = self._drain, None
        await cancel_and_wait(drain)
        if self._janitor is not None:
            await self._janitor.close()
        elif self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)


@contextlib.contextmanager
def xauthority(path: Path) -> Iterator[None]:
    """python-xlib reads the cookie file named by $XAUTHORITY only, when a connection opens: point it at
    ours for that moment. (Several displays in one process: each connection reads its own.)"""
    old = os.environ.get("XAUTHORITY")
    os.environ["XAUTHORITY"] = str(path)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("XAUTHORITY", None)
        else:
            os.environ["XAUTHORITY"] = old


def _write_xauthority(path: Path, cookie: bytes) -> None:
    """Two entries for one cookie, any display number: a wildcard one (Xvfb and libXau clients such as
    Chromium) and a local one for this host name (python-xlib matches no wildcard family)."""

    def field(b: bytes) -> bytes:
        return struct.pack(">H", len(b)) + b

    def entry(family: int, address: bytes) -> bytes:
        return struct.pack(">H", family) + field(address) + field(b"") + field(_COOKIE_NAME) + field(cookie)

    data = entry(_FAMILY_WILD, b"") + entry(_FAMILY_LOCAL, socket.gethostname().encode())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


async def _read_line(fd: int) -> str:
    """One line from a pipe, read on the event loop (no thread left blocked if the caller gives up)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[bytes] = loop.create_future()
    data = bytearray()

    def readable() -> None:
        try:
            chunk = os.read(fd, 64)
        except BlockingIOError:
            return
        data.extend(chunk)
        if (not chunk or data.endswith(b"\n")) and not done.done():
            done.set_result(bytes(data))

    os.set_blocking(fd, False)
    loop.add_reader(fd, readable)
    try:
        return (await done).decode(errors="replace")
    finally:
        loop.remove_reader(fd)


async def _drain(stream: asyncio.StreamReader) -> None:
    while await stream.read(4096):
        pass
