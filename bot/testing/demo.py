"""The offline demo: a local meeting replica (Meet, Zoom or Teams), a simulated person who speaks, the local
agent stand-in that answers with speech, and the real bot session in between. Needs no key and no internet.

The bot runs through the same `BotSession` as `join`; only its configuration points at local stand-ins
(host mapping and certificate trust for the replica, the stand-in's URL and key, loopback ICE).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

from bot.agent.millis import MillisEndpoint
from bot.audio.analysis import onsets
from bot.audio.frames import SAMPLE_RATE
from bot.call.config import SessionConfig
from bot.call.session import BotSession
from bot.call.stop_signals import leave_on_signal
from bot.events import EventBus, JsonLinesPrinter, TerminalPrinter
from bot.meeting_urls import masked, parse_meeting_url
from bot.outcome import ExitCode
from bot.settings import Settings
from bot.testing.agent import StandInAgent
from bot.testing.participant import Participant, to_pcm
from bot.testing.replica.server import ReplicaServer
from bot.testing.speech import speech_pcm, wav_bytes

DEMO_KEY = "demo-local-stand-in-key"  # checked by the local stand-in only; not a Millis key
# One meeting per platform, each in the form its invitations give (the Teams one with its passcode).
MEETING_URLS = {
    "meet": "https://meet.google.com/dem-oabc-xyz",
    "zoom": "https://us02web.zoom.us/j/83360000001",
    "teams": "https://teams.live.com/meet/9336000000001?p=Demo4Tms",
}
PLATFORM_NAMES = {"meet": "Meet", "zoom": "Zoom", "teams": "Teams"}
PERSON = "Alex (simulated person)"
PERSON_SAYS = "Hello agent. Can you hear me?"
AGENT_SAYS = "Hello, I am the meeting agent. I can hear you well."
HEARD_DBFS = -40.0  # the person's capture counts as hearing the agent above this level


class DemoFailed(RuntimeError):
    """A step of the demo did not happen in time; the message says which."""


@dataclass
class Timeline:
    spoke_at: float = 0.0  # all times: time.monotonic()
    spoke_s: float = 0.0
    agent_heard_at: float | None = None
    agent_answered_at: float | None = None
    person_heard_at: float | None = None

    def lines(self) -> list[str]:
        def at(t: float | None) -> str:
            return "   —  " if t is None else f"{t - self.spoke_at:6.2f}"

        def gap(t: float | None, since: float | None, what: str) -> str:
            if t is None or since is None:
                return ""
            return f"  ({(t - since) * 1000:.0f} ms {what})"

        spoke_end = self.spoke_at + self.spoke_s
        heard = gap(self.agent_heard_at, self.spoke_at, "mouth to agent")
        answered = gap(self.agent_answered_at, spoke_end, "after the person stopped")
        ear = gap(self.person_heard_at, self.agent_answered_at, "agent to ear")
        return [
            "timeline (seconds after the person started speaking):",
            f"  {at(self.spoke_at)}  person spoke           {PERSON_SAYS!r} ({self.spoke_s:.1f} s)",
            f"  {at(self.agent_heard_at)}  agent heard it{heard}",
            f"  {at(self.agent_answered_at)}  agent answered{answered}",
            f"  {at(self.person_heard_at)}  person heard the agent{ear}",
        ]


def demo_settings(server: ReplicaServer, agent: StandInAgent, base: Settings) -> Settings:
    """The user's settings with the agent and the meeting pointed at the local stand-ins."""
    return dataclasses.replace(
        base,
        agent=dataclasses.replace(
            base.agent,
            agent_id="speak",
            url=agent.base_url,
            private_key=DEMO_KEY,
            ice_servers=[],
            ice_host_addresses=["127.0.0.1"],
        ),
        browser=server.browser_section(base.browser),
    )


def _monotonic(wall: float) -> float:
    """A `time.time()` instant as `time.monotonic()` (the agent stand-in's clock)."""
    return wall - (time.time() - time.monotonic())


async def _until(what: str, timeout: float, check: Callable[[], object]) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise DemoFailed(f"{what} did not happen within {timeout:.0f} s")
        await asyncio.sleep(0.1)


