"""One WebRTC session with the agent: a fresh peer connection, its offer/answer, and why it ended.

aiortc has no ICE restart, so a dead session is never repaired: the bridge closes the link and opens a
new one (new RTCPeerConnection, new offer). The bridge sees a session only as a `Link` made by a
`LinkFactory`, so its supervision (watchdog, reconnects) runs the same over aiortc or in memory (tests).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Protocol

from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from bot.agent.base import AgentEndpoint
from bot.agent.errors import AgentBadAnswer, AgentUnavailable
from bot.agent.peer import (
    PeerOptions,
    new_peer_connection,
    set_local_description,
    tune_receivers,
    tune_senders,
)
from bot.aio import cancel_and_wait, first_of
from bot.bridge.media import ToMono

log = logging.getLogger(__name__)


class Link(Protocol):
    """One session with the agent as the bridge supervises it.

    Sends the frames of its outbound track; hands each inbound 20 ms mono PCM frame to its `on_audio`.
    """

    @property
    def ended(self) -> asyncio.Event:
        """Set once the session is over (the agent hung up, the connection failed, or `close()`)."""
        ...

    @property
    def reason(self) -> str:
        """Why it ended, for logs and events (empty before)."""
        ...

    @property
    def last_audio_at(self) -> float:
        """Monotonic time of the latest inbound frame, or of the connection: the stall watchdog's clock."""
        ...

    async def connect(self, timeout_s: float) -> None:
        """Offer → agent → answer, then wait for the media path. Raises `AgentError` on failure."""
        ...

    async def close(self) -> None:
        """Ends the session and waits for its tasks; idempotent."""
        ...


# (endpoint, outbound track, on_audio) → a new, unconnected link.
LinkFactory = Callable[[AgentEndpoint, MediaStreamTrack, Callable[[bytes], None]], Link]


def aiortc_links(peer: PeerOptions) -> LinkFactory:
    """Links over real WebRTC (aiortc), each a fresh peer connection built with `peer`."""

    def new_link(
        endpoint: AgentEndpoint, outbound: MediaStreamTrack, on_audio: Callable[[bytes], None]
    ) -> Link:
        return AgentLink(endpoint, peer, outbound, on_audio)

    return new_link


class AgentLink:
    """Sends `outbound` to the agent and hands each decoded inbound frame (mono PCM) to `on_audio`."""

    def __init__(
        self,
        endpoint: AgentEndpoint,
        peer: PeerOptions,
        outbound: MediaStreamTrack,
        on_audio: Callable[[bytes], None],
    ) -> None:
        self._endpoint = endpoint
        self._peer = peer
        self._outbound = outbound
        self._on_audio = on_audio
        self._pc: RTCPeerConnection | None = None
        self._pump: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self.ended = asyncio.Event()
        self.reason = ""
        self.last_audio_at = time.monotonic()  # the watchdog's clock: last inbound frame (or connect)
        self._closed = False

    def _end(self, reason: str) -> None:
        if not self.ended.is_set():
            self.reason = reason
            self.ended.set()

    async def connect(self, timeout_s: float) -> None:
        """Offer → agent → answer, then wait for the media path. Raises `AgentError` on failure."""
        pc = self._pc = new_peer_connection(self._peer)
        pc.addTrack(self._outbound)
        tune_receivers(pc, self._peer)
        tune_senders(pc, self._peer)

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "audio" and self._pump is None:
                self._pump = asyncio.create_task(self._consume(track), name="agent-audio-in")

        @pc.on("connectionstatechange")
        def on_state() -> None:
            state = pc.connectionState
            log.debug("agent connection state: %s", state)
            if state == "connected":
                self._connected.set()
            elif state in ("failed", "closed"):
                self._end(f"the connection to the agent is {state}")

        offer = await pc.createOffer()
        offer_sdp = await set_local_description(pc, offer, self._peer)
        answer_sdp = await self._endpoint.exchange(offer_sdp)
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=answer_sdp, type="answer"))
        except (ValueError, AttributeError) as e:
            raise AgentBadAnswer(f"{self._endpoint.describe()} sent an SDP answer aiortc rejects: {e}") from e
        await first_of({"connected": self._connected.wait(), "ended": self.ended.wait()}, timeout_s)
        if not self._connected.is_set():
            why = self.reason or f"no media path within {timeout_s:g} s"
            raise AgentUnavailable(
                f"{self._endpoint.describe()} answered, but audio could not connect ({why}); "
                "UDP to the agent may be blocked: check the firewall and the ICE servers"
            )
        self.last_audio_at = time.monotonic()

    async def _consume(self, track: MediaStreamTrack) -> None:
        # Always drain the remote track: aiortc's queue behind it is unbounded.
        to_mono = ToMono()
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                self._end("the agent ended its audio")
                return
            self.last_audio_at = time.monotonic()
            self._on_audio(to_mono.convert(frame))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._end("closed")
        if self._pc is not None:
            await self._pc.close()
        await cancel_and_wait(self._pump)
