"""What the Zoom web client looks like, as data: selectors, texts, and what a page snapshot means.

Zoom changes its pages often. Every element and text the adapter relies on is listed here with several
candidates (current client first, then classic ones), so a UI change is a one-line edit. `UI`'s page
script reads all of them in one round trip per frame; `classify` turns the merged snapshot into one `Screen`,
checking the terminal failures first so a wall or captcha is never mistaken for progress.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from bot.platforms.ui import PageSnapshot, PlatformUi, said, said_screens

# CSS selectors, several candidates each.
SELECTORS: dict[str, tuple[str, ...]] = {
    "cookie_accept": ("#onetrust-accept-btn-handler", "#onetrust-reject-all-handler"),
    "name_input": ("#input-for-name", "#inputname", 'input[placeholder="Your Name" i]'),
    "passcode_input": ("#input-for-pwd", 'input[placeholder*="passcode" i]', 'input[type="password"]'),
    "join_button": ("button.preview-join-button", "#joinBtn", "button.joinWindowBtn"),
    "terms_agree": ("#wc_agree1", "#disclaimer_agree"),
    # The terms/consent dialog that can come as soon as the preview loads, over a modal mask.
    "terms_dialog": (
        '[role="dialog"] #wc_agree1',
        '[role="dialog"] #disclaimer_agree',
        ".zm-modal #wc_agree1",
        ".zm-modal #disclaimer_agree",
    ),
    "terms_checkbox": ("#wc_agree1",),
    "disclaimer_agree": ("#disclaimer_agree",),
    "captcha": (
        ".component_smart_captcha",
        "#captcha",
        'img[alt*="captcha" i]',
        ".CaptchaContainer",
        'input[placeholder*="captcha" i]',
    ),
    # Before Join: the microphone goes on, the camera off.
    "preview_audio": ("#preview-audio-control-button",),
    "preview_video": ("#preview-video-control-button",),
    # In the call: any two of these (the footer auto-hides, so being laid out counts, not being visible).
    "in_call": (
        'button[aria-label="Leave"]',
        ".single-main-container__video-frame",
        "#audioOptionMenu",
        "button.join-audio-container__btn",
        ".footer-button__participants-icon",
    ),
    "leave_button": ('button[aria-label="Leave"]', "button.footer__leave-btn"),
    "leave_confirm": ("button.leave-meeting-options__btn--danger",),
    "audio_button": ("button.join-audio-container__btn", "#audioOptionMenu button"),
    "participants": (
        ".footer-button__participants-icon .footer-button__number-counter",
        'button[aria-label*="participants list pane" i]',
    ),
    "end_modal": (".zm-modal .zm-modal-body-title", 'div[aria-label="Meeting is end now"]'),
    "end_now": ('[aria-label="Meeting is end now" i]',),  # its only text may be its OK button
}

# Buttons and links, matched on their whole visible text (folded: see `ui.fold`).
BUTTONS: dict[str, tuple[str, ...]] = {
    "launch_browser": ("Join from browser", "Join from your browser", "join from your browser"),
    "permission_allow": ("Allow",),
    "permission_skip": ("Continue without microphone and camera",),
    "computer_audio": ("Join Audio by Computer", "Join with Computer Audio"),
    "leave_confirm": ("Leave Meeting",),
    "end_ok": ("OK",),
    "terms_accept": ("I Agree", "Agree", "Accept", "Agree and Continue", "Continue"),
    "dismiss": ("Got it", "Dismiss", "Not now", "Maybe later"),
}

# Texts anywhere in the page (substring, folded).
TEXTS: dict[str, tuple[str, ...]] = {
    "bot_wall": ("We detected you may be a bot", "Automated bots aren't allowed"),
    "captcha": ("Type the characters you see", "Please complete the captcha"),
    "sign_in": (
        "sign in to join this meeting",
        "only authenticated users can join",
        "This meeting is for authorized attendees only",
    ),
    "passcode_wrong": ("Passcode wrong", "Wrong passcode", "Incorrect meeting passcode"),
    "host_absent": ("This meeting link is invalid (3,001)", "(3,001)"),
    "not_found": ("Invalid meeting ID", "This meeting ID is not valid", "Meeting does not exist"),
    "removed": ("You have been removed", "You've been removed", "removed you from the meeting"),
    "host_ended": ("This meeting has been ended by host", "The meeting has been ended by the host"),
    "call_ended": ("Meeting is end now", "This meeting has ended", "The meeting has ended"),
    "host_wait": (
        "Waiting for the host to start this meeting",
        "Waiting for the host to start the meeting",
        "The meeting has not started",
    ),
    "waiting_room": (
        "Please wait, the meeting host will let you in soon",
        "Host has joined. We've let them know you're here",
        "You are in the waiting room",
    ),
    "joining": ("Joining Meeting", "Connecting to audio"),
    "launch": ("Launch Meeting", "Click Open Zoom Meetings on the dialog shown by your browser"),
    "permission": ("allow zoom to use your", "use your microphone and camera", "use your microphone"),
}

# Zoom's own readings, added to the common page script (`ui.page_script`); run in each frame.
_READINGS = """
  out.clientFrame = !!document.querySelector("iframe#webclient");
  const join = first("join_button");
  out.joinEnabled = !!join && !join.disabled && !join.classList.contains("disabled")
    && join.getAttribute("aria-disabled") !== "true";
  const name = first("name_input");
  out.nameValue = name ? name.value : null;
  const pwd = first("passcode_input");
  out.passcodeValue = pwd ? pwd.value : null;
  // The terms are a checkbox that stays on screen once ticked (a disclaimer button goes away instead).
  const terms = first("terms_agree");
  out.termsAgreed = terms ? (terms.type === "checkbox" ? terms.checked : false) : null;
  out.participants = null;
  for (const s of sel.participants) {
    const el = document.querySelector(s);
    if (!el) continue;
    const m = ((el.textContent || "") + " " + (el.getAttribute("aria-label") || "")).match(/\\d+/);
    if (m) { out.participants = parseInt(m[0], 10); break; }
  }
  const audio = sel.audio_button.map((s) => document.querySelector(s)).find((el) => el) || null;
  out.audioLabel = audio ? (audio.getAttribute("aria-label") || fold(audio.innerText)) : null;
  // The microphone's state from several cues, because no one of them is stable: the label's words
  // ("unmute my microphone", "Unmute"), the words under the button, and the icon's or a state class
  // ("SvgAudioMuted"). aria-label="audio" (seen 2026-09) says nothing by itself.
  out.audioState = null;
  out.audioCues = null;
  if (audio) {
    const notMic = /\\b(mute|unmute) (all|everyone|participants?)\\b|ask (all )?to unmute/;
    const words = (text) => {
      const w = fold(text);
      if (!w || notMic.test(w)) return null;
      if (/\\b(join|connect)( to)? (computer )?audio\\b/.test(w)) return "join";
      if (/\\bunmute\\b/.test(w)) return "muted";
      if (/\\bmute\\b/.test(w)) return "unmuted";
      return null;
    };
    const classes = [audio, ...audio.querySelectorAll("*")]
      .map((el) => el.getAttribute("class") || "").join(" ").toLowerCase();
    const icon = /joinaudio|headset/.test(classes) ? "join" : /unmuted/.test(classes) ? "unmuted"
      : /muted/.test(classes) ? "muted" : null;
    const cues = {label: words(audio.getAttribute("aria-label")), text: words(audio.innerText || ""),
                  icon, pressed: audio.getAttribute("aria-pressed")};
    out.audioCues = cues;
    out.audioState = cues.label || cues.text || cues.icon || "unknown";
  }
  const previewAudio = first("preview_audio");
  out.previewAudioOn = previewAudio
    ? !/\\bunmute\\b/.test(fold(previewAudio.getAttribute("aria-label") || previewAudio.innerText)) : null;
  const previewVideo = first("preview_video");
  out.previewVideoOn = previewVideo
    ? /\\bstop video\\b/.test(fold(previewVideo.getAttribute("aria-label") || previewVideo.innerText)) : null;
  const termsBox = first("terms_checkbox");
  out.termsChecked = termsBox ? !!termsBox.checked : null;
  // A blank layer over the middle of the page with no content of its own: the host of a closed shadow
  // root (Zoom's anti-bot modal hides there), or a mask. The adapter looks inside (closed roots are
  // reachable only through the browser's DevTools protocol).
  out.cover = null;
  const mid = document.elementFromPoint(innerWidth / 2, innerHeight / 2);
  const blank = ["IFRAME", "CANVAS", "VIDEO", "IMG", "INPUT", "TEXTAREA", "SELECT", "BUTTON", "HTML", "BODY"];
  if (mid && !blank.includes(mid.tagName) && !mid.shadowRoot && mid.childElementCount === 0
      && !(mid.textContent || "").trim()) {
    const r = mid.getBoundingClientRect();
    if (r.width * r.height >= 0.5 * innerWidth * innerHeight) {
      const cls = (mid.getAttribute("class") || "").trim().split(/\\s+/).filter(Boolean).slice(0, 3);
      out.cover = "<" + mid.tagName.toLowerCase() + (mid.id ? "#" + mid.id : "")
        + cls.map((c) => "." + c).join("") + ">";
    }
  }
