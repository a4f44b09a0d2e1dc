"""Process exit codes per outcome: one table, documented in the README.

Looked up by type, never by a copied string: a join failure by its `FailureCode`, an agent failure by its
`AgentError` class (its nearest listed base class, so a new subclass inherits its parent's code).
"""

from __future__ import annotations

import functools
from enum import IntEnum
from typing import TYPE_CHECKING

from bot.platforms.base import FailureCode

if TYPE_CHECKING:
    from bot.agent.errors import AgentError


class ExitCode(IntEnum):
    COMPLETED = 0
    USAGE = 2  # bad arguments, settings or meeting URL
    DENIED = 10
    LOBBY_TIMEOUT = 11
    BLOCKED = 12
    NOT_FOUND = 13
    SIGN_IN_REQUIRED = 14
    HOST_ABSENT = 15
    PASSCODE_WRONG = 16
    BOT_WALL = 17  # captcha or anti-bot wall
    UI_CHANGED = 18
    NETWORK_ERROR = 19  # the browser could not reach the platform
    BAD_KEY = 20
    UNKNOWN_AGENT = 21
    AGENT_UNREACHABLE = 22
    CRASHED = 30  # browser crashed or an internal error


JOIN_FAILURE_EXIT: dict[FailureCode, ExitCode] = {
    FailureCode.DENIED: ExitCode.DENIED,
    FailureCode.LOBBY_TIMEOUT: ExitCode.LOBBY_TIMEOUT,
    FailureCode.BLOCKED: ExitCode.BLOCKED,
    FailureCode.NOT_FOUND: ExitCode.NOT_FOUND,
    FailureCode.SIGN_IN_REQUIRED: ExitCode.SIGN_IN_REQUIRED,
    FailureCode.HOST_ABSENT: ExitCode.HOST_ABSENT,
    FailureCode.PASSCODE_WRONG: ExitCode.PASSCODE_WRONG,
    FailureCode.CAPTCHA: ExitCode.BOT_WALL,
    FailureCode.BOT_DETECTED: ExitCode.BOT_WALL,
    FailureCode.UI_CHANGED: ExitCode.UI_CHANGED,
    FailureCode.NETWORK_ERROR: ExitCode.NETWORK_ERROR,
    FailureCode.BROWSER_CRASHED: ExitCode.CRASHED,
    FailureCode.INVALID_URL: ExitCode.USAGE,
}


@functools.cache
def agent_failure_exit() -> dict[type[AgentError], ExitCode]:
    """Exit code per `AgentError` class. Built on first use: importing `bot.agent` loads aiortc, which the
    scheduling service (it only needs `ExitCode`) has no use for."""
    from bot.agent.errors import (
        AgentAuthError,
        AgentBadAnswer,
        AgentError,
        AgentNotFound,
        AgentTimeout,
        AgentUnavailable,
    )

    return {
        AgentError: ExitCode.AGENT_UNREACHABLE,  # "could not be reached or answered unusably"
        AgentAuthError: ExitCode.BAD_KEY,
        AgentNotFound: ExitCode.UNKNOWN_AGENT,
        AgentUnavailable: ExitCode.AGENT_UNREACHABLE,
        AgentTimeout: ExitCode.AGENT_UNREACHABLE,
        AgentBadAnswer: ExitCode.AGENT_UNREACHABLE,
    }


def exit_code_for(failure: FailureCode | AgentError) -> ExitCode:
    """The exit code of a join failure (by code) or an agent failure (by the error's class)."""
    if isinstance(failure, FailureCode):
        return JOIN_FAILURE_EXIT[failure]
    table = agent_failure_exit()
    for cls in type(failure).__mro__:
        if cls in table:
            return table[cls]
    return ExitCode.CRASHED  # not reachable for an AgentError: its base class is listed
