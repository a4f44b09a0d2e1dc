"""A low-latency jitter buffer for Opus audio, a drop-in for aiortc's `JitterBuffer` on audio receivers.

Why replace aiortc's: its audio buffer releases a frame only once `prefetch` *later* packets have arrived
(even prefetch 1 costs one packet, 20 ms, per hop), and one lost packet stalls it until 16 packets have
piled up (~300 ms of silence), after which it keeps those packets as extra latency for the rest of the
call, since it releases one frame per arriving packet (measured with aiortc 1.16).

Here an in-order packet is released at once (one Opus packet is one whole frame, RFC 7587); a missing
packet is skipped as soon as a later one arrives, and a packet arriving after that is dropped as too late.
A loss costs exactly the lost frame and never adds delay. Waiting for reordered packets would not help:
the receiver takes at most one frame per arriving packet, so any wait stays as lag for the rest of the
call. Timing jitter passes through unchanged, exactly as with aiortc's buffer (which releases on arrival
too, not on a clock): the playback side absorbs it.
"""

from __future__ import annotations

from aiortc.jitterbuffer import JitterFrame
from aiortc.rtp import RtpPacket

_SEQ_MOD = 1 << 16


class AudioJitterBuffer:
    """`add(packet) -> (pli_flag, frame | None)`, like aiortc's `JitterBuffer` (the receiver's contract)."""

    def __init__(self, capacity: int = 16) -> None:
        self.capacity = capacity  # a jump further ahead than this restarts the sequence
        self._expected: int | None = None
        self.skipped = 0  # packets given up as lost
        self.dropped = 0  # packets that arrived after their turn (late or duplicate)

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        seq = packet.sequence_number
        if self._expected is None:
            self._expected = seq
        ahead = (seq - self._expected) % _SEQ_MOD
        if ahead >= _SEQ_MOD // 2 and _SEQ_MOD - ahead <= self.capacity:
            self.dropped += 1  # older than what was already played: too late (or a duplicate)
            return False, None
        if ahead >= self.capacity:
            ahead = 0  # a jump (the sender restarted its sequence): start again from this packet
        self.skipped += ahead
        self._expected = (seq + 1) % _SEQ_MOD
        return False, JitterFrame(data=packet._data, timestamp=packet.timestamp)  # type: ignore[attr-defined]
