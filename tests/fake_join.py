"""A tiny real program that keeps the `join --json` contract, for scheduler tests that need many quick bots.

Run as `python tests/fake_join.py URL --agent-id ID [--max-duration S] [--metadata mode=…] --json`. It prints
the contract's JSON events (the same typed events as the real bot, through the same printer), leaves on
SIGTERM (reason "left", exit 0), and behaves per `mode`:
call (default: stays in the call), crash (exit 30), fail (denied, exit 10), usage (exit 2), kill (SIGKILL).
If FAKE_JOIN_LOG is set, it appends one line per start: "<BOT_ID> <unix time> <url>".
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time

from bot.events import (
    AgentConnected,
    AwaitingAdmission,
    BotEvent,
    Ended,
    EndedBy,
    Failed,
    InCall,
    Joining,
    JsonLinesPrinter,
    Stats,
    Summary,
)
from bot.meeting_urls import InvalidMeetingUrl, parse_meeting_url
from bot.outcome import EndReason, ExitCode, FailureCode, exit_code_for

emit: JsonLinesPrinter = JsonLinesPrinter(sys.stdout)


def since(t: float) -> float:
    return round(time.monotonic() - t, 3)


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
    try:
        meeting_id = parse_meeting_url(args.url).meeting_id
    except InvalidMeetingUrl:
        meeting_id = ""
    emit(Joining(platform="meet", meeting_id=meeting_id, name=args.name or "AI Agent"))
    if mode == "crash":
        print("Traceback (most recent call last):\nRuntimeError: simulated browser crash", file=sys.stderr)
        emit(Failed(code="crashed", message="simulated browser crash"))
        return ExitCode.CRASHED
    if mode == "usage":
        print("meeting-bot join: webhook.secret: is required with webhook.url", file=sys.stderr)
        return 2
    if mode == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if mode == "fail":
        code = exit_code_for(FailureCode.DENIED)
        emit(AwaitingAdmission())
        emit(Failed(code=FailureCode.DENIED, message="someone in the call denied entry"))
        emit(
            Summary(outcome=FailureCode.DENIED, exit_code=code, ended_by=EndedBy.BOT, total_s=since(started))
        )
        return code
    emit(AwaitingAdmission())
    emit(InCall())
    in_call = time.monotonic()
    emit(AgentConnected(agent=args.agent_id))
    emit(call_stats())
    if leave.wait(args.max_duration):
        reason, by = EndReason.LEFT, EndedBy.USER
    else:
        reason, by = EndReason.MAX_DURATION, EndedBy.BOT
    emit(Ended(reason=reason, by=by))
    emit(
        Summary(
            outcome=reason,
            exit_code=ExitCode.COMPLETED,
            ended_by=by,
            total_s=since(started),
            join_s=round(in_call - started, 3),
            in_call_s=since(in_call),
            reconnects=1,
            dropped_frames=3,
        )
    )
    return ExitCode.COMPLETED


def call_stats() -> BotEvent:
    """What the bridge reports of a call so far (the metrics tests check these figures move)."""
    return Stats(
        frames_out=250, frames_in=250, bytes_out=480_000, bytes_in=480_000, dropped=3,
        level_out_dbfs=-30.0, level_in_dbfs=-30.0, reconnects=1, reply_delay_ms=250.0,
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
