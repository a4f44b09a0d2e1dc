"""`meeting-bot join` refuses bad input before it starts anything, with a message that says what to fix."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bridge_support import KEY

MEET = "https://meet.google.com/abc-defg-hij"


def join(*args: str, key: str | None = KEY, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BOT_", "MILLIS_"))}
    if key is not None:
        env["MILLIS_PRIVATE_KEY"] = key
    return subprocess.run(
        [sys.executable, "-m", "bot", "join", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
    )


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["https://meet.google.com.evil.example/abc-defg-hij", "--agent-id=a1"], "Google Meet"),
        (["javascript:alert(1)", "--agent-id=a1"], "Meet"),
        (["https://zoom.us/j/notanumber", "--agent-id=a1"], "Zoom"),
        ([MEET], "agent.agent_id"),
        ([MEET, "--agent-id=a1", "--max-duration=-5"], "call.max_duration_s"),
        ([MEET, "--agent-id=a1", "--agent-url=ftp://x"], "agent.url"),
        ([MEET, "--agent-id=a1", "--webhook=https://hooks.example/x"], "webhook.secret"),
        ([MEET, "--agent-id=a1", "--metadata", "novalue"], "is not key=value"),
        ([MEET, "--agent-id=has space"], "agent_id"),
    ],
)
def test_bad_input_exits_2_with_a_message_naming_what_to_fix(args: list[str], says: str) -> None:
    done = join(*args)
    assert done.returncode == 2, done.stderr
    assert says in done.stderr, done.stderr
    assert done.stdout == ""  # nothing started: no events
    assert KEY not in done.stderr


def test_missing_key_names_where_it_comes_from() -> None:
    done = join(MEET, "--agent-id=a1", key=None)
    assert done.returncode == 2
    assert "MILLIS_PRIVATE_KEY" in done.stderr and "agent.key_file" in done.stderr


def test_a_key_in_the_config_file_is_refused_without_echoing_it(tmp_path: Path) -> None:
    config = tmp_path / "bot.toml"
    config.write_text('[agent]\nprivate_key = "sk-live-should-not-be-here"\n')
    done = join(MEET, "--agent-id=a1", f"--config={config}")
    assert done.returncode == 2
    assert "private_key" in done.stderr and "sk-live-should-not-be-here" not in done.stderr
