"""A Chromium launched the way the bot presents itself (bot.browser.launch_options), for tests of hands and
entry checks
that do not need the bot's audio devices."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from playwright.async_api import Page, async_playwright

from bot.browser.display import ScreenSize, VirtualDisplay
from bot.browser.launch_options import chromium_env, launch_options, presence_args


@contextlib.asynccontextmanager
async def chromium_on(display: VirtualDisplay | None, profile: Path, extra: list[str]) -> AsyncIterator[Page]:
    """Headful on `display`, or headless when it is None; `extra` flags after the bot's own."""
    mode = "xvfb" if display is not None else "headless"
    screen = display.size if display is not None else ScreenSize()
    async with async_playwright() as pw:
        env: dict[str, str | float | bool] = {**chromium_env(display)}
        context = await pw.chromium.launch_persistent_context(
            str(profile),
            executable_path="/usr/bin/chromium",
            args=[*presence_args(mode, screen), *extra],
            env=env,
            **launch_options(mode, screen),
        )
        try:
            yield context.pages[0]
        finally:
            await context.close()
