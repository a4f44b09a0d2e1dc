"""Meeting link parsing: what is accepted and how it is normalized, what is refused and why."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.meeting_urls import MAX_URL_LENGTH, InvalidMeetingUrl, MeetingUrl, parse_meeting_url

MEET = "https://meet.google.com/abc-defg-hij?hl=en"


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
    ]
)
_segment = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-./%\u017f\u0663", max_size=14)
_paths = st.one_of(
    st.sampled_from(
        ["/abc-defg-hij", "/j/1234567890", "/wc/join/123456789", "/wc/12345678901/join", "/my/jane.doe"]
    ),
    st.builds(lambda a, b: f"/{a}/{b}", st.sampled_from(["j", "w", "wc", "my", "wc/join"]), _segment),
    _segment.map(lambda s: "/" + s),
)
_value = st.text(alphabet="aZ09._~%+=-&#?<> ", max_size=10)
_queries = st.lists(
    st.tuples(st.sampled_from(["pwd", "tk", "hl", "uname", "fromPWA", ""]), _value), max_size=4
).map(lambda pairs: ("?" + "&".join(f"{k}={v}" for k, v in pairs)) if pairs else "")
_links = st.builds(lambda *parts: "".join(parts), _schemes, _hosts, _paths, _queries)


def _check(text: str) -> None:
    try:
        m = parse_meeting_url(text)
    except InvalidMeetingUrl as e:
        assert str(e)
        return
    assert isinstance(m, MeetingUrl)
    assert m.platform in ("meet", "zoom")
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
