"""Spoken sentences as 48 kHz mono s16le PCM, made with espeak-ng (22.05 kHz) and resampled by sox."""

from __future__ import annotations

import functools
import shutil
import subprocess
import tempfile
import wave
from pathlib import Path

from bot.audio.pcm import SAMPLE_RATE

DEFAULT_SENTENCE = "Hello, I am the meeting agent. How can I help you today?"


def _tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} is not installed: run scripts/setup (Debian package {package})")
    return path


def make_speech_wav(text: str, out: Path, voice: str = "en-us", pad_s: float = 0.0) -> Path:
    """Writes `text` spoken as a 48 kHz mono 16-bit WAV at `out` (with `pad_s` of trailing silence)."""
    with tempfile.TemporaryDirectory(prefix="bot-agent-") as tmp:
        raw = Path(tmp) / "espeak.wav"
        subprocess.run(
            [_tool("espeak-ng", "espeak-ng"), "-v", voice, "-w", str(raw), text],
            check=True,
            capture_output=True,
            timeout=30,
        )
        command = [_tool("sox", "sox"), str(raw), "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16", str(out)]
        if pad_s > 0:
            command += ["pad", "0", f"{pad_s:g}"]
        subprocess.run(command, check=True, capture_output=True, timeout=30)
    return out


@functools.lru_cache(maxsize=8)
def speech_pcm(text: str = DEFAULT_SENTENCE, voice: str = "en-us") -> bytes:
    """`text` spoken, as raw s16le mono 48 kHz bytes (cached: synthesis takes ~0.2 s)."""
    with tempfile.TemporaryDirectory(prefix="bot-agent-") as tmp:
        path = make_speech_wav(text, Path(tmp) / "speech.wav", voice)
        with wave.open(str(path), "rb") as wav:
            if wav.getframerate() != SAMPLE_RATE or wav.getnchannels() != 1 or wav.getsampwidth() != 2:
                raise RuntimeError(f"sox produced an unexpected format in {path}")
            return wav.readframes(wav.getnframes())
