"""Meeting link parsing: what is accepted and how it is normalized, what is refused and why."""

from __future__ import annotations

import base64
import hashlib
import json
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.meeting_urls import MAX_URL_LENGTH, InvalidMeetingUrl, MeetingUrl, masked, parse_meeting_url

MEET = "https://meet.google.com/abc-defg-hij?hl=en"
THREAD = "19:meeting_NjA3ZTQ2YmQtOTRkMi00ZGEwLWE3ZjYtYjJlOTI4ZDRlNjM0@thread.v2"


def web_client(url: str, meeting_id: str, query: str = "") -> tuple[str, str, str, str]:
    """A Zoom link that goes to the browser client on app.zoom.us, with `query` what it keeps."""
    return (url, "zoom", f"https://app.zoom.us/wc/{meeting_id}/join{query}", meeting_id)


ACCEPTED = [
    # Meet: lowercase dashed code, tracking parameters dropped, English forced.
    ("https://meet.google.com/abc-defg-hij", "meet", MEET, "abc-defg-hij"),
    ("https://meet.google.com/abc-defg-hij?authuser=1&hs=122&pli=1#x", "meet", MEET, "abc-defg-hij"),
    ("  https://meet.google.com/abc-defg-hij/\n", "meet", MEET, "abc-defg-hij"),
    ("HTTPS://Meet.Google.COM/ABC-DEFG-HIJ", "meet", MEET, "abc-defg-hij"),
    ("https://meet.google.com/abcdefghij", "meet", MEET, "abc-defg-hij"),
    ("https://meet.google.com:443/abc-defg-hij", "meet", MEET, "abc-defg-hij"),
    ("https://meet.google.com./abc-defg-hij", "meet", MEET, "abc-defg-hij"),
    ("https://meet.google.com/abc-defg-hij?hl=de", "meet", MEET, "abc-defg-hij"),
    # Zoom: /j/ and friends go to the browser client on app.zoom.us; pwd and tk kept byte for byte.
    web_client("https://us02web.zoom.us/j/85412345678?pwd=aBcD.1xYz", "85412345678", "?pwd=aBcD.1xYz"),
    web_client("https://zoom.us/j/1234567890", "1234567890"),
    web_client(
        "https://acme.zoom.us/j/1234567890?uname=Bob&pwd=p%2Bq%3D&from=addon&tk=Ab-C_d.e~F",
        "1234567890",
        "?pwd=p%2Bq%3D&tk=Ab-C_d.e~F",
    ),
    # Original order kept.
    web_client("https://zoom.us/j/1234567890?tk=TOKEN&pwd=PW", "1234567890", "?tk=TOKEN&pwd=PW"),
    web_client("https://zoom.us/w/98765432101?tk=t0k", "98765432101", "?tk=t0k"),
    web_client("https://zoom.us/wc/join/123456789", "123456789"),
    web_client("https://app.zoom.us/wc/1234567890/join?fromPWA=1&pwd=x", "1234567890", "?pwd=x"),
    web_client("https://us06web.zoom.us/wc/1234567890/join/", "1234567890"),
    # Personal links keep their host: only Zoom's launch page resolves the name.
    (
        "https://acme.zoom.us/my/jane.doe?pwd=x1",
        "zoom",
        "https://acme.zoom.us/my/jane.doe?pwd=x1",
        "jane.doe",
    ),
    ("https://zoom.us/my/Room42", "zoom", "https://zoom.us/my/Room42", "Room42"),
]


@pytest.mark.parametrize(("url", "platform", "join_url", "meeting_id"), ACCEPTED)
def test_accepted_links_are_normalized(url: str, platform: str, join_url: str, meeting_id: str) -> None:
    m = parse_meeting_url(url)
    assert (m.platform, m.join_url, m.meeting_id) == (platform, join_url, meeting_id)
    assert parse_meeting_url(m.join_url) == m


def test_zoom_passcode_is_the_raw_pwd_and_hidden_from_repr() -> None:
    m = parse_meeting_url("https://us02web.zoom.us/j/85412345678?pwd=s3cr3tPw&tk=t0ken")
    assert m.passcode == "s3cr3tPw"
    assert parse_meeting_url("https://meet.google.com/abc-defg-hij").passcode is None
    assert parse_meeting_url("https://zoom.us/j/1234567890").passcode is None
    assert "s3cr3tPw" not in repr(m) and "t0ken" not in repr(m)
    assert m.display_url == "https://app.zoom.us/wc/85412345678/join?pwd=…&tk=…"


