"""The Teams screen classifier: precedence on hand-made snapshots (no browser), then the page script on small
pages per screen, read the way the bot reads a live page (`meeting-bot classify-page`'s offline reader)."""

from __future__ import annotations

import pytest

from bot.commands.classify_page import Document, PageReader
from bot.platforms.teams_ui import BUTTONS, Screen, Snapshot, classify
from bot.platforms.ui import exact_text
from tests.adapter_support import snapshots

CALL = {"in_call:0": 1, "in_call:3": 1}


snap = snapshots(Snapshot)


@pytest.mark.parametrize(
    ("snapshot", "screen"),
    [
        (snap(frozenset({"not_found"}), net_error="ERR_NAME_NOT_RESOLVED"), Screen.NETWORK_ERROR),
        # Microsoft's sign-in page by its host or its form, whatever else it says.
        (snap(url="https://login.microsoftonline.com/common/oauth2/v2.0/authorize?x=1"), Screen.SIGN_IN),
        (snap(visible={"login_form": True}), Screen.SIGN_IN),
        (snap(frozenset({"sign_in", "lobby"})), Screen.SIGN_IN),
        (snap(frozenset({"captcha"}), visible={"join_button": True}), Screen.CAPTCHA),
        (snap(recaptcha=True), Screen.CAPTCHA),
        (snap(frozenset({"not_found"})), Screen.NOT_FOUND),
        (snap(frozenset({"passcode_wrong"})), Screen.PASSCODE_WRONG),
        (snap(frozenset({"event_not_started"})), Screen.EVENT_NOT_STARTED),
        (snap(frozenset({"blocked"})), Screen.BLOCKED),
        (snap(frozenset({"removed"}), present=CALL), Screen.REMOVED),
        (snap(frozenset({"host_ended"}), present=CALL), Screen.HOST_ENDED),
        (snap(frozenset({"call_ended"})), Screen.CALL_ENDED),
        (snap(frozenset({"disconnected"})), Screen.DISCONNECTED),
        (snap(frozenset({"lobby_timeout"})), Screen.LOBBY_TIMEOUT),
        (snap(frozenset({"denied"})), Screen.DENIED),
        (snap(frozenset({"left"})), Screen.LEFT),
        # The modal blocks everything under it, the lobby's "Join now" included.
        (snap(frozenset({"lobby"}), buttons={"av_continue": True, "join": True}), Screen.AV_MODAL),
        (snap(buttons={"av_continue": True}, visible={"join_button": True}), Screen.AV_MODAL),
        # The lobby is the pre-join page with a text: never the call, whatever it shares with it.
        (snap(frozenset({"lobby"}), present=CALL, visible={"join_button": True}), Screen.LOBBY),
        (snap(present=CALL), Screen.IN_CALL),
        # One signal is not enough, and "Join now" on screen is not the call.
        (snap(present={"in_call:0": 1}), Screen.UNKNOWN),
        (snap(present=CALL, visible={"join_button": True}), Screen.PREJOIN),
        (snap(buttons={"launch_browser": True}), Screen.LAUNCHER),
        (snap(visible={"launch_button": True}), Screen.LAUNCHER),
        (snap(visible={"name_input": True}), Screen.PREJOIN),
        (snap(visible={"join_button": True}), Screen.PREJOIN),
        (snap(frozenset({"alone"})), Screen.UNKNOWN),
        (snap(), Screen.UNKNOWN),
    ],
)
def test_classify_precedence(snapshot: Snapshot, screen: Screen) -> None:
    assert classify(snapshot) is screen


def test_texts_said_only_by_alerts_are_dropped_when_merged() -> None:
    s = Snapshot.parse({"texts": ["removed", "lobby"], "alertOnly": ["removed"], "participants": 3})
    assert s.texts == {"lobby"} and s.participants == 3


def test_button_labels_match_whole_texts_with_either_apostrophe() -> None:
    launch = exact_text(BUTTONS["launch_browser"])
    assert launch.search(" Continue on this browser ") and launch.search("Join on the web instead")
    assert not launch.search("Open your Teams app")
    leave = exact_text(BUTTONS["leave_confirm"])
    assert leave.search("Leave") and not leave.search("Leave meeting?") and not leave.search("End meeting")


# ---- the page script on small pages ------------------------------------------------------------------------

LIGHT = "https://teams.microsoft.com/light-meetings/launch?agent=web&coords=e30"
PREJOIN = """
<input data-tid="prejoin-display-name-input" placeholder="Type your name" value="{name}">
<label><input type="radio" name="a" data-tid="prejoin-computer-audio" {computer}>Computer audio</label>
<label><input type="radio" name="a" data-tid="prejoin-no-audio" {none}>Don't use audio</label>
<input type="checkbox" role="switch" data-tid="toggle-mute" aria-checked="{mic}">
<input type="checkbox" role="switch" data-tid="toggle-video" aria-checked="{cam}">
<button data-tid="prejoin-join-button" {disabled}>Join now</button>
"""
CALL_BAR = """
<div role="toolbar">
  <button id="chat-button">Chat</button>
  <button id="roster-button" data-tid="roster-button" aria-label="People, 4 participants">People</button>
  <button id="raisehands-button">Raise</button>
  <button id="callingButtons-showMoreBtn">More</button>
  <button id="microphone-button" aria-label="{mic}">Mic</button>
  <button id="hangup-button" data-tid="hangup-main-btn" aria-label="Leave">Leave</button>
</div>
"""

