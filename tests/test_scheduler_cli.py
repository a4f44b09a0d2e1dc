"""`schedule`, `list`, `cancel` and `serve` as a user runs them: real processes, a real SQLite file."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.scheduler_support import FAKE_JOIN, MEET_URL, serve_process

TOKEN = "cli-token-0123456789abcdef"


def bot(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def later(seconds: float = 3600) -> str:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)).isoformat()


def test_schedule_list_cancel_on_the_database(tmp_path: Path) -> None:
    db = f"--db=sqlite:///{tmp_path / 'bots.db'}"
    r = bot("schedule", MEET_URL, "--at", later(), "--agent-id", "agent-7", "--name", "Notes", db)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("scheduled bot ")
    bot_id = r.stdout.split()[2].rstrip(":")
    r = bot("list", db)
    assert r.returncode == 0 and bot_id in r.stdout and "scheduled" in r.stdout
    r = bot("cancel", bot_id, db)
    assert (r.returncode, r.stdout.strip()) == (0, f"cancelled bot {bot_id}")
    listed = json.loads(bot("list", "--state", "cancelled", "--json", db).stdout)
    assert [(b["id"], b["agent_id"], b["request"]["bot_name"]) for b in listed] == [
        (bot_id, "agent-7", "Notes")
    ]
    r = bot("cancel", bot_id, db)
    assert r.returncode == 1 and "already finished" in r.stderr
    r = bot("cancel", "nope", db)
    assert r.returncode == 1 and "no bot with id 'nope'" in r.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--at", "2030-05-01T14:00"], "join_at: 2030-05-01T14:00:00 has no time zone"),
        (["--at", "2001-05-01T14:00Z"], "is in the past"),
        (["--at", later(), "--metadata", "novalue"], "--metadata: 'novalue' is not key=value"),
    ],
)
def test_schedule_explains_bad_input(tmp_path: Path, args: list[str], message: str) -> None:
    r = bot("schedule", MEET_URL, "--agent-id", "a", *args, f"--db=sqlite:///{tmp_path / 'bots.db'}")
    assert r.returncode == 2 and message in r.stderr, r.stderr


def test_serve_requires_a_token(tmp_path: Path) -> None:
    r = bot("serve", "--port=0", f"--db=sqlite:///{tmp_path / 'bots.db'}", env={"BOT_API_TOKEN": ""})
    assert r.returncode == 2 and "set BOT_API_TOKEN" in r.stderr


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    with serve_process(tmp_path / "bots.db", TOKEN) as url:
        yield url


def test_the_same_commands_through_the_api(served: str) -> None:
    api = {"BOT_API_TOKEN": TOKEN}
    r = bot("schedule", MEET_URL, "--agent-id", "agent-9", "--api", served, env=api)
    assert r.returncode == 0, r.stderr
    bot_id = r.stdout.split()[2].rstrip(":")
    deadline = time.monotonic() + 60
    while json.loads(bot("list", "--json", "--api", served, env=api).stdout)[0]["state"] != "in_call":
        assert time.monotonic() < deadline, "the bot never got into the call"
        time.sleep(0.2)
    r = bot("cancel", bot_id, "--api", served, env=api)
    assert (r.returncode, r.stdout.strip()) == (0, f"bot {bot_id} is leaving its meeting")
    r = bot("schedule", "https://example.com/x", "--agent-id", "a", "--api", served, env=api)
    assert r.returncode == 2 and r.stderr.startswith("meeting-bot schedule: meeting_url: ")
    r = bot("list", "--api", served, env={"BOT_API_TOKEN": "wrong"})
    assert r.returncode == 2 and "refused BOT_API_TOKEN" in r.stderr


def start_serve(db: str) -> subprocess.Popen[str]:
    """`serve` on `db` with fake bots, once it says it serves."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot", "serve", "--port=0", db, f"--bot-command={sys.executable} {FAKE_JOIN}"],
        env={**os.environ, "BOT_API_TOKEN": TOKEN}, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    first = proc.stdout.readline()
    if not first.startswith("serving on "):
        proc.kill()
        proc.wait()
        raise AssertionError(f"serve did not start: {first!r}")
    return proc


def test_stopping_the_service_makes_running_bots_leave_and_records_it(tmp_path: Path) -> None:
    db = f"--db=sqlite:///{tmp_path / 'bots.db'}"
    proc = start_serve(db)
    try:
        r = bot("schedule", MEET_URL, "--agent-id", "a", db)  # a client writing to the service's database
        assert r.returncode == 0, r.stderr
        deadline = time.monotonic() + 60
        while json.loads(bot("list", "--json", db).stdout)[0]["state"] != "in_call":
            assert time.monotonic() < deadline, "the bot never got into the call"
            time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    [record] = json.loads(bot("list", "--json", db).stdout)
    assert (record["state"], record["end_reason"], record["exit_code"]) == ("ended", "left", 0)


def test_a_killed_service_takes_no_bot_with_it_unsupervised(tmp_path: Path) -> None:
    # SIGKILL leaves the service no chance to stop its bots: each bot gets SIGTERM from the kernel
    # (parent-death signal) and leaves; the next start records the bot's end as unknown (crashed).
    db = f"--db=sqlite:///{tmp_path / 'bots.db'}"
    proc = start_serve(db)
    try:
        assert bot("schedule", MEET_URL, "--agent-id", "a", db).returncode == 0
        deadline = time.monotonic() + 60
        while (record := json.loads(bot("list", "--json", db).stdout)[0])["state"] != "in_call":
            assert time.monotonic() < deadline, "the bot never got into the call"
            time.sleep(0.2)
    finally:
        proc.kill()
        proc.wait(timeout=60)
    assert json.loads(bot("list", "--json", db).stdout)[0]["state"] == "in_call"  # nobody saw the end
    pid = next(e["pid"] for e in _events(db, record["id"]) if e["event"] == "launched")
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z":
        assert time.monotonic() < deadline, f"bot process {pid} outlived its service"
        time.sleep(0.1)
    # The next start settles the record.
    restarted = subprocess.Popen(
        [sys.executable, "-m", "bot", "serve", "--port=0", db], env={**os.environ, "BOT_API_TOKEN": TOKEN},
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert restarted.stdout is not None
        assert restarted.stdout.readline().startswith("serving on ")
    finally:
        restarted.terminate()
        restarted.wait(timeout=60)
    [after] = json.loads(bot("list", "--json", db).stdout)
    assert after["state"] == "crashed" and "service stopped while this bot ran" in after["message"]


def _events(db: str, bot_id: str) -> list[dict[str, object]]:
    from bot.service.store import BotStore, make_engine

    store = BotStore(make_engine(db.removeprefix("--db=")))
    try:
        return store.events(bot_id)
    finally:
        store.close()
