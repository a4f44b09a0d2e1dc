"""The Millis endpoint over real HTTP: against the stand-in agent and small aiohttp servers."""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from bot.agent.errors import AgentAuthError, AgentBadAnswer, AgentNotFound, AgentTimeout, AgentUnavailable
from bot.agent.millis import MillisConfig, MillisEndpoint, parse_answer
from bot.agent.peer import PeerOptions, new_peer_connection, set_local_description
from bot.testing.agent import StandInAgent
from tests.bridge_support import KEY, endpoint


async def real_offer() -> tuple[Any, str]:
    options = PeerOptions.loopback()
    pc = new_peer_connection(options)
    pc.addTransceiver("audio", direction="sendrecv")
    sdp = await set_local_description(pc, await pc.createOffer(), options)
    return pc, sdp


@pytest.fixture
async def app_server() -> AsyncIterator[Callable[[Callable[[web.Request], Awaitable[web.Response]]], Any]]:
    """Starts a one-route aiohttp server (POST /webrtc/offer) with the given handler; returns its base."""
    runners: list[web.AppRunner] = []

    async def serve(handler: Callable[[web.Request], Awaitable[web.Response]]) -> str:
        app = web.Application()
        app.router.add_post("/webrtc/offer", handler)
        runner = web.AppRunner(app, shutdown_timeout=1.0)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        runners.append(runner)
        return f"http://127.0.0.1:{runner.addresses[0][1]}"

    yield serve
    for runner in runners:
        await runner.cleanup()


# --- configuration ---------------------------------------------------------------------------------


def test_config_hides_key_and_picks_region_urls() -> None:
    c = MillisConfig(agent_id="a1", private_key=KEY)
    assert KEY not in repr(c)
    assert c.url == "https://api-west.millis.ai/webrtc/offer"
    assert MillisConfig("a1", KEY, region="eu-west").url == "https://api-eu-west.millis.ai/webrtc/offer"
    assert MillisConfig("a1", KEY, base_url="http://127.0.0.1:9/").url == "http://127.0.0.1:9/webrtc/offer"
    ep = MillisEndpoint(c)
    assert KEY not in repr(ep) and KEY not in ep.describe()
    assert "a1" in ep.describe()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"agent_id": ""}, "agent_id"),
        ({"agent_id": "a b"}, "agent_id"),
        ({"private_key": " "}, "MILLIS_PRIVATE_KEY"),
        ({"region": "mars"}, "us-west, eu-west"),
        ({"base_url": "api.millis.ai"}, "full http"),
        ({"timeout_s": 0}, "timeout_s"),
        ({"max_retries": -1}, "max_retries"),
    ],
)
def test_config_rejects_bad_values_with_a_clear_message(kwargs: dict[str, Any], message: str) -> None:
    values: dict[str, Any] = {"agent_id": "a1", "private_key": KEY, **kwargs}
    with pytest.raises(ValueError, match=message):
        MillisConfig(**values)


def test_parse_answer_is_tolerant_but_not_credulous() -> None:
    sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n"
    assert parse_answer({"answer": {"sdp": sdp, "type": "answer"}, "session_id": "s"}) == sdp
    assert parse_answer({"sdp": sdp, "type": "answer"}) == sdp
    assert parse_answer({"sdp": sdp}) == sdp
    bad: object
    for bad in ([], {"answer": "x"}, {"answer": {"sdp": ""}}, {"sdp": sdp, "type": "offer"}, {"ok": 1}):
        with pytest.raises(ValueError):
            parse_answer(bad)


# --- against the stand-in ---------------------------------------------------------------------------


async def test_exchange_returns_the_agents_answer(agent: StandInAgent) -> None:
    pc, offer = await real_offer()
    try:
        answer = await endpoint(agent, "echo").exchange(offer)
    finally:
        await pc.close()
    assert answer.startswith("v=0") and "a=candidate" in answer
    assert [{k: r[k] for k in ("auth", "agent_id", "status")} for r in agent.requests] == [
        {"auth": "raw", "agent_id": "echo", "status": 200}
    ]


async def test_wrong_key_fails_fast_with_one_bearer_retry(agent: StandInAgent) -> None:
    ep = endpoint(agent, "echo", key="sk-wrong", max_retries=3)
    t0 = time.monotonic()
    with pytest.raises(AgentAuthError) as raised:
        await ep.exchange("v=0\r\n")
    assert time.monotonic() - t0 < 2
    assert [r["auth"] for r in agent.requests] == ["raw", "bearer"]
    assert ep.requests_sent == 2
    assert raised.value.code == "bad_key"
    assert "refused the private key" in str(raised.value) and "MILLIS_PRIVATE_KEY" in str(raised.value)


