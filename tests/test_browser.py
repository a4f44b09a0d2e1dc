"""BotBrowser: real Chromium on real PulseAudio, reaching the local replica at the real hostnames."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path

import pytest

from bot.audio import AudioDevices, PcmCapture
from bot.audio.analysis import dominant_frequency
from bot.audio.frames import FRAME_MS
from bot.audio.streams import wait_for_streams
from bot.browser.launch import BotBrowser
from bot.settings import BrowserSection
from bot.testing.replica import ReplicaServer

pytestmark = [pytest.mark.browser, pytest.mark.pulse]

PLAY_TONE = """(hz) => {
  const ctx = new AudioContext({sampleRate: 48000});
  const osc = new OscillatorNode(ctx, {frequency: hz});
  osc.connect(new GainNode(ctx, {gain: 0.5})).connect(ctx.destination);
  osc.start();
  return ctx.state;
}"""


async def test_page_sees_the_real_hostname_as_a_secure_english_context(bot_browser: BotBrowser):
    page = bot_browser.page
    await page.goto("https://meet.google.com/_replica/participant?room=flags&name=Probe")
    facts = await page.evaluate(
        "() => [location.host, isSecureContext, navigator.language, typeof RTCPeerConnection]"
    )
    assert facts == ["meet.google.com", True, "en-US", "function"]
    # Anything not mapped to the replica must fail locally rather than leave the machine.
    with pytest.raises(Exception, match="ERR_NAME_NOT_RESOLVED"):
        await page.goto("https://example.com/")


async def test_page_audio_reaches_the_bot_sink(bot_browser: BotBrowser, bot_audio: AudioDevices):
    """Proves --mute-audio is gone and Chromium follows PULSE_SINK: a 440 Hz page tone is on the sink."""
    b = bot_audio.browser
    capture = PcmCapture(b.server, f"{b.sink}.monitor")
    await capture.start()
    try:
        page = bot_browser.page
        await page.goto("https://zoom.us/_replica/participant?room=tone&name=Tone")
        await page.evaluate(PLAY_TONE, 440)
        await wait_for_streams(b.server, [capture.pid])
        await bot_audio.reclock()
        capture.discard_backlog()
        frames = [(await capture.queue.get()).data for _ in range(1000 // FRAME_MS)]
        await asyncio.sleep(0)
        assert abs(dominant_frequency(b"".join(frames[10:])) - 440) < 5
    finally:
        await capture.close()


async def test_save_artifacts_writes_screenshot_and_html(bot_browser: BotBrowser):
    await bot_browser.page.goto("https://meet.google.com/_replica/participant?room=art&name=Art")
    saved = await bot_browser.save_artifacts("join failed: lobby/timeout")
    assert [p.suffix for p in saved] == [".png", ".html"]
    png, html = saved
    assert png.parent == bot_browser.artifacts_dir and png.name == "join-failed-lobby-timeout.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Replica participant" in html.read_text()
    # A client inside an iframe gets its own file.
    await bot_browser.page.set_content(
        '<iframe src="about:blank"></iframe>'  # an empty placeholder (e.g. a lazy reCAPTCHA) is skipped
        '<iframe src="https://zoom.us/_replica/participant?room=f&name=F"></iframe>'
    )
    await bot_browser.page.frames[2].wait_for_load_state()
    saved = await bot_browser.save_artifacts("framed")
    assert [p.name for p in saved] == ["framed.png", "framed.html", "framed.frame2.html"]
    assert "Replica participant" in saved[2].read_text()
    # A label used before gets its own files: a retried join keeps every attempt's page.
    again = await bot_browser.save_artifacts("framed")
    assert [p.name for p in again][:2] == ["framed-2.png", "framed-2.html"]


async def test_close_is_idempotent_and_never_reports_a_crash(
    replica: ReplicaServer, bot_audio: AudioDevices, tmp_path: Path
):
    browser = BotBrowser(replica.browser_section(), tmp_path)
    await browser.start(bot_audio.browser)
    pid = browser.pid
    assert pid is not None and os.path.exists(f"/proc/{pid}")  # noqa: ASYNC240
    watcher = asyncio.create_task(browser.wait_crashed())
    await browser.close()
    await browser.close()
    await asyncio.sleep(0.2)
    assert not watcher.done()
    watcher.cancel()
    assert browser.pid is None
    # (no_leftovers checks that no Chromium process and no bot-browser-* dir survived.)


async def test_killed_browser_is_reported_as_crashed(
    replica: ReplicaServer, bot_audio: AudioDevices, tmp_path
):
    browser = BotBrowser(replica.browser_section(), tmp_path)
    try:
        await browser.start(bot_audio.browser)
        pid = browser.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)  # by the pid of the process we launched (found by its profile dir)
        async with asyncio.timeout(10):
            await browser.wait_crashed()
        assert "browser" in browser.crash_reason
    finally:
        await browser.close()


async def test_crashed_page_is_reported(bot_browser: BotBrowser):
    page = bot_browser.page
    await page.goto("https://meet.google.com/_replica/participant?room=crash&name=Crash")
    cdp = await page.context.new_cdp_session(page)
    # The renderer dies mid-command: Playwright answers that command only when the browser closes.
    crash = asyncio.create_task(cdp.send("Page.crash"))
    try:
        async with asyncio.timeout(10):
            await bot_browser.wait_crashed()
        assert "crashed" in bot_browser.crash_reason
    finally:
        await bot_browser.close()
        with contextlib.suppress(Exception):
            await crash


async def test_missing_executable_is_a_clear_error(bot_audio: AudioDevices, tmp_path: Path):
    browser = BotBrowser(BrowserSection(executable_path="/nonexistent/chromium"), tmp_path)
    with pytest.raises(Exception, match="/nonexistent/chromium"):
        await browser.start(bot_audio.browser)
    await browser.close()
