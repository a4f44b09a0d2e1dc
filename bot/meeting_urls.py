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
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["MAX_URL_LENGTH", "InvalidMeetingUrl", "MeetingUrl", "parse_meeting_url"]

MAX_URL_LENGTH = 2048
_EXAMPLES = (
    "expected a Google Meet link like https://meet.google.com/abc-defg-hij "
    "or a Zoom link like https://zoom.us/j/1234567890?pwd=…"
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


class InvalidMeetingUrl(ValueError):
    """The text is not a meeting link the bot can join; the message says what is wrong and what fits."""

    def __init__(self, problem: str) -> None:
        super().__init__(f"{problem}; {_EXAMPLES}")
        self.problem = problem


@dataclass(frozen=True)
class MeetingUrl:
    """A link the bot can open. `passcode` is Zoom's `pwd` (percent-decoding left to the client)."""

    platform: str  # "meet" | "zoom"
    join_url: str = field(repr=False)  # carries pwd/tk: use `display_url` in logs
    meeting_id: str  # "abc-defg-hij", a Zoom number, or a Zoom personal link name
    passcode: str | None = field(default=None, repr=False)

    @property
    def display_url(self) -> str:
        """`join_url` with the values of `pwd` and `tk` masked, for logs and messages."""
        return re.sub(r"([?&](?:pwd|tk)=)[^&#]*", r"\1…", self.join_url)


def parse_meeting_url(url: str) -> MeetingUrl:
    """Parse and normalize a Google Meet or Zoom link; raise `InvalidMeetingUrl` saying why not."""
    if not isinstance(url, str):
        raise InvalidMeetingUrl(f"the meeting link must be text, not {type(url).__name__}")
    text = url.strip()
    if not text:
        raise InvalidMeetingUrl("the meeting link is empty")
    if len(text) > MAX_URL_LENGTH:
        raise InvalidMeetingUrl(f"the meeting link is {len(text)} characters long (at most {MAX_URL_LENGTH})")
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        raise InvalidMeetingUrl("the meeting link contains spaces or control characters")
    if "\\" in text:
        raise InvalidMeetingUrl("the meeting link contains a backslash")
    host, path, query = _split_https(text)
    if host == "meet.google.com":
        return _meet(path)
    if host == "zoom.us" or host.endswith(".zoom.us"):
        return _zoom(host, path, query)
    if "zoom" in host or "google" in host or "meet" in host:
        raise InvalidMeetingUrl(f"host {host!r} only looks like Google Meet or Zoom")
    raise InvalidMeetingUrl(f"host {host!r} is not Google Meet (meet.google.com) or Zoom (zoom.us)")


def _split_https(text: str) -> tuple[str, str, str]:
    """(lowercase host, path, query) of an https URL; refuses anything a browser might read otherwise."""
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
    rest = rest.split("#", 1)[0]
    path, _, query = rest.partition("?")
    return host, path or "/", query


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
