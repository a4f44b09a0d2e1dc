"""The replicas' entry check (entry_check.js): what it reads of a browser and its input, and that it tells
a machine from a person: the bot's headful Chromium with human hands passes, headless with synthesized
input does not. (What the bot's own browser shows the check: tests/test_browser_presence.py.)"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from playwright.async_api import Page

from bot.browser.display import VirtualDisplay
from bot.browser.input import Hands, PlaywrightHands
from bot.browser.input.xtest import XTestHands
from bot.testing.replica import ReplicaServer
from tests.presence_support import chromium_on

pytestmark = [pytest.mark.browser]


def replica_flags(replica: ReplicaServer) -> list[str]:
    s = replica.browser_section()
    return [
        f"--host-resolver-rules={s.host_resolver_rules}",
        f"--ignore-certificate-errors-spki-list={s.trusted_cert_spki}",
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
    ]


async def ask_to_join(page: Page, hands: Hands, name: str) -> None:
    """A guest on the Meet replica's pre-join page: dismiss the sign-in suggestion, type the name, join."""
    await hands.click(page.get_by_role("button", name="Got it"), timeout_s=10)
    await hands.replace_text(page.locator('input[aria-label="Your name"]'), name)
    await hands.click(page.locator("#join-button"))


async def test_meet_drops_a_headless_guest_with_synthesized_input(replica: ReplicaServer, tmp_path: Path):
    room = replica.room("meet", "hea-dles-sss")
    room.configure(entry_check=True)
    async with chromium_on(None, tmp_path / "p", replica_flags(replica)) as page:
        await page.goto("https://meet.google.com/hea-dles-sss")
        await ask_to_join(page, PlaywrightHands(page), "Headless Bot")
        await room.wait_for("Headless Bot", "left", 10)
        await page.get_by_text("join this video call").wait_for(timeout=5000)  # "You can't ..."
    events = [e for _, e, name in room.log if name == "Headless Bot"]
    assert events[:2] == ["waiting", "dropped:entry_check"], events  # asked to join, then dropped
    _, report = room.entry_reports[-1]
    assert {"headless_ua", "no_window_frame", "click_without_path", "machine_typing"} <= set(
        report["findings"]
    )


async def test_meet_admits_the_bots_browser_with_human_hands(
    replica: ReplicaServer, display: VirtualDisplay, tmp_path: Path
):
    room = replica.room("meet", "hum-anha-nds")
    room.configure(entry_check=True)
    async with chromium_on(display, tmp_path / "p", replica_flags(replica)) as page:
        await page.goto("https://meet.google.com/hum-anha-nds")
        hands = XTestHands(page, display, random.Random(11))
        try:
            await ask_to_join(page, hands, "Human Bot")
            await room.wait_for("Human Bot", "in_call", 10)
        finally:
            await hands.close()
    _, report = room.entry_reports[-1]
    assert set(report["findings"]) <= {"software_webgl"}, report
    assert all(p["moves"] >= 3 for p in report["signals"]["presses"])


async def join_zoom(page: Page, hands: Hands, name: str) -> None:
    """A guest on the Zoom replica's preview: cookies, the two permission prompts, the name, Join."""
    await hands.click(page.locator("#onetrust-accept-btn-handler"), timeout_s=10)
    for _ in range(2):
        await hands.click(page.locator("#permission .permission-allow"), timeout_s=5)
    await hands.replace_text(page.locator("#input-for-name"), name)
    await hands.click(page.locator(".preview-join-button"))


@pytest.mark.parametrize("mode", ["xvfb", "headless"])
async def test_zoom_walls_off_only_the_headless_guest(
    replica: ReplicaServer, display: VirtualDisplay, tmp_path: Path, mode: str
):
    mid = "83311100001" if mode == "xvfb" else "83311100002"
    room = replica.room("zoom", mid)
    room.configure(entry_check=True)
    on = display if mode == "xvfb" else None
    async with chromium_on(on, tmp_path / "p", replica_flags(replica)) as page:
        await page.goto(f"https://zoom.us/wc/{mid}/join")
        hands: Hands = XTestHands(page, display, random.Random(2)) if on else PlaywrightHands(page)
        try:
            await join_zoom(page, hands, f"Zoom {mode}")
            if mode == "xvfb":
                await room.wait_for(f"Zoom {mode}", "in_call", 10)
            else:
                await page.get_by_text("We detected you may be a bot").wait_for(timeout=10000)
        finally:
            await hands.close()
    events = [e for _, e, name in room.log if name == f"Zoom {mode}"]
    assert events[0] == ("joined" if mode == "xvfb" else "refused:bot_wall"), events
