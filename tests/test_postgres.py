"""The scheduler on a real PostgreSQL server (Debian's `postgresql` package) that this module starts.

The server runs from a fresh `initdb` in a temporary directory, listens only on a unix socket there, and is
stopped by its own handle. PostgreSQL refuses to run as root, so under root it runs as the `postgres` user.
"""

from __future__ import annotations

import asyncio
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from bot.service.scheduler import SchedulerConfig
from bot.service.store import BotState, BotStore, make_engine
from tests.scheduler_support import fake_launcher, fake_request, in_seconds, runs_logged, serving, wait_state

ENDED = {BotState.ENDED, BotState.FAILED, BotState.CRASHED, BotState.MISSED, BotState.CANCELLED}


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}")) or [shutil.which(name) or ""]
    if not found[-1]:
        pytest.fail(f"PostgreSQL's {name} is missing: run scripts/setup (it installs Debian's postgresql)")
    return found[-1]


def _as_user() -> dict[str, Any]:
    """Popen arguments that drop root to the `postgres` user (PostgreSQL refuses to run as root)."""
    if os.geteuid() != 0:
        return {}
    pw = pwd.getpwnam("postgres")
    return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    """A private PostgreSQL server; yields a connection URL for its `postgres` database."""
    base = Path(tempfile.mkdtemp(prefix="bot-pg-"))  # short: a unix socket path is limited to 107 bytes
    drop = _as_user()
    proc: subprocess.Popen[bytes] | None = None
    try:
        if drop:
            os.chown(base, drop["user"], drop["group"])
        subprocess.run(
            [_pg_bin("initdb"), "-D", str(base / "data"), "-U", "postgres", "--auth=trust", "--no-sync"],
            check=True, capture_output=True, cwd=base, **drop,
        )  # fmt: skip
        proc = subprocess.Popen(
            [
                _pg_bin("postgres"), "-D", str(base / "data"), "-k", str(base), "-p", "5432",
                "-c", "listen_addresses=", "-c", "fsync=off", "-c", "synchronous_commit=off",
            ],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=base, **drop,
        )  # fmt: skip
        url = f"postgresql+psycopg://postgres@/postgres?host={base}&port=5432"
        deadline = time.monotonic() + 60
        while True:
            try:
                psycopg.connect(host=str(base), port=5432, user="postgres", dbname="postgres").close()
                break
            except psycopg.OperationalError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    err = proc.stderr.read().decode() if proc.stderr and proc.poll() is not None else ""
                    pytest.fail(f"PostgreSQL did not start: {err[-2000:]}")
                time.sleep(0.1)
        yield url
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGINT)  # "fast" shutdown: disconnect clients, exit cleanly
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stderr:
                proc.stderr.close()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def database(postgres: str) -> str:
    """A fresh database per test on the shared server."""
    name = f"bots_{uuid.uuid4().hex[:8]}"
    host = postgres.split("host=")[1].split("&")[0]
    with psycopg.connect(host=host, port=5432, user="postgres", dbname="postgres", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return postgres.replace("@/postgres?", f"@/{name}?")


async def test_schedule_then_restart_runs_once_on_postgres(database: str, tmp_path: Path) -> None:
    log = tmp_path / "runs.log"
    cfg = SchedulerConfig(db_url=database, lead_time_s=1.0)
    async with serving(cfg, fake_launcher(log)) as first:
        record = first.schedule(fake_request(max_duration_s=0.5), in_seconds(4))
    async with serving(cfg, fake_launcher(log)) as second:
        assert second.get(record.id).state is BotState.SCHEDULED
        done = await wait_state(second, record.id, ENDED, timeout=40)
    assert (done.state, done.end_reason, done.exit_code) == (BotState.ENDED, "max_duration", 0)
    assert done.started_at is not None and done.started_at >= done.run_at
    async with serving(cfg, fake_launcher(log)) as third:
        await asyncio.sleep(1.5)
        assert [r.id for r in third.list_bots()] == [record.id]
    assert [line.split()[0] for line in runs_logged(log)] == [record.id]


async def test_missed_during_an_outage_on_postgres(database: str, tmp_path: Path) -> None:
    log = tmp_path / "runs.log"
    cfg = SchedulerConfig(db_url=database, lead_time_s=0.0, misfire_grace_s=1.0)
    async with serving(cfg, fake_launcher(log)) as first:
        record = first.schedule(fake_request(), in_seconds(1.5))
    await asyncio.sleep(3.5)
    async with serving(cfg, fake_launcher(log)) as second:
        assert second.get(record.id).state is BotState.MISSED
    assert runs_logged(log) == []


def test_concurrent_claims_on_postgres_start_a_bot_once(database: str) -> None:
    store = BotStore(make_engine(database))
    try:
        when = in_seconds(60)
        bot_id = store.create(meeting_url="u", agent_id="a", request={}, join_at=when, run_at=when).id
        wins: list[bool] = []
        barrier = threading.Barrier(6)

        def claim() -> None:
            barrier.wait()
            wins.append(store.transition(bot_id, BotState.QUEUED, [BotState.SCHEDULED]))

        threads = [threading.Thread(target=claim) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(wins) == [False] * 5 + [True]
    finally:
        store.close()
