"""Human hands on the bot's own X display: XTEST pointer paths, clicks and typing, as the page sees them.

A local page records every pointer and key event (type, position, time, trusted or not); the hands click
targets at several places of it, some below the fold (the hand scrolls with the wheel first), and type
into a field. The page, not the hands, says whether each target was hit.
"""

from __future__ import annotations

import itertools
import math
import random
import statistics
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.browser.display import ScreenSize, VirtualDisplay
from bot.browser.input import InputError, PlaywrightHands
from bot.browser.input.xtest import XTestHands
from tests.presence_support import chromium_on

pytestmark = [pytest.mark.browser]

# Targets (left, top, width, height) in page coordinates: corners, middle, and far below the fold.
TARGETS = {
    "top-left": (12, 12, 90, 36),
    "top-right": (1120, 30, 120, 40),
    "middle": (560, 300, 160, 48),
    "small": (900, 470, 24, 24),
    "below": (300, 1500, 140, 44),
    "far-below": (1000, 2600, 100, 40),
    "back-up": (60, 200, 120, 40),
}
PAGE = """<!doctype html><html><head><title>targets</title><style>
body { margin: 0; height: 3200px; font: 14px sans-serif; }
button { position: absolute; }
input { position: absolute; left: 400px; top: 120px; width: 240px; }
</style></head><body>
<input id="field" autocomplete="off">
__BUTTONS__
<script>
window.log = [];
window.hits = [];
for (const t of ["mousemove", "mousedown", "mouseup", "click", "keydown", "keyup", "wheel"]) {
  addEventListener(t, (e) => log.push({type: t, x: e.clientX, y: e.clientY, sx: e.screenX, sy: e.screenY,
    trusted: e.isTrusted, key: e.key, t: e.timeStamp, target: e.target.id || ""}), true);
}
for (const b of document.querySelectorAll("button")) {
  b.addEventListener("click", (e) => hits.push({id: b.id, trusted: e.isTrusted, x: e.clientX, y: e.clientY}));
}
</script></body></html>"""


def page_html() -> str:
    buttons = "\n".join(
        f'<button id="{name}" style="left:{x}px;top:{y}px;width:{w}px;height:{h}px">{name}</button>'
        for name, (x, y, w, h) in TARGETS.items()
    )
    return PAGE.replace("__BUTTONS__", buttons)


@pytest.fixture
async def display() -> AsyncIterator[VirtualDisplay]:
    d = await VirtualDisplay(ScreenSize(1280, 800)).start()
    try:
        yield d
    finally:
        await d.close()


