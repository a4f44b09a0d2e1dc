"""How a running bot's output becomes its record: the one translation of `join --json` lines and of the
process's exit into the store, for the bots the service runs itself and for those a worker host runs
(`bot.cluster.worker`), so a bot's record reads the same wherever it ran.
"""

from __future__ import annotations

import logging
import signal
from typing import Any

from sqlalchemy import func, literal

from bot.events import (
    AwaitingAdmission,
    Ended,
    EventFormatError,
    Failed,
    InCall,
    Joining,
    Stats,
    Summary,
    parse_event,
)
from bot.exit_codes import ExitCode
from bot.store import RUNNING, BotRow, BotState, BotStore, UtcDateTime, utcnow

log = logging.getLogger(__name__)


def final_state(code: int) -> BotState:
    """The state a bot's exit code ends it in."""
    if code == ExitCode.COMPLETED:
        return BotState.ENDED
    if code == ExitCode.CRASHED or code < 0 or code not in ExitCode._value2member_map_:
        return BotState.CRASHED
    return BotState.FAILED


class BotRecorder:
    """Records one bot's events and exit in `store`."""

    def __init__(self, store: BotStore, bot_id: str) -> None:
        self.store = store
        self.bot_id = bot_id

    def event(self, data: dict[str, Any]) -> None:
        """Records one `join --json` line: stored as the bot wrote it, translated through its typed event."""
        store, bot_id = self.store, self.bot_id
        try:
            event = parse_event(data)
        except EventFormatError as e:
            log.warning("bot %s: %s", bot_id, e)
            store.add_event(bot_id, data)
            return
        if isinstance(event, Stats):
            store.update(bot_id, last_stats=data)
            return
        store.add_event(bot_id, data)
        match event:
            case Joining():
                store.transition(bot_id, BotState.JOINING, [BotState.STARTING])
            case AwaitingAdmission():
                store.transition(bot_id, BotState.AWAITING_ADMISSION, [BotState.STARTING, BotState.JOINING])
            case InCall():
                store.transition(
                    bot_id,
                    BotState.IN_CALL,
                    [BotState.STARTING, BotState.JOINING, BotState.AWAITING_ADMISSION],
                    # The first time only: a bot re-launched on another host (its host was lost) keeps
                    # the time it first got in, which its maximum duration counts from.
                    in_call_at=func.coalesce(BotRow.in_call_at, literal(utcnow(), UtcDateTime())),
                )
            case Ended():
                store.update(bot_id, end_reason=event.reason.value)
            case Failed():
                store.update(
                    bot_id, failure_code=event.code[:64] or None, message=event.message[:2000] or None
                )
            case Summary():
                store.update(bot_id, summary=data)

    def exit(self, code: int, diagnostics: str) -> None:
        """Records the process's exit code and the bot's final state (with the end of its error stream when
        it crashed or failed without saying why)."""
        store, bot_id = self.store, self.bot_id
        state = final_state(code)
        fields: dict[str, Any] = {"exit_code": code, "ended_at": utcnow()}
        record = store.get(bot_id)
        if state is BotState.CRASHED:
            how = f"killed by {signal_name(-code)}" if code < 0 else f"exited with code {code}"
            said = record.message if record and record.message else ""
            tail = diagnostics.strip().splitlines()[-5:]
            fields["message"] = "; ".join(p for p in (f"bot process {how}", said, " | ".join(tail)) if p)[
                :4000
            ]
            fields["failure_code"] = (record.failure_code if record else None) or "crashed"
        elif state is BotState.FAILED and record is not None:
            if record.failure_code is None:
                fields["failure_code"] = ExitCode(code).name.lower()
            if record.message is None and diagnostics.strip():
                # No `failed` event (e.g. a settings error, exit 2): the bot's own words are on stderr.
                fields["message"] = " | ".join(diagnostics.strip().splitlines()[-3:])[:2000]
        store.add_event(
            bot_id, {"event": "exit", "at": utcnow().isoformat(), "source": "service", "code": code}
        )
        store.transition(bot_id, state, RUNNING, **fields)


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
