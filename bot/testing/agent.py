"""A local stand-in for a Millis agent: the same HTTP contract, and a real aiortc peer behind it.

`POST /webrtc/offer` with `{"agent_id", "offer": {"sdp", "type"}}` and the key in `Authorization` (raw or
`Bearer <key>`) → `{"answer": {"sdp", "type"}, "session_id"}`; 401 for a wrong key, 404 for an unknown
agent id, 400 for a malformed body. The agent id picks the behaviour (see `agent_behaviours.plan_for`):
`echo`, `reflect` (echo without decoding: bot/testing/reflect.py), `tone[-<hz>]`, `speak`,
`hangup-after-<s>`, `freeze-after-<s>`, `slow-answer[-<s>]`, `fail-500`,
and modifiers after a `+` (e.g. `tone-660+slow-reconnect-5`: every offer after the first answered 5 s late).
Each call records what it heard and when (monotonic clock, shared by all processes on the machine):
`GET /calls` returns the same as JSON for a stand-in running in another process.

Run it: `meeting-bot agent-standin --port 8700 --key test-key` (or `python -m bot agent-standin …`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import secrets
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from bot.agent.peer import (
    PeerOptions,
    new_peer_connection,
    set_local_description,
    tune_receivers,
    tune_senders,
)
from bot.aio import cancel_and_wait
from bot.audio.analysis import dominant_frequency, rms_dbfs
from bot.audio.frames import FrameQueue, PcmFrame
from bot.bridge.media import LevelMeter, PcmTrack, ToMono
from bot.testing.agent_behaviours import (
    HEARING_DBFS,
    SILENT,
    Behaviour,
    Echo,
    Plan,
    Speak,
    Tone,
    plan_for,
)
from bot.testing.reflect import reflect
from bot.testing.speech import DEFAULT_SENTENCE, speech_pcm

log = logging.getLogger(__name__)


@dataclass
class CallRecord:
    """One call as the agent lived it. Times are `time.monotonic()`."""

    agent_id: str
    session_id: str
    started_at: float
    heard: bytearray = field(default_factory=bytearray, repr=False)
    onsets: list[float] = field(default_factory=list, repr=False)  # each quiet → loud (HEARING_DBFS) change
    answer_started_at: float | None = None  # first non-silent reply frame
    ended_at: float | None = None

    @property
    def first_onset_at(self) -> float | None:
        """The first heard frame louder than HEARING_DBFS."""
        return self.onsets[0] if self.onsets else None

    def first_onset_since(self, since: float) -> float | None:
        """When the agent first heard sound begin at or after `since` (a sound already going on then, e.g.
        a chime of the meeting, does not count)."""
        return next((t for t in self.onsets if t >= since), None)

    def summary(self) -> dict[str, Any]:
        heard = bytes(self.heard)
        return {
            "agent_id": self.agent_id,
            "session_id": self.session_id,
            "started_at": self.started_at,
            "heard_s": round(len(heard) / 96_000, 3),
            "heard_dbfs": round(rms_dbfs(heard), 1),
            "heard_hz": round(dominant_frequency(heard), 1),
            "first_onset_at": self.first_onset_at,
            "answer_started_at": self.answer_started_at,
            "ended_at": self.ended_at,
        }


@dataclass
class _Call:
    record: CallRecord
    pc: RTCPeerConnection
    track: _FreezableTrack
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


class _FreezableTrack(PcmTrack):
    """The agent's voice; once frozen it sends nothing more (RTCP still flows: the call looks alive)."""

    def __init__(self, queue: FrameQueue) -> None:
        super().__init__(queue)
        self.frozen = asyncio.Event()

    async def recv(self) -> Any:
        if self.frozen.is_set():
            await asyncio.Future()  # until the sender is cancelled at close
        return await super().recv()


