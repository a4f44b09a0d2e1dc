"""The words for what happened to a bot: states, end reasons, who ended it, failure codes and exit codes.

The one home of these words, below everything: it imports nothing of the project, so the service, the
events and the commands can speak of outcomes without loading a browser, a platform or the audio path.
Every failure code a bot can report is here, once; an exit code is looked up from a code, never copied.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum


class CallState(StrEnum):
    """States the bot reports, in the order they normally happen."""

    JOINING = "joining"
    AWAITING_ADMISSION = "awaiting_admission"
    IN_CALL = "in_call"
    ENDED = "ended"
    FAILED = "failed"


class EndReason(StrEnum):
    """Why a call the bot was in ended."""

    REMOVED = "removed"  # someone removed the bot
    HOST_ENDED = "host_ended"  # the host ended the meeting for everyone
    CALL_ENDED = "call_ended"  # the meeting ended some other way (page says so)
    ALONE = "alone"  # no other participant for the configured time
    MAX_DURATION = "max_duration"  # the bot's own maximum call duration
    LEFT = "left"  # the bot was told to leave (signal, API, cancel)
    AGENT_ENDED = "agent_ended"  # the agent could not be kept connected


class EndedBy(StrEnum):
    """Who ended the bot's time in the call (`ended.by`, `summary.ended_by`)."""

    MEETING = "meeting"  # the platform: host ended it, the bot was removed, the call ended
    BOT = "bot"  # the bot's own rules (alone, max duration) or a failure
    USER = "user"  # told to leave: a signal, the API, a cancel
    AGENT = "agent"  # the agent could not be kept connected


class FailureCode(StrEnum):
    """Why the bot never got into the call. Each is terminal unless listed in `RETRYABLE`."""

    DENIED = "denied"  # someone in the call denied the request
    LOBBY_TIMEOUT = "lobby_timeout"  # nobody answered the request in time
    BLOCKED = "blocked"  # the platform refused this browser ("You can't join this video call")
    SIGN_IN_REQUIRED = "sign_in_required"
    NOT_FOUND = "not_found"  # meeting code invalid or expired
    HOST_ABSENT = "host_absent"  # the host never started the meeting within the bound
    PASSCODE_WRONG = "passcode_wrong"
    CAPTCHA = "captcha"
    BOT_DETECTED = "bot_detected"  # an anti-bot wall
    UI_CHANGED = "ui_changed"  # an expected element never appeared: selectors need an update
    NETWORK_ERROR = "network_error"  # the browser could not reach the platform (its own error page)
    BROWSER_CRASHED = "browser_crashed"
    INVALID_URL = "invalid_url"


RETRYABLE: frozenset[FailureCode] = frozenset({FailureCode.BLOCKED})


class AgentFailureCode(StrEnum):
    """Why the agent could not be reached or kept (each `bot.agent.errors` class carries one)."""

    AGENT_ERROR = "agent_error"  # could not be reached or answered unusably (the base class)
    BAD_KEY = "bad_key"  # the private key was refused
    UNKNOWN_AGENT = "unknown_agent"  # the service does not know this agent id
    AGENT_UNREACHABLE = "agent_unreachable"  # down or unreachable after bounded retries
    BAD_ANSWER = "bad_answer"  # answered, but not with a usable SDP answer
    AGENT_TIMEOUT = "agent_timeout"  # accepted the request but did not answer in time


class RunFailureCode(StrEnum):
    """Why a bot ended outside the meeting's and the agent's words: its own process or its host."""

    AUDIO_LOST = "audio_lost"  # the bot's PulseAudio failed and could not be brought back
    CRASHED = "crashed"  # the bot process crashed, was killed, or hit an internal error
    CANCELLED = "cancelled"  # the bot's run was cancelled before it could end by itself
    LAUNCH_FAILED = "launch_failed"  # the service could not start the bot at all
    HOST_LOST = "host_lost"  # the worker host running the bot stopped answering


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

    @classmethod
    def known(cls, code: int) -> ExitCode | None:
        """The documented exit code for a process's return code, or None (a signal, an unknown code)."""
        try:
            return cls(code)
        except ValueError:
            return None

    @classmethod
    def failure_name(cls, code: int) -> str:
        """A failure code for a process that ended with `code`: its exit code's name, else "crashed"."""
        known = cls.known(code)
        return known.name.lower() if known is not None else RunFailureCode.CRASHED.value


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

AGENT_FAILURE_EXIT: dict[AgentFailureCode, ExitCode] = {
    AgentFailureCode.AGENT_ERROR: ExitCode.AGENT_UNREACHABLE,
    AgentFailureCode.BAD_KEY: ExitCode.BAD_KEY,
    AgentFailureCode.UNKNOWN_AGENT: ExitCode.UNKNOWN_AGENT,
    AgentFailureCode.AGENT_UNREACHABLE: ExitCode.AGENT_UNREACHABLE,
    AgentFailureCode.BAD_ANSWER: ExitCode.AGENT_UNREACHABLE,
    AgentFailureCode.AGENT_TIMEOUT: ExitCode.AGENT_UNREACHABLE,
}


def exit_code_for(code: FailureCode | AgentFailureCode | RunFailureCode) -> ExitCode:
    """The exit code of a failure, by its code: a join failure's, an agent's, or the run's own."""
    if isinstance(code, FailureCode):
        return JOIN_FAILURE_EXIT[code]
    if isinstance(code, AgentFailureCode):
        return AGENT_FAILURE_EXIT[code]
    return ExitCode.CRASHED  # audio lost, crashed, cancelled, launch failed, host lost
