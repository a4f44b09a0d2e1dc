"""Chromium for one bot: headful on the bot's own X display (or headless), launched on the bot's PulseAudio
devices, with the bot's hands on its page and failure artifacts.

How the browser presents itself (no automation switch, real user agent, a window with a frame on a
desktop-sized screen) is `bot.browser.launch_options`; the display is `bot.browser.display.VirtualDisplay`,
started here in
`browser.display = "xvfb"` mode and stopped with the browser; the hands (`hands`) are OS-level input on
that display (`bot.browser.input.xtest`), or input synthesized by Playwright in headless mode. With
`browser.profile_dir` Chromium runs on a private copy of that signed-in profile (`bot.browser.profile`).

Audio facts this relies on: Playwright's headless default `--mute-audio` makes Chromium play zeros, so it
is removed; Chromium follows PULSE_SERVER / PULSE_SINK / PULSE_SOURCE from its environment. The profile and
Chromium's temporary files live in a private `bot-browser-*` directory, which also identifies this
browser's processes among ours (see `_our_processes`); it goes with the browser, and with the bot even
when the bot is killed outright (`bot.system.temp_dirs`): it holds the profile copy.

Failure artifacts are saved here and nowhere else (`save_artifacts`): the platform adapter asks for them
when a join fails, before it navigates away from the page that shows why.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import signal
import tempfile
from pathlib import Path

from playwright.async_api import BrowserContext, CDPSession, Frame, Page, Playwright, async_playwright
from playwright.async_api import Error as PlaywrightError

from bot.audio import BrowserAudio
from bot.browser.display import ScreenSize, VirtualDisplay
from bot.browser.input import Hands, PlaywrightHands
from bot.browser.launch_options import browser_env, launch_options, presence_args
from bot.browser.levers import feature_switches, hide_remote_video
from bot.browser.profile import ProfileError, check_profile, copy_profile
from bot.settings import BrowserSection
from bot.system.processes import descendants
from bot.system.temp_dirs import Janitor

log = logging.getLogger(__name__)

_CLOSE_TIMEOUT_S = 10.0
_ARTIFACT_TIMEOUT_MS = 5000


async def _save_html(frame: Frame, path: Path, what: str, label: str) -> bool:
    """Writes a frame's HTML, its URL first: `meeting-bot classify-page` reads the page where it was."""
    try:
        content = await asyncio.wait_for(frame.content(), _ARTIFACT_TIMEOUT_MS / 1000)
        await asyncio.to_thread(path.write_text, f"<!-- {frame.url} -->\n{content}")
    except (PlaywrightError, TimeoutError, OSError) as e:
        log.warning("no %s for %s: %s", what, label, e)
        return False
    return True


class BrowserError(RuntimeError):
    """Chromium could not be started."""


