"""The scheduler on a real PostgreSQL server (Debian's `postgresql` package) that this module starts.

The server (`bot.testing.postgres.PostgresServer`) runs from a fresh `initdb` in a temporary directory,
listens only on a unix socket there, and is stopped by its own handle; under root it runs as `postgres`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.service.scheduler import SchedulerConfig
from bot.service.store import BotState, BotStore, make_engine
from bot.testing.postgres import PostgresServer
from tests.scheduler_support import fake_launcher, fake_request, in_seconds, runs_logged, serving, wait_state

ENDED = {BotState.ENDED, BotState.FAILED, BotState.CRASHED, BotState.MISSED, BotState.CANCELLED}


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    """A private PostgreSQL server (bot.testing.postgres), stopped after the module."""
    server = PostgresServer()
    try:
        server.start()
    except RuntimeError as e:
        pytest.fail(str(e))
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def database(postgres: PostgresServer) -> str:
    """A fresh database per test on the shared server."""
    return postgres.create_database()


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
