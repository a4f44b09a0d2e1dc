"""Durable webhooks of scheduled bots: a real receiver (aiohttp) that goes down and comes back, a real
service restart in the middle, real bot processes (tests/fake_join.py), a real SQLite file.

The retry schedule is shrunk through the settings' `webhook.retry_schedule_s` so the tests take seconds.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.service.outbox import DeliveryState, WebhookDispatcher, WebhookOptions, store_with_outbox
from bot.service.scheduler import BotService, SchedulerConfig
from bot.service.store import BotState, make_engine
from bot.testing.postgres import PostgresServer
from tests.api_support import AUTH, api_client, sample, scrape
from tests.scheduler_support import fake_launcher, fake_request, wait_for, wait_state
from tests.webhook_receiver import WebhookReceiver

SECRET = "hook-secret-0123456789"
ENDED = {BotState.ENDED, BotState.FAILED, BotState.CRASHED}
# About 20 s of retries, at most 1 s apart: longer than any outage below, quick to notice a comeback.
FAST = (0.2, 0.5, *[1.0] * 20)


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    with PostgresServer() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path, postgres: PostgresServer) -> str:
    # Both take `postgres`, so the server starts before the first test's leftover check begins.
    return db(tmp_path) if request.param == "sqlite" else postgres.create_database()


def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'bots.db'}"


def hooks(schedule: tuple[float, ...] = FAST) -> WebhookOptions:
    return WebhookOptions(secret=SECRET, retry_schedule_s=schedule, timeout_s=5, poll_interval_s=0.2)


async def start_service(url: str, schedule: tuple[float, ...] = FAST) -> BotService:
    config = SchedulerConfig(db_url=url, lead_time_s=0, stop_timeout_s=10)
    service = BotService(config, fake_launcher(), webhooks=hooks(schedule))
    await service.start()
    return service


def by_bot(receiver: WebhookReceiver) -> dict[str, list[str]]:
    """The event ids each bot's receiver accepted, in the order it accepted them."""
    out: dict[str, list[str]] = defaultdict(list)
    for event in receiver.events:
        out[event["bot_id"]].append(event["id"])
    return out


async def test_receiver_down_and_back_across_a_restart_gets_every_event_once_in_order(db_url: str) -> None:
    receiver = WebhookReceiver(SECRET)
    await receiver.start()
    first = await start_service(db_url)
    try:
        short = first.schedule(fake_request(max_duration_s=0.5, webhook_url=receiver.url)).id
        long = first.schedule(fake_request(max_duration_s=120, webhook_url=receiver.url)).id
        failing = first.schedule(fake_request("fail", webhook_url=receiver.url)).id
        await wait_state(first, long, {BotState.IN_CALL})
        await wait_state(first, short, ENDED)
        await wait_state(first, failing, ENDED)
        await wait_for(lambda: len(receiver.ids) >= 10, what="the first deliveries")
        # The receiver goes down while a bot is still in its call.
        port = receiver.port
        await receiver.close()
        delivered_before = len(receiver.ids)
        first.cancel(long)  # the bot leaves: its last events are queued while nobody listens
        await wait_state(first, long, ENDED)

        def retrying() -> bool:
            pending = first.outbox.deliveries(states=[DeliveryState.PENDING])
            return bool(pending) and pending[0].attempts >= 2

        await wait_for(retrying, what="failed attempts while the receiver is down")
    finally:
        await first.close()

    second = await start_service(db_url)
    try:
        assert second.outbox.deliveries(states=[DeliveryState.PENDING])  # left for after the restart
        attempts = second.outbox.deliveries(states=[DeliveryState.PENDING])[0].attempts
        await wait_for(
            lambda: second.outbox.deliveries(states=[DeliveryState.PENDING])[0].attempts > attempts,
            what="a failed attempt after the restart",
        )
        await receiver.start(port)  # back, on the same URL
        await wait_for(
            lambda: not second.outbox.deliveries(states=[DeliveryState.PENDING]), 30, "every delivery"
        )
        deliveries = second.outbox.deliveries()
        stored = {bot: [e.data["id"] for e in second.outbox.events(bot)] for bot in (short, long, failing)}
    finally:
        await second.close()
        await receiver.close()

    assert len(receiver.ids) > delivered_before
    assert {d.state for d in deliveries} == {DeliveryState.DELIVERED}
    assert max(d.attempts for d in deliveries) >= 3  # some waited through the outage and the restart
    # Every stored event of each bot reached the receiver exactly once, in the order it was recorded.
    assert by_bot(receiver) == stored
    assert set(receiver.accepted.values()) == {1}
    assert receiver.bad_signatures == 0
    kinds = [e["event"] for e in receiver.events if e["bot_id"] == long]
    assert kinds[:2] == ["scheduled", "state"] and "in_call" in kinds and kinds[-2:] == ["exit", "state"]
    assert [e for e in receiver.events if e["bot_id"] == long and e["event"] == "state"][-1][
        "state"
    ] == "ended"


