"""What reading a meeting page means on every platform: one text folding, one page script, one snapshot.

Each platform's `*_ui` module lists its selectors, button labels and page texts as data and adds the few
readings only it needs, all in one `PlatformUi`; this module holds the rest, so the platforms cannot
drift. Texts are compared folded: case-insensitive, typographic apostrophes (U+2018, U+2019) read as "'",
runs of whitespace as one space (both clients write "Don't" with either apostrophe, depending on the build).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Generic, Self, TypeVar

_APOSTROPHES = "\u2018\u2019"


def fold(text: str) -> str:
    """The page script's `fold`, in Python: how page texts and button labels are compared."""
    for quote in _APOSTROPHES:
        text = text.replace(quote, "'")
    return " ".join(text.split()).lower()


def exact_text(texts: tuple[str, ...]) -> re.Pattern[str]:
    """A pattern matching an element whose whole text is one of `texts`, as `fold` compares them (for
    Playwright's has_text)."""

    def one(text: str) -> str:
        words = (re.escape(w).replace("'", f"['{_APOSTROPHES}]") for w in text.split())
        return r"\s+".join(words)

    return re.compile(r"^\s*(" + "|".join(one(t) for t in texts) + r")\s*$", re.IGNORECASE)


def signal_selectors(
    selectors: dict[str, tuple[str, ...]], key: str = "in_call"
) -> dict[str, tuple[str, ...]]:
    """`selectors` plus one key per candidate of `key` (`in_call:0`, `in_call:1`, …), so a snapshot counts
    distinct signals rather than elements."""
    return {**selectors, **{f"{key}:{i}": (s,) for i, s in enumerate(selectors[key])}}


# The common part of every page script. It is called with [selectors, buttons, texts] and returns plain
# JSON; a platform's script adds its own readings to `out` where PLATFORM_READINGS stands.
_SCRIPT = """
([sel, buttons, texts]) => {
  const fold = (s) => (s || "").replace(/[\\u2018\\u2019]/g, "'").replace(/\\s+/g, " ").trim().toLowerCase();
  // "rendered": laid out (an auto-hidden control bar still is); "shown": also not hidden or transparent.
  const rendered = (el) => !!el && el.getClientRects().length > 0;
  const shown = (el) => rendered(el) && getComputedStyle(el).visibility !== "hidden"
    && Number(getComputedStyle(el).opacity) > 0;
  const body = fold(document.body ? document.body.innerText : "");
  const clickable = Array.from(document.querySelectorAll("button, a, [role=button]")).filter(shown);
  const label = (el) => fold(el.innerText || el.textContent);
  const first = (key) => sel[key].map((s) => document.querySelector(s)).find((el) => shown(el)) || null;
  const out = {title: document.title, url: location.href, present: {}, visible: {}, buttons: {}, texts: []};
  for (const [key, list] of Object.entries(sel)) {
    const els = list.flatMap((s) => Array.from(document.querySelectorAll(s)));
    out.present[key] = els.filter(rendered).length;
    out.visible[key] = els.some(shown);
  }
  for (const [key, list] of Object.entries(buttons)) {
    const want = list.map(fold);
    out.buttons[key] = clickable.some((el) => want.includes(label(el)));
  }
  for (const [key, list] of Object.entries(texts)) {
    if (list.some((t) => body.includes(fold(t)))) out.texts.push(key);
  }
  // Which known buttons are on top where a click lands (not under a scrim): a popup outside any
  // [role=dialog] is clicked away wherever it is.
  const onTop = (el) => {
    const r = el.getBoundingClientRect();
    const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
    return !!hit && (hit === el || el.contains(hit));
  };
  out.onTop = {};
  for (const [key, list] of Object.entries(buttons)) {
    const want = list.map(fold);
    out.onTop[key] = clickable.some((el) => want.includes(label(el)) && onTop(el));
  }
  // The visible buttons' own words, for a message when the page is one the bot does not know.
  out.buttonTexts = [...new Set(clickable.map((el) => (el.innerText || el.getAttribute("aria-label") || "")
    .replace(/\\s+/g, " ").trim().slice(0, 60)).filter(Boolean))].slice(0, 30);
  // Chromium's own error page (the platform's host could not be reached): its net::ERR_ code.
  const errorPage = location.protocol === "chrome-error:" || !!document.getElementById("main-frame-error");
  const errorText = errorPage && document.body ? document.body.innerText : "";
  const errorCode = errorText.match(/\\b(?:NET::)?ERR_[A-Z_]+\\b/);
  out.netError = errorPage ? (errorCode ? errorCode[0] : "ERR_UNKNOWN") : null;
  // Google's reCAPTCHA widget, big enough to be the thing asked of the user (both platforms embed it).
  out.recaptcha = Array.from(document.querySelectorAll('iframe[src*="recaptcha" i]')).some((f) => {
    const r = f.getBoundingClientRect();
    return shown(f) && r.width >= 120 && r.height >= 40;
  });
  PLATFORM_READINGS
  return out;
}
"""


def page_script(platform_readings: str) -> str:
    """The page script with a platform's own readings. They may use `sel`, `buttons`, `texts`, `fold`,
    `rendered`, `shown`, `clickable`, `label(el)`, `first(key)` (the first shown element of a selector key)
    and `out`."""
    return _SCRIPT.replace("PLATFORM_READINGS", platform_readings.strip())


