"""PulseAudio devices for one bot, PCM moved between them and Python, and the frame source/sink seam."""

from bot.audio.devices import AudioDevices, BrowserAudio, DeviceNames, DeviceStreams, PulseDaemon
from bot.audio.frames import (
    FRAME_MS,
    SAMPLE_RATE,
    SAMPLES_PER_FRAME,
    FrameQueue,
    FrameSink,
    FrameSource,
    PcmFrame,
)
from bot.audio.pcm import PcmCapture, PcmPlayback

__all__ = [
    "FRAME_MS",
    "SAMPLES_PER_FRAME",
    "SAMPLE_RATE",
    "AudioDevices",
    "BrowserAudio",
    "DeviceNames",
    "DeviceStreams",
    "FrameQueue",
    "FrameSink",
    "FrameSource",
    "PcmCapture",
    "PcmFrame",
    "PcmPlayback",
    "PulseDaemon",
]