REFUSED = [
    ("", "empty"),
    ("   \t\n ", "empty"),
    ("https://example.com/meeting/123", "is not Google Meet"),
    ("https://meet.google.com.evil.example/abc-defg-hij", "only looks like"),
    ("https://zoom.us.evil.com/j/1234567890", "only looks like"),
    ("https://evilzoom.us/j/1234567890", "only looks like"),
    ("https://meet.google.co/abc-defg-hij", "only looks like"),
    ("https://xn--meet-gogle-abc.com/abc-defg-hij", "only looks like"),
    (
        "https://meet.g\u043e\u043egle.com/abc-defg-hij",
        "characters a Google or Zoom host never has",
    ),  # Cyrillic o
    ("https://meet%2Egoogle.com/abc-defg-hij", "characters a Google or Zoom host never has"),
    ("https://[::1]/abc-defg-hij", "not an IP address"),
    ("https://meet..google.com/abc-defg-hij", "characters a Google or Zoom host never has"),
    ("http://meet.google.com/abc-defg-hij", "not http://"),
    ("javascript:alert(1)//meet.google.com/abc-defg-hij", "javascript: links are not meeting links"),
    ("file:///etc/passwd", "file: links are not meeting links"),
    ("data:text/html,<script>x</script>", "data: links are not meeting links"),
    ("meet.google.com/abc-defg-hij", "must start with https://"),
    ("//meet.google.com/abc-defg-hij", "must start with https://"),
    ("https:meet.google.com/abc-defg-hij", "two slashes"),
    ("https://", "no host"),
    ("https://user:pw@meet.google.com/abc-defg-hij", "user name or password"),
    ("https://meet.google.com@evil.example/abc-defg-hij", "user name or password"),
    ("https://evil.example\\@meet.google.com/abc-defg-hij", "backslash"),
    ("https://meet.google.com:8443/abc-defg-hij", "port"),
    ("https://zoom.us:80/j/1234567890", "port"),
    ("https://meet.google.com:/abc-defg-hij", "port"),
    ("https://meet.goo\tgle.com/abc-defg-hij", "spaces or control characters"),
    ("https://meet.google.com/abc defg hij", "spaces or control characters"),
    ("https://meet.google.com/abc-defg-hij\x00", "control characters"),
    ("https://meet.google.com/" + "a" * MAX_URL_LENGTH, "characters long"),
    ("https://meet.google.com/", "3-4-3 letters"),
    ("https://meet.google.com/abc-defg-hi", "3-4-3 letters"),
    ("https://meet.google.com/abc-defg-hij-klm", "3-4-3 letters"),
    ("https://meet.google.com/abc-d3fg-hij", "3-4-3 letters"),
    (
        "https://meet.google.com/ab\u017f-defg-hij",
        "3-4-3 letters",
    ),  # long s folds to s under case-insensitivity
    ("https://meet.google.com/landing", "3-4-3 letters"),
    ("https://meet.google.com/x/../abc-defg-hij", "3-4-3 letters"),
    ("https://zoom.us/j/12345", "9 to 11 digits"),
    ("https://zoom.us/j/123456789012", "9 to 11 digits"),
    ("https://zoom.us/j/12345abc90", "9 to 11 digits"),
    ("https://zoom.us/j/١٢٣٤٥٦٧٨٩٠", "9 to 11 digits"),  # Arabic-Indic digits
    ("https://zoom.us/my/ab", "9 to 11 digits"),
    ("https://zoom.us/my/1abcde", "9 to 11 digits"),
    ("https://zoom.us/s/1234567890", "must be an invite"),
    ("https://zoom.us/", "must be an invite"),
    ("https://events.zoom.us/ev/AbCdEf", "Zoom Events"),
    ("https://zoom.us/j/1234567890?pwd=", "pwd= value is empty"),
    ("https://zoom.us/j/1234567890?pwd=a<b", "characters Zoom never uses"),
    ("https://zoom.us/j/1234567890?pwd=a&pwd=b", "pwd= twice"),
    ("https://zoom.us/j/1234567890?tk=a&tk=a", "tk= twice"),
]


