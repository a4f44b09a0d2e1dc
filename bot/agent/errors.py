"""Typed failures of an agent connection, each with a stable `code` and a message a user can act on."""

from __future__ import annotations

from bot.outcome import AgentFailureCode


class AgentError(Exception):
    """The agent could not be reached or answered unusably. `code` is stable (exit codes, events)."""

    code: AgentFailureCode = AgentFailureCode.AGENT_ERROR

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class AgentAuthError(AgentError):
    """The private key was refused (401/403 with the raw key and with `Bearer`)."""

    code = AgentFailureCode.BAD_KEY


class AgentNotFound(AgentError):
    """The service does not know this agent id (404)."""

    code = AgentFailureCode.UNKNOWN_AGENT


class AgentUnavailable(AgentError):
    """The service is down or unreachable (5xx, connection refused, DNS) after bounded retries."""

    code = AgentFailureCode.AGENT_UNREACHABLE


class AgentBadAnswer(AgentError):
    """The service answered, but not with a usable SDP answer (or refused our offer as malformed)."""

    code = AgentFailureCode.BAD_ANSWER


class AgentTimeout(AgentError):
    """The service accepted the request but did not answer in time."""

    code = AgentFailureCode.AGENT_TIMEOUT


__all__ = [
    "AgentAuthError",
    "AgentBadAnswer",
    "AgentError",
    "AgentNotFound",
    "AgentTimeout",
    "AgentUnavailable",
]