async def _converse(
    server: ReplicaServer, agent: StandInAgent, person: Participant, bot_name: str
) -> Timeline:
    room = server.room(person.platform, person.meeting_id)
    # The person is the host: the bot knocks and the host lets it in, as in a real call.
    await room.wait_for(bot_name, "waiting", 60)
    await asyncio.sleep(1.5)  # a person takes a moment to click Admit
    await room.admit(bot_name)
    await _until("the agent connecting", 30, lambda: agent.calls)
    await asyncio.sleep(1.0)  # let both media paths settle before speaking

    timeline = Timeline()
    speech = speech_pcm(PERSON_SAYS)
    await person.sync_clock()
    page_start = await person.play_wav(wav_bytes(speech))
    timeline.spoke_at = _monotonic(person.wall_time(page_start))
    timeline.spoke_s = len(speech) / (2 * SAMPLE_RATE)
    call = agent.calls[-1]
    await _until("the agent answering", 30, lambda: call.answer_started_at is not None)
    timeline.agent_heard_at = call.first_onset_since(timeline.spoke_at)
    timeline.agent_answered_at = call.answer_started_at
    await asyncio.sleep(2.5)  # the answer travels back and is heard
    start, samples = await person.heard_since(page_start + timeline.spoke_s)
    found = onsets(to_pcm(samples), threshold_dbfs=HEARD_DBFS)
    if found:
        timeline.person_heard_at = _monotonic(person.wall_time(start + found[0]))
    return timeline


async def run_demo(
    out: TextIO,
    json_events: bool = False,
    stay: bool = False,
    base: Settings | None = None,
    platform: str = "meet",
) -> int:
    """Runs the demo on `platform`'s replica and returns the exit code (0 when the person heard the agent
    and the bot ended)."""
    base = base or Settings()
    url = MEETING_URLS[platform]
    async with contextlib.AsyncExitStack() as stack:
        server = ReplicaServer()
        await server.start()
        stack.push_async_callback(server.close)
        agent = StandInAgent(DEMO_KEY, speech_text=AGENT_SAYS)
        await agent.start()
        stack.push_async_callback(agent.close)
        settings = demo_settings(server, agent, base)
        meeting = parse_meeting_url(url)
        room = server.room(platform, meeting.meeting_id)
        room.configure(lobby=True, passcode=meeting.passcode or "")
        person = Participant(
            server, platform, meeting.meeting_id, name=PERSON, host=True, passcode=meeting.passcode or ""
        )
        await person.start()
        stack.push_async_callback(person.close)

        where = f"a local {PLATFORM_NAMES[platform]} replica at {masked(url)}"
        print(f"demo: {where}, {PERSON} as host,", file=out)
        print(
            f"demo: the local agent stand-in answering with speech, the bot as {settings.bot.name!r}",
            file=out,
        )
        bus = EventBus()
        bus.subscribe(JsonLinesPrinter(out) if json_events else TerminalPrinter(out))
        session = BotSession(
            SessionConfig.from_settings(settings),
            meeting,
            MillisEndpoint(settings.agent.millis_config()),
            bus,
        )
        with leave_on_signal(session.stop):
            bot = asyncio.create_task(session.run(), name="bot-session")
            timeline: Timeline | None = None
            problem = ""
            try:
                timeline = await _converse(server, agent, person, settings.bot.name)
            except DemoFailed as e:
                problem = str(e)
            if timeline is not None:
                for line in timeline.lines():
                    print(line, file=out)
            heard = timeline is not None and timeline.person_heard_at is not None
            print(f"result: participant heard the agent: {'yes' if heard else 'no'}", file=out)
            if problem:
                print(f"demo: {problem}", file=out)
            if stay and not bot.done():
                print("demo: the bot stays in the call; Ctrl+C (or SIGTERM) makes it leave", file=out)
            elif not bot.done():
                await room.end()  # the host ends the meeting
            outcome = await bot
        out.flush()
    if outcome.exit_code is not ExitCode.COMPLETED:
        return int(outcome.exit_code)
    return 0 if heard else 1
