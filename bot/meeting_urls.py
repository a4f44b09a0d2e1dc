"""From a user's meeting link to (platform, normalized join URL, meeting id, passcode), or a clear refusal.

Pure and strict on purpose: the URL is handed to a browser, so anything a browser could read differently
from us (backslashes, tabs, userinfo, percent-encoded hosts, IDN look-alikes) is refused rather than
"cleaned up". Accepted forms:

- Google Meet `https://meet.google.com/abc-defg-hij` (also without dashes, any case): normalized to the
  lowercase dashed code plus `?hl=en` (English UI); every other query parameter is dropped.
- Zoom invite links on `zoom.us` or any `<sub>.zoom.us` (`us02web`, company vanity hosts):
  `/j/<id>`, `/w/<id>` (webinars), `/wc/join/<id>` and `/wc/<id>/join` are rewritten to the browser client
  at `https://app.zoom.us/wc/<id>/join`. Meeting ids are global, so the subdomain carries nothing the web
  client needs and one host keeps the bot's behaviour uniform. `pwd` and `tk` (registration token) are kept
  byte for byte in their original order; all other parameters are dropped.
- Zoom personal links `/my/<name>` keep their host: only Zoom can resolve the name, via its launch page.
- `events.zoom.us` (Zoom Events) is refused: it is a ticketing portal, not a meeting invite.
- Microsoft Teams on `teams.microsoft.com`, `teams.live.com` (and `teams.cloud.microsoft`): meeting links
  `/l/meetup-join/<thread>/<message>?context={"Tid":…,"Oid":…}` (percent-encoded or not, up to three times),
  the same route after `/v2/?meetingjoin=true#` or inside the launcher's `dl/launcher/launcher.html?url=…`,
  and `light-meetings/launch?…coords=<base64 JSON>`, all become that one meetup-join link on
  teams.microsoft.com (the launcher page a person's browser opens), the context cut to Tid and Oid. The
  meeting id is a short hash of the thread and message: the same meeting reads the same whatever the form.
  `/meet/<digits>?p=<passcode>` links keep their host and only `p`; the id is the digits. A bare id without
  its passcode, a meetup-join route without a real thread, and the US government clouds
  (`*.teams.microsoft.us`) are refused.
- Links wrapped by Outlook's Safe Links (`*.safelinks.protection.outlook.com/?url=…`) or Google's redirect
  (`google.com/url?q=…`) are unwrapped (at most three wrappers); a text that holds two links is refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass, field
from urllib.parse import quote, unquote

__all__ = ["MAX_URL_LENGTH", "InvalidMeetingUrl", "MeetingUrl", "masked", "parse_meeting_url"]

MAX_URL_LENGTH = 2048
_EXAMPLES = (
    "expected a Google Meet link like https://meet.google.com/abc-defg-hij, "
    "a Zoom link like https://zoom.us/j/1234567890?pwd=… "
    "or a Microsoft Teams link like https://teams.microsoft.com/l/meetup-join/… or …/meet/<id>?p=…"
)
_ZOOM_APP = "https://app.zoom.us"
_KEPT_ZOOM_PARAMS = ("pwd", "tk")

_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*):")
_HOST_CHARS = re.compile(r"[a-z0-9.\-]+")
_LABEL = re.compile(r"[a-z0-9]([a-z0-9\-]{0,61}[a-z0-9])?")
_MEET_CODE = re.compile(r"/([a-z]{3})-?([a-z]{4})-?([a-z]{3})/?", re.IGNORECASE | re.ASCII)
_ZOOM_ID = r"([0-9]{9,11})"
_ZOOM_PATHS = (
    re.compile(rf"/[jw]/{_ZOOM_ID}/?"),
    re.compile(rf"/wc/join/{_ZOOM_ID}/?"),
    re.compile(rf"/wc/{_ZOOM_ID}/join/?"),
)
# Zoom's rule for personal link names: 5-40 characters, letters, digits and dots, starting with a letter.
_ZOOM_PERSONAL = re.compile(r"/my/([A-Za-z][A-Za-z0-9.]{4,39})/?")
# pwd and tk values are passed through untouched; only characters a URL carries as-is are accepted.
_PARAM_VALUE = re.compile(r"[A-Za-z0-9._~%+=\-]+")

_LINK_START = re.compile(r"https?://", re.IGNORECASE)
_BARE_ID = re.compile(r"[0-9][0-9 ]{7,24}[0-9]")  # Teams and Zoom show ids in groups: "345 678 901 234"
_MAX_WRAPPERS = 3
_MAX_DECODINGS = 3  # what Teams links survive: a meetup-join route inside a launcher inside Safe Links
_TEAMS = "https://teams.microsoft.com"
# teams.cloud.microsoft is the same service under Microsoft's newer domain (seen by peers in redirects).
_TEAMS_HOSTS = ("teams.microsoft.com", "teams.live.com", "teams.cloud.microsoft")
_UNSUPPORTED_CLOUDS = ("teams.microsoft.us", "teams.microsoftonline.cn")  # GCC High, DoD; 21Vianet
_MEETUP = "/l/meetup-join/"
_THREAD = re.compile(r"19:[A-Za-z0-9_.\-]+@thread\.(?:v2|tacv2|skype)", re.ASCII)
_MESSAGE = re.compile(r"[0-9]{1,20}", re.ASCII)
_GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.ASCII | re.IGNORECASE)
_TEAMS_MEET = re.compile(r"/meet/([0-9]{9,16})/?", re.ASCII)
_TEAMS_PASSCODE = re.compile(r"[A-Za-z0-9]{3,40}", re.ASCII)  # Teams passcodes are letters and digits


class InvalidMeetingUrl(ValueError):
    """The text is not a meeting link the bot can join; the message says what is wrong and what fits."""

    def __init__(self, problem: str) -> None:
        super().__init__(f"{problem}; {_EXAMPLES}")
        self.problem = problem


@dataclass(frozen=True)
class MeetingUrl:
    """A link the bot can open. `passcode` is Zoom's `pwd` or Teams' `p` (percent-decoding left to the
    client)."""

    platform: str  # "meet" | "zoom" | "teams"
    join_url: str = field(repr=False)  # carries pwd/tk/p: use `display_url` in logs
    # "abc-defg-hij", a Zoom number or personal link name, a Teams /meet/ number or a hash of its thread
    meeting_id: str
    passcode: str | None = field(default=None, repr=False)

    @property
    def display_url(self) -> str:
        """`join_url` with its passcodes and tokens masked, for logs and messages."""
        return masked(self.join_url)


def masked(url: str) -> str:
    """`url` with the values of Zoom's `pwd` and `tk` and Teams' `p` masked: what a log may show."""
    return re.sub(r"([?&](?:pwd|tk|p)=)[^&#\s]*", r"\1…", url)


def parse_meeting_url(url: str) -> MeetingUrl:
    """Parse and normalize a Google Meet, Zoom or Teams link; raise `InvalidMeetingUrl` saying why not."""
    if not isinstance(url, str):
        raise InvalidMeetingUrl(f"the meeting link must be text, not {type(url).__name__}")
    text = url.strip()
    if not text:
        raise InvalidMeetingUrl("the meeting link is empty")
    if _BARE_ID.fullmatch(text):
        raise InvalidMeetingUrl(
            "a meeting id on its own is not a link: use the meeting's whole join link "
            "(for Teams, …/meet/<id>?p=<passcode> with its passcode)"
        )
    return _parse(text, 0)


def _parse(text: str, wrappers: int) -> MeetingUrl:
    if len(text) > MAX_URL_LENGTH:
        raise InvalidMeetingUrl(f"the meeting link is {len(text)} characters long (at most {MAX_URL_LENGTH})")
    # Before the space check: "https://a https://b" is two links, not one with a space in it.
    if len(_LINK_START.findall(text)) > 1 and not _is_wrapper(_host_of(text)):
        raise InvalidMeetingUrl("the text holds more than one link: give one meeting link")
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        raise InvalidMeetingUrl("the meeting link contains spaces or control characters")
    if "\\" in text:
        raise InvalidMeetingUrl("the meeting link contains a backslash")
    host, path, query, fragment = _split_https(text)
    if _is_wrapper(host):
        if wrappers >= _MAX_WRAPPERS:
            raise InvalidMeetingUrl(f"the link is wrapped in more than {_MAX_WRAPPERS} redirect links")
        return _parse(_unwrap(host, path, query), wrappers + 1)
    if any(len(_LINK_START.findall(form)) > 1 for form in _decodings(text)):
        raise InvalidMeetingUrl("the link holds another link inside it: give one meeting link")
    if host == "meet.google.com":
        return _meet(path)
    if host == "zoom.us" or host.endswith(".zoom.us"):
        return _zoom(host, path, query)
    if host in _TEAMS_HOSTS:
        return _teams(host, path, query, fragment)
    if host.endswith(_UNSUPPORTED_CLOUDS):
        raise InvalidMeetingUrl(
            f"host {host!r} is a Microsoft Teams government or national cloud (GCC High, DoD, China), "
            "which the bot does not support"
        )
    if any(word in host for word in ("zoom", "google", "meet", "teams", "microsoft")):
        raise InvalidMeetingUrl(f"host {host!r} only looks like Google Meet, Zoom or Microsoft Teams")
    raise InvalidMeetingUrl(
        f"host {host!r} is not Google Meet (meet.google.com), Zoom (zoom.us) "
        "or Microsoft Teams (teams.microsoft.com, teams.live.com)"
    )


def _split_https(text: str) -> tuple[str, str, str, str]:
    """(lowercase host, path, query, fragment) of an https URL; refuses anything a browser might read
    otherwise."""
    scheme = _SCHEME.match(text)
    if scheme is None:
        raise InvalidMeetingUrl("the meeting link must start with https://")
    name = scheme.group(1).lower()
    if name == "http":
        raise InvalidMeetingUrl("the meeting link must use https://, not http://")
    if name != "https":
        raise InvalidMeetingUrl(f"{name}: links are not meeting links; the link must start with https://")
    rest = text[scheme.end() :]
    if not rest.startswith("//"):
        raise InvalidMeetingUrl("the meeting link must start with https:// (two slashes)")
    rest = rest[2:]
    end = len(rest)
    for stop in "/?#":
        at = rest.find(stop)
        if at != -1:
            end = min(end, at)
    authority, rest = rest[:end], rest[end:]
    if "@" in authority:
        raise InvalidMeetingUrl("the meeting link must not contain a user name or password before the host")
    if authority.startswith("["):
        raise InvalidMeetingUrl("the meeting link's host must be a name, not an IP address")
    host, colon, port = authority.partition(":")
    if colon and port != "443":
        raise InvalidMeetingUrl("the meeting link must not name a port (meeting sites use the default 443)")
    host = host.lower()
    if host.endswith("."):  # the fully qualified spelling of the same host
        host = host[:-1]
    if not host:
        raise InvalidMeetingUrl("the meeting link has no host")
    if not _HOST_CHARS.fullmatch(host) or not all(_LABEL.fullmatch(p) for p in host.split(".")):
        raise InvalidMeetingUrl("the meeting link's host has characters a Google or Zoom host never has")
    rest, _, fragment = rest.partition("#")
    path, _, query = rest.partition("?")
    return host, path or "/", query, fragment


def _host_of(text: str) -> str:
    found = re.match(r"https://([^/?#:@]+)", text, re.IGNORECASE)
    return found.group(1).lower().rstrip(".") if found else ""


def _is_wrapper(host: str) -> bool:
    return host.endswith(".safelinks.protection.outlook.com") or host in ("google.com", "www.google.com")


def _unwrap(host: str, path: str, query: str) -> str:
    """The link a Safe Links or Google redirect wrapper carries (`url=` / `q=`), decoded once."""
    keys = ("q", "url") if "google" in host else ("url",)
    if "google" in host and path != "/url":
        raise InvalidMeetingUrl("a google.com link is only accepted as a redirect (google.com/url?q=…)")
    for pair in query.split("&"):
        key, _, value = pair.partition("=")
        if key in keys and value:
            return unquote(value).strip()
    raise InvalidMeetingUrl(f"the redirect link on {host} carries no link ({'= or '.join(keys)}= is missing)")


def _decodings(text: str) -> list[str]:
    """`text` and its percent-decodings, up to three deep (links in links hide behind encodings)."""
    forms = [text]
    for _ in range(_MAX_DECODINGS):
        decoded = unquote(forms[-1])
        if decoded == forms[-1]:
            break
        forms.append(decoded)
    return forms


def _meet(path: str) -> MeetingUrl:
    code = _MEET_CODE.fullmatch(path)
    if code is None:
        raise InvalidMeetingUrl(
            "a Google Meet link needs a meeting code of 3-4-3 letters after the host (abc-defg-hij)"
        )
    meeting_id = "-".join(code.groups()).lower()
    return MeetingUrl("meet", f"https://meet.google.com/{meeting_id}?hl=en", meeting_id, None)


def _zoom(host: str, path: str, query: str) -> MeetingUrl:
    if host == "events.zoom.us":
        raise InvalidMeetingUrl("Zoom Events links (events.zoom.us) are not meeting invites")
    params = _kept_params(query)
    passcode = next((v for k, v in params if k == "pwd"), None)
    tail = "&".join(f"{k}={v}" for k, v in params)
    suffix = f"?{tail}" if tail else ""
    for form in _ZOOM_PATHS:
        number = form.fullmatch(path)
        if number is not None:
            meeting_id = number.group(1)
            return MeetingUrl("zoom", f"{_ZOOM_APP}/wc/{meeting_id}/join{suffix}", meeting_id, passcode)
    personal = _ZOOM_PERSONAL.fullmatch(path)
    if personal is not None:
        name = personal.group(1)
        return MeetingUrl("zoom", f"https://{host}/my/{name}{suffix}", name, passcode)
    if re.fullmatch(r"/(j|w|wc|wc/join|my)/.*", path):
        raise InvalidMeetingUrl(
            "a Zoom meeting id is 9 to 11 digits (personal links: /my/ and 5-40 letters, digits or dots)"
        )
    raise InvalidMeetingUrl(
        "a Zoom link must be an invite: /j/<id>, /wc/join/<id>, /wc/<id>/join or /my/<name>"
    )


def _teams(host: str, path: str, query: str, fragment: str) -> MeetingUrl:
    route, route_query = _teams_route(host, path, query, fragment)
    if route.startswith(_MEETUP):
        return _meetup(route, route_query)
    number = _TEAMS_MEET.fullmatch(route)
    if number is not None:
        passcode = _param(route_query, "p")
        if not passcode:
            raise InvalidMeetingUrl(
                "a Teams /meet/ link needs its passcode (…/meet/<id>?p=<passcode>): copy the whole join link"
            )
        if not _TEAMS_PASSCODE.fullmatch(passcode):
            raise InvalidMeetingUrl("the Teams link's p= passcode has characters Teams never uses")
        where = "teams.microsoft.com" if host == "teams.cloud.microsoft" else host
        meeting_id = number.group(1)
        return MeetingUrl("teams", f"https://{where}/meet/{meeting_id}?p={passcode}", meeting_id, passcode)
    if route.startswith("/meet/"):
        raise InvalidMeetingUrl("a Teams /meet/ link needs the meeting's number: 9 to 16 digits")
    raise InvalidMeetingUrl(
        "a Teams link must be a meeting link: /l/meetup-join/…, /meet/<id>?p=…, or the launcher, "
        "/v2/?meetingjoin=true#… or light-meetings link of one"
    )


def _teams_route(host: str, path: str, query: str, fragment: str) -> tuple[str, str]:
    """The meeting's route (`/l/meetup-join/…` or `/meet/…`) and its query, wherever the link keeps it."""
    if path.startswith((_MEETUP, "/meet/")):
        return path, query
    target: str | None = None
    if path == "/dl/launcher/launcher.html":
        target = _param(query, "url")
        if target is None:
            raise InvalidMeetingUrl("the Teams launcher link carries no meeting (its url= is missing)")
        target = _decoded(target)
        if "#" not in target and fragment:
            target += "#" + fragment  # an unencoded "#" in url= ended the query there
    elif path == "/light-meetings/launch":
        return _coords_route(query)
    elif fragment and path in ("/", "/_", "/v2", "/v2/"):
        target = "#" + fragment  # /v2/?meetingjoin=true#/l/meetup-join/…
    if target is None:
        raise InvalidMeetingUrl(
            "a Teams link must be a meeting link: /l/meetup-join/…, /meet/<id>?p=…, or the launcher, "
            "/v2/?meetingjoin=true#… or light-meetings link of one"
        )
    route = target.split("#", 1)[-1]
    route = route[2:] if route.startswith("/_") else route
    route, _, route_query = route.partition("?")
    return route, route_query


