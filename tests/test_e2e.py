"""End to end: the real `join` command in a replica meeting with the agent stand-in and a simulated person.

Each test asserts what a user checks: what the person and the agent heard, the events and summary the bot
printed, its exit code, the webhook deliveries, and that the bot left the room.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path

import pytest

from bot.audio.analysis import dominant_frequency, rms_dbfs
from bot.browser.levers import LEAN_NODE_OPTIONS
from bot.outcome import ExitCode
from bot.system.processes import descendants, environ
from bot.testing.agent import StandInAgent
from bot.testing.measure import component
from bot.testing.participant import Participant, to_pcm
from bot.testing.replica.meet_pages import MeetClientOptions, MeetPages
from bot.testing.replica.server import ReplicaServer
from bot.testing.speech import speech_pcm, wav_bytes
from tests.bridge_support import KEY
from tests.conftest import bot_temp_dirs
from tests.join_support import JoinRun, replica_env
from tests.png_support import distinct_colours
from tests.webhook_receiver import WebhookReceiver

pytestmark = [pytest.mark.pulse, pytest.mark.browser, pytest.mark.slow]

URLS = {
    "meet": "https://meet.google.com/{id}",
    "zoom": "https://us02web.zoom.us/j/{id}",
}
_ids = iter(range(10_000))


def meet_id() -> str:
    n = next(_ids)
    letters = "".join("abcdefghijklmnopqrstuvwxyz"[(n // 26**i) % 26] for i in range(3))
    return f"eee-{letters}e-{letters}"


def new_meeting(platform: str) -> tuple[str, str]:
    mid = meet_id() if platform == "meet" else str(81234560000 + next(_ids))
    return mid, URLS[platform].format(id=mid)


async def person(replica: ReplicaServer, platform: str, mid: str, name: str = "Host") -> Participant:
    p = Participant(replica, platform, mid, name=name, host=True)
    await p.start()
    return p


async def in_call(run: JoinRun) -> None:
    await run.wait_event("in_call", 40)
    await run.wait_event("agent_connected", 20)


@pytest.mark.parametrize("platform", ["meet", "zoom"])
async def test_person_and_agent_hear_each_other_then_host_ends(
    replica: ReplicaServer, agent: StandInAgent, platform: str
) -> None:
    mid, url = new_meeting(platform)
    host = await person(replica, platform, mid)
    hook = WebhookReceiver("hook-secret")
    await hook.start()
    env = {**replica_env(replica, agent), "BOT_WEBHOOK_SECRET": "hook-secret"}
    run = await JoinRun(url, "tone-660", env, ["--name=Agent Bot", f"--webhook={hook.url}"]).start()
    try:
        await in_call(run)
        calls_before = len(agent.calls)
        started = await host.play_tone(440, 3.0)
        await asyncio.sleep(3.3)
        _, samples = await host.heard_since(started)
        heard = to_pcm(samples)
        call = agent.calls[-1]
        assert len(agent.calls) == calls_before  # one agent session, opened at admission
        assert abs(dominant_frequency(bytes(call.heard)) - 440) < 15, call.summary()
        reply = heard[len(heard) // 2 :]
        assert rms_dbfs(reply) > -45
        assert abs(dominant_frequency(reply) - 660) < 15
        await replica.room(platform, mid).end()
        assert await run.wait(20) == ExitCode.COMPLETED
    finally:
        await run.close()
        await host.close()
        await hook.close()
    assert run.kinds()[:4] == ["joining", "in_call", "agent_connected", "ended"] or run.kinds()[:5] == [
        "joining",
        "awaiting_admission",
        "in_call",
        "agent_connected",
        "ended",
    ]
    assert run.last("ended")["reason"] == "host_ended"
    summary = run.last("summary")
    assert summary["exit_code"] == 0 and summary["bytes_to_agent"] > 0 and summary["bytes_from_agent"] > 0
    assert summary["ended_by"] == "meeting"
    # Every event reached the webhook exactly once, signed (the receiver rejects bad signatures).
    assert hook.bad_signatures == 0
    assert hook.ids == [e["id"] for e in run.events]
    assert KEY not in run.stderr.decode() and KEY not in str(run.events)


async def test_lobby_then_admitted_never_reports_in_call_before_admission(
    replica: ReplicaServer, agent: StandInAgent
) -> None:
    mid, url = new_meeting("meet")
    room = replica.room("meet", mid)
    room.config.lobby = True
    host = await person(replica, "meet", mid)
    run = await JoinRun(url, "echo", replica_env(replica, agent), ["--name=Lobby Bot"]).start()
    try:
        await run.wait_event("awaiting_admission", 40)
        calls = len(agent.calls)
        await asyncio.sleep(2)
        assert "in_call" not in run.kinds()
        assert len(agent.calls) == calls, "the agent was connected while the bot waited in the lobby"
        await room.admit("Lobby Bot")
        await in_call(run)
        assert await run.stop(signal.SIGINT, 10) == ExitCode.COMPLETED
    finally:
        await run.close()
        await host.close()
    assert run.kinds()[:4] == ["joining", "awaiting_admission", "in_call", "agent_connected"]
    assert run.last("summary")["lobby_s"] >= 2


@pytest.mark.parametrize("platform", ["meet", "zoom"])
async def test_removed_by_host(replica: ReplicaServer, agent: StandInAgent, platform: str) -> None:
    mid, url = new_meeting(platform)
    host = await person(replica, platform, mid)
    run = await JoinRun(url, "echo", replica_env(replica, agent), ["--name=Removed Bot"]).start()
    try:
        await in_call(run)
        await replica.room(platform, mid).remove("Removed Bot")
        assert await run.wait(20) == ExitCode.COMPLETED
    finally:
        await run.close()
        await host.close()
    assert run.last("ended")["reason"] == "removed"
    assert run.last("summary")["ended_by"] == "meeting"


async def test_teams_link_through_the_launcher_agent_heard_and_no_passcode_anywhere(
    replica: ReplicaServer, agent: StandInAgent
) -> None:
    """Teams end to end: a /meet/ link (its passcode in the link), the launcher, the light client, the
    person hears the agent through the bot's microphone and the agent hears the person; the meeting id in
    the events is the number and the passcode is in no event and no line of the log."""
    mid, passcode = "9377000000001", "Zq8Pc4x"
    replica.room("teams", mid).configure(passcode=passcode)
    host = Participant(replica, "teams", mid, name="Host", host=True, passcode=passcode)
    await host.start()
    url = f"https://teams.live.com/meet/{mid}?p={passcode}"
    run = await JoinRun(url, "tone-660", replica_env(replica, agent), ["--name=Teams Bot"]).start()
    try:
        await in_call(run)
        started = await host.play_tone(440, 3.0)
        await asyncio.sleep(3.3)
        _, samples = await host.heard_since(started)
        reply = to_pcm(samples)[len(to_pcm(samples)) // 2 :]
        assert abs(dominant_frequency(bytes(agent.calls[-1].heard)) - 440) < 15
        assert rms_dbfs(reply) > -45 and abs(dominant_frequency(reply) - 660) < 15
        await replica.room("teams", mid).end()
        assert await run.wait(20) == ExitCode.COMPLETED
    finally:
        await run.close()
        await host.close()
    joining = run.last("joining")
    assert (joining["platform"], joining["meeting_id"]) == ("teams", mid)
    assert run.last("ended")["reason"] == "call_ended"
    assert passcode not in str(run.events) and passcode not in run.stderr.decode()


async def test_alone_after_everyone_left(replica: ReplicaServer, agent: StandInAgent) -> None:
    mid, url = new_meeting("zoom")
    host = await person(replica, "zoom", mid)
    run = await JoinRun(url, "echo", replica_env(replica, agent), ["--alone-after=2"]).start()
    try:
        await in_call(run)
        await host.close()
        left_at = time.monotonic()
        assert await run.wait(30) == ExitCode.COMPLETED
        assert time.monotonic() - left_at < 15
    finally:
        await run.close()
        await host.close()
    assert run.last("ended")["reason"] == "alone"
    assert run.last("summary")["ended_by"] == "bot"


async def test_maximum_duration(replica: ReplicaServer, agent: StandInAgent) -> None:
    mid, url = new_meeting("meet")
    host = await person(replica, "meet", mid)
    run = await JoinRun(url, "echo", replica_env(replica, agent), ["--max-duration=4"]).start()
    try:
        await in_call(run)
        assert await run.wait(30) == ExitCode.COMPLETED
        room = replica.room("meet", mid)
        assert all(p.state != "in_call" for p in room.participants if not p.is_host)
    finally:
        await run.close()
        await host.close()
    assert run.last("ended")["reason"] == "max_duration"


@pytest.mark.parametrize("platform", ["meet", "zoom"])
async def test_sigterm_leaves_the_meeting_and_exits_0_within_5_s(
    replica: ReplicaServer, agent: StandInAgent, platform: str
) -> None:
    mid, url = new_meeting(platform)
    host = await person(replica, platform, mid)
    run = await JoinRun(url, "echo", replica_env(replica, agent), ["--name=Term Bot"]).start()
    try:
        await in_call(run)
        sent = time.monotonic()
        assert await run.stop() == ExitCode.COMPLETED
        took = time.monotonic() - sent
        room = replica.room(platform, mid)
        state = {p.name: p.state for p in room.participants}
    finally:
        await run.close()
        await host.close()
    assert took < 5, f"exit took {took:.1f} s"
    assert state["Term Bot"] == "left", state
    assert run.last("ended")["reason"] == "left"
    assert run.last("summary")["ended_by"] == "user"


async def test_agent_refuses_the_key(replica: ReplicaServer, agent: StandInAgent, tmp_path: Path) -> None:
    mid, url = new_meeting("meet")
    host = await person(replica, "meet", mid)
    env = replica_env(replica, agent, key="sk-wrong-key-000", artifacts_dir=tmp_path)
    run = await JoinRun(url, "echo", env, ["--name=Keyless Bot"]).start()
    try:
        assert await run.wait(40) == ExitCode.BAD_KEY
        state = {p.name: p.state for p in replica.room("meet", mid).participants}
    finally:
        await run.close()
        await host.close()
    failed = run.last("failed")
    assert failed["code"] == "bad_key"
    assert "MILLIS_PRIVATE_KEY" in failed["message"] or "key" in failed["message"].lower()
    assert "sk-wrong-key-000" not in run.stderr.decode() + str(run.events)
    assert state.get("Keyless Bot") in ("left", None), state
    assert run.last("summary")["exit_code"] == ExitCode.BAD_KEY
    assert failed["artifacts"] == [], "a page screenshot saved for an agent failure"


async def test_agent_hangs_up_and_the_bot_reconnects(replica: ReplicaServer, agent: StandInAgent) -> None:
    mid, url = new_meeting("meet")
    host = await person(replica, "meet", mid)
    run = await JoinRun(url, "hangup-after-2", replica_env(replica, agent)).start()
    try:
        await in_call(run)
        await run.wait_event("agent_reconnecting", 20)
        deadline = time.monotonic() + 20
        while [e["event"] for e in run.events].count("agent_connected") < 2:
            assert time.monotonic() < deadline, run.kinds()
            await asyncio.sleep(0.2)
        assert await run.stop() == ExitCode.COMPLETED
    finally:
        await run.close()
        await host.close()
    assert run.last("summary")["reconnects"] >= 1


def chromium_of(pid: int) -> int:
    """The main Chromium process among `pid`'s descendants (the one without --type=)."""
    for child in sorted(descendants(pid)):
        try:
            argv = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"chromium" in argv[0] and not any(a.startswith(b"--type=") for a in argv):
            return child
    raise AssertionError(f"no Chromium under {pid}")


