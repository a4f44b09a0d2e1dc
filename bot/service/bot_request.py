"""A bot request: what one bot should do, checked field by field with messages that say what to fix.

Shared by the API, the CLI and the scheduler, so every way in refuses the same inputs in the same words.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bot.settings import REGIONS

CLOCK_SKEW_S = 5.0  # a join_at this little in the past counts as "now" (client clocks differ)
_METADATA_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,63}$")


@dataclass(frozen=True)
class BotRequest:
    """What one bot should do. Holds no secret: the Millis key comes from the launcher's environment."""

    bot_id: str
    meeting_url: str
    agent_id: str
    bot_name: str | None = None
    region: str | None = None
    max_duration_s: float | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    webhook_url: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "meeting_url": self.meeting_url,
            "agent_id": self.agent_id,
            "bot_name": self.bot_name,
            "region": self.region,
            "max_duration_s": self.max_duration_s,
            "metadata": dict(self.metadata),
            "webhook_url": self.webhook_url,
        }

    @classmethod
    def from_dict(cls, bot_id: str, data: Mapping[str, Any]) -> BotRequest:
        return cls(
            bot_id=bot_id,
            meeting_url=str(data["meeting_url"]),
            agent_id=str(data["agent_id"]),
            bot_name=data.get("bot_name"),
            region=data.get("region"),
            max_duration_s=data.get("max_duration_s"),
            metadata={str(k): str(v) for k, v in (data.get("metadata") or {}).items()},
            webhook_url=data.get("webhook_url"),
        )


class RequestError(ValueError):
    """A bot request is invalid; `field` names the input to fix."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def parse_join_at(value: str | dt.datetime | None, now: dt.datetime | None = None) -> dt.datetime:
    """ISO 8601 with a time zone, not in the past; None means now."""
    now = now or dt.datetime.now(dt.UTC)
    if value is None:
        return now
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            raise RequestError(
                "join_at", f"{value!r} is not an ISO 8601 time; write e.g. 2030-05-01T14:00:00+02:00"
            ) from None
    if value.tzinfo is None or value.utcoffset() is None:
        raise RequestError(
            "join_at", f"{value.isoformat()} has no time zone; add one, e.g. {value.isoformat()}Z or +02:00"
        )
    value = value.astimezone(dt.UTC)
    if value < now - dt.timedelta(seconds=CLOCK_SKEW_S):
        raise RequestError("join_at", f"{value.isoformat()} is in the past (now {now.isoformat()})")
    return value


def validate_request(
    *,
    meeting_url: str,
    agent_id: str,
    bot_name: str | None = None,
    region: str | None = None,
    max_duration_s: float | None = None,
    metadata: Mapping[str, str] | None = None,
    webhook_url: str | None = None,
    bot_id: str = "",
) -> BotRequest:
    """Checks every field and says what to fix; the meeting URL is checked by the platform parser."""
    from bot.meeting_urls import InvalidMeetingUrl, parse_meeting_url

    texts = {
        "meeting_url": meeting_url,
        "agent_id": agent_id,
        "bot_name": bot_name,
        "webhook_url": webhook_url,
    }
    texts.update({f"metadata.{k}": v for k, v in (metadata or {}).items()})
    for name, text in texts.items():
        _check_text(name, text)
    for key in metadata or {}:
        _check_text("metadata", key)
    try:
        parse_meeting_url(meeting_url)
    except InvalidMeetingUrl as e:
        raise RequestError("meeting_url", str(e)) from None
    agent_id = agent_id.strip()
    if not agent_id or len(agent_id) > 200 or any(c.isspace() for c in agent_id):
        raise RequestError("agent_id", "must be a Millis agent id: 1 to 200 characters without spaces")
    if bot_name is not None and not (0 < len(bot_name.strip()) <= 64):
        raise RequestError("bot_name", "must be 1 to 64 characters")
    if region is not None and region not in REGIONS:
        raise RequestError("region", f"must be one of {', '.join(REGIONS)}")
    if max_duration_s is not None and not (0 < max_duration_s <= 24 * 3600):
        raise RequestError("max_duration_s", "must be between 0 and 86400 seconds")
    meta = dict(metadata or {})
    if len(meta) > 32:
        raise RequestError("metadata", "at most 32 entries")
    for key, value in meta.items():
        if not _METADATA_KEY.match(key):
            raise RequestError(
                "metadata", f"key {key!r} must be 1-64 of letters, digits, _ . : - (not starting with - . :)"
            )
        if not isinstance(value, str) or len(value) > 1000:
            raise RequestError("metadata", f"value of {key!r} must be text of at most 1000 characters")
    if webhook_url is not None and not re.match(r"^https?://[^\s/]+\S*$", webhook_url):
        raise RequestError("webhook_url", f"must be an http(s) URL (got {webhook_url!r})")
    return BotRequest(
        bot_id=bot_id,
        meeting_url=meeting_url.strip(),
        agent_id=agent_id,
        bot_name=bot_name.strip() if bot_name else None,
        region=region,
        max_duration_s=max_duration_s,
        metadata=meta,
        webhook_url=webhook_url,
    )


def meeting_platform(meeting_url: str) -> str:
    """The platform of a meeting URL ("meet", "zoom"), or "unknown" (a metrics label)."""
    from bot.meeting_urls import InvalidMeetingUrl, parse_meeting_url

    try:
        return parse_meeting_url(meeting_url).platform
    except InvalidMeetingUrl:
        return "unknown"


def _check_text(name: str, text: str | None) -> None:
    """No control characters (they would end up on a command line and in logs) and valid Unicode."""
    if text is None:
        return
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        raise RequestError(name, "must not contain control characters")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise RequestError(name, "is not valid Unicode text") from None
