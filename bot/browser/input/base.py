"""The seam between deciding what to do on a page and doing it with a hand: `Hands`.

Platform adapters read the page with Playwright and decide; a `Hands` performs the person's part —
moving to an element, clicking it, typing, pressing keys, waking an auto-hidden toolbar. Two kinds:
`XTestHands` (OS-level input on the bot's own X display, a person's pointer paths and typing rhythm:
what Meet and Zoom accept) and `PlaywrightHands` (input synthesized by the browser through the DevTools
protocol: for `browser.display = "headless"`, where there is no X server).
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from playwright.async_api import Locator


class InputError(RuntimeError):
    """The target could not be reached (not visible in time, or not brought into view)."""


class Hands(abc.ABC):
    """A person's hands on one page. Methods act in order; none runs concurrently with another."""

    @abc.abstractmethod
    async def click(self, target: Locator, timeout_s: float = 3.0) -> None:
        """Move to a point inside `target` (scrolling it into view first if needed) and click it.
        Raises `InputError` when it is not visible within `timeout_s`."""

    @abc.abstractmethod
    async def type(self, text: str) -> None:
        """Type `text` into whatever has the keyboard focus."""

    @abc.abstractmethod
    async def press(self, key: str) -> None:
        """Press one key or chord, in Playwright's names: "Enter", "Backspace", "Control+a"."""

    @abc.abstractmethod
    async def move_over(self, target: Locator | None = None) -> None:
        """Move the pointer over `target`, or across the page when None (wakes auto-hidden toolbars)."""

    @abc.abstractmethod
    async def wake(self) -> None:
        """A small movement of the pointer over the page, as a resting hand makes: brings auto-hidden
        toolbars back. Cheap enough to call before every look at a call."""

    async def replace_text(self, field: Locator, text: str, timeout_s: float = 3.0) -> None:
        """Click into a text field, select what it holds and delete it (if it holds anything: Playwright
        reads the value), and type `text`."""
        await self.click(field, timeout_s)
        if await field.input_value(timeout=timeout_s * 1000):
            await self.press("ControlOrMeta+a")
            await self.press("Backspace")
        await self.type(text)

    @abc.abstractmethod
    async def close(self) -> None:
        """Releases what the hands hold (an X connection). Idempotent."""
