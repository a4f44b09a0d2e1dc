"""aiortc peer connections as the bot needs them: ICE servers, receive latency, codecs on the event loop,
and (tests only) loopback.

Three seams into aiortc/aioice internals live here and nowhere else, each checked so a library upgrade that
moves them fails loudly instead of silently changing behaviour:

- Receive latency. Every aiortc audio receiver holds `JitterBuffer(capacity=16, prefetch=4)` in the
  private attribute `RTCRtpReceiver._RTCRtpReceiver__jitter_buffer`; aiortc offers no option.
  `replace_jitter_buffer()` is the one function that swaps it (before any packet arrives), checking the
  attribute first. By default the bot installs `AudioJitterBuffer` (bot/agent/jitter.py): in-order
  packets play at once, and a lost packet costs only itself. aiortc's buffer holds `prefetch` later
  packets before releasing one (even prefetch 1 adds 20 ms per hop), and after one lost packet it stalls
  ~300 ms and keeps that as extra latency for the rest of the call. `jitter_buffer="aiortc"` keeps
  aiortc's with `receive_prefetch` packets. Measured (bridge-internal round trip through an echo agent,
  both peers alike): aiortc prefetch 4: 183 ms; prefetch 1: 43 ms; ours: see
  docs/benchmarks.md (bench-bridge).
- Codec threads. Every aiortc audio receiver decodes in a thread of its own, fed through the private
  queue `RTCRtpReceiver._RTCRtpReceiver__decoder_queue` and handing each frame back to the loop; the
  sender encodes each frame in the loop's thread pool. With `codecs="inline"` (the default) the bot
  decodes and encodes Opus in mono on the event loop instead (bot/agent/codecs.py says why, with the
  figures): `replace_decoder()` swaps the decoder queue for an `InlineDecoder` before the receiver starts,
  checking the attributes first; `tune_senders()` offers Opus only and wraps the outbound track in an
  `OpusTrack`, whose packets aiortc's sender packs as they are (public API: pre-encoded media).
  `codecs="aiortc"` keeps aiortc's codec threads.
- Host candidates (test configuration only). aioice gathers host candidates from every interface but
  loopback, through the module function `aioice.ice.get_host_addresses`. A test that must keep media on
  127.0.0.1 sets `PeerOptions.host_addresses`; `set_local_description()` then scopes a replacement of that
  function to the calling task with a ContextVar, so other peers in the process are unaffected. A real call
  never sets `host_addresses` and never touches aioice.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import queue
from collections.abc import Callable
from typing import Any

import aioice.ice
import aiortc
from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.codecs.opus import OpusEncoder
from aiortc.jitterbuffer import JitterBuffer
from aiortc.rtcrtpreceiver import RemoteStreamTrack

from bot.agent.codecs import InlineDecoder, OpusTrack
from bot.agent.jitter import AudioJitterBuffer
from bot.agent.options import AUDIO_JITTER_CAPACITY, PeerOptions


def new_peer_connection(options: PeerOptions) -> RTCPeerConnection:
    if options.ice_servers is None:
        return RTCPeerConnection()
    servers = [RTCIceServer(urls=url) for url in options.ice_servers]
    return RTCPeerConnection(RTCConfiguration(iceServers=servers))


class AiortcInternalsChanged(RuntimeError):
    """An aiortc/aioice internal this module relies on is gone: pin the library or update the seam."""

    def __init__(self, what: str) -> None:
        super().__init__(f"{what} (aiortc {aiortc.__version__}): pin aiortc or update bot/agent/peer.py")


_JITTER_ATTR = "_RTCRtpReceiver__jitter_buffer"


def replace_jitter_buffer(receiver: RTCRtpReceiver, buffer: object) -> None:
    """The one seam into aiortc's receiver: swap its audio jitter buffer (before media flows).

    Raises `AiortcInternalsChanged` when aiortc no longer keeps a `JitterBuffer` where this expects it.
    """
    current = getattr(receiver, _JITTER_ATTR, None)
    if not isinstance(current, JitterBuffer | AudioJitterBuffer):
        raise AiortcInternalsChanged(f"aiortc's RTCRtpReceiver has no {_JITTER_ATTR} jitter buffer any more")
    setattr(receiver, _JITTER_ATTR, buffer)


def set_receive_prefetch(receiver: RTCRtpReceiver, packets: int) -> None:
    """Keep aiortc's jitter buffer but make it hold `packets` packets before playout instead of 4."""
    replace_jitter_buffer(receiver, JitterBuffer(capacity=AUDIO_JITTER_CAPACITY, prefetch=packets))


def jitter_buffer_of(receiver: RTCRtpReceiver) -> object:
    """The receiver's current jitter buffer (for tests and diagnostics)."""
    buffer = getattr(receiver, _JITTER_ATTR, None)
    if buffer is None:
        raise AiortcInternalsChanged(f"aiortc's RTCRtpReceiver has no {_JITTER_ATTR} any more")
    return buffer


def receive_prefetch_of(receiver: RTCRtpReceiver) -> int | None:
    """aiortc's prefetch on this receiver, or None when our low-latency buffer is installed."""
    buffer = jitter_buffer_of(receiver)
    if isinstance(buffer, JitterBuffer):
        prefetch: int = buffer._prefetch
        return prefetch
    return None


_DECODER_QUEUE_ATTR = "_RTCRtpReceiver__decoder_queue"
_DECODER_THREAD_ATTR = "_RTCRtpReceiver__decoder_thread"