async def test_a_bot_in_a_call_runs_the_lean_levers(replica: ReplicaServer, agent: StandInAgent) -> None:
    """What `join` starts with the default `browser.lean`: one page renderer (no spare renderer, no WebUI
    page) and Playwright's driver with its small young generation (bot.browser.levers)."""
    mid, url = new_meeting("meet")
    host = await person(replica, "meet", mid)
    run = await JoinRun(url, "echo", replica_env(replica, agent)).start()
    try:
        await in_call(run)
        await asyncio.sleep(2.0)  # Chromium starts a spare renderer once a navigation has settled
        kind_of = {pid: component(pid) for pid in descendants(run.pid)}
        kinds = list(kind_of.values())
        drivers = [pid for pid, kind in kind_of.items() if kind == "Playwright driver (node)"]
        driver_env = environ(drivers[0]) if drivers else {}
        assert await run.stop() == ExitCode.COMPLETED
    finally:
        await run.close()
        await host.close()
    assert kinds.count("chromium page (renderer)") == 1 and "chromium WebUI renderer" not in kinds, kinds
    assert len(drivers) == 1
    assert LEAN_NODE_OPTIONS in driver_env.get("NODE_OPTIONS", "").split(), driver_env.get("NODE_OPTIONS")


async def test_browser_crash_in_the_call_is_reported_and_cleaned_up(
    replica: ReplicaServer, agent: StandInAgent
) -> None:
    mid, url = new_meeting("zoom")
    host = await person(replica, "zoom", mid)
    run = await JoinRun(url, "echo", replica_env(replica, agent)).start()
    try:
        await in_call(run)
        os.kill(chromium_of(run.pid), signal.SIGKILL)
        assert await run.wait(20) == ExitCode.CRASHED
    finally:
        await run.close()
        await host.close()
    failed = run.last("failed")
    assert failed["code"] == "browser_crashed", failed
    assert run.last("summary")["exit_code"] == ExitCode.CRASHED


