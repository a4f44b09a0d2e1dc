"""The Google Meet replica's pages, served at Meet's real paths on `meet.google.com`.

- `/<abc-defg-hij>`: the guest client. A first visit without `hs=` is redirected to the same URL plus
  `hs=122&authuser=0` (Meet's pre-join URLs carry such a query; the client drops it once in the call).
  An unknown meeting gets "Check your meeting code"; a meeting that needs a Google account gets the
  sign-in page (an `h1` "Sign in" with "Use your Google Account"), both before any pre-join UI, as Meet does.
- `/`: the landing page ("Google Meet"), where "Return to home screen" leads.
- `/_replica/meet/<asset>`: the client's script and style.

Everything decided at "Ask to join"/"Join now" (blocked, lobby, admission) comes from the shared `Room`
through `ReplicaRoom.join`, so tests change a meeting by changing its `RoomConfig`. Client details that
Meet varies by account, profile or version are `MeetClientOptions`, per meeting.
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from bot.testing.replica.server import ReplicaServer

__all__ = ["CALL_ENDED", "HOST_ENDED", "MeetClientOptions", "MeetPages", "create_pages"]

_HERE = Path(__file__).parent
_ASSETS = {"meet_client.js": "application/javascript", "meet.css": "text/css"}
_CODE = r"{code:[a-z]{3}-[a-z]{4}-[a-z]{3}}"
HOST_ENDED = "Your host ended the meeting for everyone"
CALL_ENDED = "The call ended"


@dataclass
class MeetClientOptions:
    """How the client behaves for one meeting (defaults: a guest on a profile that granted media)."""

    getting_ready_ms: int = 600  # "Getting ready..." before the pre-join controls appear
    permission_dialog: bool = False  # Meet's own "Do you want people to see and hear you…?" dialog
    sign_in_modal: bool = True  # a dismissable sign-in suggestion ("Got it") over the pre-join page
    mic_starts_on: bool = True
    camera_starts_on: bool = True
    recording_notice: bool = False  # after admission: "This video call is being recorded" → "Join now"
    controls_hide_ms: int = 3000  # the call control bar hides after this long without pointer movement
    # <audio> elements on the pre-join page; Meet's alternate audio setup has none (and plays nothing).
    # The first `no_audio_loads` loads of the page render none, later loads render `audio_elements`.
    audio_elements: int = 3
    no_audio_loads: int = 0
    # Real clients keep echo cancellation, noise suppression and auto gain on; they cut a steady tone by
    # ~19 dB in 2.5 s, so tone tests turn them off (speech passes either way).
    audio_processing: bool = False
    end_notice: str = HOST_ENDED  # what Room.end() shows: HOST_ENDED or CALL_ENDED


@dataclass
class MeetPages:
    """The Meet page module the replica server dispatches `meet.google.com` requests to."""

    platform: str = "meet"
    hosts: tuple[str, ...] = ("meet.google.com",)
    default_options: MeetClientOptions = field(default_factory=MeetClientOptions)
    options: dict[str, MeetClientOptions] = field(default_factory=dict)  # per meeting code
    loads: dict[str, int] = field(default_factory=dict)  # client page loads per meeting code

    def options_for(self, code: str) -> MeetClientOptions:
        return self.options.get(code, self.default_options)

    def routes(self, server: ReplicaServer) -> list[web.AbstractRouteDef]:
        async def client(request: web.Request) -> web.Response:
            code = request.match_info["code"]
            if "hs" not in request.query:
                query = "hs=122&authuser=0" + (f"&{request.query_string}" if request.query_string else "")
                raise web.HTTPFound(f"/{code}?{query}")
            room = server.room("meet", code)
            if not room.config.exists:
                return _html(_read("meet_notfound.html"))
            if room.config.sign_in_required:
                return _html(_read("meet_signin.html"))
            self.loads[code] = self.loads.get(code, 0) + 1
            options = self.options_for(code)
            in_call = [p.name for p in room.in_call()]
            no_audio = self.loads[code] <= options.no_audio_loads
            return _html(_client_page(code, options, room.config.lobby, in_call, no_audio))

        async def landing(request: web.Request) -> web.Response:
            return _html(_read("meet_landing.html"))

        async def asset(request: web.Request) -> web.Response:
            name = request.match_info["name"]
            if name not in _ASSETS:
                raise web.HTTPNotFound()
            return web.Response(text=_read(name), content_type=_ASSETS[name], headers=_NO_CACHE)

        return [
            web.get("/" + _CODE, client),
            web.get("/", landing),
            web.get("/_replica/meet/{name}", asset),
        ]


def create_pages() -> MeetPages:
    """The entry point the replica server loads by default."""
    return MeetPages()


_NO_CACHE = {"Cache-Control": "no-store"}


def _client_page(
    code: str, options: MeetClientOptions, lobby: bool, in_call: list[str], no_audio: bool
) -> str:
    """The client with its configuration inlined as JSON (the client reads it before anything else)."""
    cfg: dict[str, Any] = {
        "code": code,
        "askToJoin": lobby,
        "inCall": in_call,
        "gettingReadyMs": options.getting_ready_ms,
        "permissionDialog": options.permission_dialog,
        "signInModal": options.sign_in_modal,
        "micOn": options.mic_starts_on,
        "cameraOn": options.camera_starts_on,
        "recordingNotice": options.recording_notice,
        "controlsHideMs": options.controls_hide_ms,
        "audioProcessing": options.audio_processing,
        "endNotice": options.end_notice,
    }
    audio = "" if no_audio else "\n".join(["<audio autoplay></audio>"] * options.audio_elements)
    # "</" inside a <script> block would end it early: escape it in the JSON.
    text = json.dumps(cfg).replace("</", "<\\/")
    page = _read("meet_client.html").replace("__CONFIG__", text).replace("<!--__AUDIO__-->", audio)
    return re.sub("__CODE__", html.escape(code), page)


def _html(text: str) -> web.Response:
    return web.Response(text=text, content_type="text/html", headers=_NO_CACHE)


def _read(name: str) -> str:
    return (_HERE / name).read_text(encoding="utf-8")
