"""PulseAudio devices for one bot, and PCM moved between them and Python."""

from bot.audio.devices import AudioDevices, BrowserAudio, DeviceNames, PulseDaemon
from bot.audio.pcm import (
    FRAME_MS,
    SAMPLE_RATE,
    SAMPLES_PER_FRAME,
    FrameQueue,
    PcmCapture,
    PcmPlayback,
)

__all__ = [
    "FRAME_MS",
    "SAMPLES_PER_FRAME",
    "SAMPLE_RATE",
    "AudioDevices",
    "BrowserAudio",
    "DeviceNames",
    "FrameQueue",
    "PcmCapture",
    "PcmPlayback",
    "PulseDaemon",
]