def _coords_route(query: str) -> tuple[str, str]:
    """The meetup-join route in a light-meetings link's `coords` (base64 JSON of the meeting's ids)."""
    coords = _param(query, "coords")
    if not coords:
        raise InvalidMeetingUrl("the Teams light-meetings link carries no meeting (its coords= is missing)")
    raw = _decoded(coords)
    try:
        padded = raw + "=" * (-len(raw) % 4)
        data = json.loads(base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True))
    except (ValueError, binascii.Error):
        data = None
    if not isinstance(data, dict) or not all(
        isinstance(data.get(k), str) for k in ("conversationId", "tenantId", "organizerId")
    ):
        raise InvalidMeetingUrl(
            "the Teams light-meetings link's coords= does not hold the meeting's ids "
            "(conversation, tenant, organizer)"
        )
    message = data.get("messageId") or "0"
    context = json.dumps({"Tid": data["tenantId"], "Oid": data["organizerId"]})
    return f"{_MEETUP}{quote(data['conversationId'], safe='')}/{message}", f"context={quote(context)}"


def _meetup(route: str, query: str) -> MeetingUrl:
    parts = route[len(_MEETUP) :].rstrip("/").split("/")
    if len(parts) != 2 or not parts[0]:
        raise InvalidMeetingUrl("a Teams meetup-join link is /l/meetup-join/<thread>/<message>?context=…")
    thread, message = _decoded(parts[0]), _decoded(parts[1])
    if not _THREAD.fullmatch(thread):
        # Peers found that a route built from a bare meeting id is no meeting to Teams.
        raise InvalidMeetingUrl(
            "a Teams meetup-join link names the meeting's thread (19:meeting_…@thread.v2), not a number: "
            "use the meeting's whole join link"
        )
    if not _MESSAGE.fullmatch(message):
        raise InvalidMeetingUrl("a Teams meetup-join link's message (after the thread) is a number")
    context = _param(query, "context")
    ids: object = None
    if context:
        try:
            ids = json.loads(_decoded(context))
        except ValueError:
            ids = None
    if not isinstance(ids, dict):
        raise InvalidMeetingUrl('a Teams meetup-join link needs its context={"Tid":…,"Oid":…}')
    tenant, organizer = ids.get("Tid"), ids.get("Oid")
    if not (isinstance(tenant, str) and _GUID.fullmatch(tenant)):
        raise InvalidMeetingUrl("the Teams link's context has no tenant id (Tid, a GUID)")
    if not (isinstance(organizer, str) and _GUID.fullmatch(organizer)):
        raise InvalidMeetingUrl("the Teams link's context has no organizer id (Oid, a GUID)")
    context = quote(
        json.dumps({"Tid": tenant.lower(), "Oid": organizer.lower()}, separators=(",", ":")), safe=""
    )
    join_url = f"{_TEAMS}{_MEETUP}{quote(thread, safe='')}/{message}?context={context}"
    # Short and stable: the thread and message name the meeting whatever form the link came in.
    meeting_id = hashlib.sha256(f"{thread}/{message}".encode()).hexdigest()[:12]
    return MeetingUrl("teams", join_url, meeting_id, None)


def _param(query: str, key: str) -> str | None:
    """The raw value of the first `key=` in `query`, or None."""
    for pair in query.split("&"):
        name, equals, value = pair.partition("=")
        if name == key and equals:
            return value
    return None


def _decoded(value: str) -> str:
    """`value` percent-decoded until it no longer changes (at most three times)."""
    return _decodings(value)[-1]


def _kept_params(query: str) -> list[tuple[str, str]]:
    """The raw `pwd` and `tk` pairs, in order; their values are validated, never decoded or re-encoded."""
    kept: list[tuple[str, str]] = []
    for pair in query.split("&"):
        key, _, value = pair.partition("=")
        if key not in _KEPT_ZOOM_PARAMS:
            continue
        if not _PARAM_VALUE.fullmatch(value):
            raise InvalidMeetingUrl(
                f"the Zoom link's {key}= value is empty or has characters Zoom never uses"
            )
        if any(k == key for k, _ in kept):
            raise InvalidMeetingUrl(f"the Zoom link gives {key}= twice")
        kept.append((key, value))
    return kept
