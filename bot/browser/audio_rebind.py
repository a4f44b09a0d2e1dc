"""The meeting page's audio after the bot's PulseAudio came back: Chromium rebound to the new daemon.

Measured here (Chromium 156, PulseAudio 16) when the daemon dies under a page in a call: the page's
microphone track ends (`readyState` "ended", for good), Web Audio contexts drop to "suspended", and
Chromium's audio service keeps its dead PulseAudio connection: even a new daemon at the same socket path
is not used, and a fresh `getUserMedia()` fails with NotFoundError. What brings the page back:

1. `restart_audio_service()`: end Chromium's audio service (the utility process with
   `--utility-sub-type=audio.mojom.AudioService`). The browser starts a new one on the next request, and
   that one connects to the server named by PULSE_SERVER: the new daemon at the same path.
2. `rebind_page()`: in every frame of the page, through the DevTools protocol (`Runtime.queryObjects`
   finds the page's own objects; nothing is installed in the page beforehand, so a platform sees nothing
   until this runs): each ended microphone track is replaced by a fresh one with the same constraints and
   mute state, in every RTCPeerConnection sender (`replaceTrack`, no renegotiation) and every MediaStream
   that held it (the page's own mute button keeps working); each media element playing a live stream
   reloads it (its output stream reopens); each suspended AudioContext resumes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playwright.async_api import CDPSession, Page
from playwright.async_api import Error as PlaywrightError

from bot.system.processes import descendants

log = logging.getLogger(__name__)

_AUDIO_SERVICE = b"--utility-sub-type=audio.mojom.AudioService"

# `this`: the RTCPeerConnections of one frame; then its MediaStreams, media elements and AudioContexts.
_REBIND_JS = """
async function (allStreams, allElements, allContexts) {
  // queryObjects also returns derived prototypes (HTMLAudioElement.prototype): keep instances only.
  const own = (xs) => xs.filter((x) => !Object.prototype.hasOwnProperty.call(x, "constructor"));
  const pcs = own(this), streams = own(allStreams), elements = own(allElements), contexts = own(allContexts);
  const done = { peerConnections: pcs.length, elements: elements.length, micReplaced: 0,
                 sendersUpdated: 0, streamsUpdated: 0, elementsReloaded: 0, contextsResumed: 0, errors: [] };
  const fresh = new Map();  // ended track -> its replacement
  async function replacement(old) {
    if (!fresh.has(old)) {
      const constraints = old.getConstraints();
      const got = await navigator.mediaDevices.getUserMedia({
        audio: Object.keys(constraints).length ? constraints : true,
      });
      const track = got.getAudioTracks()[0];
      track.enabled = old.enabled;
      fresh.set(old, track);
      done.micReplaced++;
    }
    return fresh.get(old);
  }
  const ended = (t) => t && t.kind === "audio" && t.readyState === "ended";
  for (const pc of pcs) {
    if (pc.connectionState === "closed") continue;
    for (const sender of pc.getSenders()) {
      if (!ended(sender.track)) continue;
      try {
        await sender.replaceTrack(await replacement(sender.track));
        done.sendersUpdated++;
      } catch (e) { done.errors.push("sender: " + e); }
    }
  }
  for (const stream of streams) {
    for (const old of stream.getAudioTracks()) {
      if (!ended(old) || old.label === "") continue;  // only local devices have labels worth keeping
      try {
        const track = await replacement(old);
        stream.removeTrack(old);
        stream.addTrack(track);
        done.streamsUpdated++;
      } catch (e) { done.errors.push("stream: " + e); }
    }
  }
  for (const el of elements) {
    // A call's remote audio: a media element playing a stream with live audio (paused by the failure).
    const src = el.srcObject;
    if (!(src instanceof MediaStream) || !src.getAudioTracks().some((t) => t.readyState === "live")) continue;
    try {
      const source = el.srcObject;
      el.srcObject = null;
      el.srcObject = source;
      await el.play();
      done.elementsReloaded++;
    } catch (e) { done.errors.push("element: " + e); }
  }
  for (const ctx of contexts) {
    if (ctx.state !== "suspended") continue;
    try { await ctx.resume(); done.contextsResumed++; } catch (e) { done.errors.push("context: " + e); }
  }
  return done;
}
"""

_PROTOTYPES = ("RTCPeerConnection", "MediaStream", "HTMLMediaElement", "AudioContext")


@dataclass
class RebindReport:
    """What `rebind_page()` changed, summed over the page's frames."""

    frames: int = 0
    peer_connections: int = 0
    mic_replaced: int = 0
    senders_updated: int = 0
    streams_updated: int = 0
    elements_reloaded: int = 0
    contexts_resumed: int = 0
    errors: list[str] = field(default_factory=list)

    def describe(self) -> str:
        parts = [
            f"{self.peer_connections} peer connection(s) in {self.frames} frame(s)",
            f"{self.mic_replaced} microphone track(s) replaced in {self.senders_updated} sender(s)",
            f"{self.elements_reloaded} media element(s) reloaded",
            f"{self.contexts_resumed} audio context(s) resumed",
        ]
        if self.errors:
            parts.append(f"errors: {'; '.join(self.errors[:3])}")
        return ", ".join(parts)