@pytest.mark.parametrize(("url", "why"), REFUSED)
def test_refused_links_say_why_and_what_fits(url: str, why: str) -> None:
    with pytest.raises(InvalidMeetingUrl) as refused:
        parse_meeting_url(url)
    message = str(refused.value)
    assert why in message
    assert "https://meet.google.com/abc-defg-hij" in message  # what a valid link looks like


def test_non_text_is_refused_not_crashed() -> None:
    with pytest.raises(InvalidMeetingUrl, match="must be text"):
        parse_meeting_url(None)  # type: ignore[arg-type]


def test_the_refusal_does_not_echo_a_passcode() -> None:
    with pytest.raises(InvalidMeetingUrl) as refused:
        parse_meeting_url("https://zoom.us/s/1234567890?pwd=topsecret")
    assert "topsecret" not in str(refused.value)


# Generated links: pieces that are mostly right, mixed with pieces that are subtly wrong.
_schemes = st.sampled_from(["https://", "HTTPS://", "http://", "https:/", "javascript:", "", "https:\\\\"])
_hosts = st.sampled_from(
    [
        "meet.google.com",
        "zoom.us",
        "us02web.zoom.us",
        "app.zoom.us",
        "events.zoom.us",
        "evilzoom.us",
        "zoom.us.evil.com",
        "meet.google.com.evil.example",
        "a@meet.google.com",
        "meet.google.com:443",
        "meet.google.com:444",
        "-x.zoom.us",
        "teams.microsoft.com",
        "teams.live.com",
        "gov.teams.microsoft.us",
    ]
)
_segment = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-./%\u017f\u0663", max_size=14)
_paths = st.one_of(
    st.sampled_from(
        [
            "/abc-defg-hij",
            "/j/1234567890",
            "/wc/join/123456789",
            "/wc/12345678901/join",
            "/my/jane.doe",
            "/meet/2345678901234",
            f"/l/meetup-join/{quote(THREAD)}/0",
        ]
    ),
    st.builds(lambda a, b: f"/{a}/{b}", st.sampled_from(["j", "w", "wc", "my", "wc/join"]), _segment),
    _segment.map(lambda s: "/" + s),
)
_value = st.text(alphabet="aZ09._~%+=-&#?<> ", max_size=10)
_queries = st.lists(
    st.tuples(st.sampled_from(["pwd", "tk", "hl", "uname", "fromPWA", "p", "context", ""]), _value),
    max_size=4,
).map(lambda pairs: ("?" + "&".join(f"{k}={v}" for k, v in pairs)) if pairs else "")
_links = st.builds(lambda *parts: "".join(parts), _schemes, _hosts, _paths, _queries)


def _check(text: str) -> None:
    try:
        m = parse_meeting_url(text)
    except InvalidMeetingUrl as e:
        assert str(e)
        return
    assert isinstance(m, MeetingUrl)
    assert m.platform in ("meet", "zoom", "teams")
    assert m.join_url.startswith("https://") and len(m.join_url) <= MAX_URL_LENGTH
    assert parse_meeting_url(m.join_url) == m  # normal form is a fixed point


@settings(max_examples=400, deadline=None)
@given(_links)
def test_generated_links_parse_to_a_fixed_point_or_a_refusal(text: str) -> None:
    _check(text)


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_text_never_crashes_the_parser(text: str) -> None:
    _check(text)


@given(st.sampled_from([a[0] for a in ACCEPTED]), st.text(alphabet=" \t\n\r\x0b\x0c", max_size=5))
def test_surrounding_whitespace_is_ignored(url: str, pad: str) -> None:
    assert parse_meeting_url(pad + url + pad) == parse_meeting_url(url)


# ---- Microsoft Teams ------------------------------------------------------------------------------------

