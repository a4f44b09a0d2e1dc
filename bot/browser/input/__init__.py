"""A person's hands on the meeting page: `Hands`, done by OS-level input on the bot's X display
(`XTestHands`) or synthesized by the browser (`PlaywrightHands`, headless only)."""

from bot.browser.input.base import Hands, InputError
from bot.browser.input.synthetic import PlaywrightHands

__all__ = ["Hands", "InputError", "PlaywrightHands", "XTestHands"]


def __getattr__(name: str) -> object:
    # python-xlib is imported only by bots that use the X display.
    if name == "XTestHands":
        from bot.browser.input.xtest import XTestHands

        return XTestHands
    raise AttributeError(name)