class BotBrowser:
    def __init__(self, settings: BrowserSection, artifacts_dir: Path) -> None:
        self.settings = settings
        self.artifacts_dir = artifacts_dir
        self._dir: Path | None = None
        self._playwright: Playwright | None = None
        self._context: BrowserContext | None = None
        self._page: Page | None = None
        self._display: VirtualDisplay | None = None
        self._janitor: Janitor | None = None
        self._hands: Hands | None = None
        self._lean_session: CDPSession | None = None  # holds bot.browser.levers's script for the page's life
        self._crashed = asyncio.Event()
        self._crash_reason = ""
        self._closing = False
        self._closed = False

    def args(self) -> list[str]:
        """Chromium flags for these settings (Playwright adds its own, e.g. --no-sandbox)."""
        s = self.settings
        args = [
            "--use-fake-ui-for-media-stream",
            "--autoplay-policy=no-user-gesture-required",
            *presence_args(s.display, ScreenSize.parse(s.screen_size)),
        ]
        # Test configuration only: a local replica at the real hostnames, trusted by its key alone.
        if s.host_resolver_rules:
            args.append(f"--host-resolver-rules={s.host_resolver_rules}")
        if s.trusted_cert_spki:
            args.append(f"--ignore-certificate-errors-spki-list={s.trusted_cert_spki}")
        if s.allow_loopback_webrtc:
            args.append("--allow-loopback-in-peer-connection")
        return feature_switches([*args, *s.extra_args], s.lean)

    @property
    def page(self) -> Page:
        if self._page is None:
            raise BrowserError("the browser is not started")
        return self._page

    @property
    def hands(self) -> Hands:
        """The person's hands on the page: OS-level input on the bot's display (xvfb), else Playwright's."""
        if self._hands is None:
            raise BrowserError("the browser is not started")
        return self._hands

    @property
    def display(self) -> VirtualDisplay | None:
        """The bot's X display (xvfb mode), None in headless mode."""
        return self._display

    @property
    def profile_dir(self) -> Path | None:
        """The profile Chromium runs on: a fresh one, or the private copy of `browser.profile_dir`."""
        return None if self._dir is None else self._dir / "profile"

    @property
    def crash_reason(self) -> str:
        return self._crash_reason

    async def start(self, audio: BrowserAudio) -> Page:
        if self._playwright is not None or self._closed:
            raise BrowserError("a BotBrowser starts once")
        s = self.settings
        screen = ScreenSize.parse(s.screen_size)
        self._dir = Path(tempfile.mkdtemp(prefix="bot-browser-"))
        (self._dir / "tmp").mkdir()
        try:
            self._janitor = await Janitor([self._dir]).start()
            if s.profile_dir:
                # Checked again here: the profile may have been opened since the settings were read.
                source = check_profile(Path(s.profile_dir))
                await asyncio.to_thread(copy_profile, source, self._dir / "profile")
            if s.display == "xvfb":
                self._display = await VirtualDisplay(screen).start()
            base = {**os.environ, **audio.env(), "TMPDIR": str(self._dir / "tmp")}
            env: dict[str, str | float | bool] = {**browser_env(base, self._display)}
            self._playwright = await async_playwright().start()
            self._context = await self._playwright.chromium.launch_persistent_context(
                str(self._dir / "profile"),
                executable_path=s.executable_path or None,
                args=self.args(),
                env=env,
                permissions=["microphone", "camera"],
                **launch_options(s.display, screen),
            )
        except BaseException as e:
            await self.close()
            if isinstance(e, PlaywrightError):
                raise BrowserError(f"Chromium did not start ({s.executable_path}): {e}") from e
            if isinstance(e, ProfileError):
                raise BrowserError(str(e)) from e
            raise
        self._context.on("close", lambda _: self._died("the browser closed unexpectedly"))
        self._context.on("page", self._watch)
        pages = self._context.pages
        self._page = pages[0] if pages else await self._context.new_page()
        for page in self._context.pages:
            self._watch(page)
        # Before the page goes anywhere: every document it loads gets the levers (bot.browser.levers).
        if s.lean:
            self._lean_session = await hide_remote_video(self._page)
        if self._display is not None:
            from bot.browser.input.xtest import XTestHands  # python-xlib only where there is a display

            self._hands = XTestHands(self._page, self._display)
        else:
            self._hands = PlaywrightHands(self._page)
        log.info("chromium started (pid %s)", self.pid)
        return self._page

    async def new_page(self) -> Page:
        """Another page (tab) in this browser: the simulated people of a benchmark share one browser."""
        if self._context is None:
            raise BrowserError("the browser is not started")
        return await self._context.new_page()

    def _watch(self, page: Page) -> None:
        page.on("crash", lambda _: self._died(f"the page {page.url} crashed"))

    def _died(self, reason: str) -> None:
        if self._closing or self._crashed.is_set():
            return
        self._crash_reason = reason
        log.warning("%s", reason)
        self._crashed.set()

    async def wait_crashed(self) -> None:
        """Returns only if the browser or a page dies unexpectedly (never because of close())."""
        await self._crashed.wait()

    @property
    def pid(self) -> int | None:
        """The main Chromium process (the one whose command line names our profile and has no --type)."""
        for pid, cmdline in self._our_processes():
            if not any(arg.startswith("--type=") for arg in cmdline):
                return pid
        return None

    def _our_processes(self) -> list[tuple[int, list[str]]]:
        if self._dir is None:
            return []
        marker = f"--user-data-dir={self._dir / 'profile'}"
        found = []
        for pid in descendants(include_zombies=True):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
            except OSError:
                continue
            if marker in cmdline:
                found.append((pid, cmdline))
        return found

    async def save_artifacts(self, label: str) -> list[Path]:
        """A screenshot and the HTML of the page (and of each frame) as it is now, named after `label`;
        whatever can still be saved if the browser is dying. Never overwrites: a label used before gets a
        `-2`, `-3`, … suffix."""
        page = self._page
        if page is None or page.is_closed():
            return []
        try:
            self.artifacts_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            log.warning("no artifacts for %s: %s", label, e)
            return []
        stem = self._free_stem(re.sub(r"[^A-Za-z0-9_.-]+", "-", label).strip("-") or "page")
        saved: list[Path] = []
        png = self.artifacts_dir / f"{stem}.png"
        try:
            await page.screenshot(path=str(png), full_page=True, timeout=_ARTIFACT_TIMEOUT_MS)
            saved.append(png)
        except PlaywrightError as e:
            log.warning("no screenshot for %s: %s", label, e)
        html = self.artifacts_dir / f"{stem}.html"
        if await _save_html(page.main_frame, html, "page HTML", label):
            saved.append(html)
        # Clients that run inside an iframe (Zoom with fromPWA=1) keep their real DOM there; frames that
        # never loaded anything (about:blank placeholders) have nothing to show.
        for i, frame in enumerate(page.frames[1:], start=1):
            if frame.url in ("", "about:blank"):
                continue
            path = self.artifacts_dir / f"{stem}.frame{i}.html"
            if await _save_html(frame, path, f"HTML of frame {frame.url}", label):
                saved.append(path)
        return saved

    def _free_stem(self, stem: str) -> str:
        free, n = stem, 1
        while any((self.artifacts_dir / f"{free}{ext}").exists() for ext in (".png", ".html")):
            n += 1
            free = f"{stem}-{n}"
        return free

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._closing = True
        if self._hands is not None:
            await self._hands.close()
        if self._context is not None:
            try:
                await asyncio.wait_for(self._context.close(), _CLOSE_TIMEOUT_S)
            except (PlaywrightError, TimeoutError) as e:
                log.warning("chromium did not close cleanly: %s", e)
        if self._playwright is not None:
            with contextlib.suppress(PlaywrightError):
                await self._playwright.stop()
        await self._reap()
        if self._display is not None:
            await self._display.close()
        if self._janitor is not None:
            await self._janitor.close()  # removes the dir
        elif self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)

    async def _reap(self) -> None:
        # Normally nothing is left; a wedged Chromium is killed here by pid (found by its profile dir).
        for _ in range(50):
            left = self._our_processes()
            if not left:
                return
            await asyncio.sleep(0.05)
        for pid, _ in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                log.warning("killed leftover chromium process %s", pid)
