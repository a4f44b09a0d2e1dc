"""The service's options ([scheduler]), built from the settings; the defaults are the settings' own.

Light on purpose (no SQLAlchemy, no APScheduler): the settings loader and every command may import it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path

from bot.options import OptionError
from bot.settings import SchedulerSection, Settings


def default_db_url() -> str:
    """A SQLite file in the user's state directory (scheduler.db_url, i.e. BOT_DB_URL, replaces it)."""
    state = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return f"sqlite:///{state / 'meeting-bot' / 'bots.db'}"


_DEFAULTS = SchedulerSection()  # the defaults live with the settings, once


@dataclass
class SchedulerConfig:
    """The service's options. What each means: bot.settings.SchedulerSection. An invalid one raises an
    `OptionError` naming it, in the words the settings use for scheduler.<name>."""

    db_url: str = field(default="", repr=False)  # may hold a password; empty: default_db_url()
    lead_time_s: float = _DEFAULTS.lead_time_s
    misfire_grace_s: float = _DEFAULTS.misfire_grace_s
    max_concurrent_bots: int = _DEFAULTS.max_concurrent_bots
    queue_timeout_s: float = _DEFAULTS.queue_timeout_s
    stop_timeout_s: float = _DEFAULTS.stop_timeout_s
    poll_interval_s: float = _DEFAULTS.poll_interval_s

    def __post_init__(self) -> None:
        self.db_url = self.db_url or default_db_url()
        for name in ("lead_time_s", "queue_timeout_s"):
            if getattr(self, name) < 0:
                raise OptionError(name, "must be >= 0 seconds")
        for name in ("misfire_grace_s", "stop_timeout_s", "poll_interval_s"):
            if getattr(self, name) <= 0:
                raise OptionError(name, "must be a positive number of seconds")
        if self.max_concurrent_bots < 1:
            raise OptionError("max_concurrent_bots", "must be at least 1")

    @classmethod
    def from_settings(cls, s: Settings) -> SchedulerConfig:
        """From [scheduler], whose keys are these options' names."""
        return cls(**{f.name: getattr(s.scheduler, f.name) for f in fields(cls)})