async def test_a_bots_later_events_wait_for_its_earlier_ones(tmp_path: Path) -> None:
    """Bot A's first event is refused three times; A's later events wait, bot B's go meanwhile."""
    first_of_a: dict[str, str] = {}
    refusals = {"left": 3}

    def refuse(event: dict[str, Any]) -> bool:
        if event["id"] == first_of_a.get("id") and refusals["left"] > 0:
            refusals["left"] -= 1
            return True
        return False

    receiver = WebhookReceiver(SECRET, fail_when=refuse)
    await receiver.start()
    store, outbox = store_with_outbox(make_engine(db(tmp_path)))
    # Quick retries, but a long span: the age rule must not end the refused event under a loaded CPU.
    dispatcher = WebhookDispatcher(outbox, hooks((0.2, 0.2, 0.2, 10.0)))
    try:
        when = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
        a, b = (
            store.create(
                meeting_url="u",
                agent_id="x",
                request={"webhook_url": receiver.url},
                join_at=when,
                run_at=when,
            ).id
            for _ in range(2)
        )
        first_of_a["id"] = outbox.events(a)[0].data["id"]
        for n in range(3):
            store.add_event(a, {"event": "note", "at": when.isoformat(), "id": f"a{n}"})
            store.add_event(b, {"event": "note", "at": when.isoformat(), "id": f"b{n}"})
        dispatcher.start()
        await wait_for(lambda: not outbox.deliveries(states=[DeliveryState.PENDING]), 20, "every delivery")
    finally:
        await dispatcher.close()
        store.close()
        await receiver.close()
    order = [event_id for event_id, status in receiver.log if status == 204]
    # Matched by membership: the stored events' ids are uuid hex, which may start with "a" too.
    later_of_a = ["a0", "a1", "a2"]
    assert [i for i in order if i in {first_of_a["id"], *later_of_a}] == [first_of_a["id"], *later_of_a]
    # B was not held up by A: all of B went before A's first event got through.
    assert order.index("b2") < order.index(first_of_a["id"])
    # A's later events were not even tried before A's first was delivered.
    first_ok = receiver.log.index((first_of_a["id"], 204))
    assert not any(i in later_of_a for i, _ in receiver.log[:first_ok])
    assert [status for i, status in receiver.log if i == first_of_a["id"]] == [503, 503, 503, 204]


async def test_a_receiver_that_always_fails_ends_in_dead_letters(tmp_path: Path) -> None:
    receiver = WebhookReceiver(SECRET, fail_first=10**9)
    await receiver.start()
    service = await start_service(db(tmp_path), schedule=(0.1, 0.1))
    try:
        async with api_client(service) as client:
            bot = service.schedule(fake_request("fail", webhook_url=receiver.url)).id
            await wait_state(service, bot, ENDED)
            await wait_for(
                lambda: not service.outbox.deliveries(states=[DeliveryState.PENDING]), 30, "every event dead"
            )
            deliveries = service.outbox.deliveries(bot)
            response = await client.get(f"/bots/{bot}/events", headers=AUTH)
            samples = await scrape(client)
            unknown = await client.get("/bots/nope/events", headers=AUTH)
            unauthorized = await client.get(f"/bots/{bot}/events")
    finally:
        await service.close()  # the app closed it already, unless the test failed before serving it
        await receiver.close()
    n = len(deliveries)
    assert n >= 8  # scheduled, the states, launched, joining, awaiting_admission, failed, summary, exit
    assert {d.state for d in deliveries} == {DeliveryState.DEAD}
    assert {d.last_status for d in deliveries} == {503}
    # At most the first attempt and the schedule's two retries; fewer for an event that waited behind a
    # dead one longer than the whole schedule (test_retry_policy shows the rule with exact times).
    assert all(1 <= d.attempts <= 3 for d in deliveries)
    attempts = sum(d.attempts for d in deliveries)
    assert receiver.requests == attempts and receiver.events == []
    # In order even while failing: each event's attempts all come before the next event's first.
    tried = [event_id for event_id, _ in receiver.log]
    assert tried == [d.event_id for d in deliveries for _ in range(d.attempts)]

    # Visible in the API: every delivered-to event says dead, and a webhook.dead record names each one.
    assert response.status_code == 200, response.text
    events = response.json()
    assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)
    queued = [e for e in events if e["delivery"] is not None]
    assert len(queued) == n and {e["delivery"]["state"] for e in queued} == {"dead"}
    assert {e["delivery"]["last_error"] for e in queued} == {"HTTP 503"}
    dead_records = [e["event"] for e in events if e["event"]["event"] == "webhook.dead"]
    assert sorted(r["event_id"] for r in dead_records) == sorted(d.event_id for d in deliveries)
    assert all(e["delivery"] is None for e in events if e["event"]["event"] == "webhook.dead")
    assert unknown.status_code == 404 and unauthorized.status_code == 401

    # And in /metrics.
    assert sample(samples, "meeting_bot_webhook_dead_letters_total") == n
    assert sample(samples, "meeting_bot_webhook_outbox", state="dead") == n
    assert sample(samples, "meeting_bot_webhook_outbox", state="pending") == 0
    assert sample(samples, "meeting_bot_webhook_retries_total", reason="http") == attempts - n


