"""The scheduler on a real SQLite file with real bot processes (tests/fake_join.py keeps the contract)."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import pytest

from bot.service.bot_request import RequestError, parse_join_at
from bot.service.launchers import LocalProcessLauncher
from bot.service.scheduler import BotService, NotFound, SchedulerConfig
from bot.service.store import BotState
from tests.scheduler_support import (
    FAKE_JOIN,
    event_kinds,
    fake_launcher,
    fake_request,
    in_seconds,
    runs_logged,
    serving,
    wait_state,
)

ENDED = {BotState.ENDED, BotState.FAILED, BotState.CRASHED, BotState.MISSED, BotState.CANCELLED}


def config(tmp_path: Path, **kw: object) -> SchedulerConfig:
    return SchedulerConfig(db_url=f"sqlite:///{tmp_path / 'bots.db'}", **kw)  # type: ignore[arg-type]


async def test_schedule_then_restart_runs_once_at_its_time(tmp_path: Path) -> None:
    log = tmp_path / "runs.log"
    cfg = config(tmp_path, lead_time_s=1.0)
    async with serving(cfg, fake_launcher(log)) as first:
        record = first.schedule(fake_request(max_duration_s=0.5), in_seconds(4))
        assert record.state is BotState.SCHEDULED
        assert (record.join_at - record.run_at).total_seconds() == pytest.approx(1.0)
    # The service is down; nothing runs. A new one on the same file finds the job and runs it once.
    async with serving(cfg, fake_launcher(log)) as second:
        assert second.get(record.id).state is BotState.SCHEDULED
        done = await wait_state(second, record.id, ENDED, timeout=40)
    assert done.state is BotState.ENDED, done
    assert done.end_reason == "max_duration" and done.exit_code == 0
    assert done.started_at is not None
    delay = (done.started_at - done.run_at).total_seconds()
    assert -0.05 <= delay < 2.0, f"started {delay:.3f} s after its run time"
    assert event_kinds(done)[:4] == ["joining", "awaiting_admission", "in_call", "agent_connected"]
    assert event_kinds(done)[-2:] == ["ended", "summary"]
    assert done.summary is not None and done.summary["ended_by"] == "bot"
    # A third start finds nothing left to do: the bot ran exactly once.
    async with serving(cfg, fake_launcher(log)) as third:
        await asyncio.sleep(1.5)
        assert third.get(record.id).state is BotState.ENDED
    assert [line.split()[0] for line in runs_logged(log)] == [record.id]


async def test_job_whose_time_passed_during_an_outage_is_missed_not_run(tmp_path: Path) -> None:
    log = tmp_path / "runs.log"
    cfg = config(tmp_path, lead_time_s=0.0, misfire_grace_s=1.0)
    async with serving(cfg, fake_launcher(log)) as first:
        record = first.schedule(fake_request(), in_seconds(1.5))
    await asyncio.sleep(3.5)  # the outage: run time + grace window pass while no service runs
    async with serving(cfg, fake_launcher(log)) as second:
        missed = second.get(record.id)
        assert missed.state is BotState.MISSED, missed
        assert missed.message and "grace window" in missed.message
        await asyncio.sleep(1.0)
        assert second.running_ids == []
    assert runs_logged(log) == []


async def test_job_found_late_by_a_stalled_service_is_missed(tmp_path: Path) -> None:
    log = tmp_path / "runs.log"
    cfg = config(tmp_path, lead_time_s=0.0, misfire_grace_s=1.0)
    async with serving(cfg, fake_launcher(log)) as service:
        record = service.schedule(fake_request(), in_seconds(0.5))
        # On purpose: the loop stalls like a suspended machine's, so the job is found 2 s late.
        time.sleep(2.5)  # noqa: ASYNC251
        missed = await wait_state(service, record.id, ENDED, timeout=10)
        assert missed.state is BotState.MISSED
        assert missed.message and "grace window" in missed.message
    assert runs_logged(log) == []


async def test_cancel_before_start_removes_the_job_for_good(tmp_path: Path) -> None:
    log = tmp_path / "runs.log"
    cfg = config(tmp_path, lead_time_s=0.0)
    async with serving(cfg, fake_launcher(log)) as service:
        record = service.schedule(fake_request(), in_seconds(2))
        outcome, cancelled = service.cancel(record.id)
        assert (outcome, cancelled.state) == ("cancelled", BotState.CANCELLED)
        assert service.cancel(record.id)[0] == "finished"
    async with serving(cfg, fake_launcher(log)) as again:
        await asyncio.sleep(3)
        assert again.get(record.id).state is BotState.CANCELLED
    assert runs_logged(log) == []


async def test_cancel_during_the_call_makes_the_bot_leave(tmp_path: Path) -> None:
    async with serving(config(tmp_path), fake_launcher()) as service:
        record = service.schedule(fake_request())
        await wait_state(service, record.id, {BotState.IN_CALL})
        outcome, leaving = service.cancel(record.id)
        assert outcome == "leaving" and leaving.stop_requested_at is not None
        done = await wait_state(service, record.id, ENDED)
    assert (done.state, done.end_reason, done.exit_code) == (BotState.ENDED, "left", 0)


async def test_crashing_bots_are_recorded_and_others_keep_running(tmp_path: Path) -> None:
    async with serving(config(tmp_path, max_concurrent_bots=3), fake_launcher()) as service:
        steady = service.schedule(fake_request("call"))
        crash = service.schedule(fake_request("crash"))
        killed = service.schedule(fake_request("kill"))
        crashed = await wait_state(service, crash.id, ENDED)
        assert (crashed.state, crashed.exit_code) == (BotState.CRASHED, 30)
        assert crashed.message and "simulated browser crash" in crashed.message
        died = await wait_state(service, killed.id, ENDED)
        assert (died.state, died.exit_code) == (BotState.CRASHED, -9)
        assert died.message and "SIGKILL" in died.message
        alive = await wait_state(service, steady.id, {BotState.IN_CALL})
        await asyncio.sleep(0.5)
        assert service.get(steady.id).state is BotState.IN_CALL
        assert service.running_ids == [steady.id]
        service.cancel(steady.id)
        done = await wait_state(service, steady.id, ENDED)
    assert alive.in_call_at is not None
    assert (done.state, done.end_reason) == (BotState.ENDED, "left")


@pytest.mark.parametrize(
    ("behaviour", "code", "failure", "message"),
    [
        ("fail", 10, "denied", "someone in the call denied entry"),  # a failed join, with its code
        ("usage", 2, "usage", "meeting-bot join: webhook.secret: is required with webhook.url"),  # settings
    ],
)
async def test_a_failed_bot_is_recorded_with_its_code_and_message(
    tmp_path: Path, behaviour: str, code: int, failure: str, message: str
) -> None:
    async with serving(config(tmp_path), fake_launcher()) as service:
        record = service.schedule(fake_request(behaviour))
        done = await wait_state(service, record.id, ENDED)
    assert (done.state, done.exit_code, done.failure_code) == (BotState.FAILED, code, failure)
    assert done.message == message


async def test_excess_bots_wait_queued_and_start_when_a_slot_frees(tmp_path: Path) -> None:
    async with serving(config(tmp_path, max_concurrent_bots=1), fake_launcher()) as service:
        first = service.schedule(fake_request())
        second = service.schedule(fake_request())
        await wait_state(service, first.id, {BotState.IN_CALL})
        await asyncio.sleep(0.5)
        assert service.get(second.id).state is BotState.QUEUED
        assert [r.id for r in service.list_bots([BotState.QUEUED])] == [second.id]
        service.cancel(first.id)
        await wait_state(service, second.id, {BotState.IN_CALL})
        service.cancel(second.id)
        await wait_state(service, second.id, ENDED)


async def test_queued_bots_survive_a_restart(tmp_path: Path) -> None:
    log = tmp_path / "runs.log"
    cfg = config(tmp_path, max_concurrent_bots=1)
    async with serving(cfg, fake_launcher(log)) as service:
        first = service.schedule(fake_request())
        second = service.schedule(fake_request(max_duration_s=0.5))
        await wait_state(service, first.id, {BotState.IN_CALL})
        await wait_state(service, second.id, {BotState.QUEUED})
    # Closing made the running bot leave; the queued one is still queued and runs after the restart.
    async with serving(cfg, fake_launcher(log)) as service:
        assert service.get(first.id).end_reason == "left"
        done = await wait_state(service, second.id, ENDED)
    assert done.end_reason == "max_duration"
    assert [line.split()[0] for line in runs_logged(log)] == [first.id, second.id]


async def test_a_client_schedules_and_cancels_while_the_service_runs(tmp_path: Path) -> None:
    cfg = config(tmp_path, lead_time_s=0.0, poll_interval_s=0.2)
    async with serving(cfg, fake_launcher()) as service:
        client = BotService(cfg)  # what `schedule`/`cancel` without --api use
        await client.start()
        try:
            record = client.schedule(fake_request(), in_seconds(1))
            await wait_state(service, record.id, {BotState.IN_CALL})
            assert client.cancel(record.id)[0] == "leaving"
        finally:
            await client.close()
        done = await wait_state(service, record.id, ENDED)
    assert (done.state, done.end_reason) == (BotState.ENDED, "left")


def test_join_at_needs_a_time_zone_and_a_future_time() -> None:
    with pytest.raises(RequestError, match="no time zone"):
        parse_join_at("2030-05-01T14:00:00")
    with pytest.raises(RequestError, match="in the past"):
        parse_join_at("2001-05-01T14:00:00+00:00")
    with pytest.raises(RequestError, match="not an ISO 8601 time"):
        parse_join_at("tomorrow at noon")
    assert parse_join_at("2030-05-01T14:00:00+02:00").isoformat() == "2030-05-01T12:00:00+00:00"


async def test_a_bot_command_that_cannot_start_is_recorded(tmp_path: Path) -> None:
    launcher = LocalProcessLauncher([str(tmp_path / "no-such-program")])
    async with serving(config(tmp_path), launcher) as service:
        record = service.schedule(fake_request())
        done = await wait_state(service, record.id, ENDED)
    assert done.state is BotState.CRASHED
    assert done.message and "no-such-program" in done.message


async def test_two_schedulers_on_one_database_start_a_bot_once(tmp_path: Path) -> None:
    # Two serving instances (one here, one a real `serve` process) both hold the same job in the
    # shared store; the conditional state update lets exactly one of them start the bot.
    log = tmp_path / "runs.log"
    cfg = config(tmp_path, lead_time_s=0.0)
    env = {**os.environ, "BOT_API_TOKEN": "t" * 32, "FAKE_JOIN_LOG": str(log)}

    async with serving(cfg, fake_launcher(log)) as here:
        # 15 s: room for the second `serve` to start on a loaded machine before the bot is due.
        record = here.schedule(fake_request(max_duration_s=0.5), in_seconds(15))
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "serve", "--port=0", f"--db={cfg.db_url}",
            f"--bot-command={sys.executable} {FAKE_JOIN}", "--lead-time=0",
            env=env, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), 30)
            assert line.startswith(b"serving on http://127.0.0.1:"), line
            assert here.get(record.id).state is BotState.SCHEDULED, "the second service started too late"
            done = await wait_state(here, record.id, ENDED, timeout=40)
            await asyncio.sleep(1.5)
        finally:
            proc.terminate()
            # SIGTERM is a clean stop for `serve`.
            assert await proc.wait() == 0
    assert done.state is BotState.ENDED
    assert [line.split()[0] for line in runs_logged(log)] == [record.id]


async def test_unknown_ids_are_not_found(tmp_path: Path) -> None:
    async with serving(config(tmp_path), fake_launcher()) as service:
        with pytest.raises(NotFound):
            service.get("nope")
        with pytest.raises(NotFound):
            service.cancel("nope")
