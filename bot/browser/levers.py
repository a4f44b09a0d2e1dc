"""Browser levers: what the bot's Chromium leaves undone because the bot never looks at video.

Measured with `scripts/bench-levers`: two bot browsers in one replica call with 4 cameras (640x360, 24 fps),
one with a lever and one without, through the same seconds of the same machine load; a lever is kept when it
saves >= 2 points of a core (docs/benchmarks.md "Browser levers" has the figures and why each should hold
on the real pages). `browser.lean = false` turns the kept ones off.

Kept: **remote video is not drawn.** Every `<video>` element of the bot's pages is `display: none`, by a
style sheet the browser adds to each document from a world of its own (the DevTools protocol's
`Page.addScriptToEvaluateOnNewDocument` with a `worldName`: the page's scripts share no object with it; what
they can see is one `<style>` element and video elements without a layout box). Chromium still receives and
decodes every camera (the platform sees a subscriber like any other), but no longer turns the decoded frames
into compositor resources in the page's renderer nor draws them in its GPU process: 8.9 points of a core
with four 640x360 cameras at 24 fps (quiet machine; 7.0 under load). Why it holds on the real pages:
- it needs nothing of the page but `<video>` elements, which is how Meet and Zoom's web client show cameras
  (Zoom clients that paint cameras on a `<canvas>` are not helped, and not harmed);
- the sound is untouched: a media element with no layout box keeps playing its audio (pausing the elements,
  measured too, would silence any that carries sound, so it is not offered), and the meetings play their
  audio through `<audio>` elements or Web Audio anyway;
- the bot's presence is untouched: its own camera stays off, its microphone, name and participation are
  what they were; a client that sizes its subscriptions to its visible tiles (Meet, Zoom) may only ask for
  less video, which costs the bot less still.

Kept: **no page for what the bot never uses.** The address bar's suggestion popups are not preloaded as
WebUI pages (a renderer of 45-75 MB PSS the bot never shows; CPU unchanged within the noise). Not visible
to a page: the address bar is not part of any.

Kept, for memory: **no spare renderer.** After each navigation Chromium starts an idle renderer for the
next site the tab may open (`SpareRendererForSitePerProcess`), 16-20 MB PSS for the whole call: the bot
opens one site and stays. Without it, a navigation to a new site starts its renderer then (Meet's sign-in
redirects, once, before the call). Not visible to a page: it is a process no page runs in.

Kept, for memory: **a small young generation in Playwright's driver** (node, `--max-semi-space-size=1`:
-12 MB PSS at start, -23.5 MB in a call; no CPU seen: it relays a few DevTools messages a second). The
driver takes its options only from the environment of the process that starts it, so
`lean_driver_environ` sets them in the bot's own (`join`, before any browser starts); a user's own
NODE_OPTIONS come after ours and win.

Measured and not kept (docs/benchmarks.md): `--in-process-gpu`, `--disable-gpu`, `--disable-gpu-compositing`
(this Chromium already composites in software), `--disable-gpu-rasterization`, a smaller screen; the network
service in the browser process (-22 MB, but +0.8 points of a core); the audio service in the browser process
(-21 MB, but when PulseAudio dies in a call the bot ends that process so that Chromium starts a new one on
the new daemon, bot/browser/audio_rebind.py: inside the browser it would keep its dead connection).

Chromium honours only the last `--disable-features` (and `--enable-features`) switch, and Playwright passes
its own: `feature_switches()` merges Playwright's lists (read from its driver, checked by
`tests/test_browser_levers.py`), the levers' features and the user's `browser.extra_args` into one switch
each.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import MutableMapping, Sequence
from pathlib import Path

import playwright
from playwright.async_api import CDPSession, Page

log = logging.getLogger(__name__)

WORLD = "meeting-bot-lean"
HIDDEN_VIDEO_CSS = "video { display: none !important; }"

# Runs at the start of every document of the page (frames included), before the page's own scripts: the
# style goes into <head> (or <html> before there is a head) as soon as there is a document element.
_HIDE_VIDEO_JS = f"""
(() => {{
  const style = document.createElement("style");
  style.textContent = {HIDDEN_VIDEO_CSS!r};
  const place = () => {{
    const root = document.head || document.documentElement;
    if (root && !style.isConnected) root.appendChild(style);
    return !!root;
  }};
  if (!place()) {{
    const watch = new MutationObserver(() => {{ if (place()) watch.disconnect(); }});
    watch.observe(document, {{ childList: true, subtree: true }});
  }}
  document.addEventListener("DOMContentLoaded", place);
}})();
"""


async def hide_remote_video(page: Page) -> CDPSession:
    """Installs the hidden-video style for every document `page` loads from now on. Returns the DevTools
    session that holds it: the script lives as long as that session (keep it; closing the browser ends it)."""
    cdp = await page.context.new_cdp_session(page)
    await cdp.send("Page.enable")  # without it the script is registered but never runs (Chromium 156)
    await cdp.send("Page.addScriptToEvaluateOnNewDocument", {"source": _HIDE_VIDEO_JS, "worldName": WORLD})
    log.debug("remote video hidden in %s", page.url)
    return cdp


# Features the levers turn off (see the module's docstring).
LEAN_DISABLED_FEATURES = ("WebUIOmniboxPopup", "WebUIOmniboxAimPopup", "SpareRendererForSitePerProcess")
# Options for Playwright's driver (see the module's docstring).
LEAN_NODE_OPTIONS = "--max-semi-space-size=1"


def lean_driver_environ(environ: MutableMapping[str, str]) -> None:
    """Gives the Playwright driver started from this process later the lean node options (in front of the
    user's own, which win)."""
    own = environ.get("NODE_OPTIONS", "")
    if LEAN_NODE_OPTIONS not in own.split():
        environ["NODE_OPTIONS"] = f"{LEAN_NODE_OPTIONS} {own}".strip()


_DISABLE, _ENABLE = "--disable-features=", "--enable-features="


@functools.cache
def playwright_features() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The features Playwright's driver disables and enables on every Chromium it launches (from its
    `chromiumSwitches.ts`, bundled in the driver). Empty lists when the bundle no longer has that shape:
    then the bot passes no feature switch of its own rather than replace Playwright's (see
    `feature_switches`)."""
    bundle = Path(playwright.__file__).parent / "driver" / "package" / "lib" / "coreBundle.js"
    try:
        text = bundle.read_text(encoding="utf-8")
    except OSError:
        return (), ()
    lists = []
    for pattern in (r"\bdisabledFeatures = \[(.*?)\]", r"\benabledFeatures = \(\) => \[(.*?)\]"):
        found = re.search(pattern, text, re.S)
        code = re.sub(r"//[^\n]*", "", found.group(1)) if found else ""
        lists.append(tuple(re.findall(r'"([A-Za-z0-9_]+)"', code)))
    return lists[0], lists[1]


def feature_switches(args: Sequence[str], lean: bool) -> list[str]:
    """`args` with every `--disable-features`/`--enable-features` switch merged into one of each that also
    carries Playwright's own features and, when `lean`, the levers' (Chromium keeps only the last one)."""
    disabled, enabled = playwright_features()
    if not disabled:  # Playwright's list unknown: passing ours would silently drop it
        log.warning("Playwright's Chromium features not found in its driver: no feature switch of ours")
        return list(args)
    merged: dict[str, list[str]] = {_DISABLE: list(disabled), _ENABLE: list(enabled)}
    if lean:
        merged[_DISABLE] += LEAN_DISABLED_FEATURES
    rest = []
    for arg in args:
        prefix = next((p for p in merged if arg.startswith(p)), None)
        if prefix is None:
            rest.append(arg)
        else:
            merged[prefix] += [f for f in arg[len(prefix) :].split(",") if f]
    switches = [prefix + ",".join(dict.fromkeys(names)) for prefix, names in merged.items() if names]
    return [*rest, *switches]
