"""The Microsoft Teams replica's pages, served at Teams' real paths on `teams.microsoft.com`, `teams.live.com`
and (for the sign-in redirect) `login.microsoftonline.com`.

The guest's way in, as peers describe it (docs: the shared Teams notes):

- `/l/meetup-join/<19:meeting_…@thread.v2, encoded>/<message id>?context={"Tid":…,"Oid":…}` and
  `/meet/<id>?p=<passcode>` redirect to the launcher, `/dl/launcher/launcher.html?url=/_#/l/meetup-join/…`
  (or `url=/_#/meet/…`), with Teams' own extra query (`type`, `deeplinkId`, `directDl`, `msLaunch`, …).
- The launcher holds `<iframe id="teamsLauncher" src="msteams:…">` (the deep link that opens the desktop
  app: while it is in the page, this Chromium ignores every trusted click and key) and a
  `button[data-tid="joinOnWeb"]` "Continue on this browser" (or "Join on the web instead", an option),
  which goes to `/v2/?meetingjoin=true#/l/meetup-join/…` (also a link form of its own, MBaaS's).
- `/v2/` reads the meeting from its fragment (the server never sees it) and sends a guest on to the light
  client, `/light-meetings/launch?agent=web&…&coords=<base64 JSON>`: conversationId, tenantId,
  organizerId and messageId for a meetup-join link (Attendee's reading); meetingCode and passcode for a
  `/meet/` link (our own field names: nobody documents that form's coords).
- `/light-meetings/launch`: the client, sent with `Content-Security-Policy: require-trusted-types-for
  'script'` as the real light client is (HTML sinks refuse strings; a string evaluated as code fails). The
  room id is the decoded thread id (`19:meeting_…@thread.v2`) or the `/meet/` id.

Refusals at page load: an unknown meeting gets `teams_notfound.html` (a neutral wording: no peer records
Teams' own), and a meeting that needs an account (`RoomConfig.sign_in_required`, `sign_in="redirect"`)
redirects to `https://login.microsoftonline.com/common/oauth2/v2.0/authorize?…`, Microsoft's sign-in page
with `input[name="loginfmt"]`. Everything decided at "Join now" (lobby, admission, sign-in by org policy,
captcha, passcode) comes from the shared `Room`; client details are `TeamsClientOptions`, per meeting.
"""

from __future__ import annotations

import base64
import binascii
import html
import json
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import quote, unquote, urlencode

from aiohttp import web

from bot.testing.replica.client_options import PerMeeting, check_choices
from bot.testing.replica.server import asset_route, drop_connection
from bot.testing.replica.server import html_page as _html
from bot.testing.replica.server import read_page as _read

if TYPE_CHECKING:
    from bot.testing.replica.server import ReplicaServer

__all__ = [
    "AV_MODAL_BUTTON",
    "CAPTCHA",
    "CSP",
    "DENIED_DECLINED",
    "DENIED_SORRY",
    "LEFT",
    "LOBBY_NOT_STARTED",
    "LOBBY_SHORTLY",
    "LOBBY_SHOULD",
    "LOBBY_SOON",
    "LOBBY_TIMEOUT",
    "MEETING_ENDED",
    "NOT_FOUND",
    "REMOVED",
    "SIGN_IN_ORG_POLICY",
    "SIGN_IN_VERIFY",
    "TeamsClientOptions",
    "TeamsPages",
    "create_pages",
    "meet_url",
    "meetup_join_url",
]

_ASSETS = {"teams_client.js": "application/javascript", "teams.css": "text/css"}
HOSTS = ("teams.microsoft.com", "teams.live.com", "login.microsoftonline.com")
LOGIN_HOST = "login.microsoftonline.com"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
ORGANIZER = "3b1c2d4e-5f60-4a7b-8c9d-0e1f2a3b4c5d"
# The Teams web client's application id: what its sign-in redirect names as client_id.
_TEAMS_CLIENT_ID = "5e3ce6c0-2b1f-4285-8d4b-75ee78787346"
# Trusted Types, as the real light client enforces them (its full policy is not known here). With no policy
# defined, this alone refuses HTML strings and strings evaluated as code: Playwright's polling of a bare
# expression fails with an EvalError, as measured on the real client.
CSP = "require-trusted-types-for 'script'"
_CSP = {"Content-Security-Policy": CSP}