async def test_blocked_join_is_retried_then_reported(
    replica: ReplicaServer, agent: StandInAgent, tmp_path: Path
) -> None:
    mid, url = new_meeting("meet")
    room = replica.room("meet", mid)
    room.configure(blocked=True)
    host = await person(replica, "meet", mid)
    env = {
        **replica_env(replica, agent, artifacts_dir=tmp_path),
        "BOT_CALL_JOIN_RETRY_DELAY_S": "0.2",
        "BOT_CALL_JOIN_RETRIES": "2",
    }
    run = await JoinRun(url, "echo", env, ["--name=Blocked Bot"]).start()
    try:
        assert await run.wait(60) == ExitCode.BLOCKED
    finally:
        await run.close()
        await host.close()
    assert [e.get("retry") for e in run.events if e["event"] == "joining"] == [None, 1, 2]
    assert run.last("failed")["code"] == "blocked"
    saved = [Path(a) for a in run.last("failed")["artifacts"]]
    assert {p.suffix for p in saved} >= {".png", ".html"} and all(p.parent == tmp_path for p in saved)
    assert "join this video call" in next(p for p in saved if p.suffix == ".html").read_text()
    refusals = [event for _, event, name in room.log if name == "Blocked Bot" and event.startswith("refused")]
    assert len(refusals) == 3, room.log
    assert agent.calls == [], "the agent was connected although the bot never got in"


