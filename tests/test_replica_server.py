"""The replica server without a browser: TLS at the real hostnames, the room rules, control API, signalling.

A WebSocket client here speaks room.js's protocol, so the room's decisions are checked as a page sees them.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from bot.testing.replica import ReplicaServer


class Page:
    """What room.js does over the WebSocket, driven by hand."""

    def __init__(self, session: aiohttp.ClientSession, server: ReplicaServer, host: str) -> None:
        self.session, self.server, self.host = session, server, host
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.pid: str | None = None

    async def join(
        self, room: str, name: str, passcode: str = "", host: bool = False, platform: str = ""
    ) -> str:
        self.ws = await self.session.ws_connect(
            f"https://127.0.0.1:{self.server.port}/_replica/ws",
            headers={"Host": self.host},
            ssl=self.server.ssl_context(),
            server_hostname=self.host,
        )
        await self.ws.send_json(
            {
                "type": "join",
                "room": room,
                "name": name,
                "passcode": passcode,
                "host": host,
                "platform": platform,
            }
        )
        reply = await self.next("joined")
        self.pid = reply["pid"]
        return str(reply["result"])

    async def next(self, kind: str, timeout: float = 3.0) -> dict[str, Any]:
        """The next message of type `kind` (others are skipped)."""
        assert self.ws is not None
        async with asyncio.timeout(timeout):
            while True:
                msg = await self.ws.receive()
                if msg.type != aiohttp.WSMsgType.TEXT:
                    raise ConnectionError(f"socket closed: {msg.type}")
                data: dict[str, Any] = json.loads(msg.data)
                if data["type"] == kind:
                    return data

    async def send(self, **message: Any) -> None:
        assert self.ws is not None
        await self.ws.send_json(message)

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def get(session: aiohttp.ClientSession, server: ReplicaServer, host: str, path: str) -> tuple[int, str]:
    async with session.get(
        f"https://127.0.0.1:{server.port}{path}",
        headers={"Host": host},
        ssl=server.ssl_context(),
        server_hostname=host,
    ) as r:
        return r.status, await r.text()


async def control(session: aiohttp.ClientSession, server: ReplicaServer, path: str, body: Any = None) -> int:
    async with session.post(
        f"https://127.0.0.1:{server.port}/_replica/control/{path}",
        json=body or {},
        headers={"Host": "meet.google.com"},
        ssl=server.ssl_context(),
        server_hostname="meet.google.com",
    ) as r:
        return r.status


async def test_tls_certificate_names_the_real_hosts_and_the_spki_pin_matches(replica: ReplicaServer, session):
    # The client verifies the chain and the hostname: these succeed only if the SAN covers each host.
    for host in ("meet.google.com", "zoom.us", "us02web.zoom.us"):
        status, body = await get(session, replica, host, "/_replica/room.js")
        assert status == 200 and "window.ReplicaRoom" in body
    der = replica._cert.cert_pem
    cert = x509.load_pem_x509_certificate(der)
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert replica.cert_spki == base64.b64encode(hashlib.sha256(spki).digest()).decode()
    rules = replica.host_resolver_rules
    assert f"MAP meet.google.com 127.0.0.1:{replica.port}" in rules
    assert f"MAP *.zoom.us 127.0.0.1:{replica.port}" in rules
    assert rules.endswith("MAP * ~NOTFOUND")
    section = replica.browser_section()
    assert section.allow_loopback_webrtc and section.trusted_cert_spki == replica.cert_spki


async def test_open_meeting_admits_and_tells_everyone_who_is_in_the_call(replica: ReplicaServer, session):
    host, guest = Page(session, replica, "meet.google.com"), Page(session, replica, "meet.google.com")
    assert await host.join("abc-defg-hij", "Alice", host=True) == "admitted"
    assert await guest.join("abc-defg-hij", "Bot") == "admitted"
    update = await host.next("participants")
    while update["count"] != 2:
        update = await host.next("participants")
    assert update["names"] == ["Alice", "Bot"]
    room = replica.room("meet", "abc-defg-hij")  # platform taken from the Host header
    assert [(p.name, p.state) for p in room.participants] == [("Alice", "in_call"), ("Bot", "in_call")]
    await guest.close()
    assert (await room.wait_for("Bot", "left", 3)).state == "left"
    await host.close()


@pytest.mark.parametrize(
    ("config", "result"),
    [
        ({"exists": False}, "not_found"),
        ({"blocked": True}, "blocked"),
        ({"bot_wall": True, "captcha": True}, "bot_wall"),
        ({"captcha": True}, "captcha"),
        ({"sign_in_required": True}, "sign_in"),
        ({"passcode": "123"}, "passcode_wrong"),
    ],
)
async def test_refusals_turn_the_page_away(replica: ReplicaServer, session, config, result):
    assert await control(session, replica, "zoom/42/config", config) == 200
    page = Page(session, replica, "zoom.us")
    assert await page.join("42", "Bot", passcode="999") == result
    assert page.pid is None
    room = replica.room("zoom", "42")
    assert room.participants == [] and room.log[-1][1:] == (f"refused:{result}", "Bot")
    await page.close()


async def test_lobby_admit_deny_and_timeout_through_the_control_api(replica: ReplicaServer, session):
    room = replica.room("meet", "abc-defg-hij")
    room.configure(lobby=True, passcode="")
    a, b = Page(session, replica, "meet.google.com"), Page(session, replica, "meet.google.com")
    assert await a.join("abc-defg-hij", "A") == "waiting"
    assert await b.join("abc-defg-hij", "B") == "waiting"
    assert await control(session, replica, "meet/abc-defg-hij/admit", {"name": "A"}) == 200
    await a.next("admitted")
    assert await control(session, replica, "meet/abc-defg-hij/deny", {"name": "B"}) == 200
    await b.next("denied")
    assert [p.state for p in room.participants] == ["in_call", "denied"]
    # Nobody of that name is waiting any more.
    assert await control(session, replica, "meet/abc-defg-hij/admit", {"name": "B"}) == 404
    # The platform's own lobby timeout: not a denial.
    room.configure(lobby_timeout_s=0.2)
    c = Page(session, replica, "meet.google.com")
    assert await c.join("abc-defg-hij", "C") == "waiting"
    await c.next("lobby_timeout")
    assert (await room.wait_for("C", "left", 1)).state == "left"
    assert [e for _, e, n in room.log if n == "C"] == ["waiting", "lobby_timeout"]
    for p in (a, b, c):
        await p.close()


async def test_host_absent_until_the_host_starts_then_lobby(replica: ReplicaServer, session):
    room = replica.room("zoom", "7")
    room.configure(host_present=False, lobby=True)
    guest = Page(session, replica, "app.zoom.us")
    assert await guest.join("7", "Bot") == "host_absent"
    assert room.participants[0].state == "host_absent"
    host = Page(session, replica, "zoom.us")
    assert await host.join("7", "Host", host=True) == "admitted"  # a host join starts the meeting
    await guest.next("host_joined")
    await room.wait_for("Bot", "waiting", 2)
    await room.admit("Bot")
    await guest.next("admitted")
    for p in (guest, host):
        await p.close()


async def test_signalling_mesh_remove_and_end(replica: ReplicaServer, session):
    room = replica.room("meet", "abc-defg-hij")
    a, b, c = (Page(session, replica, "meet.google.com") for _ in range(3))
    await a.join("abc-defg-hij", "A", host=True)
    await a.send(type="audio")
    assert (await a.next("peers"))["peers"] == []
    await b.join("abc-defg-hij", "B")
    await b.send(type="audio")
    assert (await b.next("peers"))["peers"] == [a.pid]  # the newcomer offers to those already in
    await b.send(type="signal", to=a.pid, data={"sdp": {"type": "offer", "sdp": "x"}})
    relayed = await a.next("signal")
    assert relayed["from"] == b.pid and relayed["data"]["sdp"]["type"] == "offer"
    await c.join("abc-defg-hij", "C")
    await room.remove("B")
    await b.next("removed")
    assert (await a.next("peer_left"))["pid"] == b.pid
    await room.end()
    await a.next("ended")
    await c.next("ended")
    assert {p.name: p.state for p in room.participants} == {"A": "left", "B": "removed", "C": "left"}
    status = await control(session, replica, "meet/abc-defg-hij/explode")
    assert status == 404
    for p in (a, b, c):
        await p.close()


async def test_state_endpoint_reports_config_and_participants(replica: ReplicaServer, session):
    replica.room("meet", "abc-defg-hij").configure(lobby=True)
    status, body = await get(session, replica, "meet.google.com", "/_replica/control/meet/abc-defg-hij")
    state = json.loads(body)
    assert status == 200 and state["config"]["lobby"] is True and state["participants"] == []
    assert await control(session, replica, "meet/abc-defg-hij/config", {"no_such_field": 1}) == 400


async def test_client_options_per_meeting_through_the_control_api(replica: ReplicaServer, session):
    """The page variants are chosen per meeting: `options` sets the platform client's options."""
    from bot.testing.replica.meet_pages import MeetPages
    from bot.testing.replica.zoom_pages import ZoomPages

    assert await control(session, replica, "meet/abc-defg-hij/options", {"people": "avatars"}) == 200
    assert await control(session, replica, "zoom/42/options", {"audio_labels": "audio"}) == 200
    meet = next(p for p in replica.pages if isinstance(p, MeetPages))
    zoom = next(p for p in replica.pages if isinstance(p, ZoomPages))
    assert (
        meet.options_for("abc-defg-hij").people == "avatars"
        and meet.options_for("zzz-zzzz-zzz").people == "button"
    )
    assert zoom.options_for("42").audio_labels == "audio"
    assert await control(session, replica, "zoom/42/options", {"audio_labels": "loud"}) == 400
    assert await control(session, replica, "zoom/42/options", {"no_such_option": 1}) == 400


async def test_bot_wall_cleared_after_n_joins_goodbye_media_and_a_network_outage(
    replica: ReplicaServer, session
):
    room = replica.room("zoom", "43")
    room.configure(bot_wall=True, bot_wall_clears_after=1)
    page = Page(session, replica, "zoom.us")
    assert await page.join("43", "Bot") == "bot_wall"  # the first try: the wall
    await page.close()
    page = Page(session, replica, "zoom.us")
    assert await page.join("43", "Bot") == "admitted"  # a reload gets in
    await page.send(type="media", audio=True, video=False)
    await page.send(type="leave")
    await room.wait_for("Bot", "left", 3)
    assert room.events("mic_on") == ["Bot"] and room.events("video_off") == ["Bot"]
    assert room.events("goodbye") == ["Bot"]  # left by its Leave button, not a dropped connection
    await page.close()
    room.configure(network_down=True)
    with pytest.raises(aiohttp.ClientError):
        await get(session, replica, "zoom.us", "/wc/43/join")
    room.configure(network_down=False)
    status, _ = await get(session, replica, "zoom.us", "/wc/43/join")
    assert status == 200 and room.events("dropped_page_load")  # (clients retry a dropped request once)
