"""The two aiortc/aioice seams: receive prefetch and (test-only) loopback host candidates."""

from __future__ import annotations

import aioice.ice
import pytest
from aiortc.rtcrtpreceiver import RTCRtpReceiver
from aiortc.rtp import RtpPacket

from bot.agent.jitter import AudioJitterBuffer
from bot.agent.peer import (
    AiortcInternalsChanged,
    PeerOptions,
    jitter_buffer_of,
    new_peer_connection,
    receive_prefetch_of,
    replace_jitter_buffer,
    set_local_description,
    set_receive_prefetch,
    tune_receivers,
)


async def test_jitter_buffer_seam_on_audio_receivers() -> None:
    pc = new_peer_connection(PeerOptions.loopback())
    try:
        transceiver = pc.addTransceiver("audio")
        assert receive_prefetch_of(transceiver.receiver) == 4  # aiortc's own default
        tune_receivers(pc, PeerOptions(ice_servers=[], jitter_buffer="aiortc", receive_prefetch=1))
        assert receive_prefetch_of(transceiver.receiver) == 1
        set_receive_prefetch(transceiver.receiver, 3)
        assert receive_prefetch_of(transceiver.receiver) == 3
        tune_receivers(pc, PeerOptions(ice_servers=[]))  # the default: ours
        assert isinstance(jitter_buffer_of(transceiver.receiver), AudioJitterBuffer)
        assert receive_prefetch_of(transceiver.receiver) is None
    finally:
        await pc.close()


def test_prefetch_seam_fails_loudly_when_aiortc_internals_move() -> None:
    class Moved(RTCRtpReceiver):  # a receiver whose jitter buffer lives elsewhere
        def __init__(self) -> None:
            pass

    with pytest.raises(AiortcInternalsChanged, match="jitter"):
        set_receive_prefetch(Moved(), 1)
    with pytest.raises(AiortcInternalsChanged, match="jitter"):
        replace_jitter_buffer(Moved(), AudioJitterBuffer())


def test_peer_options_validate() -> None:
    with pytest.raises(ValueError, match="receive_prefetch"):
        PeerOptions(receive_prefetch=16)
    with pytest.raises(ValueError, match="jitter_buffer"):
        PeerOptions(jitter_buffer="big")
    with pytest.raises(ValueError, match="stun:"):
        PeerOptions(ice_servers=["stun.l.google.com:19302"])
    assert PeerOptions().ice_servers is None  # None = aiortc's default STUN, not "no ICE servers"
    assert PeerOptions().host_addresses is None


async def test_loopback_host_addresses_stay_scoped_to_that_peer() -> None:
    options = PeerOptions.loopback()
    pc = new_peer_connection(options)
    try:
        pc.addTransceiver("audio")
        sdp = await set_local_description(pc, await pc.createOffer(), options)
    finally:
        await pc.close()
    candidates = [line for line in sdp.splitlines() if line.startswith("a=candidate")]
    assert candidates and all(" 127.0.0.1 " in c for c in candidates)
    # Outside that call aioice gathers as usual: every interface but loopback.
    assert "127.0.0.1" not in aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False)


def _packets(seqs: list[int]) -> list[tuple[int, int | None]]:
    jb = AudioJitterBuffer()
    out = []
    for seq in seqs:
        packet = RtpPacket(sequence_number=seq % 65536, timestamp=seq * 960)
        packet._data = bytes([seq % 256])  # type: ignore[attr-defined]
        _, frame = jb.add(packet)
        out.append((seq % 65536, None if frame is None else frame.timestamp // 960))
    return out


def test_low_latency_buffer_plays_in_order_packets_at_once() -> None:
    assert _packets([0, 1, 2, 3]) == [(0, 0), (1, 1), (2, 2), (3, 3)]
    assert [f for _, f in _packets(list(range(65533, 65539)))] == list(range(65533, 65539))


def test_low_latency_buffer_loss_costs_only_the_lost_frame() -> None:
    # aiortc's own buffer stalls ~14 packets here and keeps them as latency; ours skips 5 and goes on.
    out = _packets([s for s in range(12) if s != 5])
    assert out == [(s, s) for s in range(12) if s != 5]


def test_low_latency_buffer_drops_late_packets_and_survives_sequence_jumps() -> None:
    assert _packets([0, 1, 3, 2, 4]) == [(0, 0), (1, 1), (3, 3), (2, None), (4, 4)]
    assert _packets([0, 1, 5000, 5001]) == [(0, 0), (1, 1), (5000, 5000), (5001, 5001)]
    assert _packets([5000, 5001, 7, 8]) == [(5000, 5000), (5001, 5001), (7, 7), (8, 8)]
