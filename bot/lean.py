"""Browser levers: what the bot's Chromium leaves undone because the bot never looks at video.

Measured with `scripts/bench-levers`: two bot browsers in one replica call with 4 cameras (640x360, 24 fps),
one with a lever and one without, through the same seconds of the same machine load; a lever is kept when it
saves >= 2 points of a core (README "Browser levers" has the figures and why each should hold on the real
pages). `browser.lean = false` turns the kept ones off.

Kept: **remote video is not drawn.** Every `<video>` element of the bot's pages is `display: none`, by a
style sheet the browser adds to each document from a world of its own (the DevTools protocol's
`Page.addScriptToEvaluateOnNewDocument` with a `worldName`: the page's scripts share no object with it; what
they can see is one `<style>` element and video elements without a layout box). Chromium still receives and
decodes every camera (the platform sees a subscriber like any other), but no longer turns the decoded frames
into compositor resources in the page's renderer nor draws them in its GPU process: about 0.06 points of a
core per decoded frame per second, 4-5 points with four cameras at the rates this loaded machine delivered
them. Why it holds on the real pages:
- it needs nothing of the page but `<video>` elements, which is how Meet and Zoom's web client show cameras
  (Zoom clients that paint cameras on a `<canvas>` are not helped, and not harmed);
- the sound is untouched: a media element with no layout box keeps playing its audio (pausing the elements,
  measured too, would silence any that carries sound, so it is not offered), and the meetings play their
  audio through `<audio>` elements or Web Audio anyway;
- the bot's presence is untouched: its own camera stays off, its microphone, name and participation are
  what they were; a client that sizes its subscriptions to its visible tiles (Meet, Zoom) may only ask for
  less video, which costs the bot less still.
Measured and not kept (README): `--in-process-gpu`, `--disable-gpu`, `--disable-gpu-compositing` (this
Chromium already composites in software), `--disable-gpu-rasterization`, a smaller screen.
"""

from __future__ import annotations

import logging

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