@dataclass
class PageSnapshot:
    """What every platform reads of a page; `frame_of` says which frame first showed each visible element
    or button (key `button:<name>`), so an action goes to that frame."""

    title: str = ""
    url: str = ""
    present: dict[str, int] = field(default_factory=dict)  # laid out, per selector key
    visible: dict[str, bool] = field(default_factory=dict)  # only keys with a shown element
    buttons: dict[str, bool] = field(default_factory=dict)  # only keys with a shown button
    texts: set[str] = field(default_factory=set)
    frame_of: dict[str, int] = field(default_factory=dict)
    on_top: dict[str, bool] = field(default_factory=dict)  # a shown button of that key takes clicks
    button_texts: list[str] = field(default_factory=list)  # what the visible buttons say
    net_error: str | None = None  # Chromium's own error page is shown: its code (ERR_NAME_NOT_RESOLVED…)
    recaptcha: bool = False  # a visible reCAPTCHA iframe (at least 120 x 40 px)
    # Read by each platform's own readings.
    join_enabled: bool = False  # its Join button is shown and enabled
    name_value: str | None = None  # what its name field holds; None: no name field
    participants: int | None = None  # people in the call as the page counts them; None: no count

    @classmethod
    def parse(cls, raw: object) -> Self:
        """One frame's script result (anything else, e.g. mid-navigation, reads as an empty page)."""
        snap = cls()
        if isinstance(raw, dict):
            snap.merge(raw, 0)
        return snap

    def merge(self, raw: dict[str, object], frame: int) -> None:
        """Folds one frame's script result into this snapshot: counts add up, the first frame that shows
        something is where it is acted on. Platforms extend this for their own readings."""
        self.title = self.title or str(raw.get("title") or "")
        self.url = self.url or str(raw.get("url") or "")
        for key, count in _dict(raw.get("present")).items():
            if isinstance(count, int):
                self.present[key] = self.present.get(key, 0) + count
        for found, into, prefix in (
            ("visible", self.visible, ""),
            ("buttons", self.buttons, "button:"),
            ("onTop", self.on_top, "button:"),
        ):
            for key, seen in _dict(raw.get(found)).items():
                if seen:
                    into[key] = True
                    self.frame_of.setdefault(prefix + key, frame)
        texts = raw.get("texts")
        if isinstance(texts, list):
            self.texts.update(str(t) for t in texts)
        names = raw.get("buttonTexts")
        if isinstance(names, list):
            self.button_texts.extend(str(n) for n in names if str(n) not in self.button_texts)
        if raw.get("netError") and self.net_error is None:
            self.net_error = str(raw["netError"])
        self.recaptcha = self.recaptcha or bool(raw.get("recaptcha"))

    def merge_firsts(self, raw: dict[str, object], flags: Mapping[str, str]) -> None:
        """Readings the first frame that has one decides: the page's count of people, and `flags` (the
        script's key -> this snapshot's attribute), read as booleans."""
        participants = raw.get("participants")
        if isinstance(participants, int) and self.participants is None:
            self.participants = participants
        for key, attr in flags.items():
            if raw.get(key) is not None and getattr(self, attr) is None:
                setattr(self, attr, bool(raw[key]))

    def buttons_said(self, limit: int = 12) -> str:
        """The visible buttons' texts, quoted, for a message (`"Continue", "Try another way"`)."""
        shown = [f'"{t}"' for t in self.button_texts[:limit]]
        return ", ".join(shown) if shown else "none"

    def signals(self, key: str = "in_call") -> int:
        """How many distinct candidates of `key` are laid out (see `signal_selectors`)."""
        return sum(1 for k, n in self.present.items() if n and k.startswith(f"{key}:"))

    @property
    def in_call_signals(self) -> int:
        """Distinct call-only signals laid out on the page (the `in_call` selectors)."""
        return self.signals("in_call")


def _dict(value: object) -> dict[str, object]:
    return {str(k): v for k, v in value.items()} if isinstance(value, dict) else {}


S = TypeVar("S", bound=StrEnum)  # a platform's screens
T = TypeVar("T", bound=PageSnapshot)  # a platform's snapshot


def said_screens(screens: type[S], *keys: str) -> tuple[tuple[str, S], ...]:
    """(text key, screen) rows for screens named as their text key (`"removed"` -> `Screen.REMOVED`), in
    the order `classify` checks them."""
    return tuple((key, screens[key.upper()]) for key in keys)


def said(texts: set[str], rows: Iterable[tuple[str, S]]) -> S | None:
    """The screen of the first row whose text the page shows; None when it shows none of them."""
    return next((screen for key, screen in rows if key in texts), None)


@dataclass(frozen=True)
class PlatformUi(Generic[S, T]):
    """A platform's page as data: its selectors, buttons and texts, its own part of the page script, its
    snapshot type and `classify`. `client_frame` is the selector of a frame the client may run in (its
    script then sets `out.clientFrame` when the frame is there): that frame is read too."""

    selectors: dict[str, tuple[str, ...]]
    buttons: dict[str, tuple[str, ...]]
    texts: dict[str, tuple[str, ...]]
    readings: str
    snapshot: type[T]
    classify: Callable[[T], S]
    client_frame: str | None = None
    script: str = field(init=False)  # the whole page script
    script_arg: list[dict[str, tuple[str, ...]]] = field(init=False)  # what it is called with

    def __post_init__(self) -> None:
        object.__setattr__(self, "script", page_script(self.readings))
        object.__setattr__(self, "script_arg", [signal_selectors(self.selectors), self.buttons, self.texts])
