"""The state one replica meeting shares across its pages: who is waiting, who is in the call, and why.

Pages reach a room over the replica's WebSocket (`room.js`); tests reach it directly or over the HTTP
control API. Every change is pushed to the affected browsers at once, and recorded in `log` so a test
can assert on what happened and when.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from bot.aio import cancel_and_wait

log = logging.getLogger(__name__)

Send = Callable[[dict[str, Any]], Awaitable[None]]

# Join results (`ReplicaRoom.join` resolves with one of these).
ADMITTED = "admitted"
WAITING = "waiting"
PASSCODE_WRONG = "passcode_wrong"
SIGN_IN = "sign_in"
CAPTCHA = "captcha"
BOT_WALL = "bot_wall"
BLOCKED = "blocked"
NOT_FOUND = "not_found"
HOST_ABSENT = "host_absent"

# Participant states.
STATE_WAITING = "waiting"  # in the lobby / waiting room
STATE_HOST_ABSENT = "host_absent"  # waiting for the host to start the meeting
STATE_IN_CALL = "in_call"
STATE_LEFT = "left"
STATE_DENIED = "denied"
STATE_REMOVED = "removed"
_PRESENT = (STATE_WAITING, STATE_HOST_ABSENT, STATE_IN_CALL)


@dataclass
class RoomConfig:
    lobby: bool = False  # guests wait for admission
    passcode: str = ""
    sign_in_required: bool = False
    blocked: bool = False  # Meet: "You can't join this video call"
    captcha: bool = False
    bot_wall: bool = False
    exists: bool = True  # False: the meeting is not found
    host_present: bool = True  # Zoom: the host has started the meeting
    lobby_timeout_s: float = 600.0
    # With bot_wall: the wall turns the guest away on this many joins, then lets it in (0: always), as a
    # reload often clears Zoom's wall.
    bot_wall_clears_after: int = 0
    # While set, every load of the meeting's page gets its connection closed without an answer: the
    # browser shows its own network error page (as when the network or the platform is unreachable).
    network_down: bool = False
    # The platform's entry checks on guests (entry_check.js; on in the entry checks' tests, off elsewhere so
    # other tests keep their meaning). A guest the check takes for a bot: Meet lets it ask to join and
    # drops it after `entry_drop_s` ("You can't join this video call"); Zoom shows its bot wall; Teams puts
    # it in the lobby, whatever `lobby` says. Signed-in accounts are not dropped (peers: signed-in bots
    # are rarely blocked).
    entry_check: bool = False
    entry_drop_s: float = 1.5
    # Signed-in accounts enter without asking ("Join now"), as members of the host's organisation do.
    admit_signed_in: bool = False
    # How many participants have their camera on: the first this many pages that can send one (the
    # simulated people) send a moving test pattern, which every page that shows video (the Meet and Zoom
    # clients: the bot's) receives as a tile.
    cameras: int = 0


@dataclass(frozen=True)
class ParticipantInfo:
    pid: str
    name: str
    state: str
    is_host: bool


@dataclass
class _Member:
    pid: str
    name: str
    is_host: bool
    send: Send
    state: str
    account: str = ""  # the signed-in account's email; "" for a guest
    audio: bool = False  # has called room.startAudio(): part of the audio mesh once in the call
    camera: bool = False  # its camera is on (RoomConfig.cameras)
    video_stats: dict[str, Any] = dataclasses.field(default_factory=dict)  # what it receives, by pid
    timer: asyncio.Task[None] | None = None

    def info(self) -> ParticipantInfo:
        return ParticipantInfo(self.pid, self.name, self.state, self.is_host)


class RoomError(LookupError):
    """No participant of that name can take the requested action."""


class Room:
    """One meeting: its configuration, its participants, and the operations a host or the test performs."""

    _ids = itertools.count(1)

    def __init__(self, platform: str, meeting_id: str, config: RoomConfig | None = None) -> None:
        self.platform = platform
        self.meeting_id = meeting_id
        self.config = config or RoomConfig()
        self.log: list[tuple[float, str, str]] = []
        self._members: dict[str, _Member] = {}
        self._changed = asyncio.Event()
        self._closed = False
        self._walls_shown = 0
        self.entry_reports: list[tuple[str, dict[str, Any]]] = []  # (name, report) per join request

    # ---- what tests read ---------------------------------------------------------------------------
    @property
    def participants(self) -> list[ParticipantInfo]:
        return [m.info() for m in self._members.values()]

    def in_call(self) -> list[ParticipantInfo]:
        return [m.info() for m in self._members.values() if m.state == STATE_IN_CALL]

    def state(self) -> dict[str, Any]:
        return {
            "platform": self.platform,
            "meeting_id": self.meeting_id,
            "config": dataclasses.asdict(self.config),
            "participants": [dataclasses.asdict(p) for p in self.participants],
            "log": [list(e) for e in self.log],
            "video": {m.name: self.received_video(m.name) for m in self._members.values() if m.video_stats},
        }

    async def wait_for(self, name: str, state: str, timeout: float) -> ParticipantInfo:
        """The latest participant called `name` once it is in `state`; TimeoutError after `timeout` s."""
        async with asyncio.timeout(timeout):
            while True:
                member = self._latest(name, None)
                if member is not None and member.state == state:
                    return member.info()
                self._changed.clear()
                await self._changed.wait()

    async def wait_until(self, predicate: Callable[[Room], bool], timeout: float) -> None:
        """Returns once `predicate(room)` holds (checked after every change); TimeoutError otherwise."""
        async with asyncio.timeout(timeout):
            while not predicate(self):
                self._changed.clear()
                await self._changed.wait()

    def events(self, event: str) -> list[str]:
        """Names in the log for one event type, in order (e.g. events("audio"))."""
        return [name for _, e, name in self.log if e == event]

    # ---- what a host (or the test) does ----------------------------------------------------------------
    def configure(self, **fields: Any) -> None:
        known = {f.name for f in dataclasses.fields(RoomConfig)}
        unknown = set(fields) - known
        if unknown:
            raise ValueError(f"unknown room config fields: {sorted(unknown)}")
        for key, value in fields.items():
            setattr(self.config, key, value)
        self._record("config", ",".join(f"{k}={v}" for k, v in fields.items()))

    async def admit(self, name: str) -> None:
        member = self._require(name, (STATE_WAITING,))
        await self._enter_call(member, "admitted")

    async def deny(self, name: str) -> None:
        member = self._require(name, (STATE_WAITING,))
        await self._leave(member, STATE_DENIED, "denied", {"type": "denied"})

    async def time_out_lobby(self, name: str) -> None:
        """The platform gives up on a waiting guest (Meet: after about 10 minutes). Not a denial."""
        member = self._require(name, (STATE_WAITING,))
        await self._leave(member, STATE_LEFT, "lobby_timeout", {"type": "lobby_timeout"})

    async def remove(self, name: str) -> None:
        member = self._require(name, _PRESENT)
        await self._leave(member, STATE_REMOVED, "removed", {"type": "removed"})

    async def end(self) -> None:
        """The host ends the meeting for everyone."""
        self._record("ended", "")
        for member in [m for m in self._members.values() if m.state in _PRESENT]:
            await self._leave(member, STATE_LEFT, "ended_for", {"type": "ended"})

    async def start_host(self) -> None:
        """The host starts the meeting: guests waiting for the host go on to the lobby or the call."""
        if self.config.host_present:
            return
        self.config.host_present = True
        self._record("host_started", "")
        for member in list(self._members.values()):
            if member.state == STATE_HOST_ABSENT:
                await _safe_send(member, {"type": "host_joined"})
                if self.config.lobby:
                    self._set_state(member, STATE_WAITING, "waiting")
                    self._start_lobby_timer(member)
                else:
                    await self._enter_call(member, "admitted")
            elif member.state == STATE_WAITING:
                await _safe_send(member, {"type": "host_joined"})

    # ---- what the page's WebSocket does ---------------------------------------------------------------
    async def join(
        self,
        name: str,
        passcode: str,
        is_host: bool,
        send: Send,
        entry: dict[str, Any] | None = None,
        account: str = "",
    ) -> tuple[str, str | None]:
        """A page asks to join. Returns (result, pid); pid is None when the page was turned away.
        `entry`: what the page's entry check saw (entry_check.js); `account`: a signed-in account."""
        self.entry_reports.append((name, entry or {}))
        bot = self._entry_refuses(entry, is_host, account)
        if bot and self.platform == "zoom":
            self._record("refused:bot_wall", name)
            return BOT_WALL, None
        refused = self._refusal(passcode, is_host)
        if refused is not None:
            self._record(f"refused:{refused}", name)
            return refused, None
        pid = f"p{next(self._ids)}"
        member = _Member(pid, name, is_host, send, state="", account=account)
        self._members[pid] = member
        # Teams' external-bot policy (default RequireApprovalWhenDetected): a guest taken for a bot waits in
        # the lobby for the organiser, even in a meeting that lets guests in directly.
        bot_lobby = bot and self.platform == "teams"
        if bot and not bot_lobby:
            # Meet: the request goes out, then the guest is dropped.
            self._set_state(member, STATE_WAITING, "waiting")
            member.timer = asyncio.create_task(self._drop(member))
            return WAITING, pid
        if account and not is_host:
            here = [m for m in self._members.values() if m.account == account and m is not member]
            switched = [m for m in here if m.state in _PRESENT]
            for other in switched:  # "Switch here": the account's other device leaves the call
                await self._leave(other, STATE_LEFT, "switched_away", {"type": "removed"})
            if switched or self.config.admit_signed_in:
                self._set_state(member, STATE_IN_CALL, "joined_signed_in")
                await self._broadcast_participants()
                return ADMITTED, pid
        if is_host:
            if not self.config.host_present:
                await self.start_host()
            self._set_state(member, STATE_IN_CALL, "joined")
            await self._broadcast_participants()
            return ADMITTED, pid
        if not self.config.host_present:
            self._set_state(member, STATE_HOST_ABSENT, "host_absent")
            return HOST_ABSENT, pid
        if self.config.lobby or bot_lobby:
            self._set_state(member, STATE_WAITING, "waiting")
            self._start_lobby_timer(member)
            await self._broadcast_participants()
            return WAITING, pid
        self._set_state(member, STATE_IN_CALL, "joined")
        await self._broadcast_participants()
        return ADMITTED, pid

    def _entry_refuses(self, entry: dict[str, Any] | None, is_host: bool, account: str) -> bool:
        """The entry check's verdict on a guest (not host, not signed in) whose page ran the check: its
        browser or input looks like a bot's. (Pages without the check, the simulated person's, pass.)"""
        if not self.config.entry_check or is_host or account or entry is None:
            return False
        return bool(entry.get("bot"))

    def in_call_accounts(self) -> set[str]:
        """Signed-in accounts present in the call (the Meet client offers them "Switch here")."""
        return {m.account for m in self._members.values() if m.account and m.state == STATE_IN_CALL}

    async def _drop(self, member: _Member) -> None:
        await asyncio.sleep(self.config.entry_drop_s)
        member.timer = None  # this task is finishing: do not cancel itself in _leave
        if member.state == STATE_WAITING:
            await self._leave(member, STATE_LEFT, "dropped:entry_check", {"type": "blocked"})

    def _refusal(self, passcode: str, is_host: bool) -> str | None:
        c = self.config
        if not c.exists:
            return NOT_FOUND
        if is_host:
            return None
        if c.blocked:
            return BLOCKED
        if c.bot_wall and (c.bot_wall_clears_after <= 0 or self._walls_shown < c.bot_wall_clears_after):
            self._walls_shown += 1
            return BOT_WALL
        if c.captcha:
            return CAPTCHA
        if c.sign_in_required:
            return SIGN_IN
        if c.passcode and passcode != c.passcode:
            return PASSCODE_WRONG
        return None

    def drop_page_load(self) -> bool:
        """True when this load of the meeting's page must fail as a network error (`network_down`)."""
        if self.config.network_down:
            self._record("dropped_page_load", "")
        return self.config.network_down

    async def media(self, pid: str, audio: bool, video: bool) -> None:
        """A page reports its microphone and camera state (recorded as mic_on/mic_off, video_on/video_off)."""
        member = self._members.get(pid)
        if member is None:
            return
        self._record(f"mic_{'on' if audio else 'off'}", member.name)
        self._record(f"video_{'on' if video else 'off'}", member.name)

    async def start_audio(self, pid: str, camera_capable: bool = False) -> None:
        """A page joins the media mesh. A page that can send a camera is told whether it is on (the first
        `config.cameras` such pages), before it learns its peers."""
        member = self._members.get(pid)
        if member is None or member.audio:
            return
        member.audio = True
        self._record("audio", member.name)
        if camera_capable:
            member.camera = sum(m.camera for m in self._members.values()) < self.config.cameras
            if member.camera:
                self._record("camera_on", member.name)
            await _safe_send(member, {"type": "camera", "on": member.camera})
        if member.state == STATE_IN_CALL:
            await self._send_peers(member)

    async def relay(self, sender: str, to: str, data: Any) -> None:
        """WebRTC signalling between two members of the call (offers, answers)."""
        src, dst = self._members.get(sender), self._members.get(to)
        if src is None or dst is None or STATE_IN_CALL not in (src.state, dst.state):
            return
        await _safe_send(dst, {"type": "signal", "from": sender, "data": data})

    def video_stats(self, pid: str, peers: dict[str, Any]) -> None:
        """What a page reports it receives of each camera (room.js, every 2 s while it receives video)."""
        member = self._members.get(pid)
        if member is not None:
            member.video_stats = peers
            self._changed.set()

    def received_video(self, name: str) -> dict[str, dict[str, Any]]:
        """The latest participant called `name`: what it last reported receiving, by sender's name."""
        member = self._latest(name, None)
        if member is None:
            return {}
        names = {m.pid: m.name for m in self._members.values()}
        return {names.get(pid, pid): stats for pid, stats in member.video_stats.items()}

    def goodbye(self, pid: str) -> None:
        """The page said it is leaving (its Leave button) before closing: recorded as a "goodbye" event, so a
        test can tell a departure from a dropped connection (both then end in state "left")."""
        member = self._members.get(pid)
        if member is not None:
            self._record("goodbye", member.name)

    async def disconnected(self, pid: str) -> None:
        """The page left (room.close(), navigation, or the browser died)."""
        member = self._members.get(pid)
        if member is not None and member.state in _PRESENT:
            await self._leave(member, STATE_LEFT, "left", None)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for member in self._members.values():
            await _cancel(member)

    # ---- internals ---------------------------------------------------------------------------------
    def _latest(self, name: str, states: tuple[str, ...] | None) -> _Member | None:
        for member in reversed(self._members.values()):
            if member.name == name and (states is None or member.state in states):
                return member
        return None

    def _require(self, name: str, states: tuple[str, ...]) -> _Member:
        member = self._latest(name, states)
        if member is None:
            raise RoomError(f"no participant {name!r} in state {'/'.join(states)}")
        return member

    def _record(self, event: str, name: str) -> None:
        self.log.append((time.monotonic(), event, name))
        log.debug("room %s/%s: %s %s", self.platform, self.meeting_id, event, name)
        self._changed.set()

    def _set_state(self, member: _Member, state: str, event: str) -> None:
        member.state = state
        self._record(event, member.name)

    def _start_lobby_timer(self, member: _Member) -> None:
        async def expire() -> None:
            await asyncio.sleep(self.config.lobby_timeout_s)
            member.timer = None  # this task is finishing: do not cancel itself in _leave
            if member.state == STATE_WAITING:
                await self._leave(member, STATE_LEFT, "lobby_timeout", {"type": "lobby_timeout"})

        member.timer = asyncio.create_task(expire())

    async def _enter_call(self, member: _Member, event: str) -> None:
        await _cancel(member)
        self._set_state(member, STATE_IN_CALL, event)
        await _safe_send(member, {"type": "admitted"})
        await self._broadcast_participants()
        if member.audio:
            await self._send_peers(member)

    async def _leave(self, member: _Member, state: str, event: str, message: dict[str, Any] | None) -> None:
        await _cancel(member)
        was_in_call = member.state == STATE_IN_CALL
        self._set_state(member, state, event)
        if message is not None:
            await _safe_send(member, message)
        if was_in_call:
            for other in self._members.values():
                if other.state == STATE_IN_CALL:
                    await _safe_send(other, {"type": "peer_left", "pid": member.pid})
        await self._broadcast_participants()

    async def _send_peers(self, member: _Member) -> None:
        # The newcomer offers to everyone already in the audio mesh; they answer.
        peers = [
            m.pid for m in self._members.values() if m is not member and m.audio and m.state == STATE_IN_CALL
        ]
        await _safe_send(member, {"type": "peers", "peers": peers})

    async def _broadcast_participants(self) -> None:
        present = [m for m in self._members.values() if m.state == STATE_IN_CALL]
        names = [m.name for m in present]
        # pids beside the names: the clients put each camera's video in its owner's tile.
        pids = [m.pid for m in present]
        message = {"type": "participants", "count": len(names), "names": names, "pids": pids}
        for member in list(self._members.values()):
            if member.state in _PRESENT:
                await _safe_send(member, message)


async def _safe_send(member: _Member, message: dict[str, Any]) -> None:
    # A page that went away mid-send is handled by its socket closing; nothing to do here.
    with contextlib.suppress(ConnectionError, RuntimeError):
        await member.send(message)


async def _cancel(member: _Member) -> None:
    task, member.timer = member.timer, None
    if task is not None and task is not asyncio.current_task():
        await cancel_and_wait(task)
