"""A simulated person who only shows a camera, with no browser: an aiortc peer in a replica room sending a
moving test pattern as VP8 that was encoded once and is looped.

What a camera costs a benchmark's helpers is mostly the sender's encoder: Chromium's VP8 encoder took
about 20 % of a core per 640x360 24 fps camera here, so two bots with two cameras each filled the machine
with helpers. This peer sends the same kind of stream (VP8, 640x360, 24 fps, a keyframe every 2 s, about
the bit rate WebRTC settles on) from packets encoded at start (PyAV's libvpx), paced by the clock, packed by
aiortc's own path for pre-encoded media: the bot's page receives and decodes a camera exactly as from a
browser, while the helper pays for packetizing and encrypting only. It joins through the room's WebSocket
like `room.js` (offers to those already in the call, answers those who come later), receives nothing (its
audio m-line is inactive), and sends only while the room has its camera on (`RoomConfig.cameras`).

    camera = CameraPerson(server, "meet", "abc-defg-hij", "Camera 1", CameraStream())
    await camera.start(); ...; await camera.close()
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import json
import logging
import time
from typing import Any

import aiohttp
import av
import numpy as np
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCRtpSender, RTCSessionDescription

from bot.agent.peer import PeerOptions, new_peer_connection, set_local_description
from bot.aio import cancel_and_wait
from bot.testing.replica.server import ReplicaServer

log = logging.getLogger(__name__)


class CameraStream:
    """A moving test pattern, encoded once as VP8 (`seconds` long, starting on a keyframe, so it loops)."""

    def __init__(
        self, width: int = 640, height: int = 360, fps: int = 24, seconds: float = 4.0, bitrate: int = 900_000
    ) -> None:
        self.width, self.height, self.fps = width, height, fps
        self.packets: list[bytes] = _encode(width, height, fps, round(seconds * fps), bitrate)


def _encode(width: int, height: int, fps: int, frames: int, bitrate: int) -> list[bytes]:
    codec = av.CodecContext.create("libvpx", "w")
    codec.width, codec.height, codec.pix_fmt = width, height, "yuv420p"
    codec.time_base = fractions.Fraction(1, fps)
    codec.framerate = fractions.Fraction(fps, 1)
    codec.bit_rate = bitrate
    codec.gop_size = 2 * fps
    codec.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0", "error-resilient": "1"}
    rng = np.random.default_rng(7)
    # A textured picture twice as wide as the frame that pans (every block of every frame changes, as in a
    # hand-held camera's picture), and a bright disc moving over it.
    blocks = rng.integers(40, 220, size=(height // 8 + 6, (2 * width) // 8, 3), dtype=np.uint8)
    backdrop = np.repeat(np.repeat(blocks, 8, axis=0), 8, axis=1)
    yy, xx = np.mgrid[0:height, 0:width]
    packets: list[bytes] = []
    for n in range(frames):
        dx = (n * width // frames) % width  # one full pan per loop: the loop's end meets its start
        dy = round(20 + 20 * np.sin(2 * np.pi * n / frames))
        img = backdrop[dy : dy + height, dx : dx + width].copy()
        cx = width / 2 + width / 3 * np.cos(2 * np.pi * n / frames)
        cy = height / 2 + height / 3 * np.sin(4 * np.pi * n / frames)
        img[(xx - cx) ** 2 + (yy - cy) ** 2 < (height / 6) ** 2] = (250, 200, 40)
        frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")
        frame.pts = n
        packets += [bytes(p) for p in codec.encode(frame)]
    packets += [bytes(p) for p in codec.encode(None)]
    return packets


class _LoopTrack(MediaStreamTrack):
    """Pre-encoded VP8 packets at the stream's frame rate, looped (aiortc packs av.Packet as it is)."""

    kind = "video"

    def __init__(self, stream: CameraStream) -> None:
        super().__init__()
        self._stream = stream
        self._n = 0
        self._start: float | None = None
        self._time_base = fractions.Fraction(1, stream.fps)

    async def recv(self) -> Any:
        if self._start is None:
            self._start = time.monotonic()
        wait = self._start + self._n / self._stream.fps - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        packet = av.Packet(self._stream.packets[self._n % len(self._stream.packets)])
        packet.pts = self._n
        packet.time_base = self._time_base
        self._n += 1
        return packet


