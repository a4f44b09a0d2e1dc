"""From a page's viewport coordinates (what Playwright's `bounding_box()` gives) to X screen pixels.

The page tells where its viewport is: `screenX/Y` is the window's outer top-left on the screen, and the
window's frame is what `outer*` has beyond `inner*` — the toolbars above the viewport, equal borders on
the sides and at the bottom (none when Chromium draws its own frame without a window manager, as on the
bot's Xvfb: 143 px of tab strip and toolbar above, nothing else). These are in device-independent pixels;
X wants device pixels: times `devicePixelRatio` (the device scale factor at page zoom 100 %, which the bot
never changes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.browser.input.motion import Box

# Read in the page's main world: plain property reads, no script left behind.
GEOMETRY_JS = "() => [screenX, screenY, outerWidth, outerHeight, innerWidth, innerHeight, devicePixelRatio]"


@dataclass(frozen=True)
class ScreenMap:
    screen_x: float
    screen_y: float
    outer_width: float
    outer_height: float
    inner_width: float
    inner_height: float
    scale: float = 1.0

    @classmethod
    def parse(cls, raw: Any) -> ScreenMap:
        sx, sy, ow, oh, iw, ih, dpr = (float(v) for v in raw)
        return cls(sx, sy, ow, oh, iw, ih, dpr or 1.0)

    @property
    def border(self) -> float:
        return max(0.0, (self.outer_width - self.inner_width) / 2)

    @property
    def viewport_origin(self) -> tuple[float, float]:
        """The viewport's top-left corner on the screen, in device-independent pixels."""
        top = self.screen_y + self.outer_height - self.inner_height - self.border
        return self.screen_x + self.border, top

    @property
    def viewport(self) -> Box:
        """The viewport in its own (CSS pixel) coordinates."""
        return Box(0, 0, self.inner_width, self.inner_height)

    def to_screen(self, x: float, y: float) -> tuple[float, float]:
        ox, oy = self.viewport_origin
        return (ox + x) * self.scale, (oy + y) * self.scale

    def box_to_screen(self, box: Box) -> Box:
        x, y = self.to_screen(box.x, box.y)
        return Box(x, y, box.width * self.scale, box.height * self.scale)
