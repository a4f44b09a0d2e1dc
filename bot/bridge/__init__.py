"""Audio both ways between the bot's PulseAudio devices and a voice agent over WebRTC."""

from bot.bridge.core import Bridge
from bot.bridge.options import BridgeEvent, BridgeOptions, BridgeStats

__all__ = ["Bridge", "BridgeEvent", "BridgeOptions", "BridgeStats"]
