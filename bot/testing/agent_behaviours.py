"""What the stand-in agent does with what it hears, chosen by agent id.

Each behaviour turns one heard 20 ms frame into one reply frame, so replies keep the caller's cadence.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass

import numpy as np

from bot.audio.frames import BYTES_PER_FRAME, SAMPLE_RATE, SAMPLES_PER_FRAME

SILENT = b"\x00" * BYTES_PER_FRAME
HEARING_DBFS = -45.0  # a frame louder than this is "sound" (speech or tone), quieter is silence


class Behaviour:
    def reply(self, heard: bytes, loud: bool) -> bytes:
        raise NotImplementedError


class Echo(Behaviour):
    def reply(self, heard: bytes, loud: bool) -> bytes:
        return heard


class Tone(Behaviour):
    """Answers a steady tone while it hears sound, silence otherwise (phase-continuous)."""

    def __init__(self, freq_hz: float, amplitude: float = 0.4) -> None:
        self.freq_hz = freq_hz
        self._amplitude = amplitude
        self._phase = 0.0
        self._step = 2 * math.pi * freq_hz / SAMPLE_RATE

    def reply(self, heard: bytes, loud: bool) -> bytes:
        if not loud:
            return SILENT
        phases = self._phase + self._step * np.arange(SAMPLES_PER_FRAME)
        self._phase = float((phases[-1] + self._step) % (2 * math.pi))
        pcm: bytes = (self._amplitude * 32767 * np.sin(phases)).astype("<i2").tobytes()
        return pcm


class Speak(Behaviour):
    """After the caller talks (≥ 0.2 s of sound) and then stops (0.6 s quiet), says its sentence once per
    turn. It does not listen while speaking (no barge-in)."""

    TALK_FRAMES = 10
    QUIET_FRAMES = 30

    def __init__(self, speech: bytes) -> None:
        usable = len(speech) - len(speech) % BYTES_PER_FRAME
        self._speech = speech[:usable]
        self._talk = 0
        self._quiet = 0
        self._pos: int | None = None

    def reply(self, heard: bytes, loud: bool) -> bytes:
        if self._pos is not None:
            chunk = self._speech[self._pos : self._pos + BYTES_PER_FRAME]
            self._pos += BYTES_PER_FRAME
            if self._pos >= len(self._speech):
                self._pos = None
                self._talk = self._quiet = 0
            return chunk or SILENT
        if loud:
            self._talk += 1
            self._quiet = 0
        elif self._talk >= self.TALK_FRAMES:
            self._quiet += 1
            if self._quiet >= self.QUIET_FRAMES:
                self._pos = 0
        return SILENT


@dataclass(frozen=True)
class Plan:
    """What an agent id asks for: a behaviour name and its timing knobs."""

    kind: str  # echo | reflect | tone | speak | fail-500
    tone_hz: float = 660.0
    hangup_after_s: float | None = None  # close the peer connection (the caller sees BYE / closed)
    freeze_after_s: float | None = None  # stop sending audio but keep the connection up (a stall)
    answer_delay_s: float = 0.0
    later_answer_delay_s: float | None = None  # offers after the first one: answered this late instead


_NUMBER = r"(\d+(?:\.\d+)?)"
SLOW_ANSWER_DEFAULT_S = 5.0


def plan_for(agent_id: str) -> Plan | None:
    """The plan for an agent id, or None for an unknown id (the server answers 404).

    An id is a behaviour, optionally followed by `+`-separated modifiers: `hangup-after-S`,
    `freeze-after-S`, `slow-answer-S`, and `slow-reconnect-S` (every offer after the first one is
    answered S seconds late), e.g. `tone-660+slow-reconnect-5`.
    """
    base, *modifiers = agent_id.split("+")
    plan = _base_plan(base)
    for modifier in modifiers:
        if plan is None:
            return None
        plan = _modified(plan, modifier)
    return plan


def _modified(plan: Plan, modifier: str) -> Plan | None:
    m = re.fullmatch(rf"(hangup-after|freeze-after|slow-answer|slow-reconnect)-{_NUMBER}", modifier)
    if m is None:
        return None
    value = float(m.group(2))
    match m.group(1):
        case "hangup-after":
            return dataclasses.replace(plan, hangup_after_s=value)
        case "freeze-after":
            return dataclasses.replace(plan, freeze_after_s=value)
        case "slow-answer":
            return dataclasses.replace(plan, answer_delay_s=value)
        case _:
            return dataclasses.replace(plan, later_answer_delay_s=value)


def _base_plan(agent_id: str) -> Plan | None:
    if agent_id in ("echo", "reflect", "speak", "fail-500"):
        return Plan(agent_id)
    if agent_id == "tone":
        return Plan("tone")
    if m := re.fullmatch(rf"tone-{_NUMBER}", agent_id):
        hz = float(m.group(1))
        return Plan("tone", tone_hz=hz) if 20 <= hz <= 20_000 else None
    if m := re.fullmatch(rf"hangup-after-{_NUMBER}", agent_id):
        return Plan("echo", hangup_after_s=float(m.group(1)))
    if m := re.fullmatch(rf"freeze-after-{_NUMBER}", agent_id):
        return Plan("echo", freeze_after_s=float(m.group(1)))
    if agent_id == "slow-answer":
        return Plan("echo", answer_delay_s=SLOW_ANSWER_DEFAULT_S)
    if m := re.fullmatch(rf"slow-answer-{_NUMBER}", agent_id):
        return Plan("echo", answer_delay_s=float(m.group(1)))
    return None
