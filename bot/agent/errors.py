"""Typed failures of an agent connection, each with a stable `code` and a message a user can act on."""

from __future__ import annotations


class AgentError(Exception):
    """The agent could not be reached or answered unusably. `code` is stable (exit codes, events)."""

    code: str = "agent_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class AgentAuthError(AgentError):
    """The private key was refused (401/403 with the raw key and with `Bearer`)."""

    code = "bad_key"


class AgentNotFound(AgentError):
    """The service does not know this agent id (404)."""

    code = "unknown_agent"


class AgentUnavailable(AgentError):
    """The service is down or unreachable (5xx, connection refused, DNS) after bounded retries."""

    code = "agent_unreachable"


class AgentBadAnswer(AgentError):
    """The service answered, but not with a usable SDP answer (or refused our offer as malformed)."""

    code = "bad_answer"


class AgentTimeout(AgentError):
    """The service accepted the request but did not answer in time."""

    code = "agent_timeout"


__all__ = [
    "AgentAuthError",
    "AgentBadAnswer",
    "AgentError",
    "AgentNotFound",
    "AgentTimeout",
    "AgentUnavailable",
]
