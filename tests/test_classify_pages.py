"""The classifiers over saved pages (tests/fixtures/pages): every file reads as the screen its name says.

The replicas' screens are saved by `scripts/save-replica-pages`; real pages users send join them (see the
folder's README). One headless Chromium reads them all, offline, as `meeting-bot classify-page` does.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bot.commands.classify_page import Document, PageReader, ui_module

pytestmark = [pytest.mark.browser]

PAGES = Path(__file__).parent / "fixtures" / "pages"
FIXTURES = sorted(p for p in PAGES.glob("*/*.html") if ".frame" not in p.name)


def frames_of(page: Path) -> list[Path]:
    return sorted(page.parent.glob(f"{page.stem}.frame*.html"))


def test_every_fixture_names_a_screen_of_its_platform() -> None:
    assert len(FIXTURES) >= 40
    for page in FIXTURES:
        screen = page.name.split("--")[0]
        assert screen in {s.value for s in ui_module(page.parent.name).Screen}, page.name
        assert Document.read(page).url, f"{page.name} has no <!-- URL --> first line"


async def test_every_saved_page_reads_as_the_screen_its_name_says() -> None:
    """One browser for all pages (a browser per page would cost a second each); every mismatch listed."""
    wrong = []
    async with PageReader() as reader:
        for page in FIXTURES:
            documents = [Document.read(f) for f in (page, *frames_of(page))]
            reading = await reader.read(page.parent.name, documents)
            expected = page.name.split("--")[0]
            if reading.screen != expected:
                snap = reading.summary()
                seen = {k: snap[k] for k in ("texts", "buttons", "title", "url")}
                name = f"{page.parent.name}/{page.name}"
                wrong.append(f"{name}: read as {reading.screen}, not {expected} ({seen})")
    assert not wrong, "\n".join(wrong)


async def test_zoom_microphone_state_comes_from_more_than_one_cue() -> None:
    """The in-call audio button in its three forms, microphone on: "mute my microphone", "Mute", and
    aria-label="audio" (only the icon and the word under the button tell)."""
    async with PageReader() as reader:
        for labels, decided_by in (("sentence", "label"), ("short", "label"), ("audio", "text")):
            page = PAGES / "zoom" / f"in_call--audio-labels-{labels}.html"
            snap = (await reader.read("zoom", [Document.read(page)])).snapshot
            assert snap.audio_state == "unmuted", (labels, snap.audio_cues)
            assert snap.audio_cues[decided_by] == "unmuted" and snap.audio_cues["icon"] == "unmuted"
            assert (snap.audio_cues["label"] is None) is (labels == "audio")


def test_classify_page_command_prints_the_screen(tmp_path: Path) -> None:
    page = PAGES / "zoom" / "in_call--inside-the-pwa-frame.html"
    out = subprocess.run(
        [sys.executable, "-m", "bot", "classify-page", "zoom", str(page), *map(str, frames_of(page))],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert out.splitlines()[0] == "zoom: in_call", out
    missing = subprocess.run(
        [sys.executable, "-m", "bot", "classify-page", "meet", str(tmp_path / "nope.html")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 2 and "no such file" in missing.stderr
