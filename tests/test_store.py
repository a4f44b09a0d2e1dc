"""Bot records on a real SQLite file: conditional state changes, UTC times, events, reopening."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path

import pytest

from bot.service.store import PENDING, BotState, BotStore, make_engine, normalize_db_url


def open_store(tmp_path: Path) -> BotStore:
    return BotStore(make_engine(f"sqlite:///{tmp_path / 'sub' / 'bots.db'}"))


def new_bot(store: BotStore, agent: str = "agent-1") -> str:
    join_at = dt.datetime(2030, 5, 1, 14, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    return store.create(
        meeting_url="https://meet.google.com/abc-defg-hij",
        agent_id=agent,
        request={"meeting_url": "https://meet.google.com/abc-defg-hij", "agent_id": agent},
        join_at=join_at,
        run_at=join_at - dt.timedelta(seconds=30),
    ).id


def test_records_survive_reopening_with_utc_times(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    bot_id = new_bot(store)
    store.close()
    again = open_store(tmp_path)
    try:
        record = again.get(bot_id, with_events=True)
        assert record is not None
        assert record.state is BotState.SCHEDULED
        assert record.join_at == dt.datetime(2030, 5, 1, 12, 0, tzinfo=dt.UTC)
        assert record.join_at.tzinfo is dt.UTC
        assert record.to_dict()["join_at"] == "2030-05-01T12:00:00+00:00"
        assert [e["event"] for e in record.events or []] == ["scheduled"]
    finally:
        again.close()


def test_a_state_change_happens_once_among_concurrent_claims(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    try:
        bot_id = new_bot(store)
        wins: list[bool] = []
        barrier = threading.Barrier(8)

        def claim() -> None:
            barrier.wait()
            wins.append(store.transition(bot_id, BotState.QUEUED, [BotState.SCHEDULED]))

        threads = [threading.Thread(target=claim) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(wins) == [False] * 7 + [True]
        assert not store.transition(bot_id, BotState.CANCELLED, [BotState.SCHEDULED])
        assert store.transition(bot_id, BotState.CANCELLED, PENDING)
        record = store.get(bot_id, with_events=True)
        assert record is not None and record.state is BotState.CANCELLED
        states = [e.get("state") for e in record.events or [] if e["event"] == "state"]
        assert states == ["queued", "cancelled"]
    finally:
        store.close()


def test_filters_and_events_in_order(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    try:
        a, b, c = new_bot(store, "agent-a"), new_bot(store, "agent-b"), new_bot(store, "agent-a")
        store.transition(b, BotState.QUEUED, [BotState.SCHEDULED])
        assert {r.id for r in store.list_bots(agent_id="agent-a")} == {a, c}
        assert [r.id for r in store.list_bots([BotState.QUEUED])] == [b]
        assert store.count([BotState.SCHEDULED]) == 2
        for kind in ("joining", "in_call", "ended"):
            store.add_event(a, {"event": kind, "at": "2030-05-01T12:00:01+00:00"})
        assert [e["event"] for e in store.events(a)][1:] == ["joining", "in_call", "ended"]
    finally:
        store.close()


def test_naive_times_are_refused(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    try:
        with pytest.raises(Exception, match="time zone"):
            store.create(
                meeting_url="u",
                agent_id="a",
                request={},
                join_at=dt.datetime(2030, 1, 1),
                run_at=dt.datetime(2030, 1, 1),
            )
    finally:
        store.close()


def test_plain_postgres_urls_use_psycopg3() -> None:
    assert normalize_db_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_db_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_db_url("sqlite:///x.db") == "sqlite:///x.db"


def test_a_database_of_an_older_version_gets_the_new_columns(tmp_path: Path) -> None:
    """`create_all` makes missing tables only: columns added since (the cluster's host, lease, heartbeat,
    attempts) are added to an existing `bots` table, keeping its rows."""
    import sqlite3

    path = tmp_path / "old.db"
    old_columns = ", ".join(
        [
            "id VARCHAR(32) PRIMARY KEY", "meeting_url TEXT", "agent_id VARCHAR(200)", "request JSON",
            "state VARCHAR(32)", "join_at DATETIME", "run_at DATETIME", "created_at DATETIME",
            "updated_at DATETIME", "queued_at DATETIME", "started_at DATETIME", "in_call_at DATETIME",
            "ended_at DATETIME", "stop_requested_at DATETIME", "end_reason VARCHAR(64)",
            "failure_code VARCHAR(64)", "message TEXT", "exit_code INTEGER", "summary JSON",
            "last_stats JSON",
        ]
    )  # fmt: skip
    when = "2030-01-01 00:00:00"
    with sqlite3.connect(path) as db:
        db.execute(f"CREATE TABLE bots ({old_columns})")
        db.execute(
            "INSERT INTO bots (id, meeting_url, agent_id, request, state, join_at, run_at, created_at, "
            "updated_at) VALUES ('old', 'u', 'a', '{}', 'ended', ?, ?, ?, ?)",
            (when, when, when, when),
        )
    store = BotStore(make_engine(f"sqlite:///{path}"))
    try:
        old = store.get("old")
        assert old is not None and (old.state, old.host, old.attempts) == (BotState.ENDED, None, 0)
        assert store.transition("old", BotState.CRASHED, [BotState.ENDED], host="w1")
        assert store.get("old").host == "w1"  # type: ignore[union-attr]
    finally:
        store.close()
