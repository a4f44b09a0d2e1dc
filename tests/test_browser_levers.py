"""The browser levers' process switches (bot.browser.levers): one feature switch of each kind that keeps
Playwright's own features, a real lean Chromium playing sound with no WebUI page for the address bar and no
spare
renderer, and the lean options for Playwright's driver."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from bot.audio import AudioDevices
from bot.browser.levers import (
    LEAN_DISABLED_FEATURES,
    LEAN_NODE_OPTIONS,
    feature_switches,
    lean_driver_environ,
    playwright_features,
)
from bot.settings import BrowserSection
from bot.testing.measure import component, process_tree
from bot.testing.replica import ReplicaServer
from tests.replica_fixtures import replica_browser

PLAY_TONE = """() => {
  const ctx = new AudioContext({sampleRate: 48000});
  const osc = new OscillatorNode(ctx, {frequency: 440});
  osc.connect(ctx.destination);
  osc.start();
  return ctx.state;
}"""


def test_playwrights_features_are_read_from_its_driver() -> None:
    """If this fails after a Playwright upgrade, `playwright_features` must learn the driver's new shape:
    until then the bot passes no feature switch (it would replace Playwright's)."""
    disabled, enabled = playwright_features()
    assert "MediaRouter" in disabled and len(disabled) >= 5, disabled
    assert all(name.isidentifier() for name in disabled + enabled)


def test_one_switch_of_each_kind_carries_playwrights_the_levers_and_the_users() -> None:
    disabled, enabled = playwright_features()
    args = feature_switches(["--lang=en-US", "--disable-features=Mine", "--enable-features=Yours"], lean=True)
    assert args[0] == "--lang=en-US" and len(args) == 3
    switches = dict(a.split("=", 1) for a in args[1:])
    assert switches["--disable-features"].split(",") == [*disabled, *LEAN_DISABLED_FEATURES, "Mine"]
    assert switches["--enable-features"].split(",") == [*enabled, "Yours"]
    off = dict(a.split("=", 1) for a in feature_switches([], lean=False))
    assert off["--disable-features"].split(",") == list(disabled)


def disabled_features(pid: int) -> set[str]:
    """The features a Chromium process runs with disabled (a child rewrites its command line as one
    string: the switch is found by its text)."""
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode().replace("\0", " ")
    found = re.search(r" --disable-features=(\S+)", cmdline)
    return set(found.group(1).split(",")) if found else set()


@pytest.mark.browser
@pytest.mark.pulse
@pytest.mark.parametrize("lean", [True, False])
async def test_a_lean_browser_plays_sound_with_its_audio_service_and_no_webui_or_spare_page(
    replica: ReplicaServer, devices: AudioDevices, tmp_path: Path, lean: bool
) -> None:
    async with replica_browser(replica, devices, tmp_path, BrowserSection(lean=lean)) as browser:
        await browser.page.goto("https://meet.google.com/_replica/participant?room=lean&name=Probe")
        assert await browser.page.evaluate(PLAY_TONE) == "running"
        await asyncio.sleep(2.0)  # Chromium starts its audio service with the first sound
        assert browser.pid is not None
        # Without the levers Chromium keeps an idle spare renderer beside the page's for the whole call
        # (started once the navigation has settled: a loaded machine may take longer).
        for _ in range(1 if lean else 40):
            tree = process_tree(browser.pid)
            renderers = [pid for pid in tree if component(pid) == "chromium page (renderer)"]
            if len(renderers) > 1:
                break
            await asyncio.sleep(0.25)
        assert len(renderers) == (1 if lean else 2), renderers
        kinds = {component(pid) for pid in tree}
        assert ("chromium WebUI renderer" in kinds) is not lean, kinds
        # The audio service stays a process of its own: bot.browser.audio_rebind restarts it after PulseAudio
        # dies.
        assert "chromium audio" in kinds, kinds
        disabled = disabled_features(renderers[0])
        assert set(playwright_features()[0]) <= disabled  # Playwright's kept
        assert ("WebUIOmniboxPopup" in disabled) is lean


def test_the_drivers_lean_options_go_in_front_of_the_users() -> None:
    environ = {"NODE_OPTIONS": "--max-semi-space-size=4"}
    lean_driver_environ(environ)
    assert environ["NODE_OPTIONS"] == f"{LEAN_NODE_OPTIONS} --max-semi-space-size=4"  # node: the last wins
    lean_driver_environ(environ)
    assert environ["NODE_OPTIONS"].split().count(LEAN_NODE_OPTIONS) == 1
    fresh: dict[str, str] = {}
    lean_driver_environ(fresh)
    assert fresh == {"NODE_OPTIONS": LEAN_NODE_OPTIONS}
