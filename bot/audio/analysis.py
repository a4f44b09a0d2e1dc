"""Measurements on PCM that a person would check: which frequency is there, how loud, when it starts."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from bot.audio.frames import SAMPLE_RATE

Samples = npt.NDArray[np.float64]


def to_samples(pcm: bytes) -> Samples:
    """s16le mono bytes → floats in [-1, 1)."""
    return np.frombuffer(pcm, dtype="<i2").astype(np.float64) / 32768.0


def tone(freq_hz: float, seconds: float, amplitude: float = 0.5, rate: int = SAMPLE_RATE) -> bytes:
    """A sine tone as s16le mono bytes."""
    t = np.arange(int(seconds * rate)) / rate
    wave = amplitude * np.sin(2 * math.pi * freq_hz * t)
    return (wave * 32767).astype("<i2").tobytes()


def silence(seconds: float, rate: int = SAMPLE_RATE) -> bytes:
    return b"\x00\x00" * int(seconds * rate)


def rms_dbfs(pcm: bytes) -> float:
    """Level in dBFS; -inf-like -120 for digital silence."""
    s = to_samples(pcm)
    if s.size == 0:
        return -120.0
    rms = float(np.sqrt(np.mean(s * s)))
    return 20 * math.log10(rms) if rms > 1e-6 else -120.0


def dominant_frequency(pcm: bytes, rate: int = SAMPLE_RATE) -> float:
    """The strongest frequency in the signal (Hz), 0.0 for silence."""
    s = to_samples(pcm)
    if s.size < 64 or rms_dbfs(pcm) < -60:
        return 0.0
    window = np.hanning(s.size)
    spectrum = np.abs(np.fft.rfft(s * window))
    spectrum[0] = 0.0
    peak = int(np.argmax(spectrum))
    return float(peak * rate / s.size)


def onsets(
    pcm: bytes, threshold_dbfs: float = -30.0, min_gap_s: float = 0.3, rate: int = SAMPLE_RATE
) -> list[float]:
    """Times (s from the start) where the level rises above the threshold after at least `min_gap_s` below.

    Resolution is 1 ms blocks: good enough for latency figures in tens of milliseconds.
    """
    s = to_samples(pcm)
    block = rate // 1000
    n = s.size // block
    if n == 0:
        return []
    blocks = s[: n * block].reshape(n, block)
    levels = np.sqrt(np.mean(blocks * blocks, axis=1))
    above = levels > 10 ** (threshold_dbfs / 20)
    found: list[float] = []
    last_above = -math.inf
    for i in np.flatnonzero(above):
        t = float(i) / 1000
        if t - last_above >= min_gap_s:
            found.append(t)
        last_above = t
    return found
