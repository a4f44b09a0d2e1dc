"""Prometheus metrics: what an operator watches and alerts on, from the bots' own events.

`BotMetrics` turns the `join --json` event stream (the same dicts the service records) into counters and
histograms; `serve` feeds it every event of every bot and `join --metrics-port` feeds it its own events, so
both expose the same series. `ServiceMetrics` adds what only the service knows: bots by state, running bots
against capacity, and webhook deliveries (it implements `bot.service.outbox.DeliveryMetrics`). Each instance
has its own `CollectorRegistry`, so two services in one process (tests) never share a series.

Durations come from the bot's events as the service receives them (a monotonic clock): time to `in_call`
counts from the bot's launch (the service's `launched`; by hand, the first event), the lobby from
`awaiting_admission` to `in_call` or the end. The agent's reply delay is the bridge's `ReplyClock` (sound
onset sent → next onset received), reported in `stats` events as `reply_delay_ms` (its latest) or
`reply_delays_ms` (every new one); reconnects and dropped frames are the bot's running totals in `stats`
and `summary`, counted here by their increase.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Join: launch → in_call is ~3.5 s on an open room (bench-join); a lobby can take minutes.
_JOIN_BUCKETS = (1.0, 2.0, 3.0, 4.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)
_LOBBY_BUCKETS = (1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0)
# The echo round trip is ~17 ms inside the bridge; a real agent answers in hundreds of ms to seconds.
_REPLY_BUCKETS = (0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
_DELIVERY_BUCKETS = (0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0)


@dataclass
class _Bot:
    """What the metrics remember of one bot between its events."""

    platform: str = "unknown"
    started: float | None = None
    lobby_since: float | None = None
    in_call: bool = False
    counted: bool = False  # its join outcome has been counted
    reconnects: int = 0
    dropped: int = 0
    reply_delay_ms: float | None = None


class BotMetrics:
    """Join outcomes, time to `in_call`, lobby time, the agent's reply delay, reconnects, dropped frames."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.joins = Counter(
            "meeting_bot_joins",
            "Join attempts by platform and outcome: in_call, or the failure code (denied, lobby_timeout, "
            "blocked, …), or how it ended before the call",
            ["platform", "outcome"],
            registry=r,
        )
        self.time_to_in_call = Histogram(
            "meeting_bot_time_to_in_call_seconds",
            "From the bot's launch to in_call",
            ["platform"],
            buckets=_JOIN_BUCKETS,
            registry=r,
        )
        self.lobby = Histogram(
            "meeting_bot_lobby_seconds",
            "Time spent waiting for admission (until in_call, or the end when never admitted)",
            ["platform"],
            buckets=_LOBBY_BUCKETS,
            registry=r,
        )
        self.reply_delay = Histogram(
            "meeting_bot_agent_reply_delay_seconds",
            "The bridge's clock: a sound onset sent to the agent → the next onset received from it",
            buckets=_REPLY_BUCKETS,
            registry=r,
        )
        self.reconnects = Counter(
            "meeting_bot_agent_reconnects", "Successful reconnections to the agent", ["platform"], registry=r
        )
        self.dropped = Counter(
            "meeting_bot_dropped_frames",
            "Audio frames dropped by the bridge, both ways",
            ["platform"],
            registry=r,
        )
        self._bots: dict[str, _Bot] = {}

    def launched(self, bot_id: str, platform: str | None = None, now: float | None = None) -> None:
        """The bot's process started: time to in_call counts from here."""
        bot = self._bots.setdefault(bot_id, _Bot())
        bot.started = time.monotonic() if now is None else now
        if platform:
            bot.platform = platform

    def observe(self, bot_id: str, event: Mapping[str, Any], now: float | None = None) -> None:
        """One event of the bot, as `join --json` prints it. Never raises on odd input."""
        try:
            self._observe(bot_id, event, time.monotonic() if now is None else now)
        except (TypeError, ValueError) as e:
            log.warning("metrics: ignoring a malformed %r event of bot %s: %s", event.get("event"), bot_id, e)

    def finished(self, bot_id: str, outcome: str) -> None:
        """The bot is gone (its process exited): counts `outcome` as its join outcome if none was seen
        (e.g. it was killed before any event said how the join went) and forgets it."""
        bot = self._bots.pop(bot_id, None)
        if bot is None:
            return
        if bot.lobby_since is not None:
            self.lobby.labels(bot.platform).observe(max(0.0, time.monotonic() - bot.lobby_since))
        if not bot.counted:
            self.joins.labels(bot.platform, outcome).inc()

    def _observe(self, bot_id: str, event: Mapping[str, Any], now: float) -> None:
        kind = event.get("event")
        bot = self._bots.setdefault(bot_id, _Bot())
        if bot.started is None:
            bot.started = now
        if kind == "joining":
            if event.get("platform"):
                bot.platform = str(event["platform"])
        elif kind == "awaiting_admission":
            if bot.lobby_since is None:
                bot.lobby_since = now
        elif kind == "in_call":
            if bot.in_call:
                return
            bot.in_call = True
            self._leave_lobby(bot, now)
            self.time_to_in_call.labels(bot.platform).observe(max(0.0, now - bot.started))
            self._count(bot, "in_call")
        elif kind == "failed":
            self._leave_lobby(bot, now)
            self._count(bot, str(event.get("code") or "failed"))
        elif kind == "ended":
            self._leave_lobby(bot, now)
            self._count(bot, f"ended:{event.get('reason') or 'unknown'}")
        elif kind == "stats":
            self._totals(bot, event.get("reconnects"), event.get("dropped"))
            self._reply_delays(bot, event)
        elif kind == "summary":
            self._totals(bot, event.get("reconnects"), event.get("dropped_frames"))

    def _leave_lobby(self, bot: _Bot, now: float) -> None:
        if bot.lobby_since is not None:
            self.lobby.labels(bot.platform).observe(max(0.0, now - bot.lobby_since))
            bot.lobby_since = None

    def _count(self, bot: _Bot, outcome: str) -> None:
        if not bot.counted:
            bot.counted = True
            self.joins.labels(bot.platform, outcome).inc()

    def _totals(self, bot: _Bot, reconnects: Any, dropped: Any) -> None:
        if isinstance(reconnects, int) and reconnects > bot.reconnects:
            self.reconnects.labels(bot.platform).inc(reconnects - bot.reconnects)
            bot.reconnects = reconnects
        if isinstance(dropped, int) and dropped > bot.dropped:
            self.dropped.labels(bot.platform).inc(dropped - bot.dropped)
            bot.dropped = dropped

    def _reply_delays(self, bot: _Bot, event: Mapping[str, Any]) -> None:
        delays = event.get("reply_delays_ms")
        if isinstance(delays, list):
            for ms in delays:
                self.reply_delay.observe(float(ms) / 1000)
            return
        latest = event.get("reply_delay_ms")
        # Only the latest delay is reported: a changed value is a new measurement.
        if isinstance(latest, int | float) and latest != bot.reply_delay_ms:
            bot.reply_delay_ms = float(latest)
            self.reply_delay.observe(float(latest) / 1000)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _Gauges(Collector):
    """Gauges computed at scrape time; a failing source (the database away) drops its families from that
    scrape instead of failing it."""

    def __init__(self, produce: Callable[[], Iterator[Metric]]) -> None:
        self._produce = produce

    def collect(self) -> Iterator[Metric]:
        try:
            yield from list(self._produce())
        except Exception as e:
            log.warning("metrics: a scrape-time source failed: %s", e)


