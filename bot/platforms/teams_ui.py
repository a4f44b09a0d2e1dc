"""What Microsoft Teams' guest flow looks like in a browser, as data: selectors, texts, and what a page
snapshot means.

The way in: a meeting link opens Teams' launcher ("Continue on this browser" / "Join on the web instead",
beside the `msteams:` deep link that would open the desktop app), then the light-meetings client: a
pre-join page (name, camera and microphone switches, "Computer audio", "Join now"), maybe the "Continue
without audio or video" modal (before or after "Join now"), the lobby, the call. The selectors and texts
are the ones the open-source Teams bots rely on (`data-tid` attributes and ids first; several candidates
each), so a UI change is a one-line edit. `classify` checks the refusals and ends first, then the modal
and the lobby, so waiting is never taken for the call. Texts that only a transient alert or status toast
says ("A participant was removed from the meeting") never end anything: Teams pops those up in the call.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlsplit

from bot.platforms.ui import PageSnapshot, PlatformUi, said, said_screens

# CSS selectors, several candidates each.
SELECTORS: dict[str, tuple[str, ...]] = {
    # The launcher's deep link: while it is in the page Chromium ignores trusted input (teams.py removes it).
    "deep_link": ('iframe[src^="msteams:" i]',),
    "launch_button": (
        '[data-tid="joinOnWeb"]',
        'button[aria-label="Join meeting from this browser"]',
        'button[aria-label="Continue on this browser"]',
        'button[aria-label="Join on this browser"]',
    ),
    "name_input": (
        '[data-tid="prejoin-display-name-input"]',
        'input[placeholder="Type your name"]',
        'input[placeholder*="name" i]',
    ),
    "join_button": ('[data-tid="prejoin-join-button"]',),
    "cancel_button": ('[data-tid="prejoin-cancel-button"]',),  # withdraws a request from the lobby
    # Pre-join switches: checked (or aria-checked="true") means on.
    "mic_toggle": ('[data-tid="toggle-mute"]',),
    "camera_toggle": ('[data-tid="toggle-video"]',),
    "computer_audio": (
        '[data-tid="prejoin-computer-audio"]',
        'input[type="radio"][value="computer"]',
        '[role="radio"][aria-label^="Computer audio" i]',
    ),
    "login_form": ('input[name="loginfmt"]',),  # Microsoft's sign-in page
    # Only in the call, one candidate per control (the hang-up button's spellings are one signal).
    "in_call": (
        '#hangup-button, [data-tid="hangup-main-btn"], [data-inp="hangup-button"], button[id*="hangup"]',
        "#callingButtons-showMoreBtn",
        "#raisehands-button",
        '[data-tid="roster-button"]',
        "button#chat-button",
    ),
    "leave_button": (
        "#hangup-button",
        '[data-tid="hangup-main-btn"]',
        '[data-inp="hangup-button"]',
        'button[aria-label="Leave"]',
    ),
    # The call's microphone button says what a click would do: "Mute mic" while it is on.
    "mic_is_on": (
        '#microphone-button[aria-label^="Mute" i]',
        'button[aria-label^="Mute mic" i]',
        'button[title^="Mute mic" i]',
    ),
    "mic_is_off": (
        '#microphone-button[aria-label^="Unmute" i]',
        'button[aria-label^="Unmute mic" i]',
        'button[title^="Unmute mic" i]',
    ),
    "roster_button": ('[data-tid="roster-button"]',),
    "roster_items": ('[data-tid="roster"] [role="treeitem"]', '[data-cid="roster-participant"]'),
}

# Buttons and links, matched on their whole visible text (folded: see `ui.fold`).
BUTTONS: dict[str, tuple[str, ...]] = {
    "launch_browser": (
        "Continue on this browser",
        "Join on the web instead",
        "Join meeting from this browser",
        "Join on this browser",
        "Join from browser",
    ),
    "av_continue": ("Continue without audio or video",),
    "join": ("Join now",),
    "leave_confirm": ("Leave",),  # the leave dialog's; never "End meeting" (that ends it for everyone)
    "dismiss": ("Got it", "Not now", "Maybe later"),
}

# Texts anywhere in the page (substring, folded).
TEXTS: dict[str, tuple[str, ...]] = {
    "captcha": ("Verify you're a real person",),
    # A tenant that admits no anonymous guests (Attendee's list).
    "sign_in": (
        "Due to org policy, you need to sign in",
        "We need to verify your info before you can join",
        "To join, sign in or use Teams on the web",
        "You need to be signed in to Teams to access this meeting",
        "If you're not signed in to a Teams (work or school) account, sign in and try joining again",
        "Sign in to Teams to join, or contact the meeting organizer",
        "To join this Teams meeting, you need to be signed in to an account",
        "To join this meeting, sign in again or select another account",
    ),
    "event_not_started": ("External participants are not permitted to join before the event begins",),
    "not_found": (
        "Looks like the meeting URL is incorrect",
        "We couldn't find this meeting",
        "This meeting link is invalid",
    ),
    "passcode_wrong": ("The meeting ID or passcode is incorrect",),
    # Teams could not connect this browser; a new one often can (Attendee retries).
    "blocked": ("we couldn't connect you", "You can't join this meeting"),
    "removed": (
        "You've been removed from this meeting",
        "You have been removed from this meeting",
        "Someone removed you from the meeting",
    ),
    "host_ended": ("ended the meeting for everyone", "The organizer has ended the meeting"),
    "call_ended": ("The meeting has ended", "This meeting has ended", "The call has ended"),
    "disconnected": ("You've lost your connection",),
    "lobby_timeout": (
        "Nobody responded to your request to join",
        "No one responded to your request to join",
        "No one let you in",
    ),
    "denied": ("denied access to the meeting", "Your request to join was declined"),
    "left": ("You left the meeting",),
    # Every lobby wording the peers record, and one seen elsewhere.
    "lobby": (
        "Someone will let you in shortly",
        "Someone will let you in soon",
        "Someone in the meeting should let you in soon",
        "Someone will let you in when the meeting starts",
        "You're in the lobby",
        "Waiting for someone to let you in",
        "Your request to join has been sent",
        "When the meeting starts, we'll let people know you're waiting",
    ),
    "alone": ("you're the only one here", "You're the only one in this meeting"),
}

# Keys that end a join or a call: never read from a transient alert or status toast alone.
_ENDING = (
    "removed",
    "host_ended",
    "call_ended",
    "disconnected",
    "lobby_timeout",
    "denied",
    "left",
    "blocked",
)

LOGIN_HOSTS = ("login.microsoftonline.com", "login.live.com", "login.microsoft.com")

# Teams' own readings, added to the common page script (`ui.page_script`).
_READINGS = """
  const join = first("join_button");
  out.joinEnabled = !!join && !join.disabled && join.getAttribute("aria-disabled") !== "true";
  const name = first("name_input");
  out.nameValue = name ? name.value : null;
  // A switch or radio is on when checked, or aria-checked="true" (Teams writes both, by build).
  const on = (el) => el.checked === true || el.getAttribute("aria-checked") === "true"
    || el.getAttribute("aria-pressed") === "true";
  const state = (key) => {
    const el = sel[key].map((s) => document.querySelector(s)).find((e) => e && rendered(e)) || null;
    return el ? on(el) : null;
  };
  out.micToggleOn = state("mic_toggle");
  out.cameraToggleOn = state("camera_toggle");
  out.computerAudio = state("computer_audio");
  // Texts said only inside transient alerts or status toasts do not count (a toast saying someone else
  // was removed is not the bot's end).
  const alerts = fold(Array.from(document.querySelectorAll("[role=alert], [role=status]"))
    .map((el) => el.innerText || "").join(" \\n "));
  const hits = (hay, needle) => {
    let n = 0;
    for (let i = hay.indexOf(needle); i !== -1; i = hay.indexOf(needle, i + needle.length)) n += 1;
    return n;
  };
  out.alertOnly = alerts ? out.texts.filter((key) => __ENDING__.includes(key)
    && texts[key].map(fold).every((t) => hits(body, t) <= hits(alerts, t))) : [];
  // People in the call: the People button's count ("People, 3 participants" or its badge), else the
  // open roster's entries, else "you're the only one here".
  out.participants = null;
  const people = first("roster_button");
  if (people) {
    const m = ((people.getAttribute("aria-label") || "") + " " + (people.textContent || "")).match(/\\d+/);
    if (m) out.participants = parseInt(m[0], 10);
  }
  if (out.participants === null && out.present.roster_items > 0) out.participants = out.present.roster_items;
  if (out.participants === null && out.texts.includes("alone")) out.participants = 1;