async def test_own_lobby_bound_saves_the_lobby_page_then_withdraws(
    replica: ReplicaServer, agent: StandInAgent, tmp_path: Path
) -> None:
    """The bot gives up on its own lobby bound: the screenshot and HTML it reports show the lobby it waited
    in (saved before it withdrew the request, not the blank page after), and the host is no longer asked."""
    mid, url = new_meeting("meet")
    room = replica.room("meet", mid)
    room.config.lobby = True
    host = await person(replica, "meet", mid)
    env = {**replica_env(replica, agent, artifacts_dir=tmp_path), "BOT_CALL_LOBBY_TIMEOUT_S": "2"}
    run = await JoinRun(url, "echo", env, ["--name=Patient Bot"]).start()
    try:
        assert await run.wait(60) == ExitCode.LOBBY_TIMEOUT
        await room.wait_for("Patient Bot", "left", 5)  # it withdrew the request
    finally:
        await run.close()
        await host.close()
    failed = run.last("failed")
    assert failed["code"] == "lobby_timeout", failed
    saved = [Path(a) for a in failed["artifacts"]]
    assert all(p.parent == tmp_path for p in saved), saved
    (png,) = (p for p in saved if p.suffix == ".png")
    (html,) = (p for p in saved if p.suffix == ".html" and ".frame" not in p.name)  # the page, not a frame
    assert "Asking to be let in" in html.read_text()
    # A blank page is one colour; the lobby's text, tile and buttons are many.
    assert distinct_colours(png) > 20
    assert agent.calls == []


