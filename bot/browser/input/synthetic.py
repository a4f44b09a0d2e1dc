"""Input synthesized by the browser through Playwright (the DevTools protocol): for
`browser.display = "headless"`, where no X server runs. The page receives trusted events, but as a
machine makes them — one pointer jump straight onto the centre of the target, keys 10 ms apart — which
is what Meet's and Zoom's entry checks look for (see docs/platforms.md "What the platforms check")."""

from __future__ import annotations

from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Locator, Page

from bot.browser.input.base import Hands, InputError

_VIEWPORT_JS = "() => ({width: innerWidth, height: innerHeight})"


class PlaywrightHands(Hands):
    def __init__(self, page: Page) -> None:
        self.page = page

    async def click(self, target: Locator, timeout_s: float = 3.0) -> None:
        try:
            await target.click(timeout=timeout_s * 1000)
        except PlaywrightError as e:
            raise InputError(f"click on {target} failed: {e}") from e

    async def type(self, text: str) -> None:
        await self.page.keyboard.type(text, delay=10)

    async def press(self, key: str) -> None:
        await self.page.keyboard.press(key)

    async def move_over(self, target: Locator | None = None) -> None:
        if target is not None:
            try:
                await target.hover(timeout=3000)
            except PlaywrightError as e:
                raise InputError(f"cannot move over {target}: {e}") from e
            return
        await self.wake()

    async def wake(self) -> None:
        size = self.page.viewport_size or await self.page.evaluate(_VIEWPORT_JS)
        await self.page.mouse.move(size["width"] / 2, size["height"] / 2)
        await self.page.mouse.move(size["width"] / 2, size["height"] - 40)

    async def close(self) -> None:
        return None
