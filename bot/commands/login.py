"""`meeting-bot login [meet|zoom]`: sign in once in a visible Chromium and keep its profile for the bots.

The window is a plain Chromium on the user's own desktop — no Playwright, no DevTools protocol, no
automation switch — because Google's sign-in refuses browsers it sees as automated. The profile goes to
`--profile-dir` (else `browser.profile_dir`, else ~/.local/share/meeting-bot/profile). The command ends
when the window is closed — Chromium writes its cookies as it shuts down — then says whether the profile
holds the platform's cookies and how to use it. Ctrl+C stops Chromium too (SIGTERM), but cookies set in
its last seconds may not be written yet (measured: the sign-in cookie of the replica was lost that way):
closing the window is the way to finish.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

from bot.outcome import ExitCode
from bot.system.processes import die_with_parent

SIGN_IN_URLS = {
    "meet": "https://accounts.google.com/ServiceLogin?continue=https://meet.google.com/",
    "zoom": "https://zoom.us/signin",
}
_CLOSE_TIMEOUT_S = 15.0


HELP = "sign in to Google (Meet) or Zoom once, in a visible Chromium, and save the profile for bots"
DESCRIPTION = (
    "Opens Chromium on your desktop at the platform's sign-in page with its own profile "
    "directory. Sign in, then close the window: the bots (browser.profile_dir) each run on a private "
    "copy of that profile, signed in."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("platform", nargs="?", choices=sorted(SIGN_IN_URLS), default="meet")
    p.add_argument(
        "--profile-dir", type=Path, help="where to keep the profile (default: browser.profile_dir)"
    )
    p.add_argument("--url", help="open this page instead of the platform's sign-in page")
    p.add_argument("--config", type=Path, help="TOML settings file (default config/bot.toml)")


def default_profile_dir() -> Path:
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "meeting-bot" / "profile"


def chromium_command(executable: str, profile: Path, url: str, test_args: list[str]) -> list[str]:
    """A plain desktop Chromium on `profile`, with the bot's cookie encryption (`--password-store=basic`)
    and UI language, so the profile works unchanged in the bot."""
    args = [
        executable,
        f"--user-data-dir={profile}",
        "--password-store=basic",
        "--lang=en-US",
        "--no-first-run",
        "--no-default-browser-check",
    ]
    if os.geteuid() == 0:
        args.append("--no-sandbox")  # Chromium refuses to run as root with its sandbox
    return [*args, *test_args, url]


def run(args: argparse.Namespace) -> int:
    from bot.browser.profile import COOKIE_DOMAINS, running_owner, signed_in_cookies
    from bot.settings import SettingsError, load_settings

    try:
        settings = load_settings(args.config, require_key=False)
    except SettingsError as e:
        print(f"error: {e}", file=sys.stderr)
        return int(ExitCode.USAGE)
    browser = settings.browser
    configured = str(getattr(browser, "profile_dir", "") or "")
    profile = (args.profile_dir or (Path(configured) if configured else default_profile_dir())).expanduser()
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        print(
            "error: login needs a desktop to show Chromium on (no DISPLAY): run it on your own machine, "
            "then copy the profile directory to the server (docs/platforms.md: Signed-in bots)",
            file=sys.stderr,
        )
        return int(ExitCode.USAGE)
    owner = running_owner(profile)
    if owner is not None:
        print(f"error: {profile} is already open in Chromium (pid {owner}): close it first", file=sys.stderr)
        return int(ExitCode.USAGE)
    executable = browser.executable_path
    if shutil.which(executable) is None:
        print(f"error: browser.executable_path: {executable} not found", file=sys.stderr)
        return int(ExitCode.USAGE)
    profile.mkdir(parents=True, exist_ok=True)
    # Test configuration only (the replicas): the same host mapping and certificate trust as the bot.
    test_args = []
    if browser.host_resolver_rules:
        test_args.append(f"--host-resolver-rules={browser.host_resolver_rules}")
    if browser.trusted_cert_spki:
        test_args.append(f"--ignore-certificate-errors-spki-list={browser.trusted_cert_spki}")
    url = args.url or SIGN_IN_URLS[args.platform]
    command = chromium_command(executable, profile, url, test_args)
    print(f"login: Chromium is open at {url} with the profile {profile}.", flush=True)
    print("login: sign in there, then close the window (that saves the profile).", flush=True)
    # Chromium's own temporary files (its single-instance socket) in a dir of ours, removed afterwards.
    tmp = Path(tempfile.mkdtemp(prefix="bot-login-"))
    try:
        code = asyncio.run(_run_chromium(command, {**os.environ, "TMPDIR": str(tmp)}))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    cookies = signed_in_cookies(profile, args.platform)
    domain = COOKIE_DOMAINS[args.platform]
    if cookies == 0:
        print(f"login: the profile holds no {domain} cookies: the sign-in did not complete", file=sys.stderr)
        return 1
    print(f"login: saved; the profile holds {cookies} {domain} cookie(s) (Chromium exited with {code}).")
    print(f'login: use it with browser.profile_dir = "{profile}" (or BOT_BROWSER_PROFILE_DIR={profile});')
    print("login: on a server or in the container, copy the directory there and point the setting at it.")
    return 0


async def _run_chromium(command: list[str], env: dict[str, str]) -> int:
    """Runs Chromium until its window is closed; Ctrl+C or SIGTERM closes it cleanly (SIGTERM to
    Chromium: it shuts down as if the window were closed, writing its cookies)."""
    proc = await asyncio.create_subprocess_exec(
        *command,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        start_new_session=True,  # Ctrl+C reaches us, and we close Chromium in order
        preexec_fn=die_with_parent,
    )
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        waiter = asyncio.create_task(proc.wait())
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(asyncio.shield(waiter), _CLOSE_TIMEOUT_S)
            except TimeoutError:
                proc.kill()
        return await waiter
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
