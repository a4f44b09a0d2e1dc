"""The scripts users run by hand start: each Python script's first lines are also a shell prelude (it sets
the machine up, then runs the file with the project's Python), which a formatter can silently break."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from bot.audio.devices import DAEMON_CONF

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
PYTHON_SCRIPTS = sorted(
    p.name
    for p in SCRIPTS.iterdir()
    if "exec .venv/bin/python" in "".join(p.read_text().splitlines(True)[:3])
)


def test_every_python_script_is_found() -> None:
    assert {"bench-bridge", "bench-e2e", "bench-schedule", "soak"} <= set(PYTHON_SCRIPTS)


@pytest.mark.parametrize("name", PYTHON_SCRIPTS)
def test_the_script_runs_through_its_shell_prelude(name: str) -> None:
    done = subprocess.run([str(SCRIPTS / name), "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage:" in done.stdout, done.stdout[-2000:]


def test_the_containers_pulseaudio_runs_with_the_bots_daemon_conf(tmp_path: Path) -> None:
    # The entrypoint's shared daemon and the bot's own must agree: `avoid-resampling = yes` in either
    # garbles the meeting's sound (bot/audio/devices.py, DAEMON_CONF).
    entrypoint = (SCRIPTS / "entrypoint").read_text()
    found = re.search(
        r"^\s*(printf '%s\\n' .*?>\"\$pulse_dir/daemon\.conf\")", entrypoint, re.MULTILINE | re.DOTALL
    )
    assert found, "the entrypoint no longer writes a daemon.conf"
    subprocess.run(["bash", "-c", found.group(1)], env={"pulse_dir": str(tmp_path)}, check=True)
    assert (tmp_path / "daemon.conf").read_text() == DAEMON_CONF
