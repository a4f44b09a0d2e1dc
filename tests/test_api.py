"""The HTTP API over real HTTP (uvicorn on 127.0.0.1, port 0), a real SQLite file and real bot processes."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.service.outbox import WebhookOptions
from bot.service.scheduler import BotService, SchedulerConfig
from tests.api_support import AUTH, TOKEN, api_client
from tests.scheduler_support import MEET_URL, fake_launcher


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    service = BotService(
        SchedulerConfig(db_url=f"sqlite:///{tmp_path / 'bots.db'}"),
        fake_launcher(),
        webhooks=WebhookOptions(secret="hook-secret-0123456789"),
    )
    async with api_client(service, start_service=True) as c:
        yield c


def future(seconds: float = 3600) -> str:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)).isoformat()


def body(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"meeting_url": MEET_URL, "agent_id": "agent-1", "join_at": future()}
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


def field_errors(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 422, response.text
    return {".".join(str(p) for p in e["loc"][1:]): e["msg"] for e in response.json()["detail"]}


async def test_health_needs_no_token(client: httpx.AsyncClient) -> None:
    r = await client.get("/health")
    assert r.status_code == 200 and r.json() == {"status": "ok", "running": 0, "queued": 0}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": TOKEN},
    ],
    ids=["missing", "wrong", "basic-scheme", "no-scheme"],
)
async def test_every_route_but_health_needs_the_token(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    calls = [
        client.post("/bots", json=body(), headers=headers),
        # The token is checked before the body is read: a malformed body is no 422 without it.
        client.post("/bots", content=b"{", headers={**headers, "Content-Type": "application/json"}),
        client.get("/bots", headers=headers),
        client.get("/bots/abc", headers=headers),
        client.get("/bots/abc/events", headers=headers),
        client.delete("/bots/abc", headers=headers),
    ]
    for r in await asyncio.gather(*calls):
        assert r.status_code == 401, r.text
        assert r.headers["www-authenticate"] == "Bearer"
        assert "BOT_API_TOKEN" in r.json()["detail"]
    assert (await client.get("/bots", headers=AUTH)).json() == []  # nothing was scheduled


async def test_a_non_meeting_url_is_refused_with_the_parsers_message(client: httpx.AsyncClient) -> None:
    from bot.meeting_urls import InvalidMeetingUrl, parse_meeting_url

    url = "https://example.com/meeting/123"
    with pytest.raises(InvalidMeetingUrl) as expected:
        parse_meeting_url(url)
    errors = field_errors(await client.post("/bots", json=body(meeting_url=url), headers=AUTH))
    assert errors == {"meeting_url": str(expected.value)}


@pytest.mark.parametrize(
    ("join_at", "message"),
    [
        ("2001-01-01T10:00:00+00:00", "in the past"),
        ("next tuesday", "not an ISO 8601 time"),
        ("2030-05-01T14:00:00", "no time zone"),
        ("2030-13-45T99:00:00Z", "not an ISO 8601 time"),
    ],
)
async def test_bad_join_times_are_refused(client: httpx.AsyncClient, join_at: str, message: str) -> None:
    errors = field_errors(await client.post("/bots", json=body(join_at=join_at), headers=AUTH))
    assert list(errors) == ["join_at"] and message in errors["join_at"]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"agent_id": "agent-1"}, "meeting_url"),
        ({"meeting_url": MEET_URL}, "agent_id"),
        ({"meeting_url": MEET_URL, "agent_id": ""}, "agent_id"),
        ({"meeting_url": MEET_URL, "agent_id": "has space"}, "agent_id"),
        (body(agent_url="https://evil.example"), "agent_url"),  # would send the service's key elsewhere
        (body(bot_name="x" * 65), "bot_name"),
        (body(metadata={"-flag": "x"}), "metadata"),
        (body(metadata={"k": 1}), "metadata.k"),
        (body(webhook_url="ftp://example.com/hook"), "webhook_url"),
        (body(region="mars"), "region"),
        (body(max_duration_s=-5), "max_duration_s"),
        (body(meeting_url=MEET_URL + "\n--agent-url=x"), "meeting_url"),
    ],
)
async def test_invalid_fields_are_named(
    client: httpx.AsyncClient, payload: dict[str, Any], field: str
) -> None:
    errors = field_errors(await client.post("/bots", json=payload, headers=AUTH))
    assert field in errors, errors


async def test_a_body_that_is_not_json_is_refused(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/bots", content=b"meeting_url=x", headers={**AUTH, "content-type": "application/json"}
    )
    assert r.status_code == 422
    r = await client.post("/bots", json=[1, 2], headers=AUTH)
    assert r.status_code == 422


async def test_unknown_ids_and_filters(client: httpx.AsyncClient) -> None:
    r = await client.get("/bots/no-such-bot", headers=AUTH)
    assert r.status_code == 404 and r.json() == {"detail": "no bot with id 'no-such-bot'"}
    assert (await client.delete("/bots/no-such-bot", headers=AUTH)).status_code == 404
    assert "state.0" in field_errors(await client.get("/bots", params={"state": "sleeping"}, headers=AUTH))
    assert "limit" in field_errors(await client.get("/bots", params={"limit": 0}, headers=AUTH))


async def test_schedule_inspect_filter_and_cancel(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/bots",
        json=body(bot_name="Notetaker", metadata={"crm_id": "42"}, webhook_url="https://hooks.example/x"),
        headers=AUTH,
    )
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["state"] == "scheduled" and created["request"]["bot_name"] == "Notetaker"
    bot_id = created["id"]
    got = (await client.get(f"/bots/{bot_id}", headers=AUTH)).json()
    assert got["events"][0]["event"] == "scheduled"
    assert [
        b["id"] for b in (await client.get("/bots", params={"state": "scheduled"}, headers=AUTH)).json()
    ] == [bot_id]
    assert (await client.get("/bots", params={"agent_id": "other"}, headers=AUTH)).json() == []
    r = await client.delete(f"/bots/{bot_id}", headers=AUTH)
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    r = await client.delete(f"/bots/{bot_id}", headers=AUTH)
    assert r.status_code == 409 and "already finished" in r.json()["detail"]


async def test_delete_makes_a_running_bot_leave(client: httpx.AsyncClient) -> None:
    bot_id = (await client.post("/bots", json=body(join_at=None), headers=AUTH)).json()["id"]

    async def state() -> str:
        return str((await client.get(f"/bots/{bot_id}", headers=AUTH)).json()["state"])

    for _ in range(600):
        if await state() == "in_call":
            break
        await asyncio.sleep(0.05)
    assert (await client.get("/health")).json()["running"] == 1
    r = await client.delete(f"/bots/{bot_id}", headers=AUTH)
    assert r.status_code == 202 and r.json()["stop_requested_at"]
    for _ in range(600):
        if await state() == "ended":
            break
        await asyncio.sleep(0.05)
    done = (await client.get(f"/bots/{bot_id}", headers=AUTH)).json()
    assert (done["state"], done["end_reason"], done["exit_code"]) == ("ended", "left", 0)
    assert [e["event"] for e in done["events"] if e.get("source") != "service"][-2:] == ["ended", "summary"]


async def test_openapi_schema_documents_the_api(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    assert set(schema["paths"]) == {
        "/health",
        "/metrics",
        "/hosts",
        "/bots",
        "/bots/{bot_id}",
        "/bots/{bot_id}/events",
    }
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert "security" not in schema["paths"]["/health"]["get"]
    assert {"401", "404", "409"} <= set(schema["paths"]["/bots/{bot_id}"]["delete"]["responses"])
