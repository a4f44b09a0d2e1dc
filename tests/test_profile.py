"""Signed-in profiles: `meeting-bot login` saves one from a plain Chromium; bots run on private copies."""

from __future__ import annotations

import asyncio
import os
import socket
import sqlite3
import sys
from pathlib import Path

import pytest

from bot.browser.display import VirtualDisplay
from bot.browser.input.xtest import XTestHands
from bot.browser.profile import ProfileError, check_profile, copy_profile, running_owner, signed_in_cookies
from bot.testing.replica import ReplicaServer

ROOT = Path(__file__).resolve().parent.parent
SIGN_IN = "https://meet.google.com/_replica/signin"


def fake_profile(path: Path) -> Path:
    (path / "Default" / "Cache" / "Cache_Data").mkdir(parents=True)
    (path / "Default" / "Cache" / "Cache_Data" / "data_0").write_bytes(b"x" * 1000)
    (path / "Default" / "Preferences").write_text("{}")
    (path / "Local State").write_text("{}")
    os.symlink("otherhost-123", path / "SingletonLock")
    with sqlite3.connect(path / "Default" / "Cookies") as db:
        db.execute("CREATE TABLE cookies (host_key TEXT, name TEXT)")
        db.execute("INSERT INTO cookies VALUES ('meet.google.com', 'SID'), ('.zoom.us', '_zm')")
    return path


def test_copy_leaves_out_locks_and_caches_and_keeps_the_rest(tmp_path: Path):
    source = fake_profile(tmp_path / "profile")
    copy_profile(check_profile(source), tmp_path / "copy")
    copy = tmp_path / "copy"
    assert (copy / "Default" / "Preferences").read_text() == "{}"
    assert (copy / "Local State").exists()
    assert not (copy / "SingletonLock").is_symlink()
    assert not (copy / "Default" / "Cache").exists()
    assert signed_in_cookies(copy, "meet") == 1 and signed_in_cookies(copy, "zoom") == 1
    # The copy is the bot's own: changing it leaves the original alone.
    (copy / "Default" / "Preferences").write_text('{"changed": true}')
    assert (source / "Default" / "Preferences").read_text() == "{}"


def test_check_profile_says_what_to_do(tmp_path: Path):
    with pytest.raises(ProfileError, match="meeting-bot login"):
        check_profile(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ProfileError, match="not a Chromium profile"):
        check_profile(tmp_path / "empty")
    # A lock from another machine (the profile was copied from a desktop) is no owner; a live one is.
    profile = fake_profile(tmp_path / "profile")
    assert running_owner(profile) is None
    (profile / "SingletonLock").unlink()
    os.symlink(f"{socket.gethostname()}-{os.getpid()}", profile / "SingletonLock")
    assert running_owner(profile) == os.getpid()
    with pytest.raises(ProfileError, match="open in a Chromium"):
        check_profile(profile)


async def login_profile(replica: ReplicaServer, display: VirtualDisplay, profile: Path) -> str:
    """Runs `meeting-bot login meet` on `display` against the replica's sign-in page, signs in by typing
    (OS-level keys: the window is a plain Chromium), and closes the window. Returns what the command
    printed."""
    section = replica.browser_section()
    env = {
        **os.environ,
        **display.env(),
        "BOT_BROWSER_HOST_RESOLVER_RULES": section.host_resolver_rules,
        "BOT_BROWSER_TRUSTED_CERT_SPKI": section.trusted_cert_spki,
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "login", "meet", "--profile-dir", str(profile), "--url", SIGN_IN,
        env=env, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    hands = XTestHands(None, display)
    try:
        for _ in range(300):
            if replica.accounts.forms_ready:  # on screen, its email field focused
                break
            await asyncio.sleep(0.1)
        assert replica.accounts.forms_ready, "the sign-in form never showed"
        await asyncio.sleep(0.3)
        await hands.type("signed.bot@example.com")
        await hands.press("Tab")
        await hands.type("Signed Bot")
        await hands.press("Enter")
        for _ in range(150):
            if replica.accounts.sign_ins:
                break
            await asyncio.sleep(0.1)
        assert replica.accounts.sign_ins, "the typed sign-in never arrived"
        await asyncio.sleep(0.5)  # the response that sets the cookie
        # The person closes the window (its only tab); Chromium writes its cookies as it shuts down.
        await hands.press("Control+w")
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        await hands.close()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, out.decode()
    return out.decode()


@pytest.mark.browser
async def test_login_saves_a_signed_in_profile(
    replica: ReplicaServer, display: VirtualDisplay, tmp_path: Path
):
    profile = tmp_path / "profile"
    out = await login_profile(replica, display, profile)
    assert [(a.email, a.name) for a in replica.accounts.sign_ins] == [
        ("signed.bot@example.com", "Signed Bot")
    ]
    assert "saved" in out and "browser.profile_dir" in out
    assert signed_in_cookies(profile, "meet") >= 1
    assert running_owner(profile) is None  # Chromium is gone
    check_profile(profile)


async def test_login_without_a_desktop_says_so(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "login", "--profile-dir", str(tmp_path / "p"),
        env=env, cwd=ROOT, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await proc.communicate()
    assert proc.returncode == 2
    assert b"needs a desktop" in err
