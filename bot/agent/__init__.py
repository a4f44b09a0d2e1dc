"""Agent endpoints: the offer-in/answer-out seam, Millis, and the aiortc peer setup."""

from bot.agent.base import AgentEndpoint
from bot.agent.errors import (
    AgentAuthError,
    AgentBadAnswer,
    AgentError,
    AgentNotFound,
    AgentTimeout,
    AgentUnavailable,
)
from bot.agent.millis import MillisConfig, MillisEndpoint
from bot.agent.peer import PeerOptions

__all__ = [
    "AgentAuthError",
    "AgentBadAnswer",
    "AgentEndpoint",
    "AgentError",
    "AgentNotFound",
    "AgentTimeout",
    "AgentUnavailable",
    "MillisConfig",
    "MillisEndpoint",
    "PeerOptions",
]
