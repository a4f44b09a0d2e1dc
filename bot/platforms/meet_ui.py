"""What Google Meet's guest flow looks like, as data: selectors, texts, and what a page snapshot means.

Meet changes its pages often. Every element and text the adapter relies on is listed here with several
candidates (roles and aria-labels first, CSS classes never), so a UI change is a one-line edit.
`UI`'s page script reads all of them in one round trip; `classify` turns the snapshot into one `Screen`,
checking terminal failures and end screens first, then the lobby, so waiting is never taken for being in
the call.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from bot.platforms.ui import PageSnapshot, PlatformUi, said, said_screens

# CSS selectors, several candidates each. Attribute prefixes (`^=`) because Meet appends shortcuts to
# some labels on some clients ("Turn off microphone (ctrl + d)").
SELECTORS: dict[str, tuple[str, ...]] = {
    "name_input": (
        'input[type="text"][aria-label="Your name"]',
        'input[type="text"][placeholder="Your name"]',
        'input[jsname][type="text"]',
    ),
    "mic_is_on": ('[aria-label^="Turn off microphone" i]',),  # the button that would turn it off
    "mic_is_off": ('[aria-label^="Turn on microphone" i]',),
    "cam_is_on": ('[aria-label^="Turn off camera" i]',),
    "cam_is_off": ('[aria-label^="Turn on camera" i]',),
    "leave_button": ('button[aria-label="Leave call"]', '[role="button"][aria-label="Leave call"]'),
    "tiles": ("[data-participant-id]",),
    "participants_list": ('[role="list"][aria-label="Participants"] [role="listitem"]',),
    "audio": ("audio",),
    # Only in the call (the lobby shows "Leave call", the toggles and a self tile too, so those don't count).
    "in_call": (
        'div[role="region"][aria-label="Call controls"]',
        'button[aria-label^="Turn on captions" i], button[aria-label^="Turn off captions" i]',
        'button[aria-label^="Chat with everyone" i], [role="button"][aria-label^="Chat with everyone" i]',
    ),
}

# Buttons and links, matched on their whole visible text (folded: see `ui.fold`).
BUTTONS: dict[str, tuple[str, ...]] = {
    "join": (
        "Ask to join",
        "Ask to join anyway",
        "Join now",
        "Join the call now",
        "Join anyway",
        "Join here too",
        "Switch here",
    ),
    # The bot speaks through its microphone: allow it when Meet asks; skipping is the fallback.
    "permission_allow": ("Allow microphone and camera", "Use microphone and camera", "Allow microphone"),
    "permission_skip": ("Continue without microphone and camera",),
    # Pre-join popups (sign-in suggestion, tips).
    "dismiss": ("Got it", "Dismiss", "Use without an account", "No thanks"),
    # Modals after admission: recording/transcription/Gemini notice; "Join now" is their consent button.
    "consent": ("Join now", "Got it", "OK", "Continue"),
}

# Texts anywhere in the page (substring, folded).
TEXTS: dict[str, tuple[str, ...]] = {
    "not_found": (
        "Check your meeting code",
        "Invalid video call name",
        "Your meeting code has expired",
        "The meeting code you entered doesn't work",
    ),
    "google_account": ("your Google Account",),
    # Meet's refusals of a guest browser (both wordings seen in 2026).
    "blocked": (
        "You can't join this video call",
        "You can't join this meeting",
        "There is a problem connecting to this video call",
    ),
    # Checked before "denied": Meet shows the same "You can't join this call" heading for both.
    "lobby_timeout": ("No one responded to your request to join the call",),
    "denied": (
        "Someone in the call denied your request to join",
        "weren't allowed to join",
        "You can't join this call",
    ),
    "removed": ("You've been removed from the meeting", "You have been removed from the meeting"),
    "host_ended": ("Your host ended the meeting for everyone", "ended the meeting for everyone"),
    "call_ended": ("The call ended", "The call has ended", "This call has ended"),
    "left": ("You left the meeting", "You left the call"),
    "lobby": (
        "Asking to be let in",
        "You'll join the call when someone lets you in",
        "Please wait until a meeting host brings you into the call",
        "Waiting for the host to let you in",
    ),
    "host_wait": ("Waiting for the host to join",),
    "getting_ready": ("Getting ready", "You'll be able to join in just a moment"),
    "permission": ("Do you want people to see and hear you in the meeting?",),
}


# Meet's own readings, added to the common page script (`ui.page_script`).
_READINGS = """
  const join = clickable.find((el) => buttons.join.map(fold).includes(label(el)));
  out.joinEnabled = !!join && !join.disabled && join.getAttribute("aria-disabled") !== "true";
  const name = first("name_input");
  out.nameValue = name ? name.value : null;
  out.signInHeading = Array.from(document.querySelectorAll("h1"))
    .some((h) => fold(h.textContent).includes("sign in"));
  out.audioElements = document.querySelectorAll("audio").length;
  out.dialog = Array.from(document.querySelectorAll("[role=dialog], [role=alertdialog]")).some(shown);
  // The participant count, where peers read it: the avatar stack's [data-avatar-count], then a button
  // labelled "People" ("People - 3"; with or without aria-haspopup), then the open People panel.
  out.participants = null;
  out.participantsFrom = null;
  const avatars = Array.from(document.querySelectorAll("[data-avatar-count]"))
    .map((el) => parseInt(el.getAttribute("data-avatar-count"), 10)).filter((n) => Number.isFinite(n));
  if (avatars.length) {
    out.participants = avatars[0];
    out.participantsFrom = "avatars";
  }
  const people = Array.from(document.querySelectorAll("button, [role=button]"))
    .find((el) => rendered(el) && /^people\\b/.test(fold(el.getAttribute("aria-label") || el.textContent)));
  out.people = !!people;
  if (people && out.participants === null) {
    const m = ((people.getAttribute("aria-label") || "") + " " + (people.textContent || "")).match(/\\d+/);
    if (m) {
      out.participants = parseInt(m[0], 10);
      out.participantsFrom = "people";
    }
  }
  if (out.participants === null && out.present.participants_list > 0) {
    out.participants = out.present.participants_list;
    out.participantsFrom = "list";
  }
