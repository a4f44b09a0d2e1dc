"""Audio both ways between a frame source/sink (the bot's devices) and a voice agent over WebRTC."""

from bot.bridge.core import Bridge
from bot.bridge.link import AgentLink, Link, LinkFactory, aiortc_links
from bot.bridge.options import BridgeEvent, BridgeEventKind, BridgeOptions, BridgeStats

__all__ = [
    "AgentLink",
    "Bridge",
    "BridgeEvent",
    "BridgeEventKind",
    "BridgeOptions",
    "BridgeStats",
    "Link",
    "LinkFactory",
    "aiortc_links",
]
