"""The replicas' entry-check verdicts and signed-in accounts, without a browser: the room's decisions and
the sign-in page's cookie, driven by hand."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from bot.testing.replica import ReplicaServer
from bot.testing.replica.accounts import COOKIE
from bot.testing.replica.room import ADMITTED, BOT_WALL, WAITING, Room

BOT = {"findings": ["headless_ua", "click_without_path"], "bot": True}
PERSON = {"findings": ["software_webgl"], "bot": False}


class Inbox:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    async def __call__(self, message: dict[str, Any]) -> None:
        self.messages.append(message)

    def kinds(self) -> list[str]:
        return [m["type"] for m in self.messages]


async def test_meet_lets_a_bot_ask_then_drops_it_and_admits_a_person():
    room = Room("meet", "ent-ryme-eet")
    room.configure(entry_check=True, entry_drop_s=0.05)
    bot, person = Inbox(), Inbox()
    assert (await room.join("Bot", "", False, bot, entry=BOT))[0] == WAITING
    assert (await room.join("Person", "", False, person, entry=PERSON))[0] == ADMITTED
    await room.wait_for("Bot", "left", 2)
    assert "blocked" in bot.kinds()
    assert [e for _, e, n in room.log if n == "Bot"] == ["waiting", "dropped:entry_check"]
    assert [n for n, _ in room.entry_reports] == ["Bot", "Person"]
    await room.close()


async def test_zoom_walls_off_a_bot():
    room = Room("zoom", "84400000001")
    room.configure(entry_check=True)
    assert await room.join("Bot", "", False, Inbox(), entry=BOT) == (BOT_WALL, None)
    assert ("refused:bot_wall", "Bot") in [(e, n) for _, e, n in room.log]
    await room.close()


@pytest.mark.parametrize(
    ("kwargs", "why"),
    [
        ({"is_host": True}, "hosts are not checked"),
        ({"account": "bot@example.com"}, "signed-in accounts are not dropped"),
        ({"entry": None}, "pages without the check (the simulated person's) pass"),
    ],
)
async def test_who_the_check_leaves_alone(kwargs: dict[str, Any], why: str):
    room = Room("meet", "ent-ryle-ave")
    room.configure(entry_check=True, entry_drop_s=0.01)
    args: dict[str, Any] = {"is_host": False, "entry": BOT, **kwargs}
    result, pid = await room.join("X", "", args.pop("is_host"), Inbox(), **args)
    assert result == ADMITTED and pid is not None, why
    await room.close()


async def test_the_check_is_off_unless_the_room_asks_for_it():
    room = Room("meet", "ent-ryof-fff")
    assert (await room.join("Bot", "", False, Inbox(), entry=BOT))[0] == ADMITTED
    await room.close()


async def test_signed_in_account_joins_now_or_switches_here():
    room = Room("meet", "acc-ount-sss")
    room.configure(lobby=True)
    phone, laptop, guest = Inbox(), Inbox(), Inbox()
    # Without admit_signed_in an account waits like a guest; its second device switches the call to it.
    assert (await room.join("Ann", "", False, phone, account="ann@example.com"))[0] == WAITING
    await room.admit("Ann")
    assert room.in_call_accounts() == {"ann@example.com"}
    assert (await room.join("Ann", "", False, laptop, account="ann@example.com"))[0] == ADMITTED
    assert "removed" in phone.kinds()
    assert [e for _, e, n in room.log if n == "Ann"][-2:] == ["switched_away", "joined_signed_in"]
    room.configure(admit_signed_in=True)
    assert (await room.join("Bob", "", False, Inbox(), account="bob@example.com"))[0] == ADMITTED
    assert (await room.join("Guest", "", False, guest))[0] == WAITING
    await room.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as s:
        yield s


def meet_config(page: str) -> dict[str, Any]:
    match = re.search(r'<script id="meet-config" type="application/json">(.*?)</script>', page, re.S)
    assert match, page[:500]
    config: dict[str, Any] = json.loads(match.group(1))
    return config


async def test_sign_in_page_sets_a_lasting_session_cookie_the_meet_page_reads(
    replica: ReplicaServer, session: aiohttp.ClientSession
):
    def request(method: str, path: str, cookie: str = "", **kw: Any) -> Any:
        headers = {"Host": "meet.google.com", **({"Cookie": f"{COOKIE}={cookie}"} if cookie else {})}
        url = f"https://127.0.0.1:{replica.port}{path}"
        tls = replica.ssl_context()
        return session.request(method, url, headers=headers, ssl=tls, server_hostname="meet.google.com", **kw)

    async with request("GET", "/_replica/signin?continue=https://evil.example/") as r:
        assert r.status == 200 and 'value=""' in await r.text(), "only same-host paths to continue to"
    form = {"email": "Signed.Bot@example.com", "name": "Signed Bot", "continue": "/acc-ount-pge"}
    async with request("POST", "/_replica/signin", data=form, allow_redirects=False) as r:
        assert r.status == 303 and r.headers["Location"] == "/acc-ount-pge"
        cookie = r.cookies[COOKIE]
        assert int(cookie["max-age"]) > 300 * 24 * 3600 and cookie["secure"] and cookie["httponly"]
    signed = [(a.email, a.name) for a in replica.accounts.sign_ins]
    assert signed == [("signed.bot@example.com", "Signed Bot")]
    async with request("GET", "/acc-ount-pge?hs=122", cookie=cookie.value) as r:
        config = meet_config(await r.text())
    assert config["account"] == {
        "name": "Signed Bot",
        "email": "signed.bot@example.com",
        "inCall": False,
        "admitted": False,
    }
    async with request("GET", "/acc-ount-pge?hs=122") as r:
        assert meet_config(await r.text())["account"] is None, "no cookie: a guest"
