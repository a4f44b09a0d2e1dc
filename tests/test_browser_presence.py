"""The bot's browser as a page and the machine see it: the signals of automation read from inside a page,
the flags of a real run, and private copies of a signed-in profile."""

from __future__ import annotations

import asyncio
import re
import subprocess
from pathlib import Path

import pytest

from bot.audio import AudioDevices
from bot.browser.display import VirtualDisplay
from bot.browser.input import PlaywrightHands
from bot.browser.input.xtest import XTestHands
from bot.browser.launch import BotBrowser
from bot.settings import BrowserSection
from bot.system.processes import environ
from bot.testing.replica import ReplicaServer
from tests.test_presence_join import tree_digest
from tests.test_profile import login_profile

pytestmark = [pytest.mark.browser, pytest.mark.pulse]

TEST_ONLY_FLAGS = (
    "--host-resolver-rules",
    "--ignore-certificate-errors-spki-list",
    "--allow-loopback-in-peer-connection",
)


def chromium_major() -> str:
    version = subprocess.run(["/usr/bin/chromium", "--version"], capture_output=True, text=True, check=True)
    match = re.search(r"(\d+)\.\d+\.\d+", version.stdout)
    assert match, version.stdout
    return match.group(1)


def process_facts(pid: int) -> tuple[list[str], dict[str, str]]:
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    return cmdline, environ(pid)


async def test_signals_read_inside_a_page_do_not_mark_the_default_browser_as_automated(
    bot_browser: BotBrowser,
):
    """The automation signals, from inside a page on the replica (its entry check reads them as detection
    scripts do). Software WebGL is the one exception: no GPU here, as on any server."""
    assert bot_browser.settings.display == "xvfb", "the default"
    page = bot_browser.page
    await page.goto("https://meet.google.com/sig-nals-dft")
    report = await page.evaluate("ReplicaEntryCheck.report()")
    s = report["signals"]
    assert s["webdriver"] is False
    assert "Headless" not in s["userAgent"] and s["uaMajor"] == chromium_major()
    assert s["hintMajor"] == chromium_major() and s["platform"] == "Linux"
    assert not any("Headless" in b for b in s["brands"])
    assert s["language"] == "en-US" and s["languages"][0] == "en-US"
    assert s["screen"] == [1280, 800]
    (ow, oh), (_, ih) = s["outer"], s["inner"]
    assert oh - ih > 60, "the window has a frame (tab strip and toolbar)"
    assert ow <= 1280 and oh <= 800 and ow >= 1200, "a maximized window on its screen"
    assert s["chromeObject"] is True
    assert "SwiftShader" in s["webgl"]
    assert set(report["findings"]) == {"software_webgl"}, report["findings"]
    assert report["bot"] is False


@pytest.mark.parametrize("display", ["xvfb", "headless"])
async def test_a_real_run_has_no_test_only_or_automation_switches(
    bot_audio: AudioDevices, tmp_path: Path, display: str
):
    """Without the tests' settings (host mapping, certificate trust, loopback WebRTC) none of their flags
    reach Chromium; Playwright's automation switch never does. Headful Chromium draws on the bot's own
    display, never on whatever DISPLAY the bot was started with."""
    browser = BotBrowser(BrowserSection(display=display), tmp_path)
    try:
        await browser.start(bot_audio.browser)
        assert browser.pid is not None
        cmdline, env = process_facts(browser.pid)
        hands = browser.hands
        own = browser.display
        expected_display = own.name if own is not None else None
    finally:
        await browser.close()
    flags = " ".join(cmdline)
    assert not [f for f in TEST_ONLY_FLAGS if f in flags], flags
    assert "--enable-automation" not in cmdline
    assert "--disable-blink-features=AutomationControlled" in cmdline
    assert ("--headless" in flags) == (display == "headless")
    assert env.get("DISPLAY") == expected_display
    assert "WAYLAND_DISPLAY" not in env
    assert isinstance(hands, XTestHands if display == "xvfb" else PlaywrightHands)


async def test_two_bots_on_one_profile_each_run_on_their_own_copy(
    replica: ReplicaServer, display: VirtualDisplay, tmp_path: Path
):
    profile = tmp_path / "profile"
    await login_profile(replica, display, profile)
    before = tree_digest(profile)
    section = replica.browser_section(BrowserSection(profile_dir=str(profile)))
    devices = [AudioDevices(), AudioDevices()]
    browsers = [BotBrowser(section, tmp_path / f"a{i}") for i in range(2)]
    try:
        audio = await asyncio.gather(*(d.start() for d in devices))
        await asyncio.gather(*(b.start(a) for b, a in zip(browsers, audio, strict=True)))
        copies = [b.profile_dir for b in browsers]
        assert copies[0] != copies[1] and profile not in copies
        assert all(c is not None and (c / "Default").is_dir() for c in copies)
        assert browsers[0].display is not None and browsers[1].display is not None
        assert browsers[0].display.name != browsers[1].display.name
        for b in browsers:
            await b.page.goto("https://meet.google.com/two-bots-one")
        accounts = [
            await b.page.evaluate(
                "() => JSON.parse(document.getElementById('meet-config').textContent).account"
            )
            for b in browsers
        ]
        assert [a["name"] for a in accounts] == ["Signed Bot", "Signed Bot"], "both signed in"
    finally:
        await asyncio.gather(*(b.close() for b in browsers))
        await asyncio.gather(*(d.close() for d in devices))
    assert all(c is not None and not c.exists() for c in copies), "the copies went with their browsers"
    assert tree_digest(profile) == before, "the original profile is untouched"
