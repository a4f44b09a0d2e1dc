"""The Google Meet replica's pages, served at Meet's real paths on `meet.google.com`.

- `/<abc-defg-hij>`: the guest client. A first visit without `hs=` is redirected to the same URL plus
  `hs=122&authuser=0` (Meet's pre-join URLs carry such a query; the client drops it once in the call).
  An unknown meeting gets "Check your meeting code"; a meeting that needs a Google account gets the
  sign-in page (an `h1` "Sign in" with "Use your Google Account"), both before any pre-join UI, as Meet does.
- `/`: the landing page ("Google Meet"), where "Return to home screen" leads.
- `/_replica/meet/<asset>`: the client's script and style.

Everything decided at "Ask to join"/"Join now" (blocked, lobby, admission) comes from the shared `Room`
through `ReplicaRoom.join`, so tests change a meeting by changing its `RoomConfig`. Client details that
Meet varies by account, profile or version are `MeetClientOptions`, per meeting (`configure()`, or the
control API's `options` action): among them every page variant the adapter handles (refusal and lobby
wordings, a denial shown as "You left the meeting", where the participant count is, how the control bar
hides, an end by navigation, cards outside dialogs, an unknown layer or screen).
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from bot.testing.replica.client_options import PerMeeting, check_choices
from bot.testing.replica.server import asset_route, drop_connection
from bot.testing.replica.server import html_page as _html
from bot.testing.replica.server import read_page as _read

if TYPE_CHECKING:
    from bot.testing.replica.server import ReplicaServer

__all__ = [
    "BLOCKED_CALL",
    "BLOCKED_MEETING",
    "CALL_ENDED",
    "HOST_ENDED",
    "LOBBY_ASKING",
    "LOBBY_WAITING_HOST",
    "MeetClientOptions",
    "MeetPages",
    "create_pages",
]

_ASSETS = {"meet_client.js": "application/javascript", "meet.css": "text/css"}
_CODE = r"{code:[a-z]{3}-[a-z]{4}-[a-z]{3}}"
HOST_ENDED = "Your host ended the meeting for everyone"
CALL_ENDED = "The call ended"
# Meet's two wordings of refusing a guest (both are `blocked`).
BLOCKED_CALL = "You can\u2019t join this video call"
BLOCKED_MEETING = "You can\u2019t join this meeting"
# Two lobby texts.
LOBBY_ASKING = "Asking to be let in\u2026"
LOBBY_WAITING_HOST = "Waiting for the host to let you in"
_PEOPLE = ("button", "label", "avatars", "tiles")
_BANNERS = ("", "prejoin", "call", "both")
_CHOICES: dict[str, tuple[str, ...]] = {
    "controls_hide": ("fade", "remove"),
    "denial": ("notice", "left"),
    "people": _PEOPLE,
    "banner": _BANNERS,
}


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
    # ---- variants of the 2026 pages; the defaults are the commonest form ----
    # "fade": the hidden bar stays laid out (opacity 0, visibility hidden); "remove": it leaves the layout,
    # and with it the call-only buttons and the People count, until the pointer moves.
    controls_hide: str = "remove"
    blocked_text: str = BLOCKED_CALL
    # How a denial shows: "notice" ("Someone in the call denied your request to join") or "left" (the page
    # turns to "You left the meeting" with "Return to home screen", as Meet shows it now).
    denial: str = "notice"
    lobby_text: str = LOBBY_ASKING  # LOBBY_WAITING_HOST shows that line alone
    # Where the participant count is: "button" (a People button with aria-haspopup and a badge), "label"
    # (a button labelled "People - N", no aria-haspopup), "avatars" (only `[data-avatar-count]`, no People
    # button) or "tiles" (no count anywhere: only the participant tiles).
    people: str = "button"
    end_navigates_to: str = ""  # the host ends the call: the page goes here (e.g. "/") with no end text
    # "Got it"/"Dismiss" cards outside any [role=dialog], on a scrim that takes the clicks meant for the
    # page: before joining ("prejoin"), after admission over "Leave call" ("call"), or "both".
    banner: str = ""
    mystery_overlay: bool = False  # an unknown, undismissable layer over the pre-join page
    # After "Ask to join": a screen the bot does not know ("Verify it's you", buttons that lead nowhere).
    unknown_screen: bool = False

    def __post_init__(self) -> None:
        check_choices(self, _CHOICES)


@dataclass
class MeetPages(PerMeeting[MeetClientOptions]):
    """The Meet page module the replica server dispatches `meet.google.com` requests to."""

    platform: str = "meet"
    hosts: tuple[str, ...] = ("meet.google.com",)
    default_options: MeetClientOptions = field(default_factory=MeetClientOptions)
    options: dict[str, MeetClientOptions] = field(default_factory=dict)  # per meeting code
    loads: dict[str, int] = field(default_factory=dict)  # client page loads per meeting code

    def routes(self, server: ReplicaServer) -> list[web.AbstractRouteDef]:
        async def client(request: web.Request) -> web.Response:
            code = request.match_info["code"]
            if "hs" not in request.query:
                query = "hs=122&authuser=0" + (f"&{request.query_string}" if request.query_string else "")
                raise web.HTTPFound(f"/{code}?{query}")
            room = server.room("meet", code)
            if room.drop_page_load():
                drop_connection(request)
            if not room.config.exists:
                return _html(_read("meet_notfound.html"))
            if room.config.sign_in_required:
                return _html(_read("meet_signin.html"))
            self.loads[code] = self.loads.get(code, 0) + 1
            options = self.options_for(code)
            in_call = [p.name for p in room.in_call()]
            no_audio = self.loads[code] <= options.no_audio_loads
            account = server.accounts.of_request(request)
            signed_in = None
            if account is not None:
                signed_in = {
                    "name": account.name,
                    "email": account.email,
                    "inCall": account.email in room.in_call_accounts(),
                    "admitted": room.config.admit_signed_in,
                }
            return _html(_client_page(code, options, room.config.lobby, in_call, no_audio, signed_in))

        async def landing(request: web.Request) -> web.Response:
            return _html(_read("meet_landing.html"))

        return [
            web.get("/" + _CODE, client),
            web.get("/", landing),
            asset_route("meet", _ASSETS),
        ]


def create_pages() -> MeetPages:
    """The entry point the replica server loads by default."""
    return MeetPages()


def _client_page(
    code: str,
    options: MeetClientOptions,
    lobby: bool,
    in_call: list[str],
    no_audio: bool,
    account: dict[str, Any] | None = None,
) -> str:
    """The client with its configuration inlined as JSON (the client reads it before anything else)."""
    cfg: dict[str, Any] = {
        "code": code,
        "askToJoin": lobby,
        "account": account,  # signed in (the replica's SID cookie): {name, email, inCall, admitted}
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
        "controlsHide": options.controls_hide,
        "blockedText": options.blocked_text,
        "denial": options.denial,
        "lobbyText": options.lobby_text,
        "lobbyDetail": options.lobby_text == LOBBY_ASKING,  # the other lobby form has no detail line
        "people": options.people,
        "endNavigatesTo": options.end_navigates_to,
        "banner": options.banner,
        "mysteryOverlay": options.mystery_overlay,
        "unknownScreen": options.unknown_screen,
    }
    audio = "" if no_audio else "\n".join(["<audio autoplay></audio>"] * options.audio_elements)
    # "</" inside a <script> block would end it early: escape it in the JSON.
    text = json.dumps(cfg).replace("</", "<\\/")
    page = _read("meet_client.html").replace("__CONFIG__", text).replace("<!--__AUDIO__-->", audio)
    return re.sub("__CODE__", html.escape(code), page)