def restart_audio_service(browser_pid: int | None) -> list[int]:
    """Ends Chromium's audio service process(es) under `browser_pid`; returns their pids. The browser
    starts a new one (with a fresh PulseAudio connection) on the next audio request."""
    if browser_pid is None:
        return []
    ended = []
    for pid in descendants(browser_pid):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if _AUDIO_SERVICE in cmdline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                ended.append(pid)
    if ended:
        log.info("ended chromium's audio service %s: it restarts on the new PulseAudio", ended)
    return ended


async def rebind_page(page: Page) -> RebindReport:
    """Re-acquires the microphone and restarts the audio output of every frame of `page` (see above)."""
    report = RebindReport()
    cdp = await page.context.new_cdp_session(page)
    contexts: list[int] = []

    def created(event: dict[str, Any]) -> None:
        aux = event.get("context", {}).get("auxData", {})
        if aux.get("isDefault") and aux.get("type", "default") == "default":
            contexts.append(int(event["context"]["id"]))

    cdp.on("Runtime.executionContextCreated", created)
    try:
        await cdp.send("Runtime.enable")  # reports every existing context before it returns
        for context_id in contexts:
            try:
                done = await _rebind_context(cdp, context_id)
            except PlaywrightError as e:  # a frame navigated away meanwhile: nothing to rebind there
                log.debug("rebinding frame context %s: %s", context_id, e)
                continue
            log.debug("frame context %s: %s", context_id, done)
            report.frames += 1
            report.peer_connections += int(done.get("peerConnections", 0))
            report.mic_replaced += int(done.get("micReplaced", 0))
            report.senders_updated += int(done.get("sendersUpdated", 0))
            report.streams_updated += int(done.get("streamsUpdated", 0))
            report.elements_reloaded += int(done.get("elementsReloaded", 0))
            report.contexts_resumed += int(done.get("contextsResumed", 0))
            report.errors += [str(e) for e in done.get("errors", [])]
    finally:
        with contextlib.suppress(PlaywrightError):
            await cdp.send("Runtime.disable")
        with contextlib.suppress(PlaywrightError):
            await cdp.detach()
    log.info("page audio rebound: %s", report.describe())
    return report


async def _rebind_context(cdp: CDPSession, context_id: int) -> dict[str, Any]:
    group = "bot-rebind"
    arrays: list[str] = []
    try:
        for name in _PROTOTYPES:
            proto = await cdp.send(
                "Runtime.evaluate",
                {"expression": f"{name}.prototype", "contextId": context_id, "objectGroup": group},
            )
            found = await cdp.send(
                "Runtime.queryObjects",
                {"prototypeObjectId": proto["result"]["objectId"], "objectGroup": group},
            )
            arrays.append(found["objects"]["objectId"])
        result = await cdp.send(
            "Runtime.callFunctionOn",
            {
                "functionDeclaration": _REBIND_JS,
                "objectId": arrays[0],
                "arguments": [{"objectId": a} for a in arrays[1:]],
                "awaitPromise": True,
                "returnByValue": True,
                "objectGroup": group,
            },
        )
    finally:
        with contextlib.suppress(PlaywrightError):
            await cdp.send("Runtime.releaseObjectGroup", {"objectGroup": group})
    if "exceptionDetails" in result:
        raise PlaywrightError(str(result["exceptionDetails"].get("text", "rebind failed")))
    value: dict[str, Any] = result["result"].get("value") or {}
    return value


__all__ = ["RebindReport", "rebind_page", "restart_audio_service"]