def replace_decoder(
    receiver: RTCRtpReceiver, make: Callable[[Callable[[], asyncio.Queue[Any]]], Any] = InlineDecoder
) -> Any:
    """The one seam into aiortc's decoding: packets are decoded on the loop by an `InlineDecoder` (or what
    `make(track_queue)` returns: anything with the same `put`/`put_nowait`/`get`, e.g. the stand-in's
    reflector, bot/testing/reflect.py).

    Must run before the receiver starts (before the connection is up). Raises `AiortcInternalsChanged`
    when aiortc no longer feeds its decoder thread from a `queue.Queue` where this expects it, or when its
    remote tracks no longer queue frames in an `asyncio.Queue` called `_queue`.
    """
    current = getattr(receiver, _DECODER_QUEUE_ATTR, None)
    if current is None or not hasattr(current, "put"):
        raise AiortcInternalsChanged(f"aiortc's RTCRtpReceiver has no {_DECODER_QUEUE_ATTR} queue any more")
    if not hasattr(receiver, _DECODER_THREAD_ATTR):
        raise AiortcInternalsChanged(f"aiortc's RTCRtpReceiver has no {_DECODER_THREAD_ATTR} any more")
    if getattr(receiver, _DECODER_THREAD_ATTR) is not None:
        raise RuntimeError("the receiver has started: replace its decoder before the connection is up")
    _check_remote_track()
    if not isinstance(current, queue.Queue):
        return current  # already replaced

    def track_queue() -> asyncio.Queue[Any]:
        frames = getattr(getattr(receiver, "_track", None), "_queue", None)
        if not isinstance(frames, asyncio.Queue):
            raise AiortcInternalsChanged("aiortc's RTCRtpReceiver has no _track._queue to hand frames to")
        return frames

    decoder = make(track_queue)
    setattr(receiver, _DECODER_QUEUE_ATTR, decoder)
    return decoder


@functools.cache
def _check_remote_track() -> None:
    if not isinstance(getattr(RemoteStreamTrack("audio"), "_queue", None), asyncio.Queue):
        raise AiortcInternalsChanged("aiortc's RemoteStreamTrack no longer queues frames in _queue")


def decoder_of(receiver: RTCRtpReceiver) -> object:
    """The receiver's decoder queue: an `InlineDecoder`, or aiortc's own `queue.Queue` (tests)."""
    return getattr(receiver, _DECODER_QUEUE_ATTR, None)


def tune_receivers(pc: RTCPeerConnection, options: PeerOptions) -> None:
    """Install the configured jitter buffer and decoder on every audio receiver of `pc`."""
    for transceiver in pc.getTransceivers():
        if transceiver.kind != "audio":
            continue
        if options.jitter_buffer == "low-latency":
            replace_jitter_buffer(transceiver.receiver, AudioJitterBuffer())
        elif options.receive_prefetch != 4:
            set_receive_prefetch(transceiver.receiver, options.receive_prefetch)
        if options.codecs == "inline":
            replace_decoder(transceiver.receiver)


def tune_senders(pc: RTCPeerConnection, options: PeerOptions) -> None:
    """With `codecs="inline"`: every audio sender of `pc` offers Opus only and sends our Opus packets.

    Call it after `addTrack()` and before the offer (or, answering, before the answer). aiortc's sender
    packs a packet a track returns with the negotiated codec's `pack()`: Opus only, so it is always right.
    """
    if options.codecs != "inline":
        return
    if not callable(getattr(OpusEncoder, "pack", None)):
        raise AiortcInternalsChanged("aiortc's OpusEncoder has no pack() for pre-encoded packets any more")
    opus = [c for c in RTCRtpSender.getCapabilities("audio").codecs if c.mimeType.lower() == "audio/opus"]
    if not opus:
        raise AiortcInternalsChanged("aiortc offers no Opus")
    for transceiver in pc.getTransceivers():
        track = transceiver.sender.track
        if transceiver.kind != "audio" or track is None or isinstance(track, OpusTrack):
            continue
        transceiver.setCodecPreferences(opus)
        transceiver.sender.replaceTrack(OpusTrack(track))


_host_addresses: contextvars.ContextVar[tuple[str, ...] | None] = contextvars.ContextVar(
    "bot_ice_host_addresses", default=None
)


def _install_host_address_scope() -> None:
    """Once per process: route aioice's host-address lookup through the ContextVar (default: unchanged)."""
    original: Callable[..., list[str]] | None = getattr(aioice.ice, "get_host_addresses", None)
    if original is None or not callable(original):
        raise AiortcInternalsChanged("aioice.ice.get_host_addresses is gone: host_addresses cannot be set")
    if getattr(original, "_bot_scoped", False):
        return

    def scoped(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        only = _host_addresses.get()
        if only is None:
            return original(use_ipv4=use_ipv4, use_ipv6=use_ipv6)
        return list(only)

    scoped._bot_scoped = True  # type: ignore[attr-defined]
    aioice.ice.get_host_addresses = scoped


async def set_local_description(
    pc: RTCPeerConnection, description: RTCSessionDescription, options: PeerOptions
) -> str:
    """`setLocalDescription` (which gathers ICE: aiortc has no trickle) and return the complete SDP."""
    if options.host_addresses is None:
        await pc.setLocalDescription(description)
    else:
        _install_host_address_scope()
        token = _host_addresses.set(tuple(options.host_addresses))
        try:
            # aiortc gathers in tasks created here: they copy this context, so the scope reaches them.
            await pc.setLocalDescription(description)
        finally:
            _host_addresses.reset(token)
    local: Any = pc.localDescription
    sdp: str = local.sdp
    return sdp


__all__ = [
    "AiortcInternalsChanged",
    "PeerOptions",
    "decoder_of",
    "jitter_buffer_of",
    "new_peer_connection",
    "receive_prefetch_of",
    "replace_decoder",
    "replace_jitter_buffer",
    "set_local_description",
    "set_receive_prefetch",
    "tune_receivers",
    "tune_senders",
]
