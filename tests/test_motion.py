"""The pure shapes of a person's hand (bot.browser.input.motion) and the viewport → screen mapping."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from bot.browser.input.motion import (
    Box,
    click_hold_s,
    hover_s,
    key_gap_s,
    key_hold_s,
    movement_time_s,
    point_inside,
    pointer_path,
)
from bot.browser.input.screen import ScreenMap


@pytest.mark.parametrize("seed", range(20))
def test_a_path_ends_exactly_on_the_target_after_a_believable_time(seed: int):
    rng = random.Random(seed)
    start, end = (rng.uniform(0, 1280), rng.uniform(0, 800)), (rng.uniform(0, 1280), rng.uniform(0, 800))
    steps = pointer_path(start, end, rng, target_width=60)
    assert (steps[-1].x, steps[-1].y) == (round(end[0]), round(end[1]))
    assert all(0.005 <= s.delay_s <= 0.5 for s in steps)
    total = sum(s.delay_s for s in steps)
    assert 0.08 <= total <= 2.6  # one move, or an overshoot and its correction
    # No two steps in a row at the same place: each is a real motion event.
    assert all((a.x, a.y) != (b.x, b.y) for a, b in itertools.pairwise(steps))
    if math.dist(start, end) > 300:
        assert len(steps) >= 10


def test_fitts_law_longer_and_smaller_takes_longer():
    rng = random.Random(1)
    near = [movement_time_s(100, 80, rng) for _ in range(200)]
    far = [movement_time_s(1000, 20, rng) for _ in range(200)]
    assert sum(far) / len(far) > sum(near) / len(near) + 0.2


def test_clicks_land_inside_away_from_the_border_and_not_always_in_the_centre():
    rng = random.Random(2)
    box = Box(100, 200, 80, 30)
    points = [point_inside(box, rng) for _ in range(300)]
    assert all(112 <= x <= 168 and 204.5 <= y <= 225.5 for x, y in points)
    assert len({round(x) for x, _ in points}) > 20


def test_press_and_key_timings_are_a_persons():
    rng = random.Random(3)
    assert all(0.045 <= click_hold_s(rng) <= 0.12 for _ in range(200))
    assert all(0.05 <= hover_s(rng) <= 0.2 for _ in range(200))
    assert all(0.035 <= key_hold_s(rng) <= 0.11 for _ in range(200))
    gaps = [key_gap_s("a", rng) for _ in range(500)]
    assert 0.03 <= sorted(gaps)[250] <= 0.08 and max(gaps) <= 0.6
    after_space = [key_gap_s(" ", rng) for _ in range(500)]
    assert sum(after_space) > sum(gaps)


def test_screen_map_adds_the_frame_and_scales_to_device_pixels():
    # Chromium's own frame on the bot's Xvfb: 143 px of toolbars above, no borders.
    flat = ScreenMap.parse([0, 0, 1279, 799, 1279, 656, 1])
    assert flat.to_screen(10, 20) == (10, 163)
    # A window manager's frame: equal borders left, right and below; a window moved away from 0,0; HiDPI.
    framed = ScreenMap.parse([100, 50, 1000, 800, 990, 700, 1.5])
    assert framed.viewport_origin == (105, 50 + 800 - 700 - 5)
    assert framed.to_screen(0, 0) == (157.5, 217.5)
    assert framed.box_to_screen(Box(10, 10, 20, 20)) == Box(172.5, 232.5, 30, 30)
