"""Meeting platforms behind one seam (`base.Platform`); `urls.parse_meeting_url` picks one by name."""

from __future__ import annotations

from bot.platforms.base import Platform
from bot.platforms.meet import MeetPlatform
from bot.platforms.zoom import ZoomPlatform

PLATFORMS: dict[str, type[Platform]] = {
    MeetPlatform.name: MeetPlatform,
    ZoomPlatform.name: ZoomPlatform,
}