"""


class Screen(StrEnum):
    """What the page shows now, in the order `classify` checks."""

    NETWORK_ERROR = "network_error"  # Chromium's own error page: Zoom could not be reached
    SHADOW_WALL = "shadow_wall"  # the anti-bot modal inside a closed shadow root (adapter-confirmed)
    BOT_WALL = "bot_wall"
    CAPTCHA = "captcha"
    SIGN_IN = "sign_in"
    PASSCODE_WRONG = "passcode_wrong"
    NOT_FOUND = "not_found"
    HOST_ABSENT = "host_absent"  # "This meeting link is invalid (3,001)": the host has not started
    REMOVED = "removed"
    HOST_ENDED = "host_ended"
    CALL_ENDED = "call_ended"
    WAITING_ROOM = "waiting_room"
    HOST_WAIT = "host_wait"  # a page that waits for the host to start, then lets the bot in
    IN_CALL = "in_call"
    COOKIES = "cookies"
    PERMISSION = "permission"
    TERMS = "terms"  # a terms/consent dialog (over a mask) to accept before anything else
    LAUNCH = "launch"
    PREVIEW = "preview"  # the name/passcode/join page
    JOINING = "joining"  # "Joining Meeting…": a spinner, not admission
    UNKNOWN = "unknown"


@dataclass
class Snapshot(PageSnapshot):
    """The merged reading of the page's frames (the client may run inside `iframe#webclient`)."""

    passcode_value: str | None = None
    terms_agreed: bool | None = None  # None: no terms shown
    audio_label: str | None = None
    audio_state: str | None = None  # "join", "muted", "unmuted", "unknown"; None: no audio button
    audio_cues: dict[str, object] | None = None  # what each cue said (for logs)
    preview_audio_on: bool | None = None  # the preview's microphone toggle; None: not shown
    preview_video_on: bool | None = None
    terms_checked: bool | None = None
    cover: str | None = None  # a blank layer over the page's middle (see _READINGS)
    shadow_wall: str | None = None  # set by the adapter: the cover hosts a closed shadow root saying this

    def merge(self, raw: dict[str, object], frame: int) -> None:
        """Folds one frame's reading in; for values the first frame that has one wins."""
        super().merge(raw, frame)
        if raw.get("nameValue") is not None and self.name_value is None:
            self.name_value = str(raw["nameValue"])
            self.join_enabled = bool(raw.get("joinEnabled"))
        elif raw.get("joinEnabled"):
            self.join_enabled = True
        if raw.get("passcodeValue") is not None and self.passcode_value is None:
            self.passcode_value = str(raw["passcodeValue"])
        if raw.get("termsAgreed") is not None and self.terms_agreed is None:
            self.terms_agreed = bool(raw["termsAgreed"])
        if raw.get("audioLabel") is not None and self.audio_label is None:
            self.audio_label = str(raw["audioLabel"])
        if raw.get("audioState") is not None and self.audio_state is None:
            self.audio_state = str(raw["audioState"])
            cues = raw.get("audioCues")
            self.audio_cues = {str(k): v for k, v in cues.items()} if isinstance(cues, dict) else None
        self.merge_firsts(
            raw,
            {
                "previewAudioOn": "preview_audio_on",
                "previewVideoOn": "preview_video_on",
                "termsChecked": "terms_checked",
            },
        )
        if raw.get("cover") and self.cover is None:
            self.cover = str(raw["cover"])


