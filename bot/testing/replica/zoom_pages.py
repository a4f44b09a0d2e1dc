"""The Zoom web client replica's pages, served at Zoom's real paths on `zoom.us` and `*.zoom.us`.

- `/j/<id>?pwd=…&tk=…` (also `/w/<id>`, `/my/<name>`): the launch page ("Launch Meeting - Zoom") whose
  "Join from browser" link goes to `/wc/join/<id>` with the same query string.
- `/wc/join/<id>`: redirects to `/wc/<id>/join`, query kept, as Zoom does.
- `/wc/<id>/join`: the client. An unknown meeting gets the error page "This meeting ID is not valid"; a
  meeting whose host has not started gets "This meeting link is invalid (3,001)" (title "Error - Zoom",
  the page never updates itself: the bot must reload). With `fromPWA=1` the client runs inside
  `iframe#webclient`, as Zoom's progressive web app does.
- `/_replica/zoom/<asset>`: the client's script and style.

Everything decided at Join (passcode, sign-in, captcha, anti-bot wall, waiting room) comes from the shared
`Room` through `ReplicaRoom.join`, so tests change a meeting by changing its `RoomConfig`. Client details
that Zoom varies by account or version (cookie banner, how many permission prompts, the computer-audio
dialog, and the page variants the adapter handles: audio button labels, preview toggles, host-wait
wordings, a bot wall in a closed shadow root, captcha forms, ends by navigation or "Meeting is end now",
the leave dialog, a terms dialog on load) are `ZoomClientOptions`, per meeting (`configure()`, or the
control API's `options` action). `/`, `/signin` and `/postattendee` are where an ended meeting can land.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from aiohttp import web

from bot.testing.replica.client_options import PerMeeting, check_choices
from bot.testing.replica.server import asset_route, drop_connection
from bot.testing.replica.server import html_page as _html
from bot.testing.replica.server import read_page as _read

if TYPE_CHECKING:
    from bot.testing.replica.server import ReplicaServer

__all__ = ["Visit", "ZoomClientOptions", "ZoomPages", "create_pages"]

_ASSETS = {"zoom_client.js": "application/javascript", "zoom.css": "text/css"}
NOT_FOUND_MESSAGE = "This meeting ID is not valid. Please check and try again."
HOST_ABSENT_MESSAGE = "This meeting link is invalid (3,001)"
HOST_WAIT_THIS = "Waiting for the host to start this meeting"
HOST_WAIT_THE = "Waiting for the host to start the meeting"
_CHOICES: dict[str, tuple[str, ...]] = {
    "host_absent": ("error", "wait"),
    # The in-call audio button's labels: "sentence" ("unmute my microphone" / "mute my microphone", the
    # current client), "short" ("Unmute" / "Mute", older clients) or "audio" (aria-label "audio" whatever
    # the state: only the icon and the word under the button tell).
    "audio_labels": ("sentence", "short", "audio"),
    "bot_wall_style": ("page", "shadow"),  # "shadow": the wall's modal sits in a closed shadow root
    "captcha_style": ("smart", "container", "input", "recaptcha"),
    # The host ends the meeting: the end modal, a "Meeting is end now" box, or a navigation to `end_url`.
    "end_style": ("modal", "end_now", "navigate"),
    # "unknown": the leave dialog's confirm button has a label and class the bot does not know.
    "leave_confirm": ("standard", "unknown"),
    # A terms dialog over the preview as soon as it loads, with a modal mask over the name field.
    "terms_modal": ("", "disclaimer", "checkbox"),
}


@dataclass
class ZoomClientOptions:
    """How the client behaves for one meeting (defaults: a current client on a fresh browser profile)."""

    cookie_banner: bool = True  # OneTrust covers the page until accepted or rejected
    permission_prompts: int = 2  # Zoom's in-page prompt: camera+mic, then mic only
    audio_dialog: bool = False  # older clients ask "Join Audio by Computer"; newer join audio at once
    terms: bool = False  # some regions show a terms checkbox (#wc_agree1) that Join waits for
    footer_hide_ms: int = 3000  # the call footer hides after this long without pointer movement
    # Real clients keep echo cancellation, noise suppression and auto gain on; they cut a steady tone by
    # ~19 dB in 2.5 s, so tone tests turn them off (speech passes either way).
    audio_processing: bool = False
    topic: str = "Replica Zoom Meeting"
    # Before the host starts: "error" serves the "(3,001)" error page (reload to try again); "wait" serves
    # the client, which after Join shows "Waiting for the host to start this meeting" and goes on by itself.
    host_absent: str = "error"
    # ---- variants of the 2026 pages; the defaults are the commonest form ----
    host_wait_text: str = HOST_WAIT_THIS
    audio_labels: str = "sentence"
    mic_starts_muted: bool = False  # the call starts muted (else the preview's microphone state carries over)
    preview_audio_on: bool = True  # #preview-audio-control-button's state when the preview loads
    preview_video_on: bool = False  # #preview-video-control-button's state when the preview loads
    bot_wall_style: str = "page"
    captcha_style: str = "smart"
    end_style: str = "modal"
    end_url: str = "/"  # where end_style="navigate" goes ("/", "/signin", "/postattendee")
    leave_confirm: str = "standard"
    terms_modal: str = ""

    def __post_init__(self) -> None:
        check_choices(self, _CHOICES)


@dataclass(frozen=True)
class Visit:
    """One request for the client page, as the server received it (tests check `pwd`/`tk` arrive)."""

    meeting_id: str
    path: str
    query: dict[str, str]


@dataclass
class ZoomPages(PerMeeting[ZoomClientOptions]):
    """The Zoom page module the replica server dispatches `zoom.us` and `*.zoom.us` requests to."""

    platform: str = "zoom"
    hosts: tuple[str, ...] = ("zoom.us", "*.zoom.us")
    default_options: ZoomClientOptions = field(default_factory=ZoomClientOptions)
    options: dict[str, ZoomClientOptions] = field(default_factory=dict)  # per meeting id
    visits: list[Visit] = field(default_factory=list)

    def routes(self, server: ReplicaServer) -> list[web.AbstractRouteDef]:
        async def launch(request: web.Request) -> web.Response:
            meeting_id = request.match_info["id"]
            target = f"/wc/join/{meeting_id}"
            if request.query_string:
                target += f"?{request.query_string}"
            page = _read("zoom_launch.html").replace("__BROWSER_URL__", html.escape(target, quote=True))
            return _html(page)

        async def wc_join(request: web.Request) -> web.Response:
            target = f"/wc/{request.match_info['id']}/join"
            if request.query_string:
                target += f"?{request.query_string}"
            raise web.HTTPFound(target)

        async def client(request: web.Request) -> web.Response:
            meeting_id = request.match_info["id"]
            query = dict(request.query)
            self.visits.append(Visit(meeting_id, request.path, query))
            if query.get("fromPWA") == "1":
                inner = {k: v for k, v in query.items() if k != "fromPWA"}
                src = f"/wc/{meeting_id}/join" + (f"?{urlencode(inner)}" if inner else "")
                return _html(_read("zoom_frame.html").replace("__CLIENT_URL__", html.escape(src, quote=True)))
            room = server.room("zoom", meeting_id)
            if room.drop_page_load():
                drop_connection(request)
            config = room.config
            options = self.options_for(meeting_id)
            if not config.exists:
                return _error(NOT_FOUND_MESSAGE)
            if not config.host_present and options.host_absent == "error":
                return _error(HOST_ABSENT_MESSAGE)
            return _html(_client_page(meeting_id, query.get("pwd", ""), config.passcode, options))

        async def elsewhere(request: web.Request) -> web.Response:
            # Where the client goes when a meeting ends by navigation: the home, sign-in or post-meeting page.
            title = {"/signin": "Sign In | Zoom", "/postattendee": "Thank you for attending - Zoom"}
            page = _read("zoom_home.html").replace("__TITLE__", title.get(request.path, "Zoom"))
            return _html(page)

        return [
            web.get(r"/j/{id}", launch),
            web.get(r"/w/{id}", launch),
            web.get(r"/my/{id}", launch),
            web.get(r"/wc/join/{id}", wc_join),
            web.get(r"/wc/{id}/join", client),
            asset_route("zoom", _ASSETS),
            web.get("/", elsewhere),
            web.get("/signin", elsewhere),
            web.get("/postattendee", elsewhere),
        ]


def _client_page(meeting_id: str, url_pwd: str, passcode: str, options: ZoomClientOptions) -> str:
    """The client with its configuration inlined as JSON (the client reads it before anything else)."""
    cfg: dict[str, Any] = {
        "room": meeting_id,
        "urlPwd": url_pwd,
        # Zoom asks for the passcode in the page only when the link does not carry one.
        "askPasscode": bool(passcode) and not url_pwd,
        "cookieBanner": options.cookie_banner,
        "permissionPrompts": options.permission_prompts,
        "audioDialog": options.audio_dialog,
        "terms": options.terms,
        "footerHideMs": options.footer_hide_ms,
        "audioProcessing": options.audio_processing,
        "topic": options.topic,
        "hostAbsent": options.host_absent,
        "hostWaitText": options.host_wait_text,
        "audioLabels": options.audio_labels,
        "micStartsMuted": options.mic_starts_muted,
        "previewAudioOn": options.preview_audio_on,
        "previewVideoOn": options.preview_video_on,
        "botWallStyle": options.bot_wall_style,
        "captchaStyle": options.captcha_style,
        "endStyle": options.end_style,
        "endUrl": options.end_url,
        "leaveConfirm": options.leave_confirm,
        "termsModal": options.terms_modal,
    }
    # "</" inside a <script> block would end it early: escape it in the JSON.
    text = json.dumps(cfg).replace("</", "<\\/")
    return _read("zoom_client.html").replace("__CONFIG__", text)


def _error(message: str) -> web.Response:
    return _html(_read("zoom_error.html").replace("__MESSAGE__", html.escape(message)))


def create_pages() -> ZoomPages:
    """The server's hook: it mounts these pages on `zoom.us` and `*.zoom.us`."""
    return ZoomPages()