"""


class Screen(StrEnum):
    """What the page shows now, in the order `classify` checks."""

    NETWORK_ERROR = "network_error"  # Chromium's own error page: Meet could not be reached
    NOT_FOUND = "not_found"
    SIGN_IN = "sign_in"
    CAPTCHA = "captcha"  # a reCAPTCHA while joining
    BLOCKED = "blocked"
    REMOVED = "removed"
    HOST_ENDED = "host_ended"
    CALL_ENDED = "call_ended"
    LOBBY_TIMEOUT = "lobby_timeout"  # Meet gave up waiting: not a denial
    DENIED = "denied"
    LEFT = "left"
    LOBBY = "lobby"
    HOST_WAIT = "host_wait"
    IN_CALL = "in_call"
    PERMISSION = "permission"  # Meet's own "see and hear you" dialog
    POPUP = "popup"  # a dismissable dialog or card ("Got it", "Dismiss") over the pre-join page
    PREJOIN = "prejoin"  # name, toggles, join button
    GETTING_READY = "getting_ready"
    UNKNOWN = "unknown"


@dataclass
class Snapshot(PageSnapshot):
    """One reading of the page (Meet has no client iframe)."""

    participants_from: str | None = None  # "avatars", "people" (the People button) or "list" (the panel)
    people: bool = False
    sign_in_heading: bool = False
    audio_elements: int = 0
    dialog: bool = False

    def merge(self, raw: dict[str, object], frame: int) -> None:
        super().merge(raw, frame)
        name, participants, audio = raw.get("nameValue"), raw.get("participants"), raw.get("audioElements")
        self.join_enabled = bool(raw.get("joinEnabled"))
        self.name_value = None if name is None else str(name)
        self.participants = participants if isinstance(participants, int) else None
        source = raw.get("participantsFrom")
        self.participants_from = str(source) if source else None
        self.people = bool(raw.get("people"))
        self.sign_in_heading = bool(raw.get("signInHeading"))
        self.audio_elements = audio if isinstance(audio, int) else 0
        self.dialog = bool(raw.get("dialog"))

    @property
    def in_call_signals(self) -> int:
        """Distinct call-only signals laid out on the page (control region, captions, chat, People)."""
        return self.signals("in_call") + (1 if self.people else 0)


_ENDS = said_screens(Screen, "removed", "host_ended", "call_ended", "lobby_timeout", "denied", "left")


def classify(snap: Snapshot) -> Screen:
    """One screen for the snapshot: failures and ends first, then the lobby (which shares "Leave call",
    the toggles and a participant tile with the call), then the call (two call-only signals), then the
    pre-join steps."""
    t = snap.texts
    if snap.net_error:
        return Screen.NETWORK_ERROR
    if "not_found" in t:
        return Screen.NOT_FOUND
    if snap.sign_in_heading and "google_account" in t:
        return Screen.SIGN_IN
    if snap.recaptcha:
        return Screen.CAPTCHA
    if "blocked" in t:
        return Screen.BLOCKED
    if (ended := said(t, _ENDS)) is not None:
        return ended
    if "lobby" in t:
        return Screen.LOBBY
    if "host_wait" in t:
        return Screen.HOST_WAIT
    if snap.in_call_signals >= 2:
        return Screen.IN_CALL
    if "permission" in t or snap.buttons.get("permission_allow") or snap.buttons.get("permission_skip"):
        return Screen.PERMISSION
    # Popups are not always dialogs: a "Got it"/"Dismiss" card on top of the page counts too.
    if (snap.dialog and snap.buttons.get("dismiss")) or snap.on_top.get("dismiss"):
        return Screen.POPUP
    if snap.visible.get("name_input") or snap.buttons.get("join"):
        return Screen.PREJOIN
    if "getting_ready" in t:
        return Screen.GETTING_READY
    return Screen.UNKNOWN


UI = PlatformUi(SELECTORS, BUTTONS, TEXTS, _READINGS, Snapshot, classify)
