"""The 2026 page variants, each through the real `python -m bot join` against a replica showing it.

Each test names the item it covers (Meet 1-7, Zoom 8-15, both 16-19) and checks what a user checks: the
state or end reason, the failure code and exit code, and for failures the saved screenshot and HTML that
show the variant. The replicas pick a variant per meeting (`MeetClientOptions`, `ZoomClientOptions`,
`RoomConfig`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import signal
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from bot.audio.analysis import dominant_frequency, rms_dbfs
from bot.outcome import ExitCode
from bot.testing.agent import StandInAgent
from bot.testing.participant import Participant, to_pcm
from bot.testing.replica.meet_pages import BLOCKED_MEETING, LOBBY_WAITING_HOST, MeetPages
from bot.testing.replica.server import ReplicaServer
from bot.testing.replica.zoom_pages import HOST_WAIT_THE, ZoomPages
from tests.join_support import JoinRun, replica_env

pytestmark = [pytest.mark.pulse, pytest.mark.browser, pytest.mark.slow]

_n = itertools.count()


def meet_code() -> str:
    n = next(_n)
    letters = "".join("abcdefghijklmnopqrstuvwxyz"[(n // 26**i) % 26] for i in range(3))
    return f"var-{letters}a-{letters}"


def zoom_id() -> str:
    return str(84400000000 + next(_n))


def meet_options(replica: ReplicaServer, code: str, **fields: Any) -> None:
    pages = next(p for p in replica.pages if isinstance(p, MeetPages))
    pages.configure(code, **fields)


def zoom_options(replica: ReplicaServer, mid: str, **fields: Any) -> None:
    pages = next(p for p in replica.pages if isinstance(p, ZoomPages))
    pages.configure(mid, **fields)


def meet_url(code: str) -> str:
    return f"https://meet.google.com/{code}"


def zoom_url(mid: str, query: str = "") -> str:
    return f"https://us02web.zoom.us/j/{mid}" + (f"?{query}" if query else "")


async def person(replica: ReplicaServer, platform: str, mid: str, name: str = "Host") -> Participant:
    p = Participant(replica, platform, mid, name=name, host=True)
    await p.start()
    return p


def saved_page(run: JoinRun, folder: Path) -> tuple[Path, str]:
    """The failure's screenshot (checked to be a PNG) and the text of its page HTML, both in `folder`."""
    saved = [Path(a) for a in run.last("failed")["artifacts"]]
    assert saved and all(p.parent == folder for p in saved), saved
    (png,) = (p for p in saved if p.suffix == ".png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = "\n".join(p.read_text() for p in saved if p.suffix == ".html")
    return png, html


@contextlib.asynccontextmanager
async def with_host(
    replica: ReplicaServer,
    agent: StandInAgent,
    platform: str,
    mid: str,
    url: str,
    agent_id: str = "echo",
    args: Sequence[str] = (),
) -> AsyncIterator[tuple[JoinRun, Participant]]:
    """A person in the meeting (its host) and the bot's run joining it; both closed afterwards."""
    host = await person(replica, platform, mid)
    run = await JoinRun(url, agent_id, replica_env(replica, agent), args).start()
    try:
        yield run, host
    finally:
        await run.close()
        await host.close()


async def hang_up(run: JoinRun) -> None:
    """SIGTERM, as a user stops the bot: it leaves and exits completed."""
    run.signal(signal.SIGTERM)
    assert await run.wait(15) == ExitCode.COMPLETED


async def fails(run: JoinRun, code: str, exit_code: ExitCode, timeout: float = 60) -> dict[str, Any]:
    try:
        assert await run.wait(timeout) == exit_code, run.stderr_tail()
    finally:
        await run.close()
    failed = run.last("failed")
    assert failed["code"] == code, failed
    assert run.last("summary")["exit_code"] == exit_code
    return failed


async def in_call(run: JoinRun) -> None:
    await run.wait_event("in_call", 45)
    await run.wait_event("agent_connected", 20)


# ---- Google Meet --------------------------------------------------------------------------------------


async def test_1_meet_blocked_second_wording_is_blocked_and_retried(
    replica: ReplicaServer, agent: StandInAgent, tmp_path: Path
) -> None:
    code = meet_code()
    replica.room("meet", code).configure(blocked=True)
    meet_options(replica, code, blocked_text=BLOCKED_MEETING)
    env = {**replica_env(replica, agent, artifacts_dir=tmp_path), "BOT_CALL_JOIN_RETRY_DELAY_S": "0.2",
           "BOT_CALL_JOIN_RETRIES": "1"}  # fmt: skip
    run = await JoinRun(meet_url(code), "echo", env).start()
    await fails(run, "blocked", ExitCode.BLOCKED)
    assert [e.get("retry") for e in run.events if e["event"] == "joining"] == [None, 1]
    _, html = saved_page(run, tmp_path)
    assert "join this meeting" in html


async def test_2_meet_denial_shown_as_you_left_the_meeting_is_denied(
    replica: ReplicaServer, agent: StandInAgent, tmp_path: Path
) -> None:
    """Meet's lobby says "Waiting for the host to let you in"; the denial is the "You left the meeting"
    page with "Return to home screen"."""
    code = meet_code()
    room = replica.room("meet", code)
    room.config.lobby = True
    meet_options(replica, code, denial="left", lobby_text=LOBBY_WAITING_HOST)
    host = await person(replica, "meet", code)
    run = await JoinRun(meet_url(code), "echo", replica_env(replica, agent, artifacts_dir=tmp_path)).start()
    try:
        await run.wait_event("awaiting_admission", 40)
        await asyncio.sleep(1.5)  # the second lobby text is waiting, not an unknown screen
        assert "failed" not in run.kinds()
        await room.deny("AI Agent")
        await fails(run, "denied", ExitCode.DENIED)
    finally:
        await host.close()
    _, html = saved_page(run, tmp_path)
    assert "You left the meeting" in html and "Return to home screen" in html


@pytest.mark.parametrize("people", ["avatars", "label", "tiles"])
async def test_3_alone_rule_reads_every_form_of_the_participant_count(
    replica: ReplicaServer, agent: StandInAgent, people: str
) -> None:
    """No People button with aria-haspopup: the count is in `[data-avatar-count]`, in a "People - N"
    label, or (no count at all) read from the tiles, which the bot says in its log."""
    code = meet_code()
    meet_options(replica, code, people=people, controls_hide_ms=500)
    alone_after = ["--alone-after=2"]
    async with with_host(replica, agent, "meet", code, meet_url(code), "echo", alone_after) as (run, host):
        await in_call(run)
        await asyncio.sleep(3)  # two in the call, the bar long hidden: not alone
        assert "ended" not in run.kinds()
        await host.leave()
        left_at = time.monotonic()
        assert await run.wait(30) == ExitCode.COMPLETED
        took = time.monotonic() - left_at
    assert run.last("ended")["reason"] == "alone"
    # Without any count the tiles are read after 10 s of looking (bot.platforms.meet._COUNT_FALLBACK_S).
    assert took < (20 if people == "tiles" else 10), took
    if people == "tiles":
        assert "participant tiles" in run.stderr.decode()


async def test_4_alone_rule_fires_with_the_control_bar_hidden(
    replica: ReplicaServer, agent: StandInAgent
) -> None:
    """The bar (with the People count and the call-only buttons) leaves the layout after 0.5 s without
    pointer movement; the bot moves the pointer before each look and still sees the count."""
    code = meet_code()
    meet_options(replica, code, controls_hide="remove", controls_hide_ms=500)
    alone_after = ["--alone-after=2"]
    async with with_host(replica, agent, "meet", code, meet_url(code), "echo", alone_after) as (run, host):
        await in_call(run)
        await asyncio.sleep(2)
        assert "ended" not in run.kinds()  # a hidden bar is not the end of the call
        await host.leave()
        assert await run.wait(30) == ExitCode.COMPLETED
    assert run.last("ended")["reason"] == "alone"


async def test_5_meet_call_that_navigates_away_ends_within_5_s(
    replica: ReplicaServer, agent: StandInAgent
) -> None:
    code = meet_code()
    meet_options(replica, code, end_navigates_to="/")
    async with with_host(replica, agent, "meet", code, meet_url(code)) as (run, _):
        await in_call(run)
        await replica.room("meet", code).end()
        ended_at = time.monotonic()
        await run.wait_event("ended", 10)
        took = time.monotonic() - ended_at
        assert await run.wait(15) == ExitCode.COMPLETED
    assert run.last("ended")["reason"] == "call_ended"
    assert took < 5, took


async def test_6_and_16_popups_outside_dialogs_are_dismissed_and_leave_call_still_works(
    replica: ReplicaServer, agent: StandInAgent
) -> None:
    """A "Dismiss" card on a scrim before joining, a "Got it" card on a scrim over "Leave call" in the call:
    neither is a [role=dialog]; the bot clicks them away, joins, and leaves through "Leave call"."""
    code = meet_code()
    meet_options(replica, code, banner="both")
    room = replica.room("meet", code)
    polite = ["--name=Polite Bot"]
    async with with_host(replica, agent, "meet", code, meet_url(code), "echo", polite) as (run, _):
        await in_call(run)
        await asyncio.sleep(1)  # the "Got it" card came (and was clicked away while the bot watched)
        sent = time.monotonic()
        run.signal(signal.SIGTERM)
        await room.wait_for("Polite Bot", "left", 10)
        took = time.monotonic() - sent
        assert await run.wait(15) == ExitCode.COMPLETED
    assert ("goodbye", "Polite Bot") in [(e, n) for _, e, n in room.log], "left by closing the page"
    assert took < 5, took


async def test_7_recaptcha_while_joining_meet_is_captcha(
    replica: ReplicaServer, agent: StandInAgent, tmp_path: Path
) -> None:
    code = meet_code()
    replica.room("meet", code).configure(captcha=True)
    run = await JoinRun(meet_url(code), "echo", replica_env(replica, agent, artifacts_dir=tmp_path)).start()
    started = time.monotonic()
    await fails(run, "captcha", ExitCode.BOT_WALL)
    assert time.monotonic() - started < 30
    _, html = saved_page(run, tmp_path)
    assert "recaptcha" in html


# ---- Zoom web client ---------------------------------------------------------------------------------


@pytest.mark.parametrize("labels", ["sentence", "short", "audio"])
async def test_8_and_15_person_hears_the_agent_with_each_unmute_label(
    replica: ReplicaServer, agent: StandInAgent, labels: str
) -> None:
    """The call starts muted; the audio button says "unmute my microphone", "Unmute", or only "audio" (the
    state then shows in the icon and the word under it). The bot unmutes: the person hears the agent."""
    mid = zoom_id()
    zoom_options(replica, mid, audio_labels=labels, mic_starts_muted=True)
    async with with_host(replica, agent, "zoom", mid, zoom_url(mid), "tone-660") as (run, host):
        await in_call(run)
        started = await host.play_tone(440, 3.0)
        await asyncio.sleep(3.3)
        _, samples = await host.heard_since(started)
        await hang_up(run)
    reply = to_pcm(samples)
    reply = reply[len(reply) // 2 :]
    assert rms_dbfs(reply) > -45, f"the person did not hear the agent with the {labels!r} labels"
    assert abs(dominant_frequency(reply) - 660) < 15
    names = [(e, n) for _, e, n in replica.room("zoom", mid).log if n == "AI Agent"]
    assert names.index(("mic_on", "AI Agent")) > names.index(("mic_off", "AI Agent"))


async def test_9_preview_toggles_microphone_on_camera_off(
    replica: ReplicaServer, agent: StandInAgent
) -> None:
    mid = zoom_id()
    zoom_options(replica, mid, preview_audio_on=False, preview_video_on=True)
    async with with_host(replica, agent, "zoom", mid, zoom_url(mid)) as (run, _):
        await in_call(run)
        await hang_up(run)
    media = [e for _, e, n in replica.room("zoom", mid).log if n == "AI Agent" and e[:4] in ("mic_", "vide")]
    assert media[:2] == ["mic_on", "video_off"], media  # what the call started with


async def test_10_host_wait_second_wording_is_host_absent(
    replica: ReplicaServer, agent: StandInAgent, tmp_path: Path
) -> None:
    mid = zoom_id()
    replica.room("zoom", mid).config.host_present = False
    zoom_options(replica, mid, host_absent="wait", host_wait_text=HOST_WAIT_THE)
    env = {**replica_env(replica, agent, artifacts_dir=tmp_path), "BOT_CALL_HOST_ABSENT_TIMEOUT_S": "3"}
    run = await JoinRun(zoom_url(mid), "echo", env).start()
    await fails(run, "host_absent", ExitCode.HOST_ABSENT)
    assert "awaiting_admission" in run.kinds()
    _, html = saved_page(run, tmp_path)
    assert HOST_WAIT_THE in html


async def test_11_bot_wall_in_a_closed_shadow_root_is_cleared_by_a_reload(
    replica: ReplicaServer, agent: StandInAgent
) -> None:
    mid = zoom_id()
    replica.room("zoom", mid).configure(bot_wall=True, bot_wall_clears_after=1)
    zoom_options(replica, mid, bot_wall_style="shadow")
    async with with_host(replica, agent, "zoom", mid, zoom_url(mid)) as (run, _):
        await in_call(run)
        await hang_up(run)
    assert "reload" in run.stderr.decode().lower()


async def test_11_bot_wall_in_a_closed_shadow_root_that_stays_is_captcha(
    replica: ReplicaServer, agent: StandInAgent, tmp_path: Path
) -> None:
    mid = zoom_id()
    room = replica.room("zoom", mid)
    room.configure(bot_wall=True)
    zoom_options(replica, mid, bot_wall_style="shadow")
    run = await JoinRun(zoom_url(mid), "echo", replica_env(replica, agent, artifacts_dir=tmp_path)).start()
    failed = await fails(run, "captcha", ExitCode.BOT_WALL)
    assert "shadow" in failed["message"]
    assert len(room.events("refused:bot_wall")) == 3  # the first try and two reloads
    saved_page(run, tmp_path)


@pytest.mark.parametrize("style", ["container", "input", "recaptcha"])
async def test_11_new_captcha_forms_are_captcha(
    replica: ReplicaServer, agent: StandInAgent, tmp_path: Path, style: str
) -> None:
    mid = zoom_id()
    replica.room("zoom", mid).configure(captcha=True)
    zoom_options(replica, mid, captcha_style=style)
    run = await JoinRun(zoom_url(mid), "echo", replica_env(replica, agent, artifacts_dir=tmp_path)).start()
    await fails(run, "captcha", ExitCode.BOT_WALL)
    _, html = saved_page(run, tmp_path)
    assert {"container": "CaptchaContainer", "input": "Captcha code", "recaptcha": "recaptcha"}[style] in html


@pytest.mark.parametrize(("style", "reason"), [("navigate", "call_ended"), ("end_now", "call_ended")])
async def test_12_zoom_end_by_navigation_or_meeting_is_end_now(
    replica: ReplicaServer, agent: StandInAgent, style: str, reason: str
) -> None:
    mid = zoom_id()
    zoom_options(replica, mid, end_style=style, end_url="/postattendee")
    async with with_host(replica, agent, "zoom", mid, zoom_url(mid)) as (run, _):
        await in_call(run)
        await replica.room("zoom", mid).end()
        ended_at = time.monotonic()
        await run.wait_event("ended", 10)
        took = time.monotonic() - ended_at
        assert await run.wait(15) == ExitCode.COMPLETED
    assert run.last("ended")["reason"] == reason
    assert took < 5, took


@pytest.mark.parametrize(("query", "confirm", "goodbye"), [
    ("fromPWA=1", "standard", True),  # inside iframe#webclient: Leave, then "Leave Meeting", in the frame
    ("", "unknown", False),  # no known confirm button: the page is closed (never Enter, which cancels)
])  # fmt: skip
async def test_13_leave_through_the_frame_and_without_enter(
    replica: ReplicaServer, agent: StandInAgent, query: str, confirm: str, goodbye: bool
) -> None:
    mid = zoom_id()
    zoom_options(replica, mid, leave_confirm=confirm)
    room = replica.room("zoom", mid)
    url = f"https://app.zoom.us/wc/{mid}/join" + (f"?{query}" if query else "")
    async with with_host(replica, agent, "zoom", mid, url, "echo", ["--name=Leaving Bot"]) as (run, _):
        await in_call(run)
        sent = time.monotonic()
        run.signal(signal.SIGTERM)
        await room.wait_for("Leaving Bot", "left", 10)
        took = time.monotonic() - sent  # until the others see the bot gone (exit time: test_e2e's)
        assert await run.wait(15) == ExitCode.COMPLETED
    assert (("goodbye", "Leaving Bot") in [(e, n) for _, e, n in room.log]) is goodbye
    assert took < 5, took


@pytest.mark.parametrize("terms", ["disclaimer", "checkbox"])
async def test_14_terms_dialog_with_a_mask_on_load_is_accepted_first(
    replica: ReplicaServer, agent: StandInAgent, terms: str
) -> None:
    mid = zoom_id()
    zoom_options(replica, mid, terms_modal=terms)
    async with with_host(replica, agent, "zoom", mid, zoom_url(mid)) as (run, _):
        await in_call(run)
        await hang_up(run)


# ---- both platforms ------------------------------------------------------------------------------------


async def test_16_an_unknown_layer_over_the_page_is_ui_changed_naming_it(
    replica: ReplicaServer, agent: StandInAgent, tmp_path: Path
) -> None:
    code = meet_code()
    meet_options(replica, code, mystery_overlay=True)
    run = await JoinRun(meet_url(code), "echo", replica_env(replica, agent, artifacts_dir=tmp_path)).start()
    failed = await fails(run, "ui_changed", ExitCode.UI_CHANGED)
    assert "mystery-overlay" in failed["message"], failed["message"]
    _, html = saved_page(run, tmp_path)
    assert 'class="mystery-overlay"' in html


async def test_17_network_error_is_retried_then_joins(replica: ReplicaServer, agent: StandInAgent) -> None:
    mid = zoom_id()
    room = replica.room("zoom", mid)
    room.configure(network_down=True)
    async with with_host(replica, agent, "zoom", mid, zoom_url(mid)) as (run, _):
        await room.wait_until(lambda r: len(r.events("dropped_page_load")) >= 2, 30)
        room.configure(network_down=False)
        await in_call(run)
        await hang_up(run)


async def test_17_unreachable_host_is_network_error_naming_the_host(
    replica: ReplicaServer, agent: StandInAgent, tmp_path: Path
) -> None:
    """meet.google.com does not resolve (the host rules map nothing to it): Chromium's own error page."""
    env = {
        **replica_env(replica, agent, artifacts_dir=tmp_path),
        "BOT_BROWSER_HOST_RESOLVER_RULES": "MAP * ~NOTFOUND",
        "BOT_CALL_NETWORK_RETRY_S": "4",
    }
    run = await JoinRun(meet_url(meet_code()), "echo", env).start()
    started = time.monotonic()
    failed = await fails(run, "network_error", ExitCode.NETWORK_ERROR)
    assert 4 <= time.monotonic() - started < 40
    assert "meet.google.com" in failed["message"] and "ERR_NAME_NOT_RESOLVED" in failed["message"]
    saved_page(run, tmp_path)


async def test_19_unknown_screen_is_ui_changed_listing_its_buttons(
    replica: ReplicaServer, agent: StandInAgent, tmp_path: Path
) -> None:
    code = meet_code()
    meet_options(replica, code, unknown_screen=True)
    env = {**replica_env(replica, agent, artifacts_dir=tmp_path), "BOT_CALL_UI_STUCK_S": "3"}
    run = await JoinRun(meet_url(code), "echo", env).start()
    started = time.monotonic()
    failed = await fails(run, "ui_changed", ExitCode.UI_CHANGED)
    assert time.monotonic() - started < 40
    assert "Continue" in failed["message"] and "Try another way" in failed["message"], failed["message"]
    _, html = saved_page(run, tmp_path)
    assert "Verify it" in html
