"""`meeting-bot classify-page meet|zoom|teams FILE.html [FRAME.html …]`: which screen the bot reads a saved
page as.

The files are what a failure saves (`bot.artifacts_dir`): the page's HTML, and one `*.frameN.html` per
frame, each starting with a `<!-- URL -->` comment. They are loaded into a headless Chromium with page
scripts off and no network (each document is served from its file at its own URL, so a client inside
`iframe#webclient` loads into its frame as it did live), read with the platform's own page script, and
classified with its pure `classify()`: the same reading the bot made when it gave up.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import re
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

PLATFORM_NAMES = ("meet", "zoom", "teams")
_URL_COMMENT = re.compile(r"\A\s*<!--\s*(\S+)\s*-->")


HELP = "say which screen the bot reads a saved page (a failure's HTML) as"
DESCRIPTION = (
    "Classify saved page HTML the way the bot classifies a live page. Pass the page's HTML "
    "and, for a client inside a frame, its .frameN.html files too. Offline: no script of the page runs "
    "and nothing is fetched."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("platform", choices=PLATFORM_NAMES)
    p.add_argument("files", nargs="+", type=Path, metavar="FILE.html", help="the page, then its frames")
    p.add_argument("--json", action="store_true", help="print the screen and the whole reading as JSON")


@dataclass(frozen=True)
class Document:
    """One saved document: where it was (from its first-line comment, if any) and its HTML."""

    url: str
    html: str

    @classmethod
    def read(cls, path: Path) -> Document:
        html = path.read_text(encoding="utf-8", errors="replace")
        found = _URL_COMMENT.match(html)
        return cls(found.group(1) if found else "", html)


@dataclass(frozen=True)
class Reading:
    screen: str
    snapshot: Any  # the platform's Snapshot

    def summary(self) -> dict[str, Any]:
        snap = asdict(self.snapshot)
        snap["texts"] = sorted(snap.get("texts", ()))
        return {"screen": self.screen, **snap}


def ui_module(platform: str) -> ModuleType:
    """The platform's `*_ui` module: its `UI` (page script, snapshot, classify) and its `Screen`s."""
    if platform not in PLATFORM_NAMES:
        raise ValueError(f"unknown platform {platform!r}")
    return importlib.import_module(f"bot.platforms.{platform}_ui")


class PageReader:
    """A headless Chromium that reads saved pages offline. Use `async with PageReader() as reader`."""

    def __init__(self, executable_path: str | None = None) -> None:
        self.executable_path = executable_path
        self._stack = contextlib.AsyncExitStack()
        self._browser: Any = None

    async def __aenter__(self) -> PageReader:
        from playwright.async_api import async_playwright

        pw = await self._stack.enter_async_context(async_playwright())
        if self.executable_path is None:
            from bot.settings import BrowserSection

            self.executable_path = BrowserSection().executable_path or None
        self._browser = await pw.chromium.launch(executable_path=self.executable_path, args=["--lang=en-US"])
        self._stack.push_async_callback(self._browser.close)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    async def read(self, platform: str, documents: list[Document]) -> Reading:
        ui = ui_module(platform).UI
        context = await self._browser.new_context(
            java_script_enabled=False, locale="en-US", viewport={"width": 1280, "height": 720}
        )
        try:
            page = await context.new_page()
            served = {d.url: d.html for d in documents if d.url.startswith(("http://", "https://"))}

            async def serve(route: Any) -> None:
                html = served.get(route.request.url)
                if html is None:
                    await route.abort()  # nothing leaves the machine
                else:
                    await route.fulfill(status=200, content_type="text/html; charset=utf-8", body=html)

            await page.route("**/*", serve)
            main = documents[0]
            if main.url in served:
                await page.goto(main.url, wait_until="load", timeout=15000)
            else:  # a browser page (chrome-error://, about:blank) or a file without its URL
                await page.set_content(main.html, wait_until="load", timeout=15000)
            snap = ui.snapshot()
            for index, frame in enumerate(_frames(page)):
                raw = await frame.evaluate(ui.script, ui.script_arg)
                if index == 0 and main.url and isinstance(raw, dict):
                    raw["url"] = main.url  # where the page was, not where it was reloaded from
                snap.merge(raw if isinstance(raw, dict) else {}, index)
            return Reading(ui.classify(snap).value, snap)
        finally:
            await context.close()


def _frames(page: Any) -> list[Any]:
    """The main frame, then the frames that were served a saved document (not aborted widgets)."""
    return [page.main_frame, *(f for f in page.main_frame.child_frames if f.url.startswith("http"))]


async def classify_files(platform: str, files: list[Path]) -> Reading:
    async with PageReader() as reader:
        return await reader.read(platform, [Document.read(f) for f in files])


def run(args: argparse.Namespace) -> int:
    missing = [str(f) for f in args.files if not f.is_file()]
    if missing:
        print(f"meeting-bot classify-page: no such file: {', '.join(missing)}", file=sys.stderr)
        return 2
    reading = asyncio.run(classify_files(args.platform, args.files))
    if args.json:
        print(json.dumps(reading.summary(), sort_keys=True))
        return 0
    snap = reading.snapshot
    print(f"{args.platform}: {reading.screen}")
    print(f"  title: {snap.title!r}  url: {snap.url or '?'}")
    print(f"  texts: {', '.join(sorted(snap.texts)) or '-'}")
    print(f"  visible: {', '.join(sorted(k for k, v in snap.visible.items() if v)) or '-'}")
    print(f"  known buttons: {', '.join(sorted(k for k, v in snap.buttons.items() if v)) or '-'}")
    print(f"  the page's buttons: {snap.buttons_said()}")
    return 0
