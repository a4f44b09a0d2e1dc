"""The Meet screen classifier on hand-made snapshots: precedence between screens (no browser)."""

from __future__ import annotations

import pytest

from bot.platforms.meet_ui import BUTTONS, SELECTORS, Screen, Snapshot, classify
from bot.platforms.ui import exact_text
from tests.adapter_support import snapshots

CALL = {f"in_call:{i}": 1 for i in range(2)}
# What the lobby shares with the call: "Leave call", the toggles and a self tile.
LOBBY_LOOKS = {"leave_button": 1, "tiles": 1, "mic_is_on": 1, "cam_is_off": 1}


snap = snapshots(Snapshot)


@pytest.mark.parametrize(
    ("snapshot", "screen"),
    [
        # Chromium's own error page wins over anything it may say.
        (snap(frozenset({"not_found"}), net_error="ERR_NAME_NOT_RESOLVED"), Screen.NETWORK_ERROR),
        (snap(frozenset({"not_found"})), Screen.NOT_FOUND),
        (snap(buttons={"join": True}, recaptcha=True), Screen.CAPTCHA),
        (snap(frozenset({"google_account"}), sign_in_heading=True), Screen.SIGN_IN),
        # A sign-in suggestion without the account page's heading is only a popup.
        (snap(frozenset({"google_account"}), dialog=True, buttons={"dismiss": True}), Screen.POPUP),
        (snap(frozenset({"blocked", "denied"})), Screen.BLOCKED),
        (snap(frozenset({"removed"}), present=CALL), Screen.REMOVED),
        (snap(frozenset({"host_ended"}), present=CALL), Screen.HOST_ENDED),
        (snap(frozenset({"call_ended"})), Screen.CALL_ENDED),
        # Meet shows "You can't join this call" over both: the timeout text must win over the heading.
        (snap(frozenset({"lobby_timeout", "denied"})), Screen.LOBBY_TIMEOUT),
        (snap(frozenset({"denied"})), Screen.DENIED),
        (snap(frozenset({"left"})), Screen.LEFT),
        # The lobby never reads as the call, whatever it shares with it.
        (snap(frozenset({"lobby"}), present={**LOBBY_LOOKS, **CALL}, people=True), Screen.LOBBY),
        (snap(present=LOBBY_LOOKS), Screen.UNKNOWN),
        (snap(frozenset({"host_wait"})), Screen.HOST_WAIT),
        (snap(present=CALL), Screen.IN_CALL),
        (snap(present={"in_call:0": 1}, people=True), Screen.IN_CALL),
        # One signal is not enough: a stray element must not read as admission.
        (snap(present={"in_call:0": 1}), Screen.UNKNOWN),
        (snap(frozenset({"permission"}), visible={"name_input": True}), Screen.PERMISSION),
        (snap(dialog=True, buttons={"dismiss": True}, visible={"name_input": True}), Screen.POPUP),
        (snap(buttons={"dismiss": True}, visible={"name_input": True}), Screen.PREJOIN),  # no dialog
        # ... unless the card is on top of the page, taking its clicks (not a [role=dialog]).
        (
            snap(buttons={"dismiss": True}, on_top={"dismiss": True}, visible={"name_input": True}),
            Screen.POPUP,
        ),
        (snap(buttons={"join": True}), Screen.PREJOIN),
        (snap(frozenset({"getting_ready"})), Screen.GETTING_READY),
        (snap(), Screen.UNKNOWN),
    ],
)
def test_classify_precedence(snapshot: Snapshot, screen: Screen) -> None:
    assert classify(snapshot) is screen


def test_parse_reads_the_page_script_result_and_counts_distinct_call_signals() -> None:
    raw = {
        "title": "Meet \u2013 abc-defg-hij",
        "present": {"in_call:0": 1, "in_call:2": 3, "tiles": 2},
        "visible": {"mic_is_on": True},
        "buttons": {"consent": True},
        "texts": ["lobby"],
        "participants": 3,
        "people": True,
        "audioElements": 3,
        "dialog": True,
    }
    s = Snapshot.parse(raw)
    assert s.in_call_signals == 3 and s.participants == 3 and s.audio_elements == 3
    assert s.texts == {"lobby"} and s.dialog and s.visible == {"mic_is_on": True}
    assert Snapshot.parse(None) == Snapshot()  # mid-navigation reads as an empty page
    assert len(SELECTORS["in_call"]) == 3


def test_exact_text_matches_whole_labels_and_both_apostrophes() -> None:
    join = exact_text(BUTTONS["join"])
    assert join.search(" Ask to join ") and join.search("join now")
    assert not join.search("Ask to join again")  # the denial page's button is not a join button
    dismiss = exact_text(("Don't allow",))
    assert dismiss.search("Don\u2019t allow") and dismiss.search("Don't allow")
