"""Prometheus metrics: `/metrics` of a real service scraped while real bot processes run (tests/fake_join.py
keeps the `join --json` contract), parsed with prometheus_client's own text parser; the dashboard's
queries; `join --metrics-port`."""

from __future__ import annotations

import asyncio
import json
import re
import socket
from pathlib import Path

import httpx

from bot.events import (
    AwaitingAdmission,
    EndedBy,
    EventBus,
    Failed,
    InCall,
    Joining,
    Stats,
    Summary,
)
from bot.service.metrics import BotMetrics, MetricsServer, ServiceMetrics
from bot.service.scheduler import BotService, SchedulerConfig
from bot.service.store import BotState
from tests.api_support import TOKEN, api_client, parse_metrics, sample, scrape
from tests.scheduler_support import fake_launcher, fake_request, wait_for, wait_state
from tests.test_join_cli import MEET, join

DASHBOARD = Path(__file__).resolve().parent.parent / "deploy" / "grafana" / "meeting-bot.json"
METRICS_TOKEN = "metrics-token-0123456789"
ENDED = {BotState.ENDED, BotState.FAILED, BotState.CRASHED}


async def test_metrics_move_while_bots_run(tmp_path: Path) -> None:
    config = SchedulerConfig(db_url=f"sqlite:///{tmp_path / 'bots.db'}", lead_time_s=0, max_concurrent_bots=3)
    service = BotService(config, fake_launcher())
    await service.start()
    try:
        async with api_client(service, metrics_token=METRICS_TOKEN) as client:
            assert (await client.get("/metrics")).status_code == 401
            api_token = await client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
            assert api_token.status_code == 401  # the metrics token, not the API's
            before = await scrape(client, METRICS_TOKEN)
            assert sample(before, "meeting_bot_capacity") == 3
            assert sample(before, "meeting_bot_running") == 0

            calls = [service.schedule(fake_request(max_duration_s=120)).id for _ in range(2)]
            denied = service.schedule(fake_request("fail")).id
            for bot in calls:
                await wait_state(service, bot, {BotState.IN_CALL})
            await wait_state(service, denied, ENDED)

            async def in_call_scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float] | None:
                s = await scrape(client, METRICS_TOKEN)
                return s if sample(s, "meeting_bot_agent_reply_delay_seconds_count") >= 2 else None

            during = None
            for _ in range(200):  # the stats event follows in_call by a moment
                during = await in_call_scrape()
                if during:
                    break
                await asyncio.sleep(0.05)
            assert during is not None, "no reply delay observed"

            for bot in calls:
                service.cancel(bot)
            for bot in calls:
                await wait_state(service, bot, ENDED)
            await wait_for(lambda: not service.running_ids, what="the bots to exit")
            after = await scrape(client, METRICS_TOKEN)
    finally:
        await service.close()

    assert sample(during, "meeting_bot_bots", state="in_call") == 2
    assert sample(during, "meeting_bot_running") == 2
    assert sample(during, "meeting_bot_joins_total", platform="meet", outcome="in_call") == 2
    assert sample(during, "meeting_bot_joins_total", platform="meet", outcome="denied") == 1
    assert sample(during, "meeting_bot_time_to_in_call_seconds_count", platform="meet") == 2
    assert 0 < sample(during, "meeting_bot_time_to_in_call_seconds_sum", platform="meet") < 60
    assert sample(during, "meeting_bot_lobby_seconds_count", platform="meet") == 3
    # fake_join reports the bridge's figures of a call: a 250 ms reply, one reconnect, 3 dropped frames.
    assert sample(during, "meeting_bot_agent_reply_delay_seconds_bucket", le="0.3") == 2
    assert sample(during, "meeting_bot_agent_reply_delay_seconds_bucket", le="0.2") == 0
    assert sample(during, "meeting_bot_agent_reconnects_total", platform="meet") == 2
    assert sample(during, "meeting_bot_dropped_frames_total", platform="meet") == 6

    assert sample(after, "meeting_bot_bots", state="in_call") == 0
    assert sample(after, "meeting_bot_bots", state="ended") == 2
    assert sample(after, "meeting_bot_bots", state="failed") == 1
    assert sample(after, "meeting_bot_running") == 0
    assert sample(after, "meeting_bot_joins_total", platform="meet", outcome="in_call") == 2


