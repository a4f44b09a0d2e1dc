"""Optional WAV recording of both directions (s16le mono 48 kHz, one file each)."""

from __future__ import annotations

import logging
import time
import wave
from pathlib import Path

from bot.audio.frames import SAMPLE_RATE

log = logging.getLogger(__name__)


class WavRecorder:
    """Appends PCM to a WAV file. Writes go to a buffered file (50 small writes a second): cheap enough
    for the event loop, and the header is fixed on `close()`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._wav: wave.Wave_write | None = wave.open(str(path), "wb")  # noqa: SIM115 - closed in close()
        self._wav.setnchannels(1)
        self._wav.setsampwidth(2)
        self._wav.setframerate(SAMPLE_RATE)

    def write(self, pcm: bytes) -> None:
        """Raises OSError when the disk refuses (full, gone): the caller stops recording."""
        if self._wav is not None:
            self._wav.writeframesraw(pcm)

    def close(self) -> None:
        """Fixes the header and closes; never raises (after a failed write the file is what it is)."""
        wav, self._wav = self._wav, None
        if wav is not None:
            try:
                wav.close()  # closes the file even when the last flush fails
            except OSError as e:
                log.warning("closing the recording %s: %s", self.path, e)


def recording_paths(directory: Path) -> tuple[Path, Path]:
    """`<stamp>-meeting-to-agent.wav` and `<stamp>-agent-to-meeting.wav` in `directory` (created)."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return directory / f"{stamp}-meeting-to-agent.wav", directory / f"{stamp}-agent-to-meeting.wav"
