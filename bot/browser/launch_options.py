"""How the bot's Chromium presents itself to a page: launch options per display mode.

What a detection script reads, and what these options make it see (measured; docs/platforms.md "What the
platforms check"):
- `navigator.webdriver`: Playwright's default `--enable-automation` (and headless mode) make it true;
  the switch is left out and `--disable-blink-features=AutomationControlled` makes it false.
- The user agent and its client hints: headless says "HeadlessChrome"; headful Chromium names its real
  version and platform, so nothing is overridden (an override would disagree with the client hints).
- Window and screen: headless has no frame (outer size = inner size) and an emulated 1280x720 screen; on
  the bot's Xvfb the window fills a desktop-sized screen and keeps Chromium's own frame (the tab strip
  and toolbar: outer height > inner height). Playwright's viewport emulation is off there (`no_viewport`):
  the page is exactly as large as the window shows it.
- Languages: `--lang` and Playwright's locale agree (en-US): the bot reads Meet's and Zoom's English texts.
- WebGL names SwiftShader (software rendering) on any machine without a GPU: not hidden.
Test-only switches (host mapping, certificate trust, loopback WebRTC) are added by `bot.browser.launch` only
when their settings are set, which only the tests and the demo do.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from bot.browser.display import ScreenSize, VirtualDisplay

DISPLAY_MODES = ("xvfb", "headless")
DEFAULT_DISPLAY = "xvfb"

# Playwright's defaults that give the bot away (`--enable-automation`) or silence it (`--mute-audio`:
# Chromium would play zeros into the meeting sink).
IGNORED_DEFAULT_ARGS = ["--enable-automation", "--mute-audio"]


def presence_args(display: str, screen: ScreenSize) -> list[str]:
    """Chromium flags for how the browser presents itself in this display mode."""
    args = [
        "--disable-blink-features=AutomationControlled",
        "--lang=en-US",
        # Cookies are encrypted with Chromium's fixed "basic" key, not a desktop keyring: a profile
        # signed in on a desktop (`meeting-bot login`) stays readable on a server. (Playwright's default
        # too; stated because the login command must match it.)
        "--password-store=basic",
    ]
    if display == "xvfb":
        # The whole screen, as a maximized window: there is no window manager to maximize it. No
        # "Restore pages?" bubble over the page when a copied profile's last browser did not shut down.
        args += [
            "--window-position=0,0",
            f"--window-size={screen.width},{screen.height}",
            "--hide-crash-restore-bubble",
        ]
    return args


def launch_options(display: str, screen: ScreenSize) -> dict[str, Any]:
    """Keyword arguments for Playwright's `launch_persistent_context` (besides args, env, profile)."""
    if display not in DISPLAY_MODES:
        raise ValueError(f"browser.display must be one of {', '.join(DISPLAY_MODES)} (got {display!r})")
    options: dict[str, Any] = {
        "headless": display == "headless",
        "ignore_default_args": list(IGNORED_DEFAULT_ARGS),
        "locale": "en-US",
    }
    if display == "xvfb":
        options["no_viewport"] = True
    return options


def browser_env(base: Mapping[str, str], display: VirtualDisplay | None) -> dict[str, str]:
    """The environment for Chromium: on our own display when there is one; never on someone else's."""
    env = {k: v for k, v in base.items() if k not in ("DISPLAY", "XAUTHORITY", "WAYLAND_DISPLAY")}
    if display is not None:
        env.update(display.env())
    return env


def chromium_env(display: VirtualDisplay | None) -> dict[str, str]:
    """`browser_env` of this process's environment."""
    return browser_env(os.environ, display)