class ServiceMetrics(BotMetrics):
    """`BotMetrics` plus bots by state, running bots against capacity, and webhook deliveries.

    `bots_by_state`, `running` and `deliveries_by_state` are read at each scrape (the database's counts
    survive restarts; the counters here start at zero with the process, as Prometheus expects)."""

    def __init__(
        self,
        capacity: int,
        running: Callable[[], int],
        queued: Callable[[], int],
        bots_by_state: Callable[[], Mapping[str, int]],
        deliveries_by_state: Callable[[], Mapping[str, int]],
        registry: CollectorRegistry | None = None,
    ) -> None:
        super().__init__(registry)
        r = self.registry
        self.webhook_deliveries = Counter(
            "meeting_bot_webhook_deliveries",
            "Webhook events the receiver accepted (2xx)",
            ["kind"],
            registry=r,
        )
        self.webhook_retries = Counter(
            "meeting_bot_webhook_retries",
            "Failed webhook attempts that will be retried, by reason (http: a non-2xx answer; transport)",
            ["reason"],
            registry=r,
        )
        self.webhook_dead_letters = Counter(
            "meeting_bot_webhook_dead_letters", "Webhook events given up on (retries used up)", registry=r
        )
        self.webhook_delay = Histogram(
            "meeting_bot_webhook_delivery_delay_seconds",
            "From an event being recorded to its receiver accepting it",
            buckets=_DELIVERY_BUCKETS,
            registry=r,
        )

        def gauges() -> Iterator[Metric]:
            host = GaugeMetricFamily("meeting_bot_capacity", "Bots this service may run at once")
            host.add_metric([], capacity)
            yield host
            now = GaugeMetricFamily("meeting_bot_running", "Bots running on this service now")
            now.add_metric([], running())
            yield now
            waiting = GaugeMetricFamily("meeting_bot_queued", "Bots due but waiting for a free slot")
            waiting.add_metric([], queued())
            yield waiting
            states = GaugeMetricFamily("meeting_bot_bots", "Bots in the database by state", labels=["state"])
            for state, n in sorted(bots_by_state().items()):
                states.add_metric([state], n)
            yield states
            outbox = GaugeMetricFamily(
                "meeting_bot_webhook_outbox",
                "Webhook events in the database by delivery state (pending, delivered, dead)",
                labels=["state"],
            )
            for state, n in sorted(deliveries_by_state().items()):
                outbox.add_metric([state], n)
            yield outbox

        r.register(_Gauges(gauges))

    # bot.service.outbox.DeliveryMetrics
    def webhook_delivered(self, kind: str, attempts: int, delay_s: float) -> None:
        self.webhook_deliveries.labels(kind).inc()
        self.webhook_delay.observe(max(0.0, delay_s))

    def webhook_retry(self, kind: str, reason: str) -> None:
        self.webhook_retries.labels(reason).inc()

    def webhook_dead(self, kind: str) -> None:
        self.webhook_dead_letters.inc()


class MetricsServer:
    """`join --metrics-port`: serves a registry over HTTP from a background thread; `close()` stops it."""

    def __init__(self, registry: CollectorRegistry, port: int, host: str = "127.0.0.1") -> None:
        from prometheus_client import start_http_server

        self._server, self._thread = start_http_server(port, addr=host, registry=registry)
        self.port: int = self._server.server_port

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