TID = "72f988bf-86f1-41af-91ab-2d7cd011db47"
OID = "1b2c3d4e-1111-2222-3333-444455556666"
CONTEXT = json.dumps({"Tid": TID, "Oid": OID}, separators=(",", ":"))
# What every form of that meeting becomes: the launcher a person's browser opens, context cut to Tid/Oid.
TEAMS = (
    f"https://teams.microsoft.com/l/meetup-join/{quote(THREAD, safe='')}/0?context={quote(CONTEXT, safe='')}"
)
ROUTE = f"/l/meetup-join/{quote(THREAD, safe='')}/0?context={quote(CONTEXT, safe='')}&anon=true"
COORDS = base64.b64encode(
    json.dumps({"conversationId": THREAD, "tenantId": TID, "organizerId": OID, "messageId": "0"}).encode()
).decode()

TEAMS_MEETUP = [
    TEAMS,
    # Invites write the route encoded (lowercase escapes) or not, with more in the context.
    f'https://teams.microsoft.com/l/meetup-join/{THREAD}/0?context={{"Tid":"{TID}","Oid":"{OID}"}}',
    TEAMS.replace("%3A", "%3a").replace("%7B", "%7b") + "&anon=true",
    f"https://teams.microsoft.com/l/meetup-join/{quote(THREAD)}/0?context="
    + quote(json.dumps({"Tid": TID.upper(), "Oid": OID, "MessageId": "0", "IsBroadcastMeeting": False})),
    f"https://teams.live.com/l/meetup-join/{quote(THREAD, safe='')}/0/?context={quote(CONTEXT)}",
    f"https://teams.microsoft.com/v2/?meetingjoin=true#{ROUTE}",
    f"https://teams.microsoft.com/_#{ROUTE}",
    # The launcher, its url= encoded once (so the route inside is encoded twice), or not at all.
    f"https://teams.microsoft.com/dl/launcher/launcher.html?url={quote('/_#' + ROUTE, safe='')}"
    "&type=meetup-join&deeplinkId=x1&directDl=true&msLaunch=true&enableMobilePage=true&suppressPrompt=true",
    f"https://teams.microsoft.com/dl/launcher/launcher.html?url=/_#/l/meetup-join/{THREAD}/0?context={CONTEXT}"
    "&type=meetup-join",
    f"https://teams.microsoft.com/light-meetings/launch?agent=web&version=23121000000&coords={quote(COORDS)}"
    "&deeplinkId=x2",
    # Wrapped by Outlook's Safe Links and by Google's redirect (the inner link encoded once).
    f"https://nam12.safelinks.protection.outlook.com/?url={quote(TEAMS, safe='')}&data=05%7C02%7C&reserved=0",
    f"https://www.google.com/url?q={quote(TEAMS, safe='')}&sa=D&source=calendar&usg=AOvVaw1",
    "https://eur01.safelinks.protection.outlook.com/?url="
    + quote(f"https://www.google.com/url?q={quote(TEAMS, safe='')}", safe=""),
]


@pytest.mark.parametrize("url", TEAMS_MEETUP)
def test_teams_meeting_links_become_one_launcher_link_with_a_short_stable_id(url: str) -> None:
    m = parse_meeting_url(url)
    assert (m.platform, m.join_url, m.passcode) == ("teams", TEAMS, None)
    assert m.meeting_id == hashlib.sha256(f"{THREAD}/0".encode()).hexdigest()[:12]
    assert parse_meeting_url(m.join_url) == m


@pytest.mark.parametrize(
    ("url", "join_url", "meeting_id"),
    [
        (
            "https://teams.live.com/meet/9876543210123?p=AbCd1234",
            "https://teams.live.com/meet/9876543210123?p=AbCd1234",
            "9876543210123",
        ),
        (
            "https://teams.microsoft.com/meet/2345678901234?p=Xy12Zq&anon=true",
            "https://teams.microsoft.com/meet/2345678901234?p=Xy12Zq",
            "2345678901234",
        ),
        (
            "https://teams.microsoft.com/v2/?meetingjoin=true#/meet/2345678901234?p=Xy12Zq&anon=true",
            "https://teams.microsoft.com/meet/2345678901234?p=Xy12Zq",
            "2345678901234",
        ),
        (
            "https://teams.live.com/dl/launcher/launcher.html?url=%2F_%23%2Fmeet%2F9876543210%3Fp%3Dq9W8e7"
            "%26anon%3Dtrue&type=meet&deeplinkId=y",
            "https://teams.live.com/meet/9876543210?p=q9W8e7",
            "9876543210",
        ),
    ],
)
def test_teams_meet_links_keep_their_host_and_only_the_passcode(
    url: str, join_url: str, meeting_id: str
) -> None:
    m = parse_meeting_url(url)
    assert (m.platform, m.join_url, m.meeting_id) == ("teams", join_url, meeting_id)
    assert parse_meeting_url(m.join_url) == m


