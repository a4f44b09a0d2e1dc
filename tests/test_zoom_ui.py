"""The Zoom screen classifier on hand-made snapshots: precedence between screens (no browser)."""

from __future__ import annotations

import pytest

from bot.platforms.ui import exact_text, fold
from bot.platforms.zoom_ui import Screen, Snapshot, classify
from tests.adapter_support import snapshots

CALL = {"in_call:0": 1, "in_call:1": 1}


snap = snapshots(Snapshot)


@pytest.mark.parametrize(
    ("snapshot", "screen"),
    [
        (snap(frozenset({"bot_wall"}), net_error="ERR_CONNECTION_REFUSED"), Screen.NETWORK_ERROR),
        # The adapter found the anti-bot modal in a closed shadow root: the page itself says nothing.
        (snap(frozenset({"joining"}), cover="<div.x>", shadow_wall="We detected…"), Screen.SHADOW_WALL),
        (snap(frozenset({"joining"}), cover="<div.mask>"), Screen.JOINING),  # a mask, no shadow root
        (snap(frozenset({"bot_wall", "captcha"})), Screen.BOT_WALL),
        (snap(recaptcha=True, visible={"name_input": True}), Screen.CAPTCHA),
        (snap(visible={"captcha": True, "name_input": True}), Screen.CAPTCHA),
        (snap(frozenset({"sign_in"}), visible={"name_input": True}), Screen.SIGN_IN),
        (snap(frozenset({"passcode_wrong"}), visible={"passcode_input": True}), Screen.PASSCODE_WRONG),
        (snap(frozenset({"host_absent"})), Screen.HOST_ABSENT),
        (snap(frozenset({"removed"}), present=CALL), Screen.REMOVED),
        (snap(frozenset({"host_ended"}), present=CALL), Screen.HOST_ENDED),
        (snap(present={**CALL, "end_now": 1}), Screen.CALL_ENDED),  # "Meeting is end now", no text
        # The lobby shares elements with the call: the waiting-room text wins, never IN_CALL.
        (snap(frozenset({"waiting_room"}), present=CALL), Screen.WAITING_ROOM),
        (snap(frozenset({"host_wait"})), Screen.HOST_WAIT),
        (snap(present=CALL), Screen.IN_CALL),
        # One signal is not enough: a hidden footer or a stray element must not read as admission.
        (snap(present={"in_call:0": 1}), Screen.UNKNOWN),
        (snap(visible={"cookie_accept": True, "name_input": True}), Screen.COOKIES),
        (snap(buttons={"permission_allow": True}, visible={"name_input": True}), Screen.PERMISSION),
        # Terms over a mask come first: the mask takes the clicks meant for the name field.
        (snap(visible={"terms_dialog": True, "name_input": True}), Screen.TERMS),
        (snap(buttons={"launch_browser": True}), Screen.LAUNCH),
        (snap(visible={"join_button": True}), Screen.PREVIEW),
        (snap(frozenset({"joining"})), Screen.JOINING),
        (snap(), Screen.UNKNOWN),
    ],
)
def test_classify_precedence(snapshot: Snapshot, screen: Screen) -> None:
    assert classify(snapshot) is screen


def test_merge_counts_signals_across_frames_and_remembers_where_each_was_seen() -> None:
    s = Snapshot()
    s.merge({"title": "Zoom", "present": {}, "visible": {"cookie_accept": True}, "texts": []}, 0)
    s.merge(
        {
            "present": {"in_call:0": 1, "in_call:1": 1},
            "visible": {"name_input": True, "cookie_accept": True},
            "buttons": {"computer_audio": True},
            "texts": ["joining"],
            "participants": 3,
        },
        1,
    )
    assert s.in_call_signals == 2 and s.participants == 3 and s.texts == {"joining"}
    assert s.frame_of == {"cookie_accept": 0, "name_input": 1, "button:computer_audio": 1}


def test_exact_text_matches_whole_labels_only() -> None:
    allow = exact_text(("Allow",))
    assert allow.search("  Allow ") and allow.search("allow")
    assert not allow.search("Allow Zoom to use your microphone")


def test_labels_fold_the_same_way_as_meets() -> None:
    """Zoom writes typographic apostrophes too: matching and folding treat both clients alike."""
    leave = exact_text(("Don't leave", "Leave Meeting"))
    assert leave.search("Don\u2019t leave") and leave.search("Leave  Meeting")
    assert fold(" Host has joined. We\u2019ve let them  know ") == "host has joined. we've let them know"