class CameraPerson:
    """A participant of a replica room whose only part is a camera (see the module's docstring)."""

    def __init__(
        self, server: ReplicaServer, platform: str, meeting_id: str, name: str, stream: CameraStream
    ) -> None:
        self.server = server
        self.name = name
        self.stream = stream
        # The message room.js sends the room on joining: a guest, no passcode, no entry report.
        self._join = {
            "type": "join",
            "room": meeting_id,
            "platform": platform,
            "name": name,
            "passcode": "",
            "host": False,
            "entry": None,
        }
        self.camera_on = False
        self.join_result = ""
        self._options = PeerOptions.loopback()
        self._peers: dict[str, RTCPeerConnection] = {}
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> CameraPerson:
        self._session = aiohttp.ClientSession()
        # The replica's own certificate, on loopback: this is a test peer, not a browser.
        self._ws = await self._session.ws_connect(
            f"wss://127.0.0.1:{self.server.port}/_replica/ws", ssl=False, heartbeat=None
        )
        await self._ws.send_str(json.dumps(self._join))
        reply = await self._ws.receive_json()
        while reply.get("type") != "joined":  # messages that arrive with the answer
            reply = await self._ws.receive_json()
        self.join_result = str(reply.get("result"))
        if not reply.get("pid"):
            raise RuntimeError(f"camera {self.name!r} was turned away: {self.join_result}")
        await self._ws.send_str(json.dumps({"type": "audio", "camera": True}))
        self._reader = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        assert self._ws is not None
        async for msg in self._ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            kind = data.get("type")
            if kind == "camera":
                self.camera_on = bool(data.get("on"))
            elif kind == "peers":
                for pid in data.get("peers", []):
                    self._spawn(self._offer(str(pid)))
            elif kind == "signal":
                self._spawn(self._signal(str(data["from"]), data.get("data") or {}))
            elif kind == "peer_left":
                self._spawn(self._drop(str(data.get("pid"))))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("camera %s: %s", self.name, task.exception())

    async def _send(self, message: dict[str, Any]) -> None:
        if self._ws is not None and not self._ws.closed:
            await self._ws.send_str(json.dumps(message))

    def _new_peer(self, pid: str) -> RTCPeerConnection:
        old = self._peers.pop(pid, None)
        if old is not None:
            self._spawn(old.close())
        pc = new_peer_connection(self._options)
        self._peers[pid] = pc
        return pc

    def _video(self, pc: RTCPeerConnection, transceiver: Any) -> None:
        """The transceiver sends the camera (VP8 only: the packets are VP8) while it is on, else nothing."""
        vp8 = [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType == "video/VP8"]
        transceiver.setCodecPreferences(vp8)
        if self.camera_on:
            transceiver.direction = "sendonly"
            transceiver.sender.replaceTrack(_LoopTrack(self.stream))
        else:
            transceiver.direction = "inactive"

    async def _offer(self, pid: str) -> None:
        pc = self._new_peer(pid)
        pc.addTransceiver("audio", direction="inactive")  # room.js pairs audio first; this peer has none
        self._video(pc, pc.addTransceiver("video", direction="sendonly"))
        sdp = await set_local_description(pc, await pc.createOffer(), self._options)
        await self._send({"type": "signal", "to": pid, "data": {"sdp": {"type": "offer", "sdp": sdp}}})

    async def _signal(self, pid: str, data: dict[str, Any]) -> None:
        sdp = data.get("sdp") or {}
        if sdp.get("type") == "offer":
            pc = self._new_peer(pid)
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp["sdp"], type="offer"))
            for transceiver in pc.getTransceivers():
                if transceiver.kind == "video":
                    self._video(pc, transceiver)
                else:
                    transceiver.direction = "inactive"
            answer = await set_local_description(pc, await pc.createAnswer(), self._options)
            await self._send(
                {"type": "signal", "to": pid, "data": {"sdp": {"type": "answer", "sdp": answer}}}
            )
        elif sdp.get("type") == "answer" and pid in self._peers:
            await self._peers[pid].setRemoteDescription(RTCSessionDescription(sdp=sdp["sdp"], type="answer"))

    async def _drop(self, pid: str) -> None:
        pc = self._peers.pop(pid, None)
        if pc is not None:
            await pc.close()

    async def close(self) -> None:
        if self._reader is not None:
            await cancel_and_wait(self._reader)
        await cancel_and_wait(*self._tasks)
        for pc in list(self._peers.values()):
            with contextlib.suppress(Exception):
                await pc.close()
        self._peers.clear()
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.send_str(json.dumps({"type": "leave"}))
            await self._ws.close()
        if self._session is not None:
            await self._session.close()