async def test_speech_both_ways_with_the_clients_audio_processing_on(
    replica: ReplicaServer, agent: StandInAgent
) -> None:
    """Real Meet keeps echo cancellation, noise suppression and auto gain on in the bot's browser: the
    agent must still hear the person's words and the person the agent's (no echo-cancelled agent)."""
    mid, url = new_meeting("meet")
    meet = next(p for p in replica.pages if p.platform == "meet")
    assert isinstance(meet, MeetPages)
    meet.options[mid] = MeetClientOptions(audio_processing=True)
    host = await person(replica, "meet", mid)
    run = await JoinRun(url, "speak", replica_env(replica, agent)).start()
    try:
        await in_call(run)
        await asyncio.sleep(1)
        speech = speech_pcm("Hello agent. Can you hear me?")
        started = await host.play_wav(wav_bytes(speech))
        call = agent.calls[-1]
        deadline = time.monotonic() + 20
        while call.answer_started_at is None:
            assert time.monotonic() < deadline, "the agent never answered: it did not hear the person"
            await asyncio.sleep(0.1)
        await asyncio.sleep(4)  # the agent's sentence (~3.7 s) and its way back
        _, samples = await host.heard_since(started + len(speech) / 96_000)
        assert await run.stop() == ExitCode.COMPLETED
    finally:
        await run.close()
        await host.close()
    assert rms_dbfs(bytes(call.heard)) > -50, call.summary()
    answer = to_pcm(samples)
    loud = [answer[i : i + 1920] for i in range(0, len(answer) - 1920, 1920)]
    speaking = [f for f in loud if rms_dbfs(f) > -45]
    assert len(speaking) > 50, f"the person heard {len(speaking)} speech frames of the agent"


def _survivors(pids: set[int]) -> dict[int, bytes]:
    """The command lines of those `pids` still alive (zombies count as gone)."""
    alive = {}
    for pid in pids:
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                alive[pid] = Path(f"/proc/{pid}/cmdline").read_bytes()[:80]
        except OSError:
            continue
    return alive


async def test_a_bot_killed_outright_takes_its_browser_and_pulseaudio_with_it(
    replica: ReplicaServer, agent: StandInAgent
) -> None:
    """SIGKILL (a supervisor's last resort) runs none of the bot's cleanup: its PulseAudio daemon and
    Chromium must still go, not linger as orphans."""
    mid, url = new_meeting("meet")
    dirs_before = bot_temp_dirs()
    host = await person(replica, "meet", mid)
    run = await JoinRun(url, "echo", replica_env(replica, agent)).start()
    try:
        await in_call(run)
        children = descendants(run.pid)
        assert chromium_of(run.pid) in children
        run.signal(signal.SIGKILL)
        await run.wait(10)
        for _ in range(100):  # up to 10 s
            left = _survivors(children)
            if not left:
                break
            await asyncio.sleep(0.1)
    finally:
        await run.close()
        await host.close()
        # The killed bot could not remove its temporary dirs (nothing can, after SIGKILL): this test does.
        for name in bot_temp_dirs() - dirs_before:
            shutil.rmtree(Path(tempfile.gettempdir()) / name, ignore_errors=True)
    assert not left, f"processes outlived the killed bot: {left}"
