"""The agent seam: one SDP offer in, one SDP answer out.

Millis is the first implementation; any agent that takes a full offer and returns a full answer over
HTTP (Pipecat's small WebRTC transport, OpenAI Realtime's `/calls`) fits the same shape.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class AgentEndpoint(Protocol):
    async def exchange(self, offer_sdp: str) -> str:
        """Send a complete offer SDP (ICE gathered) and return the agent's complete answer SDP.

        Raises `bot.agent.errors.AgentError` subclasses on failure.
        """
        ...

    def describe(self) -> str:
        """A short description for logs and events; never contains a secret."""
        ...
