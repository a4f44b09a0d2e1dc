"""Meeting platforms behind one seam (`base.Platform`), found by name through a registry.

An adapter's module (and with it Playwright) is imported only when a bot uses that platform, so what only
speaks of platforms by name (the service, the events, the URL parser) loads no browser code.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.platforms.base import Platform

# name (as `bot.meeting_urls.MeetingUrl.platform` gives it) -> (module, adapter class)
_ADAPTERS: dict[str, tuple[str, str]] = {
    "meet": ("bot.platforms.meet", "MeetPlatform"),
    "zoom": ("bot.platforms.zoom", "ZoomPlatform"),
    "teams": ("bot.platforms.teams", "TeamsPlatform"),
}

PLATFORM_NAMES: tuple[str, ...] = tuple(_ADAPTERS)


def platform_class(name: str) -> type[Platform]:
    """The adapter class of the platform called `name`, its module imported on first use."""
    try:
        module_name, class_name = _ADAPTERS[name]
    except KeyError:
        raise LookupError(
            f"no meeting platform called {name!r} (known: {', '.join(PLATFORM_NAMES)})"
        ) from None
    adapter: type[Platform] = getattr(importlib.import_module(module_name), class_name)
    return adapter
