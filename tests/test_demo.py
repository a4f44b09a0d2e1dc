"""The offline demo, as a newcomer runs it: `python -m bot demo` prints a timeline and the person hears."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from bot.meeting_urls import parse_meeting_url
from bot.testing.demo import MEETING_URLS

pytestmark = [pytest.mark.pulse, pytest.mark.browser, pytest.mark.slow]


def test_demo_person_hears_the_agent_and_the_bot_ends_cleanly() -> None:
    env = {k: v for k, v in os.environ.items() if k != "MILLIS_PRIVATE_KEY"}
    done = subprocess.run(
        [sys.executable, "-m", "bot", "demo"], env=env, capture_output=True, text=True, timeout=180
    )
    out = done.stdout
    assert done.returncode == 0, out[-3000:] + done.stderr[-3000:]
    assert "result: participant heard the agent: yes" in out
    for step in ("joining", "awaiting_admission", "in_call", "agent_connected", "ended", "summary"):
        assert re.search(rf"^\d\d:\d\d:\d\d  {step}\b", out, re.MULTILINE), (step, out)
    assert "reason=host_ended" in out
    # Every step of the timeline happened, in order, with a latency.
    times = [float(m) for m in re.findall(r"^\s+(\d+\.\d\d)  (?:person|agent)", out, re.MULTILINE)]
    assert len(times) == 4 and times == sorted(times), out
    assert "ms agent to ear" in out


def test_demo_on_teams_person_hears_the_agent_and_no_passcode_is_printed() -> None:
    env = {k: v for k, v in os.environ.items() if k != "MILLIS_PRIVATE_KEY"}
    done = subprocess.run(
        [sys.executable, "-m", "bot", "demo", "--platform", "teams"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    out = done.stdout
    assert done.returncode == 0, out[-3000:] + done.stderr[-3000:]
    assert "a local Teams replica at https://teams.live.com/meet/" in out
    assert "result: participant heard the agent: yes" in out
    for step in ("joining", "awaiting_admission", "in_call", "agent_connected", "ended", "summary"):
        assert re.search(rf"^\d\d:\d\d:\d\d  {step}\b", out, re.MULTILINE), (step, out)
    assert re.search(r"^\d\d:\d\d:\d\d  joining +teams \d+ ", out, re.MULTILINE), out
    # The host ends the meeting: Teams' page says only that the call ended.
    assert "reason=call_ended" in out
    times = [float(m) for m in re.findall(r"^\s+(\d+\.\d\d)  (?:person|agent)", out, re.MULTILINE)]
    assert len(times) == 4 and times == sorted(times), out
    assert "ms agent to ear" in out
    passcode = parse_meeting_url(MEETING_URLS["teams"]).passcode
    assert passcode and passcode not in out + done.stderr