"""


class Screen(StrEnum):
    """What the page shows now, in the order `classify` checks."""

    NETWORK_ERROR = "network_error"  # Chromium's own error page: Teams could not be reached
    SIGN_IN = "sign_in"  # Microsoft's sign-in page, or the tenant's "sign in to join" texts
    CAPTCHA = "captcha"
    NOT_FOUND = "not_found"
    PASSCODE_WRONG = "passcode_wrong"
    EVENT_NOT_STARTED = "event_not_started"  # a webinar that admits outsiders only once it has begun
    BLOCKED = "blocked"  # "we couldn't connect you": a fresh browser may be let in
    REMOVED = "removed"
    HOST_ENDED = "host_ended"
    CALL_ENDED = "call_ended"
    DISCONNECTED = "disconnected"
    LOBBY_TIMEOUT = "lobby_timeout"  # Teams gave up waiting: not a denial
    DENIED = "denied"
    LEFT = "left"  # "You left the meeting": after leave(), or how a page put the bot out
    AV_MODAL = "av_modal"  # "Continue without audio or video", before or after "Join now"
    LOBBY = "lobby"
    IN_CALL = "in_call"
    LAUNCHER = "launcher"  # "Continue on this browser" / "Join on the web instead"
    PREJOIN = "prejoin"  # name, switches, audio choice, "Join now"
    UNKNOWN = "unknown"


@dataclass
class Snapshot(PageSnapshot):
    """One reading of the page (the light client runs top level; the launcher's frame is a deep link)."""

    mic_toggle_on: bool | None = None  # the pre-join microphone switch; None: not shown
    camera_toggle_on: bool | None = None
    computer_audio: bool | None = None  # "Computer audio" chosen; None: no audio choice shown

    def merge(self, raw: dict[str, object], frame: int) -> None:
        super().merge(raw, frame)
        alert_only = raw.get("alertOnly")
        if isinstance(alert_only, list):
            self.texts.difference_update(str(k) for k in alert_only)
        if raw.get("nameValue") is not None and self.name_value is None:
            self.name_value = str(raw["nameValue"])
        self.join_enabled = self.join_enabled or bool(raw.get("joinEnabled"))
        self.merge_firsts(
            raw,
            {
                "micToggleOn": "mic_toggle_on",
                "cameraToggleOn": "camera_toggle_on",
                "computerAudio": "computer_audio",
            },
        )

    @property
    def on_login_page(self) -> bool:
        """The page is Microsoft's sign-in (the redirect of a tenant that admits no anonymous guests)."""
        return (urlsplit(self.url).hostname or "") in LOGIN_HOSTS or bool(self.visible.get("login_form"))


_ENDS = said_screens(
    Screen, "removed", "host_ended", "call_ended", "disconnected", "lobby_timeout", "denied", "left"
)
# Refusals, then the ends: checked in this order.
_SAID = said_screens(Screen, "not_found", "passcode_wrong", "event_not_started", "blocked") + _ENDS


def classify(snap: Snapshot) -> Screen:
    """One screen for the snapshot: refusals and ends first, then the modal (which blocks everything under
    it), the lobby (which keeps the pre-join page and its "Join now" on screen), the call (two call-only
    controls, no "Join now"), then the launcher and the pre-join page."""
    t = snap.texts
    if snap.net_error:
        return Screen.NETWORK_ERROR
    if snap.on_login_page or "sign_in" in t:
        return Screen.SIGN_IN
    if "captcha" in t or snap.recaptcha:
        return Screen.CAPTCHA
    if (refused := said(t, _SAID)) is not None:
        return refused
    if snap.buttons.get("av_continue"):
        return Screen.AV_MODAL
    if "lobby" in t:
        return Screen.LOBBY
    if snap.in_call_signals >= 2 and not snap.visible.get("join_button"):
        return Screen.IN_CALL
    if snap.buttons.get("launch_browser") or snap.visible.get("launch_button"):
        return Screen.LAUNCHER
    if snap.visible.get("name_input") or snap.visible.get("join_button"):
        return Screen.PREJOIN
    return Screen.UNKNOWN


UI = PlatformUi(
    SELECTORS,
    BUTTONS,
    TEXTS,
    _READINGS.replace("__ENDING__", json.dumps(list(_ENDING))),
    Snapshot,
    classify,
)
