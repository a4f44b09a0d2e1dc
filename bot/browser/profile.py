"""Signed-in Chromium profiles (`browser.profile_dir`): checked once, copied privately for every bot.

A profile is a Chromium user-data directory in which a person signed in to Google or Zoom once
(`meeting-bot login`). Bots never run on it: each one copies it into its own temporary directory and runs
on the copy, so several bots can use one profile at once and none can corrupt it (a crashed Chromium
leaves locks and half-written databases behind, in its copy only). What the copy leaves out is what
Chromium rebuilds by itself: caches, crash reports and the single-instance locks of the browser that
last used it.

Cookies stay readable wherever the profile goes because both the login browser and the bot use
Chromium's fixed "basic" password store (`--password-store=basic`), not a desktop keyring a server lacks.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import sqlite3
from pathlib import Path

# Rebuilt by Chromium, large, or bound to the process that made them: never copied.
_SKIP_NAMES = frozenset(
    {
        "SingletonLock",
        "SingletonSocket",
        "SingletonCookie",
        "lockfile",
        "Cache",
        "Code Cache",
        "GPUCache",
        "GrShaderCache",
        "GraphiteDawnCache",
        "ShaderCache",
        "DawnCache",
        "DawnGraphiteCache",
        "DawnWebGPUCache",
        "Crashpad",
        "BrowserMetrics",
        "component_crx_cache",
        "optimization_guide_model_store",
        "Safe Browsing",
    }
)
# The platforms' cookie domains: what `signed_in_cookies` counts.
COOKIE_DOMAINS = {"meet": "google.com", "zoom": "zoom.us"}


class ProfileError(ValueError):
    """The profile directory is missing, not a Chromium profile, or in use."""


def check_profile(path: Path) -> Path:
    """The resolved profile directory, or `ProfileError` saying what to do."""
    path = path.expanduser()
    if not path.is_dir():
        raise ProfileError(
            f"browser.profile_dir: {path} does not exist; make one with `meeting-bot login meet` "
            "(or `login zoom`) and point browser.profile_dir at it"
        )
    if not (path / "Local State").exists() and not (path / "Default").is_dir():
        raise ProfileError(
            f"browser.profile_dir: {path} is not a Chromium profile (no 'Local State' or 'Default/'); "
            "make one with `meeting-bot login`"
        )
    owner = running_owner(path)
    if owner is not None:
        raise ProfileError(
            f"browser.profile_dir: {path} is open in a Chromium (pid {owner}); close it (finish "
            "`meeting-bot login`) first: a copy taken while it writes may be torn"
        )
    return path.resolve()


def running_owner(path: Path) -> int | None:
    """The pid of a live Chromium on this machine holding the profile, from its `SingletonLock`
    ("host-pid"); None when there is none (a lock copied from another machine or left by a crash)."""
    try:
        target = os.readlink(path / "SingletonLock")
    except OSError:
        return None
    host, _, pid = target.rpartition("-")
    if host != socket.gethostname() or not pid.isdigit():
        return None
    return int(pid) if Path(f"/proc/{pid}").exists() else None


def copy_profile(source: Path, destination: Path) -> None:
    """Copies the profile into `destination` (which must not exist), without caches and locks.
    Blocking: call it in a thread."""

    def skip(directory: str, names: list[str]) -> set[str]:
        return {n for n in names if n in _SKIP_NAMES}

    shutil.copytree(source, destination, symlinks=True, ignore=skip)


def signed_in_cookies(profile: Path, platform: str) -> int:
    """How many cookies the profile holds for the platform's domain (0 when it has no cookie store).
    Read-only, from a private copy of the database: Chromium may hold it open."""
    domain = COOKIE_DOMAINS[platform]
    count = 0
    for db in (profile / "Default" / "Cookies", profile / "Default" / "Network" / "Cookies"):
        if not db.exists():
            continue
        uri = f"file:{db}?mode=ro&immutable=1"
        try:
            with contextlib.closing(sqlite3.connect(uri, uri=True)) as conn:
                row = conn.execute(
                    "SELECT COUNT(*) FROM cookies WHERE host_key = ? OR host_key LIKE ?",
                    (domain, f"%.{domain}"),
                ).fetchone()
        except sqlite3.Error:
            continue
        count += int(row[0])
    return count
