"""The stand-in's cheapest echo (agent id `reflect`): the Opus packets the bot sends are sent back as they
come, neither decoded nor encoded again, which a benchmark's helper may do (the real Millis does its
work on its own machines; what the bot does stays the real thing). It hears nothing, so a call with it
records no sound and no onset: it is for benchmarks of many bots, where the stand-in's own Opus work would
otherwise be counted against the machine.

    reflect(pc)  # after setRemoteDescription, before createAnswer
"""

from __future__ import annotations

import asyncio
import fractions
import threading
from collections.abc import Callable
from typing import Any

import av
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCRtpSender
from aiortc.mediastreams import MediaStreamError

from bot.agent.peer import AiortcInternalsChanged, replace_decoder

_RTP_CLOCK = fractions.Fraction(1, 48_000)


class ReflectedTrack(MediaStreamTrack):
    """An outbound audio track that sends the packets `Reflector` hands it, with their own timing."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self.packets: asyncio.Queue[av.Packet[Any]] = asyncio.Queue(maxsize=50)

    async def recv(self) -> av.Packet[Any]:  # type: ignore[override]
        if self.readyState != "live":
            raise MediaStreamError
        return await self.packets.get()


class Reflector:
    """Takes the place of an aiortc receiver's decoder queue (the seam of `replace_decoder`): every Opus
    packet put goes to `track` as it is, its RTP timestamp kept; other codecs are dropped."""

    def __init__(self, track: ReflectedTrack) -> None:
        self._track = track
        self._stopped = threading.Event()
        self.packets = 0

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        if item is None:
            self._stopped.set()
            return
        codec, encoded = item
        if self._stopped.is_set() or codec.name.lower() != "opus" or self._track.packets.full():
            return
        packet = av.Packet(encoded.data)
        packet.pts = encoded.timestamp
        packet.time_base = _RTP_CLOCK
        self._track.packets.put_nowait(packet)
        self.packets += 1

    def put_nowait(self, item: Any) -> None:
        self.put(item)

    def get(self, block: bool = True, timeout: float | None = None) -> None:
        """Called by aiortc's idle decoder thread: waits until stop, then tells it to end the track."""
        self._stopped.wait()


def _maker(track: ReflectedTrack) -> Callable[[Any], Reflector]:
    def make(track_queue: Any) -> Reflector:  # the remote track's queue stays empty: nothing is decoded
        return Reflector(track)

    return make


def reflect(pc: RTCPeerConnection) -> list[Reflector]:
    """Every audio transceiver of `pc` (after the remote offer is set) sends back what it receives."""
    opus = [c for c in RTCRtpSender.getCapabilities("audio").codecs if c.mimeType.lower() == "audio/opus"]
    if not opus:
        raise AiortcInternalsChanged("aiortc offers no Opus")
    reflectors = []
    for transceiver in pc.getTransceivers():
        if transceiver.kind != "audio":
            continue
        track = ReflectedTrack()
        transceiver.setCodecPreferences(opus)
        transceiver.sender.replaceTrack(track)
        transceiver.direction = "sendrecv"
        reflectors.append(replace_decoder(transceiver.receiver, _maker(track)))
    return reflectors
