"""The event vocabulary: each typed event serialises to the documented JSON keys and parses back; the exit
code table covers every failure type."""

from __future__ import annotations

import datetime as dt
import io
import json

import pytest

from bot.agent.errors import AgentError
from bot.events import (
    EVENT_TYPES,
    AgentConnected,
    AgentReconnecting,
    AudioLost,
    AudioRecovered,
    AwaitingAdmission,
    BotEvent,
    Ended,
    EndedBy,
    EventBus,
    EventFormatError,
    EventKind,
    Failed,
    InCall,
    Joining,
    JsonLinesPrinter,
    RecordingStopped,
    Stats,
    Summary,
    TerminalPrinter,
    parse_event,
)
from bot.outcome import (
    AGENT_FAILURE_EXIT,
    JOIN_FAILURE_EXIT,
    AgentFailureCode,
    EndReason,
    ExitCode,
    FailureCode,
    RunFailureCode,
    exit_code_for,
)

AT = dt.datetime(2026, 11, 24, 10, 2, 31, 200000, tzinfo=dt.UTC)
HEAD = ["event", "at", "id"]

# (event, the keys of its JSON object in order): the README's "Events" paragraph, pinned.
DOCUMENTED: list[tuple[BotEvent, list[str]]] = [
    (
        Joining(platform="meet", meeting_id="abc-defg-hij", name="AI Agent"),
        ["platform", "meeting_id", "name"],
    ),
    (
        Joining(platform="zoom", meeting_id="123", name="AI Agent", retry=1, after="blocked"),
        ["platform", "meeting_id", "name", "retry", "after"],
    ),
    (AwaitingAdmission(), []),
    (InCall(), []),
    (AgentConnected(agent="Millis agent A at https://x/webrtc/offer"), ["agent"]),
    (AgentConnected(agent="Millis agent A", attempt=2), ["agent", "attempt"]),
    (AgentReconnecting(attempt=1, detail="ICE failed"), ["attempt", "detail"]),
    (AgentConnected(agent="Millis agent A", attempt=1, connect_s=5.3), ["agent", "attempt", "connect_s"]),
    (AudioLost(detail="the bot's PulseAudio daemon exited"), ["detail"]),
    (AudioRecovered(after_s=2.4, detail="devices rebuilt and the browser rebound"), ["after_s", "detail"]),
    (RecordingStopped(detail="No space left on device: rec/a.wav, rec/b.wav"), ["detail"]),
    (
        Stats(
            frames_out=250,
            frames_in=240,
            bytes_out=480000,
            bytes_in=460800,
            dropped=1,
            level_out_dbfs=-31.5,
            level_in_dbfs=-120.0,
            reconnects=0,
        ),
        [
            "frames_out",
            "frames_in",
            "bytes_out",
            "bytes_in",
            "dropped",
            "level_out_dbfs",
            "level_in_dbfs",
            "reconnects",
        ],
    ),
    (Ended(reason=EndReason.HOST_ENDED, by=EndedBy.MEETING), ["reason", "by"]),
    (
        Failed(code=FailureCode.DENIED, message="denied", artifacts=("a/denied.png", "a/denied.html")),
        ["code", "message", "artifacts"],
    ),
    (Failed(code="crashed", message="RuntimeError: boom"), ["code", "message", "artifacts"]),
    (
        Summary(outcome="denied", exit_code=10, ended_by=EndedBy.BOT, total_s=3.2, lobby_s=1.1),
        ["outcome", "exit_code", "ended_by", "total_s", "lobby_s"],
    ),
    (
        Summary(
            outcome="host_ended",
            exit_code=0,
            ended_by=EndedBy.MEETING,
            total_s=712.4,
            join_s=20.1,
            in_call_s=692.3,
            lobby_s=17.0,
            reconnects=1,
            bytes_to_agent=66_000_000,
            bytes_from_agent=65_000_000,
            dropped_frames=3,
        ),
        [
            "outcome",
            "exit_code",
            "ended_by",
            "total_s",
            "join_s",
            "in_call_s",
            "lobby_s",
            "reconnects",
            "bytes_to_agent",
            "bytes_from_agent",
            "dropped_frames",
        ],
    ),
]


def test_every_event_kind_has_one_type_and_is_pinned() -> None:
    assert set(EVENT_TYPES) == set(EventKind)
    assert {type(e) for e, _ in DOCUMENTED} == set(EVENT_TYPES.values())


@pytest.mark.parametrize(("event", "keys"), DOCUMENTED, ids=lambda v: getattr(v, "kind", ""))
def test_json_has_the_documented_keys_and_round_trips(event: BotEvent, keys: list[str]) -> None:
    line = event.to_json()
    data = json.loads(line)
    assert line == json.dumps(data, separators=(",", ":"))  # compact, one line
    assert list(data) == HEAD + keys
    assert data["event"] == event.kind.value
    assert dt.datetime.fromisoformat(data["at"]) == event.at
    assert all(type(v) in (str, int, float, list) for v in data.values())  # plain JSON, no enum reprs
    assert parse_event(data) == event
    assert parse_event(data).to_json() == line