PAGES = [
    (
        "launcher",
        "https://teams.microsoft.com/dl/launcher/launcher.html?url=%2F_%23%2Fmeet%2F1%3Fp%3Da&type=meet",
        '<iframe id="teamsLauncher" src="msteams:/meet/1?p=a" style="display:none"></iframe>'
        '<h1>How do you want to join your Teams meeting?</h1><button data-tid="joinOnWeb" '
        'aria-label="Join meeting from this browser">Continue on this browser</button>'
        "<button>Open your Teams app</button>",
    ),
    ("launcher", LIGHT, "<button>Join on the web instead</button>"),
    (
        "prejoin",
        LIGHT,
        PREJOIN.format(name="", computer="checked", none="", mic="true", cam="true", disabled="disabled"),
    ),
    (
        "av_modal",
        LIGHT,
        PREJOIN.format(name="Bot", computer="checked", none="", mic="true", cam="false", disabled="")
        + '<div role="dialog"><h2>Your audio and video aren\u2019t set up</h2>'
        "<button>Continue without audio or video</button></div>",
    ),
    (
        "lobby",
        LIGHT,
        PREJOIN.format(name="Bot", computer="checked", none="", mic="true", cam="false", disabled="disabled")
        + "<p>Hi, Bot. Someone will let you in when the meeting starts.</p>"
        '<button data-tid="prejoin-cancel-button">Cancel</button>',
    ),
    ("lobby", LIGHT, "<p>Someone in the meeting should let you in soon</p>"),
    ("in_call", LIGHT, CALL_BAR.format(mic="Mute mic")),
    # A toast about someone else, or any alert, is not the bot's end.
    (
        "in_call",
        LIGHT,
        CALL_BAR.format(mic="Mute mic") + '<div role="alert">A participant was removed from the meeting</div>'
        '<div role="alert">You\u2019ve been removed from this meeting</div>'
        '<div role="status">The meeting has ended</div>',
    ),
    (
        "removed",
        LIGHT,
        '<div data-tid="calling-retry-screen"><h1 id="calling-retry-screen-title">'
        "You\u2019ve been removed from this meeting</h1>"
        "<button>Rejoin</button><button>Dismiss</button></div>",
    ),
    ("denied", LIGHT, "<h1>Sorry, but you were denied access to the meeting.</h1><button>Rejoin</button>"),
    ("denied", LIGHT, "<h1>Your request to join was declined</h1>"),
    ("call_ended", LIGHT, "<h1>The meeting has ended</h1>"),
    ("left", LIGHT, "<h1>You left the meeting</h1><button>Rejoin</button>"),
    (
        "sign_in",
        "https://login.microsoftonline.com/common/oauth2/v2.0/authorize?client_id=x",
        '<div role="heading">Sign in</div><input type="email" name="loginfmt">',
    ),
    ("sign_in", LIGHT, "<h1>Due to org policy, you need to sign in to join this meeting.</h1>"),
    ("captcha", LIGHT, "<h1>Verify you\u2019re a real person</h1><button>Verify</button>"),
    (
        "not_found",
        LIGHT,
        "<h1>Looks like the meeting URL is incorrect. Please check the URL and try again.</h1>",
    ),
    ("unknown", LIGHT, "<p>Loading…</p>"),
]


@pytest.mark.browser
async def test_small_pages_read_as_their_screen() -> None:
    """One offline browser for all pages (page scripts off, nothing fetched); every mismatch listed."""
    wrong = []
    async with PageReader() as reader:
        for expected, url, body in PAGES:
            reading = await reader.read("teams", [Document(url, f"<!doctype html><body>{body}</body>")])
            if reading.screen != expected:
                wrong.append(f"{body[:60]!r}: read as {reading.screen}, not {expected} ({reading.summary()})")
    assert not wrong, "\n".join(wrong)


@pytest.mark.browser
async def test_switches_audio_choice_and_counts_are_read() -> None:
    async with PageReader() as reader:

        async def read(body: str) -> Snapshot:
            snapshot: Snapshot = (await reader.read("teams", [Document(LIGHT, body)])).snapshot
            return snapshot

        off = await read(
            PREJOIN.format(name="Al", computer="", none="checked", mic="false", cam="true", disabled="")
        )
        assert (off.name_value, off.computer_audio, off.mic_toggle_on, off.camera_toggle_on) == (
            "Al",
            False,
            False,
            True,
        )
        assert off.join_enabled
        on = await read(
            PREJOIN.format(name="", computer="checked", none="", mic="true", cam="false", disabled="disabled")
        )
        assert (on.computer_audio, on.mic_toggle_on, on.camera_toggle_on, on.join_enabled) == (
            True,
            True,
            False,
            False,
        )
        muted = await read(CALL_BAR.format(mic="Unmute mic"))
        assert muted.visible.get("mic_is_off") and not muted.present.get("mic_is_on")
        assert muted.participants == 4 and muted.in_call_signals == 5
        alone = await read(
            CALL_BAR.format(mic="Mute mic").replace("People, 4 participants", "People")
            + "<p>You're the only one here</p>"
        )
        assert alone.participants == 1