# Lobby texts, one per peer that records one (the shared Teams notes, §2.7).
LOBBY_SHORTLY = "Someone will let you in shortly"  # Vexa
LOBBY_SOON = "Someone will let you in soon"  # Attendee
LOBBY_SHOULD = "Someone in the meeting should let you in soon"  # MBaaS
LOBBY_NOT_STARTED = "Someone will let you in when the meeting starts."  # MBaaS, after "Hi, <name>. "
DENIED_SORRY = "Sorry, but you were denied access to the meeting."  # ScreenApp, MBaaS
DENIED_DECLINED = "Your request to join was declined"  # Attendee
REMOVED = "You've been removed from this meeting"  # Vexa (the page writes a curly apostrophe)
SIGN_IN_ORG_POLICY = "Due to org policy, you need to sign in to join this meeting."  # Attendee (its start)
SIGN_IN_VERIFY = "We need to verify your info before you can join"  # Attendee, MBaaS
CAPTCHA = "Verify you're a real person"  # Attendee
AV_MODAL_BUTTON = "Continue without audio or video"  # Vexa, MBaaS and others
# Neutral wordings, not Teams' own (no peer records them): say so wherever a test relies on them.
NOT_FOUND = "We couldn't find this meeting"
LOBBY_TIMEOUT = "Nobody responded to your request to join"  # one non-peer bot's list
MEETING_ENDED = "The meeting has ended"  # non-peer bots' lists; MBaaS reads a frozen page as the end
LEFT = "You left the meeting"
_CHOICES: dict[str, tuple[str, ...]] = {
    # The "Continue without audio or video" modal: never, over the pre-join as it loads, after "Join now"
    # (the join waits for it, "Join now" still on the page), or both.
    "av_modal": ("none", "before", "after", "both"),
    "lobby_text": (LOBBY_SHORTLY, LOBBY_SOON, LOBBY_SHOULD),
    "denial_text": (DENIED_SORRY, DENIED_DECLINED),
    # How a meeting that needs an account (RoomConfig.sign_in_required) refuses a guest: a redirect to
    # login.microsoftonline.com as the client loads, or a text after "Join now".
    "sign_in": ("redirect", "org_policy", "verify_info"),
    "launcher_button": ("Continue on this browser", "Join on the web instead"),
    "audio_default": ("computer", "none"),
}


@dataclass
class TeamsClientOptions:
    """How the client behaves for one meeting (defaults: an anonymous guest on the light client)."""

    av_modal: str = "none"
    lobby_text: str = LOBBY_SHORTLY
    denial_text: str = DENIED_SORRY
    sign_in: str = "redirect"
    launcher_button: str = "Continue on this browser"
    # The pre-join's audio choice as it loads: "Computer audio", or "Don't use audio" (then the guest
    # neither sends nor hears anything in the call).
    audio_default: str = "computer"
    mic_on: bool = True  # [data-tid="toggle-mute"] aria-checked as the pre-join loads
    camera_on: bool = True  # [data-tid="toggle-video"] aria-checked as the pre-join loads
    leave_confirm: bool = False  # Leave asks first (a dialog with "Leave" and "Cancel")
    # Transient [role=alert] toasts in the call, one every `alert_every_ms`, each shown `alert_ms`: they
    # are not an end (one says a participant was removed: a bot that reads alerts as its own end fails).
    alerts: bool = False
    alert_every_ms: int = 2500
    alert_ms: int = 1500
    # Real clients keep echo cancellation, noise suppression and auto gain on; tone tests turn them off.
    audio_processing: bool = False
    title: str = "Replica Teams meeting"

    def __post_init__(self) -> None:
        check_choices(self, _CHOICES)