def moves_before_each_press(log: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """For each mousedown, the mousemoves since the previous mouseup (the path to that click)."""
    paths: list[list[dict[str, Any]]] = []
    current: list[dict[str, Any]] = []
    for e in log:
        if e["type"] == "mousemove":
            current.append(e)
        elif e["type"] == "mousedown":
            paths.append(current)
        elif e["type"] == "mouseup":
            current = []
    return paths


def deviation(path: list[dict[str, Any]]) -> float:
    """How far the path strays from the straight line between its ends (px)."""
    (x0, y0), (x1, y1) = (path[0]["x"], path[0]["y"]), (path[-1]["x"], path[-1]["y"])
    length = math.hypot(x1 - x0, y1 - y0) or 1
    return float(max(abs((x1 - x0) * (y0 - e["y"]) - (x0 - e["x"]) * (y1 - y0)) / length for e in path))


@pytest.mark.parametrize("scale", [1.0, 1.5])
async def test_clicks_land_inside_targets_everywhere_with_a_human_path(
    display: VirtualDisplay, tmp_path: Path, scale: float
):
    # At a device scale of 1.5 the window is sized in device-independent pixels: 1280x800 / 1.5.
    extra = [f"--force-device-scale-factor={scale}"]
    if scale != 1.0:
        extra.append(f"--window-size={round(1280 / scale)},{round(800 / scale)}")
    async with chromium_on(display, tmp_path / "profile", extra) as page:
        await page.set_content(page_html())
        hands = XTestHands(page, display, random.Random(7))
        try:
            for name in TARGETS:
                await hands.click(page.locator(f"#{name}"))
            hits = await page.evaluate("hits")
            log = await page.evaluate("log")
            scrolled = await page.evaluate("scrollY")
        finally:
            await hands.close()
    assert [h["id"] for h in hits] == list(TARGETS), hits
    assert all(h["trusted"] for h in hits)
    assert scrolled < 200, "the last target is near the top: the hand scrolled back up"
    assert any(e["type"] == "wheel" for e in log), "targets below the fold are reached by the wheel"
    # Each click comes at the end of a path of many small moves, not one jump.
    paths = moves_before_each_press(log)
    assert len(paths) == len(TARGETS)
    assert all(len(p) >= 5 for p in paths), [len(p) for p in paths]
    long_paths = [p for p in paths if math.dist((p[0]["x"], p[0]["y"]), (p[-1]["x"], p[-1]["y"])) > 200]
    assert long_paths and max(deviation(p) for p in long_paths) > 5, "pointer paths are curved"
    # Speed varies along a path (slow start and end, fast middle).
    for p in long_paths:
        steps = [math.dist((a["x"], a["y"]), (b["x"], b["y"])) for a, b in itertools.pairwise(p)]
        assert statistics.pstdev(steps) / statistics.mean(steps) > 0.3
    # Press and release tens of milliseconds apart; the press lands where the path ended.
    downs = [e for e in log if e["type"] == "mousedown"]
    ups = [e for e in log if e["type"] == "mouseup"]
    holds = [u["t"] - d["t"] for d, u in zip(downs, ups, strict=True)]
    assert all(30 <= h <= 200 for h in holds), holds
    for path, down in zip(paths, downs, strict=True):
        assert math.dist((path[-1]["x"], path[-1]["y"]), (down["x"], down["y"])) <= 1
    # Not always the centre: click points vary inside the targets.
    offsets = {
        (round(h["x"] - (TARGETS[h["id"]][0] + TARGETS[h["id"]][2] / 2)))
        for h in hits
        if h["id"] not in ("below", "far-below", "back-up")
    }
    assert len(offsets) > 1


async def test_typing_has_a_human_rhythm_and_any_character(display: VirtualDisplay, tmp_path: Path):
    text = "AI Agent: Zoë, Ñandú & 東京!"
    async with chromium_on(display, tmp_path / "profile", []) as page:
        await page.set_content(page_html())
        hands = XTestHands(page, display, random.Random(3))
        try:
            await hands.replace_text(page.locator("#field"), "first try")
            await hands.replace_text(page.locator("#field"), text)
            value = await page.input_value("#field")
            log = await page.evaluate("log")
        finally:
            await hands.close()
    assert value == text
    keys = [e for e in log if e["type"] in ("keydown", "keyup") and e["key"] not in ("Shift", "Control")]
    downs = [e["t"] for e in keys if e["type"] == "keydown"]
    gaps = [b - a for a, b in itertools.pairwise(downs)]
    assert statistics.median(gaps) >= 80, gaps
    assert statistics.pstdev(gaps) >= 15, "a person's rhythm varies"
    held = []
    pending: dict[str, float] = {}
    for e in keys:
        if e["type"] == "keydown":
            pending[e["key"]] = e["t"]
        elif e["key"] in pending:
            held.append(e["t"] - pending.pop(e["key"]))
    assert held and min(held) >= 30, held
    assert all(e["trusted"] for e in log)


async def test_move_over_reaches_the_page_without_clicking(display: VirtualDisplay, tmp_path: Path):
    async with chromium_on(display, tmp_path / "profile", []) as page:
        await page.set_content(page_html())
        hands = XTestHands(page, display, random.Random(5))
        try:
            await hands.move_over()
            await hands.move_over(page.locator("#middle"))
            log = await page.evaluate("log")
        finally:
            await hands.close()
    moves = [e for e in log if e["type"] == "mousemove"]
    assert len(moves) >= 10 and moves[-1]["target"] == "middle"
    assert not [e for e in log if e["type"] in ("mousedown", "click")]


async def test_playwright_hands_are_what_a_machine_does(tmp_path: Path):
    """Headless: the same interface, synthesized by the browser — one jump, keys 10 ms apart."""
    async with chromium_on(None, tmp_path / "profile", []) as page:
        await page.set_content(page_html())
        hands = PlaywrightHands(page)
        await hands.click(page.locator("#middle"))
        await hands.replace_text(page.locator("#field"), "AI Agent")
        hits = await page.evaluate("hits")
        log = await page.evaluate("log")
        assert await page.input_value("#field") == "AI Agent"
    assert [h["id"] for h in hits] == ["middle"]
    assert max(len(p) for p in moves_before_each_press(log)) <= 2


async def test_a_covered_target_is_not_clicked_through_its_cover(display: VirtualDisplay, tmp_path: Path):
    """As Playwright's own click refuses an element under an overlay, so do the hands (the platform base
    then focuses the element and presses Enter)."""
    async with chromium_on(display, tmp_path / "profile", []) as page:
        await page.set_content(page_html())
        await page.evaluate(
            """() => { const d = document.createElement("div"); d.id = "cover";
            d.style.cssText = "position:absolute;left:0;top:0;width:100%;height:600px;z-index:9";
            document.body.appendChild(d); }"""
        )
        hands = XTestHands(page, display, random.Random(1))
        try:
            with pytest.raises(InputError, match="covered"):
                await hands.click(page.locator("#middle"))
            hits = await page.evaluate("hits")
        finally:
            await hands.close()
    assert hits == []