# Refusals, then the ends: checked in this order.
_SAID = said_screens(
    Screen, "sign_in", "passcode_wrong", "host_absent", "not_found", "removed", "host_ended", "call_ended"
)


def classify(snap: Snapshot) -> Screen:
    """One screen for the merged snapshot. Terminal failures first, then ends, lobby, call, then the
    pre-join steps; the waiting room wins over call signals so the lobby is never taken for the call."""
    t = snap.texts
    if snap.net_error:
        return Screen.NETWORK_ERROR
    if snap.shadow_wall:
        return Screen.SHADOW_WALL
    if "bot_wall" in t:
        return Screen.BOT_WALL
    if snap.visible.get("captcha") or "captcha" in t or snap.recaptcha:
        return Screen.CAPTCHA
    if (refused := said(t, _SAID)) is not None:
        return refused
    if snap.present.get("end_now"):
        return Screen.CALL_ENDED
    if "waiting_room" in t:
        return Screen.WAITING_ROOM
    if "host_wait" in t:
        return Screen.HOST_WAIT
    if snap.in_call_signals >= 2:
        return Screen.IN_CALL
    if snap.visible.get("cookie_accept"):
        return Screen.COOKIES
    if snap.buttons.get("permission_allow") or snap.buttons.get("permission_skip"):
        return Screen.PERMISSION
    if snap.visible.get("terms_dialog"):
        return Screen.TERMS
    if snap.buttons.get("launch_browser"):
        return Screen.LAUNCH
    if (
        snap.visible.get("name_input")
        or snap.visible.get("join_button")
        or snap.visible.get("passcode_input")
    ):
        return Screen.PREVIEW
    if "joining" in t:
        return Screen.JOINING
    return Screen.UNKNOWN


UI = PlatformUi(SELECTORS, BUTTONS, TEXTS, _READINGS, Snapshot, classify, client_frame="iframe#webclient")
