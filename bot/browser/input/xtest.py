"""OS-level input on the bot's own X display through XTEST (python-xlib: one connection, no process per
event). To the page these are ordinary trusted events from a mouse and a keyboard: `mousemove`s along a
path before every click, `mousedown`/`mouseup` tens of milliseconds apart, keys at a person's rhythm.

Playwright only reads: where the target is (`bounding_box()`, relative to the top page's viewport, also
for elements inside iframes) and where the viewport is on the screen (`bot.browser.input.screen`). If the
target is outside the viewport the hand scrolls with the wheel, as a person would, and falls back to
Playwright's scrolling only when the wheel does not bring it into view (a scroll container elsewhere).
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from typing import TYPE_CHECKING

from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Locator, Page
from Xlib import XK, X
from Xlib import display as xdisplay
from Xlib import error as xerror
from Xlib.ext import xtest

from bot.browser.display import VirtualDisplay, xauthority
from bot.browser.input import motion
from bot.browser.input.base import Hands, InputError
from bot.browser.input.motion import Box
from bot.browser.input.screen import GEOMETRY_JS, ScreenMap

if TYPE_CHECKING:
    from Xlib.display import Display

log = logging.getLogger(__name__)

# Playwright key names → X keysym names (single characters are looked up by themselves).
_KEYSYM_NAMES = {
    "Backspace": "BackSpace",
    "Enter": "Return",
    "Tab": "Tab",
    "Escape": "Escape",
    "Delete": "Delete",
    "Space": "space",
    "Home": "Home",
    "End": "End",
    "PageUp": "Prior",
    "PageDown": "Next",
    "ArrowLeft": "Left",
    "ArrowRight": "Right",
    "ArrowUp": "Up",
    "ArrowDown": "Down",
    "Shift": "Shift_L",
    "Control": "Control_L",
    "ControlOrMeta": "Control_L",  # Linux: Control
    "Alt": "Alt_L",
    "Meta": "Super_L",
}
_SPECIAL_CHARS = {"\n": "Return", "\t": "Tab"}
# Would a press at (dx, dy) from the element's top-left corner reach the element (or something inside it)?
# Would a press at (x, y) reach the element (or something inside it)? With `relative`, (x, y) are from the
# element's top-left corner, else in its frame's viewport. Also returns where the element is in its frame,
# to tell the frame's offset in the page (elements inside iframes).
_HIT_JS = """(el, [x, y, relative]) => {
  const r = el.getBoundingClientRect();
  const root = el.getRootNode();
  const doc = typeof root.elementFromPoint === "function" ? root : el.ownerDocument;
  const hit = relative ? doc.elementFromPoint(r.left + x, r.top + y) : doc.elementFromPoint(x, y);
  return [!!hit && (hit === el || el.contains(hit)), r.left, r.top];
}"""
_WHEEL_UP, _WHEEL_DOWN = 4, 5
_WHEEL_ROUNDS = 6  # wheel bursts before falling back to Playwright's scrolling
_WAKE_EVERY_S = 1.5
_SCREEN_FRESH_S = 2.0
_VIEW_MARGIN = 8.0  # CSS px: a target this close to the viewport's edge is scrolled further in


class XTestHands(Hands):
    """A person's hands on `page`, whose browser window is on `display`. `rng` for reproducible tests.
    Without a page (a window Playwright does not drive) only the keyboard works: `type` and `press`."""

    def __init__(self, page: Page | None, display: VirtualDisplay, rng: random.Random | None = None) -> None:
        self.page = page
        self.display = display
        self.rng = rng or random.Random()
        self._x: Display | None = None
        self._remapped: dict[int, int] = {}  # keysym → spare keycode we mapped it to
        self._lock = asyncio.Lock()
        self._woken_at = -1e9
        self._screen_map: tuple[float, ScreenMap] | None = None
        self._closed = False

    # ---- the Hands interface -----------------------------------------------------------------------------

    async def click(self, target: Locator, timeout_s: float = 3.0) -> None:
        async with self._lock:
            started = time.monotonic()
            box, screen = await self._in_view(target, timeout_s)
            x, y, frame = await self._free_point(target, box)
            await self._move_to(screen.to_screen(x, y), box.width * screen.scale)
            # The page may have moved the target while the hand travelled (a banner, an animation): look
            # where the pointer is now, and aim again if the target is no longer under it.
            for _ in range(2):
                if await self._hits(target, x - frame[0], y - frame[1]):
                    break
                box, screen = await self._in_view(target, timeout_s)
                x, y, frame = await self._free_point(target, box)
                await self._move_to(screen.to_screen(x, y), box.width * screen.scale)
            await asyncio.sleep(motion.hover_s(self.rng))
            await self._button(1, motion.click_hold_s(self.rng))
            log.debug("clicked %s in %.2f s", target, time.monotonic() - started)

    async def type(self, text: str) -> None:
        async with self._lock:
            started = time.monotonic()
            # Characters the keyboard lacks get spare keycodes first, all at once: Chromium must have
            # seen the new keyboard mapping before the first of those keys arrives.
            missing = {_keysym_of_char(ch) for ch in text} - set(self._remapped)
            missing = {k for k in missing if not self._mapped(k)}
            if missing:
                for keysym in missing:
                    self._keycode(keysym)
                await asyncio.sleep(0.1)
            previous = ""
            for ch in text:
                if previous:
                    await asyncio.sleep(motion.key_gap_s(previous, self.rng))
                keysym = _keysym_of_char(ch)
                keycode, shifted = self._keycode(keysym)
                await self._stroke(keycode, ["Shift_L"] if shifted else [])
                previous = ch
            log.debug("typed %d characters in %.2f s", len(text), time.monotonic() - started)

    async def press(self, key: str) -> None:
        async with self._lock:
            *mods, name = _split_chord(key)
            keysym = _keysym_of_name(name)
            keycode, shifted = self._keycode(keysym)
            modifiers = [_KEYSYM_NAMES.get(m, m) for m in mods]
            if shifted and "Shift_L" not in modifiers:
                modifiers.append("Shift_L")
            await self._stroke(keycode, modifiers)
            await asyncio.sleep(motion.key_gap_s("", self.rng))

    async def move_over(self, target: Locator | None = None) -> None:
        async with self._lock:
            if target is not None:
                box, screen = await self._in_view(target, 3.0)
                x, y = motion.point_inside(box, self.rng)
                await self._move_to(screen.to_screen(x, y), box.width * screen.scale)
                return
            screen = await self._screen()
            view = screen.viewport
            x, y = motion.point_inside(view, self.rng, margin=0.2)
            await self._move_to(screen.to_screen(x, y), 200)

    async def wake(self) -> None:
        """A few pixels of drift where the pointer rests (a path onto the page first if it is off it),
        at most every `_WAKE_EVERY_S`: toolbars hide after about 3 s without movement."""
        now = time.monotonic()
        if now - self._woken_at < _WAKE_EVERY_S:
            return
        async with self._lock:
            screen = await self._screen()
            px, py = self._pointer()
            area = screen.box_to_screen(screen.viewport)
            if not area.contains(px, py):
                x, y = motion.point_inside(screen.viewport, self.rng, margin=0.2)
                await self._move_to(screen.to_screen(x, y), 200)
            else:
                dx, dy = self.rng.choice((-1, 1)) * self.rng.uniform(3, 9), self.rng.uniform(-5, 5)
                await self._move_to((px + dx, py + dy), 20)
            self._woken_at = time.monotonic()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        x, self._x = self._x, None
        if x is not None:
            try:
                x.close()
            except (xerror.XError, OSError) as e:  # the server may already be gone
                log.debug("closing the X connection: %s", e)

    # ---- where things are ---------------------------------------------------------------------------

    async def _screen(self) -> ScreenMap:
        """Where the viewport is on the screen; read again after `_SCREEN_FRESH_S` (the window does not
        move by itself on the bot's display: this saves a round trip per click)."""
        if self.page is None:
            raise InputError("these hands have no page: only the keyboard works")
        now = time.monotonic()
        if self._screen_map is not None and now - self._screen_map[0] < _SCREEN_FRESH_S:
            return self._screen_map[1]
        try:
            screen = ScreenMap.parse(await self.page.evaluate(GEOMETRY_JS))
        except PlaywrightError as e:
            raise InputError(f"cannot read the window's place on the screen: {e}") from e
        self._screen_map = (now, screen)
        return screen

    async def _box(self, target: Locator) -> Box | None:
        try:
            raw = await target.bounding_box(timeout=1000)
        except PlaywrightError:
            return None
        return None if raw is None else Box(raw["x"], raw["y"], raw["width"], raw["height"])

    async def _in_view(self, target: Locator, timeout_s: float) -> tuple[Box, ScreenMap]:
        """The target's box once it is inside the viewport, scrolling with the wheel if it is not."""
        try:
            await target.wait_for(state="visible", timeout=timeout_s * 1000)
        except PlaywrightError as e:
            raise InputError(f"not visible within {timeout_s:g} s: {target}") from e
        for attempt in range(_WHEEL_ROUNDS + 2):
            box = await self._box(target)
            screen = await self._screen()
            if box is None:
                raise InputError(f"no box for {target}")
            view = screen.viewport
            # Enough of the target inside the viewport to aim at its middle part.
            cx, cy = box.center
            m = _VIEW_MARGIN
            if m <= cy <= view.height - m and m <= cx <= view.width - m:
                return _clip(box, view), screen
            if attempt < _WHEEL_ROUNDS and 0 <= cx <= view.width:
                await self._wheel(cy - view.height / 2, screen)
            elif attempt == _WHEEL_ROUNDS:
                log.info("the wheel did not bring %s into view; scrolling it there", target)
                try:
                    await target.scroll_into_view_if_needed(timeout=timeout_s * 1000)
                except PlaywrightError as e:
                    raise InputError(f"cannot scroll to {target}: {e}") from e
        raise InputError(f"{target} stays outside the window")

    async def _free_point(self, target: Locator, box: Box) -> tuple[float, float, tuple[float, float]]:
        """A point inside the target (page viewport coordinates) that the target itself would receive, not
        an overlay above it, as Playwright's own clicks check; with the offset of the target's frame in
        the page. `InputError` when every point tried is covered."""
        for _ in range(4):
            x, y = motion.point_inside(box, self.rng)
            try:
                hit, left, top = await target.evaluate(_HIT_JS, [x - box.x, y - box.y, True])
            except PlaywrightError as e:
                raise InputError(f"cannot reach {target}: {e}") from e
            if hit:
                return x, y, (box.x - left, box.y - top)
        raise InputError(f"{target} is covered by another element")

    async def _hits(self, target: Locator, x: float, y: float) -> bool:
        """Does the target receive a press at (x, y) of its frame's viewport now?"""
        try:
            hit, _, _ = await target.evaluate(_HIT_JS, [x, y, False])
        except PlaywrightError as e:
            raise InputError(f"cannot reach {target}: {e}") from e
        return bool(hit)

    # ---- the hand -------------------------------------------------------------------------------------

    def _conn(self) -> Display:
        if self._closed:
            raise InputError("the hands are closed")
        if self._x is None:
            try:
                with xauthority(self.display.auth_file):
                    x = xdisplay.Display(self.display.name)
            except (xerror.DisplayError, xerror.ConnectionClosedError, OSError) as e:
                raise InputError(f"cannot open X display {self.display.name}: {e}") from e
            if not x.has_extension("XTEST"):
                x.close()
                raise InputError(f"X display {self.display.name} has no XTEST extension")
            self._x = x
        return self._x

    def _pointer(self) -> tuple[int, int]:
        reply = self._conn().screen().root.query_pointer()
        return reply.root_x, reply.root_y

    def _screen_size(self) -> tuple[int, int]:
        s = self._conn().screen()
        return s.width_in_pixels, s.height_in_pixels

    async def _move_to(self, point: tuple[float, float], target_width: float) -> None:
        x = self._conn()
        width, height = self._screen_size()
        end = (min(max(point[0], 0), width - 1), min(max(point[1], 0), height - 1))
        for step in motion.pointer_path(self._pointer(), end, self.rng, target_width):
            await asyncio.sleep(step.delay_s)
            xtest.fake_input(x, X.MotionNotify, x=step.x, y=step.y)
            x.flush()
        x.sync()

    async def _button(self, button: int, hold_s: float) -> None:
        x = self._conn()
        xtest.fake_input(x, X.ButtonPress, button)
        x.sync()
        await asyncio.sleep(hold_s)
        xtest.fake_input(x, X.ButtonRelease, button)
        x.sync()

    async def _wheel(self, delta_css: float, screen: ScreenMap) -> None:
        """Wheel notches toward `delta_css` (positive: down), with the pointer over the page."""
        px, py = self._pointer()
        origin = screen.box_to_screen(screen.viewport)
        if not origin.contains(px, py):
            view = screen.viewport
            x, y = motion.point_inside(view, self.rng, margin=0.25)
            await self._move_to(screen.to_screen(x, y), 200)
        # A notch scrolls Chromium by about 50-120 px; a burst goes part of the way, then we look again.
        notches = max(1, min(8, math.ceil(abs(delta_css) / 100)))
        button = _WHEEL_DOWN if delta_css > 0 else _WHEEL_UP
        for _ in range(notches):
            await self._button(button, self.rng.uniform(0.005, 0.015))
            await asyncio.sleep(self.rng.uniform(0.03, 0.09))
        await asyncio.sleep(0.3)  # Chromium animates the scroll

    async def _stroke(self, keycode: int, modifiers: list[str]) -> None:
        x = self._conn()
        mod_codes = [self._keycode(_keysym_of_name(m))[0] for m in modifiers]
        for code in mod_codes:
            xtest.fake_input(x, X.KeyPress, code)
            x.sync()
            await asyncio.sleep(self.rng.uniform(0.03, 0.07))
        xtest.fake_input(x, X.KeyPress, keycode)
        x.sync()
        await asyncio.sleep(motion.key_hold_s(self.rng))
        xtest.fake_input(x, X.KeyRelease, keycode)
        x.sync()
        for code in reversed(mod_codes):
            await asyncio.sleep(self.rng.uniform(0.02, 0.05))
            xtest.fake_input(x, X.KeyRelease, code)
            x.sync()

    def _mapped(self, keysym: int) -> bool:
        return any(index in (0, 1) for _, index in self._conn().keysym_to_keycodes(keysym))

    def _keycode(self, keysym: int) -> tuple[int, bool]:
        """(keycode, needs Shift) for a keysym; a keysym the keyboard lacks (é, ü, emoji) is mapped onto
        a spare keycode first, as xdotool does."""
        x = self._conn()
        if keysym in self._remapped:
            return self._remapped[keysym], False
        for keycode, index in x.keysym_to_keycodes(keysym):
            if index in (0, 1):
                return keycode, index == 1
        spare = self._spare_keycode(x)
        self._remapped = {k: c for k, c in self._remapped.items() if c != spare}
        x.change_keyboard_mapping(spare, [(keysym, keysym)])
        x.sync()
        self._remapped[keysym] = spare
        return spare, False

    def _spare_keycode(self, x: Display) -> int:
        used = set(self._remapped.values())
        first: int = x.display.info.min_keycode
        last: int = x.display.info.max_keycode
        mapping = x.get_keyboard_mapping(first, last - first + 1)
        for offset, syms in enumerate(mapping):
            code = first + offset
            if code not in used and not any(syms):
                return code
        # No empty keycode left: reuse the one mapped first.
        if used:
            return next(iter(self._remapped.values()))
        raise InputError("no spare keycode to type this character")


def _clip(box: Box, view: Box) -> Box:
    """The part of `box` inside the viewport (a tall target half off screen: aim at what is visible)."""
    x0, y0 = max(box.x, view.x), max(box.y, view.y)
    x1 = min(box.x + box.width, view.x + view.width)
    y1 = min(box.y + box.height, view.y + view.height)
    return Box(x0, y0, max(1.0, x1 - x0), max(1.0, y1 - y0))


def _split_chord(key: str) -> list[str]:
    """ "Control+a" → ["Control", "a"]; "Control++" → ["Control", "+"]; "+" → ["+"]."""
    if key.endswith("++"):
        return [*key[:-2].split("+"), "+"] if len(key) > 2 else ["+"]
    return key.split("+") if key != "+" else ["+"]


def _keysym_of_name(name: str) -> int:
    if len(name) == 1:
        return _keysym_of_char(name)
    keysym: int = XK.string_to_keysym(_KEYSYM_NAMES.get(name, name))
    if keysym == X.NoSymbol:
        raise InputError(f"unknown key {name!r}")
    return keysym


def _keysym_of_char(ch: str) -> int:
    """Latin-1 characters are their own keysyms; others are Unicode keysyms (0x01000000 + code point)."""
    if ch in _SPECIAL_CHARS:
        return int(XK.string_to_keysym(_SPECIAL_CHARS[ch]))
    code = ord(ch)
    if 0x20 <= code <= 0x7E or 0xA0 <= code <= 0xFF:
        return code
    return 0x01000000 + code