async def test_bearer_form_is_accepted_and_fallback_can_be_off(agent: StandInAgent) -> None:
    ep = endpoint(agent, "echo", key="sk-wrong", bearer_fallback=False)
    with pytest.raises(AgentAuthError):
        await ep.exchange("v=0\r\n")
    assert ep.requests_sent == 1


async def test_unknown_agent(agent: StandInAgent) -> None:
    ep = endpoint(agent, "nobody-here", max_retries=3)
    with pytest.raises(AgentNotFound, match="nobody-here") as raised:
        await ep.exchange("v=0\r\n")
    assert raised.value.code == "unknown_agent"
    assert ep.requests_sent == 1  # no retry


async def test_service_down_is_retried_with_backoff_then_unavailable(agent: StandInAgent) -> None:
    ep = endpoint(agent, "fail-500", max_retries=2, backoff_s=0.1)
    t0 = time.monotonic()
    with pytest.raises(AgentUnavailable, match="after 3 attempts") as raised:
        await ep.exchange("v=0\r\n")
    assert time.monotonic() - t0 >= 0.3  # 0.1 s then 0.2 s of backoff
    assert raised.value.code == "agent_unreachable"
    assert [r["status"] for r in agent.requests] == [500, 500, 500]


async def test_slow_answer_times_out(agent: StandInAgent) -> None:
    ep = endpoint(agent, "slow-answer-5", timeout_s=0.5, max_retries=3)
    t0 = time.monotonic()
    with pytest.raises(AgentTimeout, match=r"did not answer within 0\.5 s") as raised:
        await ep.exchange("v=0\r\n")
    assert time.monotonic() - t0 < 2
    assert raised.value.code == "agent_timeout"
    assert ep.requests_sent == 1  # an overloaded agent is not hammered


async def test_connection_refused_is_unavailable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    ep = MillisEndpoint(
        MillisConfig("a1", KEY, base_url=f"http://127.0.0.1:{port}", max_retries=1, backoff_s=0.01)
    )
    with pytest.raises(AgentUnavailable, match="unreachable after 2 attempts"):
        await ep.exchange("v=0\r\n")
    assert ep.requests_sent == 2


# --- against hand-made servers ------------------------------------------------------------------------


async def test_body_carries_metadata_and_top_level_answers_work(app_server: Any) -> None:
    seen: list[dict[str, Any]] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append({"auth": request.headers["Authorization"], "body": await request.json()})
        return web.json_response({"sdp": "v=0\r\nanswer", "type": "answer", "session_id": "s-1"})

    base = await app_server(handler)
    ep = MillisEndpoint(
        MillisConfig("a1", KEY, base_url=base, metadata={"meeting": "m-1"}, include_metadata_in_prompt=True)
    )
    assert await ep.exchange("v=0\r\noffer") == "v=0\r\nanswer"
    assert seen == [
        {
            "auth": KEY,
            "body": {
                "agent_id": "a1",
                "offer": {"sdp": "v=0\r\noffer", "type": "offer"},
                "metadata": {"meeting": "m-1"},
                "include_metadata_in_prompt": True,
            },
        }
    ]


@pytest.mark.parametrize(
    ("status", "body"),
    [(200, "not json"), (200, json.dumps({"answer": {"type": "answer"}})), (400, '{"error": "bad sdp"}')],
)
async def test_unusable_answers_are_bad_answer(app_server: Any, status: int, body: str) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=status, text=body, content_type="application/json")

    ep = MillisEndpoint(MillisConfig("a1", KEY, base_url=await app_server(handler)))
    with pytest.raises(AgentBadAnswer) as raised:
        await ep.exchange("v=0\r\n")
    assert raised.value.code == "bad_answer"


async def test_key_never_logged_even_when_echoed_back(
    app_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # A careless service that echoes the Authorization header must not make us log the key.
    async def handler(request: web.Request) -> web.Response:
        auth = request.headers["Authorization"]
        return web.json_response({"answer": {"sdp": "v=0\r\n", "type": "answer"}, "echo": auth})

    caplog.set_level(logging.DEBUG)
    ep = MillisEndpoint(MillisConfig("a1", KEY, base_url=await app_server(handler)))
    await ep.exchange("v=0\r\n")
    assert "answered HTTP 200" in caplog.text
    assert KEY not in caplog.text


def test_settings_and_options_never_show_the_key() -> None:
    from bot.bridge import BridgeOptions
    from bot.settings import load_settings

    settings = load_settings(env={"MILLIS_PRIVATE_KEY": KEY, "BOT_AGENT_AGENT_ID": "a1"})
    assert settings.agent.private_key == KEY
    for obj in (settings, settings.agent, settings.agent.millis_config()):
        assert KEY not in repr(obj) and KEY not in str(obj)
    assert KEY not in repr(BridgeOptions())