async def test_the_webhook_url_setting_serves_bots_without_their_own(tmp_path: Path) -> None:
    receiver = WebhookReceiver(SECRET)
    await receiver.start()
    config = SchedulerConfig(db_url=db(tmp_path), lead_time_s=0)
    options = WebhookOptions(
        secret=SECRET, default_url=receiver.url, retry_schedule_s=FAST, poll_interval_s=0.2
    )
    service = BotService(config, fake_launcher(), webhooks=options)
    await service.start()
    try:
        record = service.schedule(fake_request("fail"))
        await wait_state(service, record.id, ENDED)
        await wait_for(lambda: "summary" in receiver.kinds(), what="the bot's events at the default URL")
    finally:
        await service.close()
        await receiver.close()
    assert record.request["webhook_url"] == receiver.url  # stored with the bot: any process queues it
    assert {e["bot_id"] for e in receiver.events} == {record.id}


async def test_a_webhook_needs_the_service_secret(tmp_path: Path) -> None:
    config = SchedulerConfig(db_url=db(tmp_path), lead_time_s=0)
    service = BotService(config, fake_launcher(), webhooks=WebhookOptions(secret=""))
    await service.start()
    try:
        async with api_client(service) as client:
            body = {
                "meeting_url": fake_request().meeting_url,
                "agent_id": "a1",
                "webhook_url": "https://h.example/x",
            }
            refused = await client.post("/bots", json=body, headers=AUTH)
            body.pop("webhook_url")
            accepted = await client.post("/bots", json=body, headers=AUTH)
            bot = accepted.json()["id"]
            await wait_state(service, bot, {BotState.IN_CALL})
            service.cancel(bot)
            await wait_state(service, bot, ENDED)
            nothing_queued = service.outbox.deliveries()
    finally:
        await service.close()
    assert refused.status_code == 422, refused.text
    detail = refused.json()["detail"][0]
    assert detail["loc"] == ["body", "webhook_url"] and "BOT_WEBHOOK_SECRET" in detail["msg"]
    assert accepted.status_code == 201 and nothing_queued == []


def test_retry_policy(tmp_path: Path) -> None:
    """The schedule with exact times: each failed attempt waits the next delay; after the last one the
    event is dead. An event already older than the whole schedule (it waited behind a dead one) gets one
    attempt: a receiver gone for good costs the schedule's span once per bot, not once per event."""
    store, outbox = store_with_outbox(make_engine(db(tmp_path)))
    try:
        t0 = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
        bot = store.create(
            meeting_url="u", agent_id="x", request={"webhook_url": "http://h/x"}, join_at=t0, run_at=t0
        ).id
        store.add_event(bot, {"event": "note", "at": t0.isoformat(), "id": "later"})
        schedule = (5.0, 30.0, 120.0)
        first, later = outbox.deliveries(bot)
        created = first.created_at
        at = created
        for delay in schedule:
            assert not outbox.failed(first, 503, "HTTP 503", at, schedule)
            [first, _] = outbox.deliveries(bot)
            assert (first.state, first.next_attempt_at) == (
                DeliveryState.PENDING,
                at + dt.timedelta(seconds=delay),
            )
            at = first.next_attempt_at
        assert outbox.failed(first, 503, "HTTP 503", at, schedule)  # the 4th attempt: dead
        first = outbox.deliveries(bot)[0]
        assert (first.state, first.attempts, first.finished_at) == (DeliveryState.DEAD, 4, at)
        # The later event waited all that time: one failed attempt and it is dead too.
        assert outbox.failed(later, None, "ConnectError", at + dt.timedelta(seconds=1), schedule)
        dead = [e.data for e in outbox.events(bot) if e.data["event"] == "webhook.dead"]
        assert [(d["event_id"], d["attempts"]) for d in dead] == [(first.event_id, 4), ("later", 1)]
    finally:
        store.close()