@dataclass
class TeamsPages(PerMeeting[TeamsClientOptions]):
    """The Teams page module the replica server dispatches the Teams hosts' requests to."""

    platform: str = "teams"
    hosts: tuple[str, ...] = HOSTS
    default_options: TeamsClientOptions = field(default_factory=TeamsClientOptions)
    options: dict[str, TeamsClientOptions] = field(default_factory=dict)  # per room id
    launches: list[dict[str, Any]] = field(default_factory=list)  # the coords of every client load

    def routes(self, server: ReplicaServer) -> list[web.AbstractRouteDef]:
        async def meetup_join(request: web.Request) -> web.Response:
            thread, message = request.match_info["thread"], request.match_info["message"]
            _to_launcher(
                request, f"/l/meetup-join/{quote(thread, safe='')}/{quote(message, safe='')}", "meetup-join"
            )

        async def meet(request: web.Request) -> web.Response:
            _to_launcher(request, f"/meet/{quote(request.match_info['id'], safe='')}", "meet")

        async def launcher(request: web.Request) -> web.Response:
            _teams_host(request)
            url = request.query.get("url", "")
            if not url.startswith("/_#/"):
                return _html(_read("teams_notfound.html"), status=404)
            options = self.options_for(_room_of_fragment(url[len("/_#") :]) or "")
            page = (
                _read("teams_launcher.html")
                .replace("__DEEPLINK__", html.escape("msteams:" + url[len("/_#") :], quote=True))
                .replace("__BUTTON__", html.escape(options.launcher_button))
            )
            return _html(page)

        async def v2(request: web.Request) -> web.Response:
            _teams_host(request)
            return _html(_read("teams_v2.html"))

        async def v2_slash(request: web.Request) -> web.Response:
            target = "/v2/" + (f"?{request.query_string}" if request.query_string else "")
            raise web.HTTPFound(target)

        async def client(request: web.Request) -> web.Response:
            _teams_host(request)
            coords = _coords(request.query.get("coords", ""))
            room_id = str(coords.get("conversationId") or coords.get("meetingCode") or "")
            if not room_id:
                return _html(_read("teams_notfound.html"), status=404)
            self.launches.append(coords)
            room = server.room("teams", room_id)
            if room.drop_page_load():
                drop_connection(request)
            if not room.config.exists:
                return _html(_read("teams_notfound.html"))
            options = self.options_for(room_id)
            if room.config.sign_in_required and options.sign_in == "redirect":
                raise web.HTTPFound(_login_url(request))
            page = _client_page(room_id, str(coords.get("passcode") or ""), options)
            return _html(page, headers=_CSP)

        async def login(request: web.Request) -> web.Response:
            if request.host.split(":")[0].lower() != LOGIN_HOST:
                raise web.HTTPNotFound()
            return _html(_read("teams_signin.html"))

        return [
            web.get("/l/meetup-join/{thread}/{message}", meetup_join),
            web.get("/meet/{id}", meet),
            web.get("/dl/launcher/launcher.html", launcher),
            web.get("/v2", v2_slash),
            web.get("/v2/", v2),
            web.get("/light-meetings/launch", client),
            web.get("/{tenant}/oauth2/v2.0/authorize", login),
            asset_route("teams", _ASSETS),
        ]


def create_pages() -> TeamsPages:
    """The entry point the replica server loads by default."""
    return TeamsPages()


def meetup_join_url(
    thread: str, host: str = "teams.microsoft.com", tenant: str = TENANT, organizer: str = ORGANIZER
) -> str:
    """A meeting link as Outlook and Teams write it (the thread id and the context JSON encoded)."""
    context = json.dumps({"Tid": tenant, "Oid": organizer}, separators=(",", ":"))
    return f"https://{host}/l/meetup-join/{quote(thread, safe='')}/0?context={quote(context, safe='')}"