def test_values_are_the_documented_words() -> None:
    ended = json.loads(Ended(reason=EndReason.ALONE, by=EndedBy.BOT, at=AT, id="e1").to_json())
    assert ended == {"event": "ended", "at": "2026-11-24T10:02:31.200000+00:00", "id": "e1"} | {
        "reason": "alone",
        "by": "bot",
    }
    failed = json.loads(Failed(code=FailureCode.UI_CHANGED, message="m", artifacts=("x.png",)).to_json())
    assert (failed["code"], failed["artifacts"]) == ("ui_changed", ["x.png"])
    assert {b.value for b in EndedBy} == {"meeting", "bot", "user", "agent"}


def test_parses_the_readme_example_and_ignores_unknown_fields() -> None:
    event = parse_event({"event": "in_call", "at": "2026-11-24T10:02:31.2+00:00", "id": "…", "new": 1})
    assert event == InCall(at=AT, id="…")
    no_id = parse_event({"event": "awaiting_admission", "at": AT.isoformat()})
    assert isinstance(no_id, AwaitingAdmission) and no_id.id


@pytest.mark.parametrize(
    "data",
    [
        {"event": "launched", "at": "2026-11-24T10:02:31+00:00"},  # a service event, not a bot's
        {"at": "2026-11-24T10:02:31+00:00"},
        {"event": "ended", "at": "2026-11-24T10:02:31+00:00", "reason": "alone"},  # no `by`
        {"event": "ended", "at": "2026-11-24T10:02:31+00:00", "reason": "bored", "by": "bot"},
        {"event": "in_call", "at": "yesterday"},
        {"event": "in_call"},
    ],
)
def test_rejects_what_is_not_a_documented_event(data: dict[str, object]) -> None:
    with pytest.raises(EventFormatError):
        parse_event(data)


def test_printers() -> None:
    out, terminal = io.StringIO(), io.StringIO()
    bus = EventBus()
    bus.subscribe(JsonLinesPrinter(out))
    bus.subscribe(TerminalPrinter(terminal))
    bus.subscribe(_broken)  # a failing listener is skipped; the others still get every event
    bus.emit(Joining(platform="meet", meeting_id="abc-defg-hij", name="AI Agent"))
    bus.emit(Stats(frames_out=1, frames_in=1, bytes_out=2, bytes_in=2, dropped=0,
                   level_out_dbfs=-20, level_in_dbfs=-30, reconnects=0))  # fmt: skip
    bus.emit(Ended(reason=EndReason.HOST_ENDED, by=EndedBy.MEETING))
    bus.emit(Summary(outcome="host_ended", exit_code=0, ended_by=EndedBy.MEETING, total_s=712.4, join_s=20.1))
    assert [json.loads(line)["event"] for line in out.getvalue().splitlines()] == [
        "joining",
        "stats",
        "ended",
        "summary",
    ]
    lines = [line[10:] for line in terminal.getvalue().splitlines()]  # after "HH:MM:SS  "
    assert lines == [
        "joining             meet abc-defg-hij as 'AI Agent'",
        "ended               reason=host_ended by=meeting",
        "summary             outcome=host_ended, exit_code=0, ended_by=meeting, total_s=712.4, join_s=20.1",
    ]


def _broken(event: BotEvent) -> None:
    raise RuntimeError("a broken listener")


def _subclasses(cls: type[AgentError]) -> set[type[AgentError]]:
    """The project's AgentError classes (not test-local subclasses)."""
    found = {cls} if cls.__module__.startswith("bot.") else set()
    for sub in cls.__subclasses__():
        found |= _subclasses(sub)
    return found


def test_exit_codes_cover_every_failure_code_and_agent_error_type() -> None:
    assert set(JOIN_FAILURE_EXIT) == set(FailureCode)
    assert set(AGENT_FAILURE_EXIT) == set(AgentFailureCode)
    # Every agent error class has a code of its own, so each maps to its documented exit code.
    codes = [cls.code for cls in _subclasses(AgentError)]
    assert sorted(codes) == sorted(set(AgentFailureCode))
    for cls in _subclasses(AgentError):
        assert exit_code_for(cls("m").code) is AGENT_FAILURE_EXIT[cls.code]
    for run_failure in RunFailureCode:
        assert exit_code_for(run_failure) is ExitCode.CRASHED
    assert ExitCode.failure_name(13) == "not_found"
    assert ExitCode.failure_name(-9) == ExitCode.failure_name(99) == "crashed"


def test_exit_codes_are_the_documented_numbers() -> None:
    from bot.agent.errors import AgentAuthError, AgentBadAnswer, AgentNotFound, AgentTimeout, AgentUnavailable

    assert exit_code_for(FailureCode.DENIED) == 10
    assert exit_code_for(FailureCode.CAPTCHA) == exit_code_for(FailureCode.BOT_DETECTED) == 17
    assert exit_code_for(FailureCode.UI_CHANGED) == 18
    assert exit_code_for(FailureCode.BROWSER_CRASHED) == 30
    assert exit_code_for(FailureCode.INVALID_URL) is ExitCode.USAGE
    assert int(ExitCode.USAGE) == 2
    assert exit_code_for(AgentAuthError("m").code) == 20
    assert exit_code_for(AgentNotFound("m").code) == 21
    for cls in (AgentUnavailable, AgentTimeout, AgentBadAnswer):
        assert exit_code_for(cls("m").code) == 22

    class NewAgentError(AgentNotFound):
        pass

    assert exit_code_for(NewAgentError("m").code) == 21  # a new subclass inherits its parent's code