class StandInAgent:
    """The stand-in server. `await start()`, use `base_url`, `await close()` (idempotent)."""

    def __init__(
        self,
        private_key: str,
        host: str = "127.0.0.1",
        port: int = 0,
        peer_options: PeerOptions | None = None,
        speech_text: str = DEFAULT_SENTENCE,
    ) -> None:
        if not private_key:
            raise ValueError("the stand-in needs a private key to check")
        self._key = private_key
        self.host = host
        self.port = port
        self.peer_options = peer_options or PeerOptions.loopback()
        self.speech_text = speech_text
        self.calls: list[CallRecord] = []
        self.requests: list[dict[str, Any]] = []  # every POST: agent_id, auth form, status
        self._live: list[_Call] = []
        self._handlers: set[asyncio.Task[Any]] = set()
        self._runner: web.AppRunner | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"StandInAgent({self.host}:{self.port})"

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/webrtc/offer", self._offer)
        app.router.add_get("/calls", self._calls)
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])  # the real port when 0 was asked for
        log.info("agent stand-in listening on %s", self.base_url)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await cancel_and_wait(*self._handlers)
        for call in list(self._live):
            await self._end(call)
        if self._runner is not None:
            await self._runner.cleanup()

    async def hang_up_all(self) -> None:
        """Close every live call from the agent's side (as a crashed or ending agent would)."""
        for call in list(self._live):
            await self._end(call)

    # --- HTTP ---------------------------------------------------------------------------------------

    async def _calls(self, request: web.Request) -> web.Response:
        return web.json_response([c.summary() for c in self.calls])

    async def _offer(self, request: web.Request) -> web.Response:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            return await self._handle_offer(request)
        finally:
            self._handlers.discard(task)

    async def _handle_offer(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        entry: dict[str, Any] = {
            "auth": "bearer" if auth.startswith("Bearer ") else "raw",
            "agent_id": None,
            "started_at": time.monotonic(),
        }
        self.requests.append(entry)

        def reply(status: int, body: dict[str, Any]) -> web.Response:
            entry["status"] = status
            entry["answered_at"] = time.monotonic()
            return web.json_response(body, status=status)

        if not secrets.compare_digest(auth.encode(), self._key.encode()) and not secrets.compare_digest(
            auth.encode(), f"Bearer {self._key}".encode()
        ):
            return reply(401, {"error": "invalid private key"})
        try:
            body = await request.json()
            agent_id = body["agent_id"]
            offer = body["offer"]
            sdp, kind = offer["sdp"], offer.get("type", "offer")
            if not isinstance(agent_id, str) or not isinstance(sdp, str) or kind != "offer":
                raise TypeError("wrong types")
        except (ValueError, KeyError, TypeError) as e:
            return reply(400, {"error": f"malformed request: {e}"})
        entry["agent_id"] = agent_id
        plan = plan_for(agent_id)
        if plan is None:
            return reply(404, {"error": f"agent {agent_id} not found"})
        if plan.kind == "fail-500":
            return reply(500, {"error": "internal error"})
        delay = plan.answer_delay_s
        if plan.later_answer_delay_s is not None and any(c.agent_id == agent_id for c in self.calls):
            delay = plan.later_answer_delay_s
        if delay:
            await asyncio.sleep(delay)
        try:
            answer = await self._answer(agent_id, plan, sdp)
        except ValueError as e:
            return reply(400, {"error": f"unusable offer: {e}"})
        return reply(
            200, {"answer": {"sdp": answer, "type": "answer"}, "session_id": self.calls[-1].session_id}
        )

    # --- calls --------------------------------------------------------------------------------------

    async def _behaviour(self, plan: Plan) -> Behaviour:
        if plan.kind == "tone":
            return Tone(plan.tone_hz)
        if plan.kind == "speak":
            return Speak(await asyncio.to_thread(speech_pcm, self.speech_text))
        return Echo()

    async def _answer(self, agent_id: str, plan: Plan, offer_sdp: str) -> str:
        behaviour = await self._behaviour(plan)
        record = CallRecord(agent_id, secrets.token_hex(8), time.monotonic())
        pc = new_peer_connection(self.peer_options)
        out = FrameQueue(50)
        track_out = _FreezableTrack(out)
        call = _Call(record, pc, track_out)

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "audio" and plan.kind != "reflect":
                call.tasks.append(asyncio.create_task(self._listen(call, track, behaviour, out)))

        @pc.on("connectionstatechange")
        def on_state() -> None:
            if pc.connectionState in ("failed", "closed") and record.ended_at is None:
                record.ended_at = time.monotonic()

        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
            if plan.kind == "reflect":
                reflect(pc)  # the bot's packets straight back: nothing decoded, nothing heard
            else:
                tune_receivers(pc, self.peer_options)
                pc.addTrack(track_out)
                tune_senders(pc, self.peer_options)  # Opus in mono on the loop, as the bot sends
            answer = await pc.createAnswer()
            sdp = await set_local_description(pc, answer, self.peer_options)
        except BaseException:
            await cancel_and_wait(*call.tasks)
            await pc.close()
            raise
        self.calls.append(record)
        self._live.append(call)
        if plan.hangup_after_s is not None:
            call.tasks.append(asyncio.create_task(self._hang_up_later(call, plan.hangup_after_s)))
        if plan.freeze_after_s is not None:
            call.tasks.append(asyncio.create_task(self._freeze_later(call, plan.freeze_after_s)))
        return sdp

    async def _listen(
        self, call: _Call, track: MediaStreamTrack, behaviour: Behaviour, out: FrameQueue
    ) -> None:
        to_mono = ToMono()
        meter = LevelMeter()
        record = call.record
        was_loud = False
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            now = time.monotonic()
            heard = to_mono.convert(frame)
            record.heard += heard
            loud = meter.add(heard) > HEARING_DBFS
            if loud and not was_loud:
                record.onsets.append(now)
            was_loud = loud
            reply = behaviour.reply(heard, loud)
            if record.answer_started_at is None and reply != SILENT and reply.strip(b"\x00"):
                record.answer_started_at = time.monotonic()
            out.put(PcmFrame(reply, now))

    async def _hang_up_later(self, call: _Call, after_s: float) -> None:
        await asyncio.sleep(after_s)
        log.info("stand-in hangs up call %s after %g s", call.record.session_id, after_s)
        await call.pc.close()
        call.record.ended_at = call.record.ended_at or time.monotonic()

    async def _freeze_later(self, call: _Call, after_s: float) -> None:
        await asyncio.sleep(after_s)
        log.info("stand-in stops sending audio on call %s after %g s", call.record.session_id, after_s)
        call.track.frozen.set()

    async def _end(self, call: _Call) -> None:
        if call in self._live:
            self._live.remove(call)
        current = asyncio.current_task()
        await cancel_and_wait(*(t for t in call.tasks if t is not current))
        await call.pc.close()
        call.record.ended_at = call.record.ended_at or time.monotonic()


# --- command line -----------------------------------------------------------------------------------


async def serve(args: argparse.Namespace) -> int:
    key = args.key or os.environ.get("MILLIS_PRIVATE_KEY", "")
    if not key:
        print("agent-standin: give --key or set MILLIS_PRIVATE_KEY", file=sys.stderr)
        return 2
    agent = StandInAgent(
        key,
        host=args.host,
        port=args.port,
        peer_options=PeerOptions(
            ice_servers=[],
            # Its ICE host candidates: loopback by default, or its address on a test network.
            host_addresses=[getattr(args, "ice_address", None) or "127.0.0.1"],
            jitter_buffer=args.jitter_buffer,
            receive_prefetch=args.prefetch,
        ),
        speech_text=args.sentence or DEFAULT_SENTENCE,
    )
    await agent.start()
    print(f"agent stand-in listening on {agent.base_url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await agent.close()
        print(json.dumps([c.summary() for c in agent.calls]), flush=True)
    return 0
