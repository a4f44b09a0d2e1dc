"""The real `join` command against replicas whose entry checks are on.

With the defaults (headful Chromium on the bot's own Xvfb, human hands) the bot gets into Meet (lobby and
open room) and Zoom, with audio both ways; headless with synthesized input is refused, as the platforms
refuse it. A signed-in profile made by the replica's sign-in page joins Meet as its account; bots never
run on the profile itself; and no X server, Chromium or profile copy outlives a bot, however it ends.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import signal
import tempfile
from pathlib import Path

import pytest

from bot.audio.analysis import dominant_frequency, rms_dbfs
from bot.browser.display import VirtualDisplay
from bot.outcome import ExitCode
from bot.system.processes import descendants
from bot.testing.agent import StandInAgent
from bot.testing.participant import Participant, to_pcm
from bot.testing.replica.server import ReplicaServer
from tests.join_support import JoinRun, replica_env
from tests.test_profile import login_profile

pytestmark = [pytest.mark.pulse, pytest.mark.browser, pytest.mark.slow]

_ids = iter(range(10_000))


def new_meeting(platform: str) -> tuple[str, str]:
    n = next(_ids)
    if platform == "zoom":
        mid = str(84400000000 + n)
        return mid, f"https://us02web.zoom.us/j/{mid}"
    letters = "".join("abcdefghijklmnopqrstuvwxyz"[(n // 26**i) % 26] for i in range(3))
    mid = f"ent-{letters}y-{letters}"
    return mid, f"https://meet.google.com/{mid}"


async def host_in(replica: ReplicaServer, platform: str, mid: str) -> Participant:
    p = Participant(replica, platform, mid, name="Host", host=True)
    await p.start()
    return p


def checked_room(replica: ReplicaServer, platform: str, mid: str, **config: object) -> None:
    replica.room(platform, mid).configure(entry_check=True, **config)


def private_tmp() -> Path:
    """A TMPDIR of the bot's own, so the test sees every temporary dir it makes (and that none is left).
    Short: Chromium's socket paths under it must fit a unix socket address (108 bytes)."""
    return Path(tempfile.mkdtemp(prefix="t10-", dir="/tmp"))