def test_teams_passcode_is_kept_out_of_ids_reprs_and_logs() -> None:
    m = parse_meeting_url("https://teams.microsoft.com/meet/2345678901234?p=Secr3tPc")
    assert m.passcode == "Secr3tPc"
    assert "Secr3tPc" not in repr(m) and "Secr3tPc" not in m.meeting_id
    assert m.display_url == "https://teams.microsoft.com/meet/2345678901234?p=…"
    assert masked("opening https://zoom.us/j/1?pwd=a&tk=b and …/meet/2?p=c") == (
        "opening https://zoom.us/j/1?pwd=…&tk=… and …/meet/2?p=…"
    )


TEAMS_REFUSED = [
    ("https://teams.microsoft.com/meet/2345678901234", "needs its passcode"),
    ("https://teams.live.com/meet/2345678901234?p=", "needs its passcode"),
    ("https://teams.live.com/meet/2345678901234?p=a<b", "characters Teams never uses"),
    ("https://teams.live.com/meet/12345?p=abc123", "9 to 16 digits"),
    ("345 678 901 234", "a meeting id on its own"),
    ("2345678901234", "a meeting id on its own"),
    (f"https://gov.teams.microsoft.us/l/meetup-join/{quote(THREAD)}/0", "government or national cloud"),
    ("https://dod.teams.microsoft.us/meet/2345678901234?p=abc123", "government or national cloud"),
    ("https://teams.microsoft.com/l/meetup-join/2345678901234/0", "not a number"),
    (f"https://teams.microsoft.com/l/meetup-join/{quote(THREAD)}/0", "needs its context"),
    (f"https://teams.microsoft.com/l/meetup-join/{quote(THREAD)}/0?context=%7B%22Tid%22%3A%22x%22%7D", "Tid"),
    (
        f"https://teams.microsoft.com/l/meetup-join/{quote(THREAD)}/abc?context={quote(CONTEXT)}",
        "is a number",
    ),
    ("https://teams.microsoft.com/l/meetup-join/", "/l/meetup-join/<thread>/<message>"),
    ("https://teams.microsoft.com/", "must be a meeting link"),
    ("https://teams.microsoft.com/l/chat/0/0?users=a@b.c", "must be a meeting link"),
    ("https://teams.microsoft.com/dl/launcher/launcher.html?type=meetup-join", "url= is missing"),
    ("https://teams.microsoft.com/light-meetings/launch?coords=bm90IGpzb24", "coords= does not hold"),
    ("https://teams.microsoft.evil.com/meet/2345678901234?p=abc123", "only looks like"),
    (f"https://a.example/x {TEAMS}", "more than one link"),
    (f"{TEAMS}https://teams.live.com/meet/2345678901234?p=abc123", "more than one link"),
    (f"{TEAMS}&next={quote('https://evil.example/')}", "another link inside it"),
    ("https://nam12.safelinks.protection.outlook.com/?data=05", "carries no link"),
    ("https://www.google.com/search?q=teams", "only accepted as a redirect"),
    (
        "https://a.safelinks.protection.outlook.com/?url="
        + quote(
            "https://b.safelinks.protection.outlook.com/?url="
            + quote(
                "https://c.safelinks.protection.outlook.com/?url="
                + quote("https://d.safelinks.protection.outlook.com/?url=" + quote(TEAMS, safe=""), safe=""),
                safe="",
            ),
            safe="",
        ),
        "more than 3 redirect links",
    ),
]


@pytest.mark.parametrize(("url", "why"), TEAMS_REFUSED)
def test_teams_refusals_say_which_part_is_wrong(url: str, why: str) -> None:
    with pytest.raises(InvalidMeetingUrl) as refused:
        parse_meeting_url(url)
    assert why in str(refused.value)
    assert "abc123" not in str(refused.value)  # a passcode is never echoed