def meet_url(meeting_id: str, passcode: str, host: str = "teams.live.com") -> str:
    """A `/meet/<id>?p=<passcode>` link (Teams for personal accounts, and newer business links)."""
    return f"https://{host}/meet/{meeting_id}?p={quote(passcode, safe='')}"


def _teams_host(request: web.Request) -> None:
    """Teams' own paths are not on the sign-in host."""
    if request.host.split(":")[0].lower() == LOGIN_HOST:
        raise web.HTTPNotFound()


def _to_launcher(request: web.Request, inner: str, kind: str) -> NoReturn:
    """A meeting link's answer: the launcher for `inner` (the link's path, its query with `anon=true`)."""
    _teams_host(request)
    query = dict(request.query)
    query["anon"] = "true"
    raise web.HTTPFound(_launcher(f"{inner}?{urlencode(query)}", kind))


def _launcher(inner: str, kind: str) -> str:
    query = {
        "url": "/_#" + inner,
        "type": kind,
        "deeplinkId": str(uuid.uuid4()),
        "directDl": "true",
        "msLaunch": "true",
        "enableMobilePage": "true",
        "suppressPrompt": "true",
    }
    return "/dl/launcher/launcher.html?" + urlencode(query)


def _room_of_fragment(fragment: str) -> str | None:
    """The room id in a launcher's `url` (after `/_#`): the decoded thread id or the `/meet/` id."""
    parts = fragment.split("?", 1)[0].split("/")
    if len(parts) >= 4 and parts[1:3] == ["l", "meetup-join"]:
        return unquote(parts[3])
    if len(parts) >= 3 and parts[1] == "meet":
        return unquote(parts[2])
    return None


def _coords(value: str) -> dict[str, Any]:
    """The light client's `coords`: base64 JSON (either alphabet, padding optional); {} when unreadable."""
    text = value.strip().replace("-", "+").replace("_", "/")
    try:
        data = json.loads(base64.b64decode(text + "=" * (-len(text) % 4)))
    except (binascii.Error, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _login_url(request: web.Request) -> str:
    query = {
        "client_id": _TEAMS_CLIENT_ID,
        "response_type": "code",
        "redirect_uri": f"https://{request.host.split(':')[0]}/v2",
        "scope": "openid profile offline_access",
        "state": str(uuid.uuid4()),
        "prompt": "select_account",
    }
    return f"https://{LOGIN_HOST}/common/oauth2/v2.0/authorize?{urlencode(query)}"


def _client_page(room_id: str, passcode: str, options: TeamsClientOptions) -> str:
    """The client with its configuration inlined as JSON (the client reads it before anything else)."""
    cfg: dict[str, Any] = {
        "room": room_id,
        "passcode": passcode,
        "avModal": options.av_modal,
        "lobbyText": options.lobby_text,
        "lobbyNotStarted": LOBBY_NOT_STARTED,
        "denialText": options.denial_text,
        "removedText": REMOVED.replace("'", "\u2019"),
        "lobbyTimeoutText": LOBBY_TIMEOUT,
        "endedText": MEETING_ENDED,
        "leftText": LEFT,
        "notFoundText": NOT_FOUND,
        "signIn": options.sign_in,
        "signInText": SIGN_IN_VERIFY if options.sign_in == "verify_info" else SIGN_IN_ORG_POLICY,
        "captchaText": CAPTCHA,
        "audioDefault": options.audio_default,
        "micOn": options.mic_on,
        "cameraOn": options.camera_on,
        "leaveConfirm": options.leave_confirm,
        "alerts": options.alerts,
        "alertEveryMs": options.alert_every_ms,
        "alertMs": options.alert_ms,
        "audioProcessing": options.audio_processing,
        "title": options.title,
        "loginUrl": f"https://{LOGIN_HOST}/common/oauth2/v2.0/authorize?client_id={_TEAMS_CLIENT_ID}",
    }
    # "</" inside a <script> block would end it early: escape it in the JSON.
    text = json.dumps(cfg).replace("</", "<\\/")
    return _read("teams_client.html").replace("__CONFIG__", text)
