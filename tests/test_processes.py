"""bot.system.processes: the /proc readers, on this test process and a child of it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bot.system.processes import (
    CLOCK_TICKS_PER_S,
    ProcStat,
    children,
    cpu_ticks,
    descendants,
    machine_cpu_ticks,
    pss_kb,
    read_stat,
    rss_kb,
)


def _burn_cpu(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_stat_of_this_process() -> None:
    stat = read_stat(os.getpid())
    assert isinstance(stat, ProcStat)
    assert stat.name == Path("/proc/self/comm").read_text().strip()
    assert stat.state in "RS"
    assert stat.ppid == os.getppid()
    assert stat.cpu_ticks == cpu_ticks(os.getpid())


def test_cpu_ticks_count_the_time_spent() -> None:
    before = cpu_ticks(os.getpid())
    _burn_cpu(0.2)
    used_s = (cpu_ticks(os.getpid()) - before) / CLOCK_TICKS_PER_S
    assert 0.1 <= used_s <= 1.0
    # The same clock as the process's own.
    assert abs(cpu_ticks(os.getpid()) / CLOCK_TICKS_PER_S - time.process_time()) < 0.5


def test_memory_of_this_process() -> None:
    rss, pss = rss_kb(os.getpid()), pss_kb(os.getpid())
    # A Python with pytest loaded: tens of MB resident, of which its proportional share is most.
    assert 10_000 < rss < 4_000_000
    assert 1_000 < pss <= rss


def test_a_name_with_spaces_and_parentheses(tmp_path: Path) -> None:
    program = tmp_path / "a (b) c"
    program.symlink_to(sys.executable)
    child = subprocess.Popen([program, "-c", "import time; time.sleep(30)"])
    try:
        stat = read_stat(child.pid)
        assert stat.name == "a (b) c"
        assert stat.ppid == os.getpid()
        assert stat.state in "RS"
    finally:
        child.kill()
        child.wait()


def test_children_and_descendants() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert child.pid in children(os.getpid())
        assert child.pid in descendants()
        assert children(child.pid) == []
    finally:
        child.kill()
        child.wait()
    assert child.pid not in children(os.getpid())


def test_a_gone_process() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert children(child.pid) == []
    for read in (read_stat, cpu_ticks, rss_kb, pss_kb):
        with pytest.raises(OSError):
            read(child.pid)


def test_machine_cpu() -> None:
    busy0, total0 = machine_cpu_ticks()
    _burn_cpu(0.2)
    busy1, total1 = machine_cpu_ticks()
    assert 0 <= busy0 <= total0
    assert busy1 - busy0 >= 0.1 * CLOCK_TICKS_PER_S
    assert total1 - total0 >= busy1 - busy0
