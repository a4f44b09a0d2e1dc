"""The bot's private X display: its own number and cookie, and nothing of it left after close or death."""

from __future__ import annotations

import asyncio
import signal
import stat
import sys
from pathlib import Path

import pytest
from Xlib import display as xdisplay
from Xlib import error as xerror

from bot.browser.display import DisplayError, ScreenSize, VirtualDisplay, xauthority
from bot.system.temp_dirs import Janitor


def gone(*paths: Path) -> bool:
    return not any(p.exists() for p in paths)


def socket_id(number: int) -> int | None:
    """The inode of display `number`'s socket, None when there is none."""
    try:
        return Path(f"/tmp/.X11-unix/X{number}").stat().st_ino
    except FileNotFoundError:
        return None


def socket_gone(number: int, ours: int | None) -> bool:
    """Our server's socket is gone (another bot's server may already use the same number: other sockets
    are not ours to judge)."""
    now = socket_id(number)
    return now is None or now != ours


async def test_display_is_private_and_leaves_nothing_behind():
    d = VirtualDisplay(ScreenSize(1280, 800))
    await d.start()
    try:
        number = d.number
        assert number is not None and d.env()["DISPLAY"] == f":{number}"
        ours = socket_id(number)
        assert ours is not None
        assert stat.S_IMODE(d.auth_file.stat().st_mode) == 0o600
        # With our cookie: a connection, and the screen size asked for.
        with xauthority(d.auth_file):
            conn = xdisplay.Display(d.name)
        screen = conn.screen()
        assert (screen.width_in_pixels, screen.height_in_pixels) == (1280, 800)
        assert conn.has_extension("XTEST")
        conn.close()
        # Without it: refused (an empty cookie file stands for "no cookie").
        empty = d.auth_file.parent / "empty"
        empty.write_bytes(b"")
        with xauthority(empty), pytest.raises((xerror.DisplayConnectionError, xerror.DisplayError)):
            xdisplay.Display(d.name)
        pid = d.pid
        auth_dir = d.auth_file.parent
    finally:
        await d.close()
    await d.close()  # idempotent
    assert pid is not None and gone(Path(f"/proc/{pid}"), auth_dir) and socket_gone(number, ours)


async def test_two_bots_get_two_displays():
    a, b = VirtualDisplay(), VirtualDisplay()
    await asyncio.gather(a.start(), b.start())
    try:
        assert a.number != b.number
        assert a.auth_file.read_bytes() != b.auth_file.read_bytes()
    finally:
        await asyncio.gather(a.close(), b.close())


async def test_size_is_validated():
    assert ScreenSize.parse("1920x1080") == ScreenSize(1920, 1080)
    for bad in ("1920", "axb", "100x100", "1920x1080x24"):
        with pytest.raises(ValueError):
            ScreenSize.parse(bad)


async def test_missing_xvfb_is_a_clear_error(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(DisplayError, match="xvfb"):
        await VirtualDisplay().start()


_CHILD = """
import asyncio, sys
from bot.browser.display import VirtualDisplay
async def main():
    d = await VirtualDisplay().start()
    print(d.number, d.pid, d.auth_file.parent, flush=True)
    await asyncio.sleep(60)
asyncio.run(main())
"""


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
async def test_display_and_its_files_die_with_the_bot(sig: signal.Signals):
    """SIGKILL runs none of the bot's cleanup: PDEATHSIG stops Xvfb, the janitor removes the cookie dir.
    (SIGTERM without a handler is the same for this module.)"""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _CHILD, stdout=asyncio.subprocess.PIPE, cwd=Path(__file__).parent.parent
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode().split()
        number, xvfb, auth_dir = int(line[0]), int(line[1]), Path(line[2])
        assert not gone(auth_dir) and not gone(Path(f"/proc/{xvfb}"))
        ours = socket_id(number)
        proc.send_signal(sig)
        await proc.wait()
        for _ in range(100):
            if gone(Path(f"/proc/{xvfb}"), auth_dir) and socket_gone(number, ours):
                break
            await asyncio.sleep(0.1)
        assert gone(Path(f"/proc/{xvfb}")), "Xvfb outlived the bot"
        assert gone(auth_dir), "the display's cookie dir outlived the bot"
        assert socket_gone(number, ours)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_janitor_removes_on_close_and_exits(tmp_path: Path):
    target = tmp_path / "bot-x"
    (target / "sub").mkdir(parents=True)
    (target / "sub" / "f").write_text("x")
    j = await Janitor([target]).start()
    pid = j.pid
    await j.close()
    await j.close()
    assert pid is not None and gone(target, Path(f"/proc/{pid}"))
