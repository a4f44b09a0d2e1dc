"""Process exit codes per outcome: one table, documented in the README."""

from __future__ import annotations

from enum import IntEnum

from bot.platforms.base import FailureCode


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
    BAD_KEY = 20
    UNKNOWN_AGENT = 21
    AGENT_UNREACHABLE = 22
    CRASHED = 30  # browser crashed or an internal error


FAILURE_EXIT: dict[str, ExitCode] = {
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
    FailureCode.BROWSER_CRASHED: ExitCode.CRASHED,
    FailureCode.INVALID_URL: ExitCode.USAGE,
    # Agent failures, by AgentError.code
    "bad_key": ExitCode.BAD_KEY,
    "unknown_agent": ExitCode.UNKNOWN_AGENT,
    "agent_unreachable": ExitCode.AGENT_UNREACHABLE,
    "agent_timeout": ExitCode.AGENT_UNREACHABLE,
    "bad_answer": ExitCode.AGENT_UNREACHABLE,
    "crashed": ExitCode.CRASHED,
    "config": ExitCode.USAGE,
}


def exit_code_for(code: str) -> ExitCode:
    return FAILURE_EXIT.get(code, ExitCode.CRASHED)
