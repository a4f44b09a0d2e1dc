"""One bot's life: devices → browser → join → agent (at admission) → bridge → end → leave → teardown.

Teardown runs in reverse order on every path. The agent is connected only once the bot is in the call:
no agent minutes are spent in a lobby and no stale audio is sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.agent.base import AgentEndpoint
from bot.agent.errors import AgentError
from bot.aio import cancel_and_wait, first_of
from bot.audio.devices import AudioDevices, BrowserAudio
from bot.bridge import Bridge, BridgeEvent
from bot.browser.launch import BotBrowser
from bot.call.audio_recovery import AudioGuard, AudioLostError
from bot.call.config import SessionConfig
from bot.events import (
    AgentConnected,
    AgentReconnecting,
    AwaitingAdmission,
    EventBus,
    Failed,
    InCall,
    Joining,
    RecordingStopped,
    Stats,
    Summary,
)
from bot.events import Ended as EndedEvent
from bot.meeting_urls import MeetingUrl
from bot.outcome import CallState, EndedBy, EndReason, ExitCode, FailureCode, RunFailureCode, exit_code_for
from bot.platforms import platform_class
from bot.platforms.base import JoinFailure, Platform

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    exit_code: ExitCode
    reason: str  # an EndReason or a failure code
    summary: Summary | None = None  # set once the session has torn down


class BotSession:
    """Runs one bot in one meeting. `run()` returns an `Outcome`; `stop()` asks it to leave."""

    def __init__(
        self,
        config: SessionConfig,
        meeting: MeetingUrl,
        endpoint: AgentEndpoint,
        bus: EventBus,
        devices: AudioDevices | None = None,
    ) -> None:
        self.config = config
        self.meeting = meeting
        self.endpoint = endpoint
        self.bus = bus
        self.devices = devices or AudioDevices.from_env()
        self._stop = asyncio.Event()
        self._browser: BotBrowser | None = None
        self._platform: Platform | None = None
        self._bridge: Bridge | None = None
        self._bridge_lost = asyncio.Event()
        self._audio_guard: AudioGuard | None = None  # from the bridge's start: rebuilds failed audio
        self._state = CallState.JOINING
        self._times: dict[str, float] = {"started": time.monotonic()}
        self._ended_by: EndedBy | None = None

    @property
    def state(self) -> CallState:
        return self._state

    def stop(self) -> None:
        """Ask the bot to leave the meeting and end (safe from a signal handler)."""
        self._stop.set()

    async def run(self) -> Outcome:
        outcome: Outcome | None = None
        try:
            outcome = await self._run()
        except JoinFailure as failure:
            outcome = await self._failed(
                failure.code.value,
                str(failure.message),
                exit_code_for(failure.code),
                failure.artifacts,
            )
        except AgentError as e:
            outcome = await self._failed(e.code, str(e), exit_code_for(e.code))
        except AudioLostError as e:
            outcome = await self._failed(e.code, str(e), ExitCode.CRASHED)
        except asyncio.CancelledError:
            outcome = Outcome(ExitCode.CRASHED, RunFailureCode.CANCELLED)
            raise
        except Exception as e:
            log.exception("bot session crashed")
            code = FailureCode.BROWSER_CRASHED.value if _is_browser_gone(e) else RunFailureCode.CRASHED.value
            outcome = await self._failed(code, f"{type(e).__name__}: {e}", ExitCode.CRASHED)
        finally:
            await self._teardown()
            if outcome is not None:
                outcome.summary = self._summary(outcome)
                self.bus.emit(outcome.summary)
        return outcome

    async def _run(self) -> Outcome:
        m = self.meeting
        self.bus.emit(Joining(platform=m.platform, meeting_id=m.meeting_id, name=self.config.name))
        audio = await self.devices.start()
        if not await self._join(audio):
            return await self._ended(EndReason.LEFT, EndedBy.USER)
        if self._state is not CallState.IN_CALL:
            self._on_state(CallState.IN_CALL)

        streams = await self.devices.open_streams()  # closed with the devices, after the bridge
        self._bridge = Bridge(
            self.endpoint,
            streams.source,
            streams.sink,
            options=self.config.bridge,
            on_event=self._on_bridge_event,
        )
        await self._bridge.start()
        self._times["agent_connected"] = time.monotonic()
        self.bus.emit(AgentConnected(agent=self.endpoint.describe(), connect_s=self._bridge.stats.connect_s))
        self._audio_guard = AudioGuard(self.devices, self._browser, self._bridge, self.bus)
        self._audio_guard.start()

        async with _periodic(self.config.stats_interval_s, self._emit_stats):
            reason, by = await self._wait_for_end()
        return await self._ended(reason, by)

    async def _join(self, audio: BrowserAudio) -> bool:
        """Joins, retrying failures the platform may lift on a second try (Meet's block on guests). Each
        attempt gets a fresh browser — a new copy of the profile, a new display — as peers start a new
        pod: what Meet held against the last one (its cookies, its window) does not carry over.
        Returns False when told to stop first; raises `JoinFailure` otherwise."""
        m, policy = self.meeting, self.config.join_policy
        attempt = 0
        while True:
            browser = await self._fresh_browser(audio)
            self._platform = platform_class(m.platform)(browser, m)
            try:
                return await self._until_stopped(
                    self._platform.join(self.config.name, policy, self._on_state)
                )
            except JoinFailure as failure:
                if not failure.retryable or attempt >= policy.retries:
                    if failure.code is FailureCode.BLOCKED and m.platform == "meet":  # Google's levers
                        failure.message += self._blocked_advice(attempt + 1)
                    raise
                attempt += 1
                log.warning("join failed (%s); retry %d of %d", failure.code.value, attempt, policy.retries)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._platform.leave(), 3)
                self._state = CallState.JOINING
                self.bus.emit(
                    Joining(
                        platform=m.platform,
                        meeting_id=m.meeting_id,
                        name=self.config.name,
                        retry=attempt,
                        after=failure.code.value,
                    )
                )
                if not await self._until_stopped(asyncio.sleep(policy.retry_delay_s)):
                    return False

    async def _fresh_browser(self, audio: BrowserAudio) -> BotBrowser:
        if self._browser is not None:
            await self._browser.close()
            self._browser = None
        self._browser = BotBrowser(self.config.browser, self.config.artifacts_dir)
        await self._browser.start(audio)
        return self._browser

    def _blocked_advice(self, attempts: int) -> str:
        """What helps when Meet keeps refusing the browser: the two levers a user has."""
        account = (
            "another signed-in account (browser.profile_dir)"
            if self.config.browser.profile_dir
            else "a signed-in Google profile (browser.profile_dir, made once with `meeting-bot login meet`)"
        )
        return (
            f" ({attempts} attempt(s), each in a fresh browser). What gets a bot in: {account}, "
            f"or the host admitting '{self.config.name}' by name from the lobby (ask them to expect it)"
        )

    async def _wait_for_end(self) -> tuple[EndReason, EndedBy]:
        """Why the call ended and who ended it; raises `JoinFailure` if the browser crashed."""
        assert self._platform is not None
        meeting = asyncio.create_task(self._platform.wait_for_end(self.config.call_policy))
        waits: dict[str, Awaitable[Any]] = {
            "meeting": meeting,
            "stop": self._stop.wait(),
            "agent": self._bridge_lost.wait(),
        }
        if self._browser is not None:
            waits["browser"] = self._browser.wait_crashed()
        if self._audio_guard is not None:
            waits["audio"] = self._audio_guard.wait_failed()
        try:
            which = await first_of(waits)
        finally:
            await cancel_and_wait(meeting)
        if which == "meeting":
            reason = meeting.result()
            return reason, _BOT_ENDS.get(reason, EndedBy.MEETING)
        if which == "stop":
            return EndReason.LEFT, EndedBy.USER
        if which == "browser":
            raise JoinFailure(FailureCode.BROWSER_CRASHED, "the browser crashed during the call", "in_call")
        if which == "audio" and self._audio_guard is not None:
            raise await self._audio_guard.wait_failed()
        return EndReason.AGENT_ENDED, EndedBy.AGENT

    async def _until_stopped(self, work: Awaitable[None]) -> bool:
        """Runs `work` unless a stop request comes first; returns False when stopped."""
        task = asyncio.ensure_future(work)
        stopper = asyncio.create_task(self._stop.wait())
        try:
            await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stopper
        if task.done():
            task.result()  # raises JoinFailure
            return True
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, JoinFailure):
            await task
        return False

    def _on_state(self, state: CallState) -> None:
        if state is self._state:
            return
        self._state = state
        if state is CallState.AWAITING_ADMISSION:
            self._times["lobby"] = time.monotonic()
            self.bus.emit(AwaitingAdmission())
        elif state is CallState.IN_CALL:
            self._times["in_call"] = time.monotonic()
            self.bus.emit(InCall())

    def _on_bridge_event(self, event: BridgeEvent) -> None:
        if event.kind == "agent_reconnecting":
            self.bus.emit(AgentReconnecting(attempt=event.attempt, detail=event.detail))
        elif event.kind == "agent_connected" and event.attempt > 0:
            took = self._bridge.stats.connect_s if self._bridge is not None else None
            self.bus.emit(
                AgentConnected(agent=self.endpoint.describe(), attempt=event.attempt, connect_s=took)
            )
        elif event.kind == "agent_lost":
            self._bridge_lost.set()
        elif event.kind == "audio_stopped" and self._audio_guard is not None:
            self._audio_guard.notify(event.detail)
        elif event.kind == "recording_stopped":
            self.bus.emit(RecordingStopped(detail=event.detail))

    def _emit_stats(self) -> None:
        if self._bridge is not None:
            s = self._bridge.stats
            self.bus.emit(
                Stats(
                    frames_out=s.frames_out,
                    frames_in=s.frames_in,
                    bytes_out=s.bytes_out,
                    bytes_in=s.bytes_in,
                    dropped=s.dropped_out + s.dropped_in,
                    level_out_dbfs=round(s.level_out_dbfs, 1),
                    level_in_dbfs=round(s.level_in_dbfs, 1),
                    reconnects=s.reconnects,
                    reply_delay_ms=None if s.reply_delay_ms is None else round(s.reply_delay_ms, 1),
                )
            )

    async def _ended(self, reason: EndReason, by: EndedBy) -> Outcome:
        self._ended_by = by
        await self._leave()
        self._state = CallState.ENDED
        self._times["ended"] = time.monotonic()
        self.bus.emit(EndedEvent(reason=reason, by=by))
        return Outcome(ExitCode.COMPLETED, reason.value)

    async def _failed(
        self,
        code: str,
        message: str,
        exit_code: ExitCode,
        artifacts: list[Path] | None = None,
    ) -> Outcome:
        """`artifacts`: the screenshot and HTML a failed join saved of the page (the platform has the
        browser save them when it fails, before anything navigates away); reported, not made here."""
        saved = list(artifacts or [])
        await self._leave()
        self._state = CallState.FAILED
        self._times["ended"] = time.monotonic()
        self.bus.emit(Failed(code=code, message=message, artifacts=tuple(str(p) for p in saved)))
        return Outcome(exit_code, code)

    async def _leave(self) -> None:
        if self._audio_guard is not None:
            await self._audio_guard.close()
        if self._bridge is not None:
            await self._bridge.close()
        if self._platform is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._platform.leave(), 3)

    async def _teardown(self) -> None:
        for close in (self._bridge_close, self._browser_close, self.devices.close):
            try:
                await close()
            except Exception:
                log.exception("teardown step failed")

    async def _bridge_close(self) -> None:
        if self._audio_guard is not None:
            await self._audio_guard.close()
        if self._bridge is not None:
            await self._bridge.close()

    async def _browser_close(self) -> None:
        if self._browser is not None:
            await self._browser.close()

    def _summary(self, outcome: Outcome) -> Summary:
        t = self._times
        end = t.get("ended", time.monotonic())
        s = self._bridge.stats if self._bridge is not None else None
        return Summary(
            outcome=outcome.reason,
            exit_code=int(outcome.exit_code),
            ended_by=self._ended_by or EndedBy.BOT,  # not ended in the call: a failure the bot reports
            total_s=round(end - t["started"], 2),
            join_s=round(t["in_call"] - t["started"], 2) if "in_call" in t else None,
            in_call_s=round(end - t["in_call"], 2) if "in_call" in t else None,
            lobby_s=round(t.get("in_call", end) - t["lobby"], 2) if "lobby" in t else None,
            reconnects=s.reconnects if s is not None else None,
            bytes_to_agent=s.bytes_out if s is not None else None,
            bytes_from_agent=s.bytes_in if s is not None else None,
            dropped_frames=s.dropped_out + s.dropped_in if s is not None else None,
        )


# End reasons that are the bot's own rules; every other end reason comes from the meeting.
_BOT_ENDS: dict[EndReason, EndedBy] = {EndReason.ALONE: EndedBy.BOT, EndReason.MAX_DURATION: EndedBy.BOT}


def _is_browser_gone(error: Exception) -> bool:
    text = f"{type(error).__name__} {error}".lower()
    return any(s in text for s in ("target closed", "browser has been closed", "targetclosed", "crash"))


@contextlib.asynccontextmanager
async def _periodic(interval_s: float, tick: Callable[[], None]) -> Any:
    async def loop() -> None:
        while True:
            await asyncio.sleep(interval_s)
            tick()

    task = asyncio.create_task(loop(), name="stats")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