def tree_digest(path: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file() and not p.is_symlink()):
        h.update(str(f.relative_to(path)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


@pytest.mark.parametrize(("platform", "lobby"), [("meet", True), ("meet", False), ("zoom", False)])
async def test_default_bot_passes_the_entry_checks_and_audio_flows_both_ways(
    replica: ReplicaServer, agent: StandInAgent, platform: str, lobby: bool
) -> None:
    mid, url = new_meeting(platform)
    checked_room(replica, platform, mid, lobby=lobby)
    host = await host_in(replica, platform, mid)
    run = await JoinRun(url, "tone-660", replica_env(replica, agent), ["--name=Checked Bot"]).start()
    try:
        if lobby:
            await run.wait_event("awaiting_admission", 40)
            await replica.room(platform, mid).admit("Checked Bot")  # the host admits the bot by name
        await run.wait_event("in_call", 40)
        await run.wait_event("agent_connected", 20)
        started = await host.play_tone(440, 3.0)
        await asyncio.sleep(3.3)
        _, samples = await host.heard_since(started)
        heard = to_pcm(samples)
        assert abs(dominant_frequency(bytes(agent.calls[-1].heard)) - 440) < 15
        reply = heard[len(heard) // 2 :]
        assert rms_dbfs(reply) > -45 and abs(dominant_frequency(reply) - 660) < 15
        run.signal(signal.SIGTERM)
        assert await run.wait(15) == ExitCode.COMPLETED
    finally:
        await run.close()
        await host.close()
    room = replica.room(platform, mid)
    _, report = next((n, r) for n, r in reversed(room.entry_reports) if n == "Checked Bot")
    assert set(report["findings"]) <= {"software_webgl"}, report
    assert not [e for _, e, n in room.log if n == "Checked Bot" and ("dropped" in e or "refused" in e)]


async def test_headless_bot_with_synthesized_input_is_refused_by_meet(
    replica: ReplicaServer, agent: StandInAgent, tmp_path: Path
) -> None:
    mid, url = new_meeting("meet")
    checked_room(replica, "meet", mid)
    host = await host_in(replica, "meet", mid)
    env = {
        **replica_env(replica, agent, artifacts_dir=tmp_path),
        "BOT_BROWSER_DISPLAY": "headless",
        "BOT_CALL_JOIN_RETRIES": "1",
        "BOT_CALL_JOIN_RETRY_DELAY_S": "0.2",
    }
    run = await JoinRun(url, "echo", env, ["--name=Headless Bot"]).start()
    try:
        assert await run.wait(90) == ExitCode.BLOCKED
    finally:
        await run.close()
        await host.close()
    assert [e.get("retry") for e in run.events if e["event"] == "joining"] == [None, 1]
    failed = run.last("failed")
    assert failed["code"] == "blocked"
    # The message names the two levers that help.
    assert "browser.profile_dir" in failed["message"] and "admit" in failed["message"], failed
    drops = [
        e for _, e, n in replica.room("meet", mid).log if n == "Headless Bot" and e == "dropped:entry_check"
    ]
    assert len(drops) == 2, "each attempt asked to join and was dropped"
    assert agent.calls == []


async def test_headless_bot_meets_zooms_bot_wall(replica: ReplicaServer, agent: StandInAgent) -> None:
    mid, url = new_meeting("zoom")
    checked_room(replica, "zoom", mid)
    host = await host_in(replica, "zoom", mid)
    env = {**replica_env(replica, agent), "BOT_BROWSER_DISPLAY": "headless"}
    run = await JoinRun(url, "echo", env, ["--name=Headless Bot"]).start()
    try:
        assert await run.wait(60) == ExitCode.BOT_WALL
    finally:
        await run.close()
        await host.close()
    assert run.last("failed")["code"] == "bot_detected"


async def test_signed_in_bot_joins_meet_as_its_account_on_a_copy_of_the_profile(
    replica: ReplicaServer, agent: StandInAgent, display: VirtualDisplay, tmp_path: Path
) -> None:
    profile = tmp_path / "profile"
    await login_profile(replica, display, profile)
    before = tree_digest(profile)
    mid, url = new_meeting("meet")
    # Guests wait in the lobby here; the account is let in directly ("Join now").
    checked_room(replica, "meet", mid, lobby=True, admit_signed_in=True)
    host = await host_in(replica, "meet", mid)
    tmp = private_tmp()
    env = {**replica_env(replica, agent), "BOT_BROWSER_PROFILE_DIR": str(profile), "TMPDIR": str(tmp)}
    run = await JoinRun(url, "echo", env, ["--name=Guest Name"]).start()
    try:
        await run.wait_event("in_call", 40)
        room = replica.room("meet", mid)
        assert [p.name for p in room.in_call()] == ["Host", "Signed Bot"]
        assert "awaiting_admission" not in run.kinds()
        # The bot's Chromium runs on a copy in its own temporary dir, never on the profile itself.
        copies = [p for p in tmp.iterdir() if p.name.startswith("bot-browser-")]
        assert len(copies) == 1 and (copies[0] / "profile" / "Default").is_dir()
        run.signal(signal.SIGTERM)
        assert await run.wait(15) == ExitCode.COMPLETED
        assert list(tmp.iterdir()) == [], "the profile copy and the display's files are gone"
    finally:
        await run.close()
        await host.close()
        shutil.rmtree(tmp, ignore_errors=True)
    assert tree_digest(profile) == before, "the original profile was not touched"
    events = [e for _, e, n in replica.room("meet", mid).log if n == "Signed Bot"]
    assert events[0] == "joined_signed_in", events


def survivors(pids: set[int]) -> list[int]:
    alive = []
    for pid in pids:
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                alive.append(pid)
        except OSError:
            continue
    return alive


def named(pids: set[int], name: bytes) -> set[int]:
    found = set()
    for pid in pids:
        try:
            if name in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]:
                found.add(pid)
        except OSError:
            continue
    return found


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
async def test_no_x_server_chromium_or_profile_copy_outlives_the_bot(
    replica: ReplicaServer, agent: StandInAgent, tmp_path: Path, sig: signal.Signals
) -> None:
    profile = tmp_path / "profile"
    (profile / "Default").mkdir(parents=True)
    (profile / "Local State").write_text("{}")
    mid, url = new_meeting("meet")
    checked_room(replica, "meet", mid)
    host = await host_in(replica, "meet", mid)
    tmp = private_tmp()
    env = {**replica_env(replica, agent), "BOT_BROWSER_PROFILE_DIR": str(profile), "TMPDIR": str(tmp)}
    run = await JoinRun(url, "echo", env).start()
    try:
        await run.wait_event("in_call", 40)
        children = descendants(run.pid)
        assert named(children, b"Xvfb") and named(children, b"chromium")
        assert {p.name.split("-")[1] for p in tmp.iterdir()} >= {"browser", "display"}
        run.signal(sig)
        await run.wait(15)
        for _ in range(100):
            if not survivors(children) and not any(tmp.iterdir()):
                break
            await asyncio.sleep(0.1)
        assert not survivors(children), f"processes outlived the bot: {survivors(children)}"
        assert [p.name for p in tmp.iterdir()] == [], "temporary dirs outlived the bot"
    finally:
        await run.close()
        await host.close()
        shutil.rmtree(tmp, ignore_errors=True)
