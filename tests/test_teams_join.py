"""Teams through the real `python -m bot join` against the Teams replica: what a user sees of each way a
Teams join goes (states, the `failed` code, the end reason, the exit code).

One replica server and one agent stand-in serve the module; each case has a meeting of its own and its own
bot process. Audio both ways is `tests/test_e2e.py`'s Teams test; these cases keep to short timeouts.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio

from bot.outcome import EndReason, ExitCode, FailureCode
from bot.testing.agent import StandInAgent
from bot.testing.participant import Participant
from bot.testing.replica.room import Room
from bot.testing.replica.server import ReplicaServer
from bot.testing.replica.teams_pages import TeamsPages, meet_url, meetup_join_url
from tests.adapter_support import replica_server, started, teams_thread
from tests.bridge_support import KEY
from tests.join_support import JoinRun, replica_env

pytestmark = [
    pytest.mark.pulse,
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.asyncio(loop_scope="module"),
]

NAME = "Teams Bot"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def replica() -> AsyncIterator[ReplicaServer]:
    """conftest's `replica`, kept for the module."""
    async with replica_server() as server:
        yield server


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def agent() -> AsyncIterator[StandInAgent]:
    """conftest's `agent`, kept for the module."""
    async with started(StandInAgent(KEY)) as a:
        yield a


@dataclass
class Meeting:
    """One case's meeting as its act sees it: the room, the bot's run and (when the case has one) a host."""

    room: Room
    run: JoinRun
    host: Participant | None


Act = Callable[[Meeting], Awaitable[None]]


async def in_call(m: Meeting) -> None:
    await m.run.wait_event("in_call", 45)


async def ends_call(m: Meeting) -> None:
    await in_call(m)
    await m.room.end()


async def admitted_then_ended(m: Meeting) -> None:
    await m.run.wait_event("awaiting_admission", 40)
    await m.room.wait_for(NAME, "waiting", 10)
    await m.room.admit(NAME)
    await ends_call(m)


async def denied(m: Meeting) -> None:
    await m.run.wait_event("awaiting_admission", 40)
    await m.room.wait_for(NAME, "waiting", 10)
    await m.room.deny(NAME)


async def waits(m: Meeting) -> None:
    """Nobody answers: the bot's own lobby timeout ends the wait."""
    await m.run.wait_event("awaiting_admission", 40)


async def teams_gives_up(m: Meeting) -> None:
    await m.run.wait_event("awaiting_admission", 40)
    await m.room.wait_for(NAME, "waiting", 10)
    await m.room.time_out_lobby(NAME)


async def nothing(m: Meeting) -> None:
    """The refusal comes at "Join now" or as the client loads: the bot fails on its own."""


async def removed(m: Meeting) -> None:
    await in_call(m)
    await m.room.remove(NAME)


async def host_leaves(m: Meeting) -> None:
    await in_call(m)
    assert m.host is not None
    await m.host.leave()


@dataclass(frozen=True)
class Case:
    act: Act
    exit_code: ExitCode
    failed: FailureCode | None = None
    ended: EndReason | None = None
    room: dict[str, Any] = field(default_factory=dict)  # RoomConfig fields
    options: dict[str, Any] = field(default_factory=dict)  # TeamsClientOptions fields
    env: dict[str, str] = field(default_factory=dict)
    host: bool = False  # a person (the host) in the call before the bot comes
    live_link: bool = False  # a teams.live.com/meet/<id>?p=<passcode> link, not a meetup-join one
    states: tuple[str, ...] = ()  # events that must come, in this order, before the end


CASES = {
    "lobby_then_admitted": Case(
        admitted_then_ended,
        ExitCode.COMPLETED,
        ended=EndReason.CALL_ENDED,
        room={"lobby": True},
        states=("joining", "awaiting_admission", "in_call"),
    ),
    "denied": Case(denied, ExitCode.DENIED, FailureCode.DENIED, room={"lobby": True}),
    "lobby_timeout": Case(
        waits,
        ExitCode.LOBBY_TIMEOUT,
        FailureCode.LOBBY_TIMEOUT,
        room={"lobby": True},
        env={"BOT_CALL_LOBBY_TIMEOUT_S": "3"},
    ),
    "teams_gives_up_in_the_lobby": Case(
        teams_gives_up, ExitCode.LOBBY_TIMEOUT, FailureCode.LOBBY_TIMEOUT, room={"lobby": True}
    ),
    "sign_in_redirect": Case(
        nothing,
        ExitCode.SIGN_IN_REQUIRED,
        FailureCode.SIGN_IN_REQUIRED,
        room={"sign_in_required": True},
        options={"sign_in": "redirect"},
    ),
    "captcha": Case(nothing, ExitCode.BOT_WALL, FailureCode.CAPTCHA, room={"captcha": True}),
    "removed": Case(removed, ExitCode.COMPLETED, ended=EndReason.REMOVED),
    "ended": Case(ends_call, ExitCode.COMPLETED, ended=EndReason.CALL_ENDED),
    "alone": Case(
        host_leaves, ExitCode.COMPLETED, ended=EndReason.ALONE, env={"BOT_CALL_ALONE_AFTER_S": "2"}, host=True
    ),
    "modal_after_join_now": Case(
        ends_call,
        ExitCode.COMPLETED,
        ended=EndReason.CALL_ENDED,
        options={"av_modal": "after"},
        states=("joining", "in_call"),
    ),
    "teams_live_link": Case(ends_call, ExitCode.COMPLETED, ended=EndReason.CALL_ENDED, live_link=True),
}


def live_id(tag: str) -> str:
    return str(9378000000000 + int(hashlib.sha256(tag.encode()).hexdigest()[:8], 16) % 1000000)


@pytest.mark.parametrize("name", CASES)
async def test_teams_join(replica: ReplicaServer, agent: StandInAgent, name: str) -> None:
    case = CASES[name]
    passcode = "Jn7Pq2w"
    if case.live_link:
        mid = live_id(name)
        url = meet_url(mid, passcode)
        replica.room("teams", mid).configure(passcode=passcode, **case.room)
    else:
        mid = teams_thread(name)
        url = meetup_join_url(mid)
        replica.room("teams", mid).configure(**case.room)
    pages = next(p for p in replica.pages if isinstance(p, TeamsPages))
    pages.configure(mid, **case.options)
    host = None
    if case.host:
        host = Participant(replica, "teams", mid, name="Host", host=True, passcode=passcode)
        await host.start()
    env = {**replica_env(replica, agent), **case.env}
    run = await JoinRun(url, "echo", env, [f"--name={NAME}"]).start()
    try:
        await case.act(Meeting(replica.room("teams", mid), run, host))
        assert await run.wait(30) == case.exit_code, run.stderr_tail()
    finally:
        await run.close()
        if host is not None:
            await host.close()
    kinds = run.kinds()
    assert run.last("joining")["platform"] == "teams"
    assert run.last("summary")["exit_code"] == case.exit_code
    if case.failed is not None:
        assert run.last("failed")["code"] == case.failed, run.last("failed")
        assert "in_call" not in kinds and "ended" not in kinds, kinds
    if case.ended is not None:
        assert run.last("ended")["reason"] == case.ended, run.last("ended")
        assert "failed" not in kinds, kinds
    seen = [k for k in kinds if k in case.states]
    assert [k for i, k in enumerate(seen) if k not in seen[:i]] == list(case.states), kinds
    if case.live_link:
        assert run.last("joining")["meeting_id"] == mid
        assert passcode not in str(run.events) and passcode not in run.stderr.decode()