async def test_metrics_are_open_without_a_metrics_token(tmp_path: Path) -> None:
    service = BotService(SchedulerConfig(db_url=f"sqlite:///{tmp_path / 'bots.db'}"), fake_launcher())
    await service.start()
    try:
        async with api_client(service) as client:
            samples = await scrape(client)
            bots = await client.get("/bots")
    finally:
        await service.close()
    assert sample(samples, "meeting_bot_capacity") == 4
    assert bots.status_code == 401  # only /metrics is open


def test_dashboard_queries_name_only_exported_series() -> None:
    metrics = ServiceMetrics(
        capacity=2,
        running=lambda: 1,
        queued=lambda: 0,
        bots_by_state=lambda: {"in_call": 1},
        deliveries_by_state=lambda: {"pending": 0, "dead": 1, "delivered": 3},
    )
    for event in (
        {"event": "joining", "platform": "zoom"},
        {"event": "awaiting_admission"},
        {"event": "in_call"},
        {"event": "stats", "reconnects": 1, "dropped": 2, "reply_delay_ms": 400.0},
    ):
        metrics.observe("b1", event)
    metrics.webhook_delivered("in_call", 1, 0.2)
    metrics.webhook_retry("in_call", "http")
    metrics.webhook_dead("in_call")
    exported = {name for name, _ in parse_metrics(metrics.exposition().decode())}

    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 15
    named = {n for e in exprs for n in re.findall(r"\bmeeting_bot_[a-z_]+", e)}
    assert named - exported == set()
    # The panels an operator looks at first are there.
    titles = " | ".join(p["title"] for p in dashboard["panels"])
    for needed in (
        "capacity",
        "Join outcomes",
        "in_call",
        "lobby",
        "reply delay",
        "reconnects",
        "Dropped",
        "dead",
    ):
        assert needed.lower() in titles.lower(), needed


async def test_a_bot_run_by_hand_serves_the_same_series() -> None:
    metrics = BotMetrics()
    server = MetricsServer(metrics.registry, 0)
    bus = EventBus()
    bus.subscribe(lambda e: metrics.observe("local", e.to_dict()))
    try:
        bus.emit(Joining(platform="zoom", meeting_id="85551234567", name="Bot"))
        bus.emit(AwaitingAdmission())
        bus.emit(InCall())
        bus.emit(
            Stats(
                frames_out=50, frames_in=50, bytes_out=1, bytes_in=1, dropped=4,
                level_out_dbfs=-20.0, level_in_dbfs=-20.0, reconnects=1, reply_delay_ms=180.0,
            )
        )  # fmt: skip
        bus.emit(Failed(code="agent_unreachable", message="gone"))  # after in_call: not a join outcome
        bus.emit(Summary(outcome="agent_unreachable", exit_code=22, ended_by=EndedBy.AGENT, total_s=9.0,
                         reconnects=2, dropped_frames=5))  # fmt: skip
        async with httpx.AsyncClient() as client:
            response = await client.get(f"http://127.0.0.1:{server.port}/metrics")
    finally:
        server.close()
    samples = parse_metrics(response.text)
    assert sample(samples, "meeting_bot_joins_total", platform="zoom", outcome="in_call") == 1
    assert sample(samples, "meeting_bot_time_to_in_call_seconds_count", platform="zoom") == 1
    assert sample(samples, "meeting_bot_lobby_seconds_count", platform="zoom") == 1
    assert sample(samples, "meeting_bot_agent_reply_delay_seconds_count") == 1
    assert sample(samples, "meeting_bot_agent_reconnects_total", platform="zoom") == 2
    assert sample(samples, "meeting_bot_dropped_frames_total", platform="zoom") == 5


def test_join_refuses_a_bad_or_busy_metrics_port() -> None:
    done = join(MEET, "--agent-id=a1", "--metrics-port=70000")
    assert done.returncode == 2 and "--metrics-port must be between 1 and 65535" in done.stderr
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        done = join(MEET, "--agent-id=a1", f"--metrics-port={port}")
    # The metrics server starts before anything else: a busy port stops the bot before it joins.
    assert done.returncode == 2 and f"--metrics-port: cannot listen on 127.0.0.1:{port}" in done.stderr
    assert done.stdout == ""
