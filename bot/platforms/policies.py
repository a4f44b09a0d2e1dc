"""When a bot gives up joining and when it ends a call on its own: the bounds every platform's join and
call obey. Pure data with its rules, so the settings take their defaults from here without loading a
platform."""

from __future__ import annotations

from dataclasses import dataclass

from bot.options import OptionError


@dataclass(frozen=True)
class JoinPolicy:
    """Bounds on joining, all in seconds: the defaults and rules of the [call] settings that bound a join
    (bot.settings takes them from here; bot.call.config builds the policy from the settings)."""

    lobby_timeout_s: float = 600.0  # Meet itself gives up after about 10 minutes
    host_absent_timeout_s: float = 300.0
    ui_timeout_s: float = 20.0  # how long a known screen may show no progress before UI_CHANGED
    ui_stuck_s: float = 30.0  # how long no known screen may show before UI_CHANGED
    network_retry_s: float = 60.0  # how long the browser's error page is retried
    retries: int = 2  # extra attempts after a retryable failure (RETRYABLE); Meet often lets a retry in
    retry_delay_s: float = 5.0

    def __post_init__(self) -> None:
        for name in (
            "lobby_timeout_s",
            "host_absent_timeout_s",
            "ui_timeout_s",
            "ui_stuck_s",
            "network_retry_s",
        ):
            if getattr(self, name) <= 0:
                raise OptionError(name, "must be a positive number of seconds")
        if not 0 <= self.retries <= 10:
            raise OptionError("retries", "must be between 0 and 10")
        if self.retry_delay_s < 0:
            raise OptionError("retry_delay_s", "must be >= 0 seconds")


@dataclass(frozen=True)
class CallPolicy:
    """When the bot ends a call on its own (the defaults and rules of those [call] settings)."""

    alone_after_s: float = 60.0
    max_duration_s: float = 3 * 3600.0

    def __post_init__(self) -> None:
        for name in ("alone_after_s", "max_duration_s"):
            if getattr(self, name) <= 0:
                raise OptionError(name, "must be a positive number of seconds")
