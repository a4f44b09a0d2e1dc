"""What the benchmark scripts measure: CPU and memory of process trees (from /proc), and beep delays."""

from __future__ import annotations

import re
import statistics
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bot.system.processes import CLOCK_TICKS_PER_S, descendants, pss_kb, read_stat


def process_tree(root: int) -> set[int]:
    """`root` and all its live descendants."""
    return {root} | descendants(root)


def cpu_seconds(pids: Iterable[int]) -> float:
    """User + system CPU time of these processes (those still alive)."""
    ticks = 0
    for pid in pids:
        try:
            ticks += read_stat(pid).cpu_ticks
        except OSError:
            continue
    return ticks / CLOCK_TICKS_PER_S


def pss_mb(pids: Iterable[int]) -> float:
    """Proportional set size in MB: shared pages split between the processes sharing them."""
    total_kb = 0
    for pid in pids:
        try:
            total_kb += pss_kb(pid)
        except OSError:
            continue
    return total_kb / 1024


# What a bot's process is, for the per-component figures: Chromium's processes by their --type (a child
# rewrites its command line as one space-separated string), the rest by executable name.
_CHROMIUM_KINDS = {
    "renderer": "chromium page (renderer)",
    "gpu-process": "chromium GPU",
    "zygote": "chromium other",
}
_UTILITIES = {"AudioService": "chromium audio", "NetworkService": "chromium network"}
PLAYWRIGHT_DRIVER = "Playwright driver (node)"
_NAMES = {
    "python3": "bot (Python: bridge, session)",
    "python": "bot (Python: bridge, session)",
    "node": PLAYWRIGHT_DRIVER,
    "chrome_crashpad": "chromium other",
    "Xvfb": "Xvfb",
    "pulseaudio": "PulseAudio",
    "parec": "parec + pacat",
    "pacat": "parec + pacat",
}


def component(pid: int) -> str:
    """The component a process of a bot belongs to, e.g. "chromium page (renderer)", "PulseAudio"."""
    try:
        name = read_stat(pid).name
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").replace("\0", " ")
    except OSError:
        return "gone"
    # The driver's thread name differs by Node.js release (node-MainThread, MainThread); its path does not.
    if cmdline.split(" ", 1)[0].endswith("/playwright/driver/node"):
        return PLAYWRIGHT_DRIVER
    if name != "chromium":
        return _NAMES.get(name, name)
    kind = re.search(r" --type=(\S+)", cmdline)
    if kind is None:
        return "chromium browser"
    if kind.group(1) == "renderer" and "--top-chrome-webui" in cmdline:
        return "chromium WebUI renderer"
    if kind.group(1) == "utility":
        sub = re.search(r" --utility-sub-type=\S*?([A-Za-z]+)(?:\s|$)", cmdline)
        return _UTILITIES.get(sub.group(1) if sub else "", "chromium other")
    return _CHROMIUM_KINDS.get(kind.group(1), "chromium other")


def pss_by_component(pids: Iterable[int]) -> dict[str, float]:
    """PSS in MB per `component()`."""
    out: dict[str, float] = {}
    for pid in pids:
        try:
            kb = pss_kb(pid)
        except OSError:
            continue
        out[component(pid)] = out.get(component(pid), 0.0) + kb / 1024
    return {k: round(v, 1) for k, v in sorted(out.items(), key=lambda kv: -kv[1])}


def _cpu_by_pid(pids: Iterable[int]) -> dict[int, tuple[str, float]]:
    found = {}
    for pid in pids:
        try:
            stat = read_stat(pid)
        except OSError:
            continue
        found[pid] = (stat.name, stat.cpu_ticks / CLOCK_TICKS_PER_S)
    return found


@dataclass
class CpuWindow:
    """CPU use of a set of process trees over a window, as % of one core."""

    roots: Sequence[int]
    _cpu0: float = 0.0
    _t0: float = 0.0
    _by_pid0: dict[int, tuple[str, float]] | None = None

    def pids(self) -> set[int]:
        return set().union(*(process_tree(r) for r in self.roots)) if self.roots else set()

    def start(self) -> None:
        pids = self.pids()
        self._by_pid0 = _cpu_by_pid(pids)
        self._cpu0 = sum(cpu for _, cpu in self._by_pid0.values())
        self._t0 = time.monotonic()

    def percent(self) -> float:
        """Since `start()`. Processes that exited in between drop out; keep the window on a steady state."""
        return 100 * (cpu_seconds(self.pids()) - self._cpu0) / (time.monotonic() - self._t0)

    def by_process_name(self) -> dict[str, float]:
        """Since `start()`, % of one core per process name (e.g. chromium, python3, pulseaudio)."""
        before = self._by_pid0 or {}
        elapsed = time.monotonic() - self._t0
        shares: dict[str, float] = {}
        for pid, (name, cpu) in _cpu_by_pid(self.pids()).items():
            used = cpu - before.get(pid, (name, 0.0))[1]
            shares[name] = shares.get(name, 0.0) + 100 * used / elapsed
        return {name: round(pct, 1) for name, pct in sorted(shares.items(), key=lambda kv: -kv[1])}

    def by_component(self) -> dict[str, float]:
        """Since `start()`, % of one core per `component()` (the bot's Python, Chromium's page, ...)."""
        before = self._by_pid0 or {}
        elapsed = time.monotonic() - self._t0
        shares: dict[str, float] = {}
        for pid, (name, cpu) in _cpu_by_pid(self.pids()).items():
            used = cpu - before.get(pid, (name, 0.0))[1]
            kind = component(pid)
            shares[kind] = shares.get(kind, 0.0) + 100 * used / elapsed
        return {k: round(pct, 1) for k, pct in sorted(shares.items(), key=lambda kv: -kv[1])}


def pair_delays_ms(sent: Sequence[float], heard: Sequence[float], window_s: float = 0.8) -> list[float]:
    """For each sent onset, the delay to the first heard onset after it within `window_s`, in ms."""
    delays = []
    for s in sent:
        later = [h for h in heard if s <= h <= s + window_s]
        if later:
            delays.append((later[0] - s) * 1000)
    return delays


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation; nan when empty."""
    if not values:
        return float("nan")
    if len(values) == 1:
        return float(values[0])
    return float(statistics.quantiles(values, n=100, method="inclusive")[max(0, min(98, round(q) - 1))])
