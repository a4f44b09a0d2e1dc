"""How a person's hand moves: pointer paths, where in a target a click lands, and keystroke timing.

Pure functions of a `random.Random`, so tests can pin them down and the XTEST hands stay thin. The
shapes follow the well-known regularities of human pointing and typing, not any recording:
- Movement time grows with the log of distance over target width (Fitts' law: about 0.09 s per bit,
  plus 0.1 s, a practised mouse user), varied ±20 % per move.
- The hand follows a curve, not a line (a cubic Bézier whose control points sit off the straight line
  on one side), with a bell-shaped speed profile (minimum jerk: slow start, fast middle, slow arrival),
  sampled at a mouse's 60-125 Hz with jitter, and a sub-pixel tremor.
- Long moves sometimes overshoot a little and correct.
- Clicks land at a random point inside the target, near its centre more often than near its edges;
  the button is held 45-120 ms, after a 50-200 ms pause on the target.
- Keys are held 35-110 ms and pressed about 80-200 ms apart (a quick typist), longer after a space.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Box:
    """A rectangle in some coordinate space (CSS pixels of the viewport, or screen pixels)."""

    x: float
    y: float
    width: float
    height: float

    @property
    def center(self) -> tuple[float, float]:
        return self.x + self.width / 2, self.y + self.height / 2

    def contains(self, x: float, y: float) -> bool:
        return self.x <= x <= self.x + self.width and self.y <= y <= self.y + self.height


@dataclass(frozen=True)
class Step:
    """Move the pointer to (x, y) after waiting `delay_s`."""

    x: int
    y: int
    delay_s: float


def point_inside(box: Box, rng: random.Random, margin: float = 0.15) -> tuple[float, float]:
    """A point a person would click: normally distributed around the centre (sd = 1/6 of the size), kept
    inside the box minus `margin` of its size on each side (never on the border)."""
    cx, cy = box.center
    half_w = box.width * (0.5 - margin)
    half_h = box.height * (0.5 - margin)
    dx = max(-half_w, min(half_w, rng.gauss(0, box.width / 6)))
    dy = max(-half_h, min(half_h, rng.gauss(0, box.height / 6)))
    return cx + dx, cy + dy


def movement_time_s(distance: float, target_width: float, rng: random.Random) -> float:
    """Fitts' law, MT = a + b·log2(D/W + 1), with a = 0.1 s, b = 0.09 s/bit, ±20 %; 0.1 s to 1.2 s."""
    bits = math.log2(distance / max(target_width, 4.0) + 1)
    return max(0.1, min(1.2, (0.1 + 0.09 * bits) * rng.uniform(0.8, 1.2)))


def pointer_path(
    start: tuple[float, float],
    end: tuple[float, float],
    rng: random.Random,
    target_width: float = 40.0,
    overshoot: bool = True,
) -> list[Step]:
    """Steps from `start` to exactly `end` (integer pixels), with the delays between them."""
    distance = math.dist(start, end)
    if distance < 1:
        return [Step(round(end[0]), round(end[1]), rng.uniform(0.008, 0.016))]
    if overshoot and distance > 250 and rng.random() < 0.25:
        # Past the target by 2-5 % of the way (and a little sideways), then a short correction.
        ux, uy = (end[0] - start[0]) / distance, (end[1] - start[1]) / distance
        past = distance * rng.uniform(0.02, 0.05)
        side = rng.gauss(0, past / 2)
        beyond = (end[0] + ux * past - uy * side, end[1] + uy * past + ux * side)
        first = _curve(start, beyond, rng, movement_time_s(distance, target_width, rng))
        pause = rng.uniform(0.04, 0.12)
        second = _curve(beyond, end, rng, movement_time_s(math.dist(beyond, end), target_width, rng))
        if second:
            second[0] = Step(second[0].x, second[0].y, second[0].delay_s + pause)
        return _dedupe(first + second, end)
    return _dedupe(_curve(start, end, rng, movement_time_s(distance, target_width, rng)), end)


def _curve(
    start: tuple[float, float], end: tuple[float, float], rng: random.Random, duration: float
) -> list[Step]:
    (x0, y0), (x3, y3) = start, end
    dx, dy = x3 - x0, y3 - y0
    distance = math.hypot(dx, dy)
    if distance < 1:
        return [Step(round(x3), round(y3), rng.uniform(0.008, 0.016))]
    # Control points off the straight line, both on the same side (an arc) or, rarely, an S.
    nx, ny = -dy / distance, dx / distance
    bend = rng.gauss(0, 0.12) * distance
    bend2 = bend * rng.uniform(0.3, 1.0) * (1 if rng.random() < 0.85 else -1)
    t1, t2 = rng.uniform(0.2, 0.4), rng.uniform(0.6, 0.8)
    x1, y1 = x0 + dx * t1 + nx * bend, y0 + dy * t1 + ny * bend
    x2, y2 = x0 + dx * t2 + nx * bend2, y0 + dy * t2 + ny * bend2
    steps: list[Step] = []
    elapsed = 0.0
    while elapsed < duration:
        dt = rng.uniform(0.008, 0.017)  # a mouse reports at 60-125 Hz
        elapsed = min(duration, elapsed + dt)
        tau = elapsed / duration
        s = 10 * tau**3 - 15 * tau**4 + 6 * tau**5  # minimum jerk: bell-shaped speed
        u = 1 - s
        bx = u**3 * x0 + 3 * u**2 * s * x1 + 3 * u * s**2 * x2 + s**3 * x3
        by = u**3 * y0 + 3 * u**2 * s * y1 + 3 * u * s**2 * y2 + s**3 * y3
        if tau < 1:
            bx += rng.gauss(0, 0.4)  # tremor
            by += rng.gauss(0, 0.4)
        steps.append(Step(round(bx), round(by), dt))
    return steps


def _dedupe(steps: list[Step], end: tuple[float, float]) -> list[Step]:
    """Steps that do not move are folded into the next one's delay; the last step is exactly `end`."""
    out: list[Step] = []
    carry = 0.0
    for step in steps:
        if out and (step.x, step.y) == (out[-1].x, out[-1].y):
            carry += step.delay_s
            continue
        out.append(Step(step.x, step.y, step.delay_s + carry))
        carry = 0.0
    last = (round(end[0]), round(end[1]))
    if not out or (out[-1].x, out[-1].y) != last:
        out.append(Step(last[0], last[1], 0.01 + carry))
    return out


def click_hold_s(rng: random.Random) -> float:
    """How long the button stays down: 45-120 ms."""
    return max(0.045, min(0.12, rng.gauss(0.075, 0.018)))


def hover_s(rng: random.Random) -> float:
    """The pause between arriving on a target and pressing: 50-200 ms."""
    return max(0.05, min(0.2, rng.gauss(0.09, 0.035)))


def key_hold_s(rng: random.Random) -> float:
    """How long a key stays down: 35-110 ms."""
    return max(0.035, min(0.11, rng.gauss(0.065, 0.016)))


def key_gap_s(previous: str, rng: random.Random) -> float:
    """Release of the previous key → press of the next: log-normal around 50 ms (so presses are about
    80-200 ms apart with the hold), longer after a space or punctuation."""
    gap = rng.lognormvariate(math.log(0.05), 0.4)
    if previous in " .,;:!?-":
        gap += rng.uniform(0.05, 0.15)
    return min(gap, 0.6)
