"""A tiny real program that keeps the `join --json` contract, for scheduler tests that need many quick bots.

Run as `python tests/fake_join.py URL --agent-id ID [--max-duration S] [--metadata mode=…] --json`. It prints
the contract's JSON events, leaves on SIGTERM (reason "left", exit 0), and behaves per `mode`:
call (default: stays in the call), crash (exit 30), fail (denied, exit 10), usage (exit 2), kill (SIGKILL).
If FAKE_JOIN_LOG is set, it appends one line per start: "<BOT_ID> <unix time> <url>".
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import sys
import threading
import time


def emit(kind: str, **data: object) -> None:
    print(json.dumps({"event": kind, "at": dt.datetime.now(dt.UTC).isoformat(), **data}), flush=True)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("--agent-id", required=True)
    p.add_argument("--name")
    p.add_argument("--region")
    p.add_argument("--agent-url")
    p.add_argument("--max-duration", type=float, default=3600.0)
    p.add_argument("--webhook")
    p.add_argument("--config")
    p.add_argument("--metadata", nargs="*", default=[])
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    meta = dict(item.split("=", 1) for item in args.metadata)
    mode = meta.get("mode", "call")
    if "BOT_API_TOKEN" in os.environ or "BOT_DB_URL" in os.environ:
        print("the service's secrets reached the bot", file=sys.stderr)
        return 30
    if log := os.environ.get("FAKE_JOIN_LOG"):
        with open(log, "a") as f:
            f.write(f"{os.environ.get('BOT_ID', '?')} {time.time():.3f} {args.url}\n")

    leave = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: leave.set())
    started = time.monotonic()
    emit("joining", platform="meet", name=args.name or "AI Agent")
    if mode == "crash":
        print("Traceback (most recent call last):\nRuntimeError: simulated browser crash", file=sys.stderr)
        emit("failed", code="crashed", message="simulated browser crash", artifacts=[])
        return 30
    if mode == "usage":
        print("meeting-bot join: webhook.secret: is required with webhook.url", file=sys.stderr)
        return 2
    if mode == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if mode == "fail":
        emit("awaiting_admission")
        emit("failed", code="denied", message="someone in the call denied entry", artifacts=[])
        emit("summary", duration_s=round(time.monotonic() - started, 3))
        return 10
    emit("awaiting_admission")
    emit("in_call")
    emit("agent_connected", agent=args.agent_id)
    emit("stats", frames_out=0, frames_in=0)
    reason = "left" if leave.wait(args.max_duration) else "max_duration"
    emit("ended", reason=reason)
    emit("summary", duration_s=round(time.monotonic() - started, 3), ended_by=reason)
    return 0


if __name__ == "__main__":
    sys.exit(main())
