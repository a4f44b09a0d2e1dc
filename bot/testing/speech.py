"""Spoken sentences as 48 kHz mono s16le PCM: espeak-ng speaks (22.05 kHz), PyAV resamples.

PyAV is already a dependency (aiortc's codecs), so the image needs no sox for the demo.
"""

from __future__ import annotations

import functools
import io
import shutil
import subprocess
import tempfile
import wave
from pathlib import Path

import av
import numpy as np

from bot.audio.frames import SAMPLE_RATE

DEFAULT_SENTENCE = "Hello, I am the meeting agent. How can I help you today?"


def _espeak() -> str:
    path = shutil.which("espeak-ng")
    if path is None:
        raise RuntimeError("espeak-ng is not installed: run scripts/setup (Debian package espeak-ng)")
    return path


def _resample_to_48k_mono(pcm: bytes, rate: int, channels: int) -> bytes:
    samples = np.frombuffer(pcm, dtype=np.int16).reshape(1, -1)
    frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono" if channels == 1 else "stereo")
    frame.sample_rate = rate
    resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
    out = b"".join(bytes(f.planes[0])[: f.samples * 2] for f in resampler.resample(frame))
    return out + b"".join(bytes(f.planes[0])[: f.samples * 2] for f in resampler.resample(None))


def speech_pcm_uncached(text: str, voice: str = "en-us") -> bytes:
    with tempfile.TemporaryDirectory(prefix="bot-agent-") as tmp:
        raw = Path(tmp) / "espeak.wav"
        subprocess.run(
            [_espeak(), "-v", voice, "-w", str(raw), text], check=True, capture_output=True, timeout=30
        )
        with wave.open(str(raw), "rb") as wav:
            if wav.getsampwidth() != 2:
                raise RuntimeError(f"espeak-ng wrote {8 * wav.getsampwidth()}-bit audio; 16-bit expected")
            return _resample_to_48k_mono(
                wav.readframes(wav.getnframes()), wav.getframerate(), wav.getnchannels()
            )


@functools.lru_cache(maxsize=8)
def speech_pcm(text: str = DEFAULT_SENTENCE, voice: str = "en-us") -> bytes:
    """`text` spoken, as raw s16le mono 48 kHz bytes (cached: synthesis takes ~0.2 s)."""
    return speech_pcm_uncached(text, voice)


def wav_bytes(pcm: bytes) -> bytes:
    """s16le mono 48 kHz PCM as the bytes of a WAV file."""
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(SAMPLE_RATE)
        wav.writeframes(pcm)
    return out.getvalue()


def make_speech_wav(text: str, out: Path, voice: str = "en-us", pad_s: float = 0.0) -> Path:
    """Writes `text` spoken as a 48 kHz mono 16-bit WAV at `out`, with `pad_s` of trailing silence."""
    out.write_bytes(wav_bytes(speech_pcm(text, voice) + bytes(2 * int(pad_s * SAMPLE_RATE))))
    return out
