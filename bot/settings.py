"""Typed settings: defaults < TOML file < environment < command-line flags, validated once.

Every setting is `section.key`; its environment variable is `BOT_<SECTION>_<KEY>` (exceptions in
`ENV_NAMES`; the Millis key is `MILLIS_PRIVATE_KEY`, or a file named by `agent.key_file`, and is read here
only). An empty environment variable counts as unset, except for a list or a table, where it means "none"
(`BOT_AGENT_ICE_SERVERS=` turns STUN off). Errors name the setting and say what to fix. Secrets never
reach a repr, a log line or a stored file.

The defaults here are the only ones (config/bot.toml shows them in comments; the join and call policies
take theirs from `CallSection`); `bot.call.config` turns settings into each part's options. The
vocabularies the settings accept (regions, jitter buffers) are listed here once, for the flags, the API
and the parts alike.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "config" / "bot.toml"
KEY_ENV = "MILLIS_PRIVATE_KEY"
# Millis regions and their base URLs: agent.region, --region and the API's region take these names.
REGION_BASES: dict[str, str] = {
    "us-west": "https://api-west.millis.ai",
    "eu-west": "https://api-eu-west.millis.ai",
}
REGIONS: tuple[str, ...] = tuple(REGION_BASES)
# agent.jitter_buffer: ours (plays each packet on arrival, bot/agent/jitter.py) or aiortc's own.
JITTER_BUFFERS: tuple[str, ...] = ("low-latency", "aiortc")
# agent.codecs: Opus in mono on the event loop (bot/agent/codecs.py) or aiortc's codec threads.
CODEC_PATHS: tuple[str, ...] = ("inline", "aiortc")
# Settings whose environment variable is not BOT_<SECTION>_<KEY> (kept from before the section existed).
ENV_NAMES: dict[tuple[str, str], str] = {
    ("scheduler", "db_url"): "BOT_DB_URL",
    ("scheduler", "broker_url"): "BOT_BROKER_URL",
}
# scheduler.launcher: bots as child processes of `serve`, or on worker hosts through Celery (bot.cluster).
LAUNCHERS: tuple[str, ...] = ("local", "celery")
# worker.drain: on SIGTERM a worker lets its bots finish, or hands them to another host.
DRAINS: tuple[str, ...] = ("finish", "handoff")


class SettingsError(ValueError):
    """A setting is missing or invalid; the message names it."""


@dataclass
class BotSection:
    name: str = "AI Agent"  # display name in the meeting
    json: bool = False  # one JSON object per event on stdout
    record_dir: str = ""  # WAV recordings of both directions, when set
    artifacts_dir: str = "artifacts"  # screenshots and HTML on join failures
    stats_interval_s: float = 5.0


@dataclass
class AgentSection:
    agent_id: str = ""
    region: str = "us-west"
    url: str = ""  # full base URL; overrides region
    key_file: str = ""
    private_key: str = field(default="", repr=False)  # from MILLIS_PRIVATE_KEY or key_file only
    metadata: dict[str, str] = field(default_factory=dict)
    include_metadata_in_prompt: bool = False
    bearer_fallback: bool = True
    timeout_s: float = 10.0
    ice_servers: list[str] = field(default_factory=lambda: ["stun:stun.l.google.com:19302"])
    # Test configuration only: restrict ICE host candidates (e.g. 127.0.0.1 for a local stand-in).
    ice_host_addresses: list[str] = field(default_factory=list)
    receive_prefetch: int = 1  # only with jitter_buffer = "aiortc"
    jitter_buffer: str = "low-latency"  # or "aiortc" (aiortc's own buffer, holds receive_prefetch packets)
    codecs: str = "inline"  # or "aiortc" (aiortc's codec threads, stereo)


@dataclass
class BrowserSection:
    executable_path: str = "/usr/bin/chromium"
    # "xvfb": headful on the bot's own virtual X display with OS-level input, what Meet and Zoom accept;
    # "headless": no X server needed, input synthesized by the browser (Meet drops such guests).
    display: str = "xvfb"
    screen_size: str = "1280x800"  # the virtual display's size (xvfb): a common laptop screen
    profile_dir: str = ""  # a signed-in Chromium profile (`meeting-bot login`); each bot runs on a copy
    # Test configuration only: map meet.google.com / *.zoom.us to a local replica and trust its cert.
    host_resolver_rules: str = ""
    trusted_cert_spki: str = ""
    allow_loopback_webrtc: bool = False
    # The browser levers (bot.browser.levers): what Chromium leaves undone because the bot never looks at
    # video (remote video is not drawn), without changing what the platform sees of its sound or presence.
    lean: bool = True
    extra_args: list[str] = field(default_factory=list)


@dataclass
class CallSection:
    max_duration_s: float = 3 * 3600.0
    alone_after_s: float = 60.0
    lobby_timeout_s: float = 600.0  # Meet itself gives up after about 10 minutes
    host_absent_timeout_s: float = 300.0
    join_retries: int = 2  # extra attempts when the platform blocks the join (Meet often lets a retry in)
    join_retry_delay_s: float = 5.0
    # While joining: a page on which no known screen is recognised this long fails as ui_changed (with the
    # texts of its buttons in the message).
    ui_stuck_s: float = 30.0
    # While joining: the browser's own network error page ("This site can't be reached") is retried with
    # backoff this long, then the join fails as network_error.
    network_retry_s: float = 60.0


@dataclass
class WebhookSection:
    url: str = ""
    secret: str = field(default="", repr=False)  # also signs `serve`'s deliveries
    retries: int = 3  # `join` by hand: in-memory retries per event
    # `serve`: the delays before each retry of a stored event (Svix's schedule, ~3 h 45 min in all); then
    # the event is dead. Tests shrink it.
    retry_schedule_s: list[float] = field(
        default_factory=lambda: [5.0, 30.0, 120.0, 600.0, 1800.0, 3600.0, 7200.0]
    )
    timeout_s: float = 10.0  # `serve`: one delivery attempt


@dataclass
class SchedulerSection:
    """`serve` and the direct `schedule`/`list`/`cancel` (they compute the same start times)."""

    db_url: str = field(default="", repr=False)  # BOT_DB_URL; may hold a password. Empty: a SQLite file
    lead_time_s: float = 30.0  # start each bot this early, so it is in the meeting at join_at
    misfire_grace_s: float = 120.0  # a job found later than this is skipped and recorded as missed
    max_concurrent_bots: int = 4
    queue_timeout_s: float = 1800.0  # a queued bot still without a slot this long after join_at: missed
    stop_timeout_s: float = 15.0  # after asking a bot to leave, kill it if it has not exited by then
    poll_interval_s: float = 1.0  # how often `serve` looks for jobs and stop requests from clients
    launcher: str = (
        "local"  # or "celery": bots run on `meeting-bot worker` hosts (max_concurrent_bots unused)
    )
    broker_url: str = field(default="", repr=False)  # BOT_BROKER_URL: the Redis of launcher = "celery"
    host_timeout_s: float = 15.0  # a worker host silent this long is lost; its bots are re-launched
    relaunch_attempts: int = 2  # re-launches of a bot after lost hosts, before it is recorded host_lost


@dataclass
class WorkerSection:
    """`meeting-bot worker`: a bot host of a cluster (scheduler.launcher = "celery")."""

    name: str = ""  # in GET /hosts; empty: the machine's host name
    capacity: int = 2  # bots at once
    drain: str = "finish"  # on SIGTERM: let the bots finish, or "handoff" them to other hosts
    heartbeat_interval_s: float = 2.0  # at most a third of scheduler.host_timeout_s
    poll_interval_s: float = 0.5  # how often it looks for stop requests of its bots


@dataclass
class Settings:
    bot: BotSection = field(default_factory=BotSection)
    agent: AgentSection = field(default_factory=AgentSection)
    browser: BrowserSection = field(default_factory=BrowserSection)
    call: CallSection = field(default_factory=CallSection)
    webhook: WebhookSection = field(default_factory=WebhookSection)
    scheduler: SchedulerSection = field(default_factory=SchedulerSection)
    worker: WorkerSection = field(default_factory=WorkerSection)


def env_name(section: str, key: str) -> str:
    """The environment variable of the setting `section.key`."""
    return ENV_NAMES.get((section, key)) or f"BOT_{section}_{key}".upper()


Layer = Mapping[str, Mapping[str, Any]]


def load_settings(
    config_path: Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Layer | None = None,
    require_key: bool = True,
) -> Settings:
    """Builds validated settings from the layers. `overrides` are the flags, as {section: {key: value}}."""
    env = os.environ if env is None else env
    settings = Settings()
    path = config_path or (DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None)
    if path is not None:
        _apply(settings, _read_toml(path), source=str(path))
    _apply(settings, _env_layer(env), source="environment")
    if overrides:
        _apply(settings, overrides, source="flags")
    _load_key(settings, env)
    _validate(settings, require_key)
    return settings


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise SettingsError(f"config file {path} does not exist") from None
    except OSError as e:
        raise SettingsError(f"config file {path} cannot be read: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise SettingsError(f"config file {path} is not valid TOML: {e}") from None
    for section in data.values():
        if isinstance(section, dict) and "private_key" in section:
            raise SettingsError(
                f"{path}: agent.private_key must not be stored in a config file; "
                f"set {KEY_ENV} or agent.key_file instead"
            )
    return data


def _env_layer(env: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    layer: dict[str, dict[str, Any]] = {}
    for section in dataclasses.fields(Settings):
        hints = typing.get_type_hints(_section_type(section.name))
        for key, kind in hints.items():
            if key == "private_key":
                continue
            value = env.get(env_name(section.name, key))
            if value is None:
                continue
            # Empty is "unset" for a single value, but "none" for a list or a table: an empty
            # BOT_AGENT_ICE_SERVERS means no STUN server, as `ice_servers = []` does in the TOML file.
            if value.strip() or typing.get_origin(kind) in (list, dict):
                layer.setdefault(section.name, {})[key] = value
    return layer


def _section_type(name: str) -> type:
    hints = typing.get_type_hints(Settings)
    t: type = hints[name]
    return t


def _apply(settings: Settings, layer: Mapping[str, Any], source: str) -> None:
    for section_name, values in layer.items():
        if not hasattr(settings, section_name) or not isinstance(values, Mapping):
            raise SettingsError(f"{source}: unknown settings section [{section_name}]")
        section = getattr(settings, section_name)
        hints = typing.get_type_hints(type(section))
        for key, raw in values.items():
            if key not in hints:
                known = ", ".join(sorted(hints))
                raise SettingsError(f"{source}: unknown setting {section_name}.{key} (known: {known})")
            setattr(section, key, _coerce(raw, hints[key], f"{section_name}.{key}", source))


def _coerce(raw: Any, target: Any, name: str, source: str) -> Any:
    origin = typing.get_origin(target)
    try:
        if target is bool:
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError("expected true or false")
        if target is int and not isinstance(raw, bool):
            return int(raw)
        if target is float and not isinstance(raw, bool):
            return float(raw)
        if target is str:
            if not isinstance(raw, str):
                raise ValueError("expected text")
            return raw
        if origin is list:
            item_type = (typing.get_args(target) or (str,))[0]
            if isinstance(raw, str):
                raw = [item.strip() for item in raw.split(",") if item.strip()]
            if isinstance(raw, list):
                if item_type is float:
                    return [float(item) for item in raw if not isinstance(item, bool)]
                return [str(item) for item in raw]
            raise ValueError("expected a list")
        if origin is dict:
            if isinstance(raw, str):
                raw = json.loads(raw) if raw.strip().startswith("{") else _pairs(raw.split(","))
            if isinstance(raw, dict):
                return {str(k): str(v) for k, v in raw.items()}
            raise ValueError("expected a table of key = value")
    except (ValueError, TypeError) as e:
        raise SettingsError(f"{source}: {name} = {raw!r} is invalid: {e}") from None
    raise SettingsError(f"{source}: {name} has an unsupported type")


def _pairs(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{item!r} is not key=value")
        out[key.strip()] = value.strip()
    return out


def parse_pairs(items: list[str]) -> dict[str, str]:
    """`--metadata k=v …` → dict, with a message naming the bad item."""
    try:
        return _pairs(items)
    except ValueError as e:
        raise SettingsError(f"--metadata: {e}") from None


def _load_key(settings: Settings, env: Mapping[str, str]) -> None:
    key = env.get(KEY_ENV, "").strip()
    if not key and settings.agent.key_file:
        path = Path(settings.agent.key_file).expanduser()
        try:
            key = path.read_text().strip()
        except OSError as e:
            raise SettingsError(f"agent.key_file: cannot read {path}: {e.strerror}") from None
        if not key:
            raise SettingsError(f"agent.key_file: {path} is empty")
    settings.agent.private_key = key


def _validate_browser(b: BrowserSection) -> None:
    from bot.browser.display import ScreenSize
    from bot.browser.launch_options import DISPLAY_MODES
    from bot.browser.profile import ProfileError, check_profile

    if b.display not in DISPLAY_MODES:
        raise SettingsError(
            f"browser.display: must be one of {', '.join(DISPLAY_MODES)} (got {b.display!r}); "
            "xvfb needs the Debian package xvfb, headless is refused by Meet's entry checks"
        )
    try:
        ScreenSize.parse(b.screen_size)
    except ValueError as e:
        raise SettingsError(f"browser.screen_size: {e}") from None
    if b.profile_dir:
        try:
            check_profile(Path(b.profile_dir))
        except ProfileError as e:
            raise SettingsError(str(e)) from None


def _validate(s: Settings, require_key: bool) -> None:
    def fail(name: str, why: str) -> None:
        raise SettingsError(f"{name}: {why}")

    a = s.agent
    if a.url:
        if not a.url.startswith(("https://", "http://")):
            fail(
                "agent.url",
                f"must be a full http(s) base URL such as https://api-west.millis.ai (got {a.url!r})",
            )
    elif a.region not in REGIONS:
        fail("agent.region", f"must be one of {', '.join(REGIONS)} (got {a.region!r}), or set agent.url")
    if require_key and not a.private_key:
        fail("agent.private_key", f"no Millis private key: set {KEY_ENV} or agent.key_file")
    if a.timeout_s <= 0:
        fail("agent.timeout_s", "must be positive")
    if not 0 <= a.receive_prefetch <= 15:
        fail("agent.receive_prefetch", "must be between 0 and 15 packets")
    if a.jitter_buffer not in JITTER_BUFFERS:
        fail("agent.jitter_buffer", f"must be one of {', '.join(JITTER_BUFFERS)} (got {a.jitter_buffer!r})")
    if a.codecs not in CODEC_PATHS:
        fail("agent.codecs", f"must be one of {', '.join(CODEC_PATHS)} (got {a.codecs!r})")
    for url in a.ice_servers:
        if not url.startswith(("stun:", "turn:", "turns:")):
            fail("agent.ice_servers", f"{url!r} must start with stun:, turn: or turns:")
    c = s.call
    for name in (
        "max_duration_s",
        "alone_after_s",
        "lobby_timeout_s",
        "host_absent_timeout_s",
        "ui_stuck_s",
        "network_retry_s",
    ):
        if getattr(c, name) <= 0:
            fail(f"call.{name}", "must be a positive number of seconds")
    if not 0 <= c.join_retries <= 10:
        fail("call.join_retries", "must be between 0 and 10")
    if c.join_retry_delay_s < 0:
        fail("call.join_retry_delay_s", "must be >= 0 seconds")
    if not s.bot.name.strip():
        fail("bot.name", "must not be empty")
    if len(s.bot.name) > 64:
        fail("bot.name", "must be at most 64 characters")
    if s.bot.stats_interval_s <= 0:
        fail("bot.stats_interval_s", "must be positive")
    w = s.webhook
    if w.url:
        if not w.url.startswith(("https://", "http://")):
            fail("webhook.url", f"must be an http(s) URL (got {w.url!r})")
        if not w.secret:
            fail("webhook.secret", "is required with webhook.url: set BOT_WEBHOOK_SECRET")
    if w.retries < 0:
        fail("webhook.retries", "must be >= 0")
    if not w.retry_schedule_s or any(d <= 0 for d in w.retry_schedule_s):
        fail("webhook.retry_schedule_s", "must list one or more positive delays in seconds")
    if w.timeout_s <= 0:
        fail("webhook.timeout_s", "must be a positive number of seconds")
    if not s.browser.executable_path:
        fail("browser.executable_path", "must name a Chromium binary")
    _validate_browser(s.browser)
    sc = s.scheduler
    for name in ("lead_time_s", "queue_timeout_s"):
        if getattr(sc, name) < 0:
            fail(f"scheduler.{name}", "must be >= 0 seconds")
    for name in ("misfire_grace_s", "stop_timeout_s", "poll_interval_s"):
        if getattr(sc, name) <= 0:
            fail(f"scheduler.{name}", "must be a positive number of seconds")
    if sc.max_concurrent_bots < 1:
        fail("scheduler.max_concurrent_bots", "must be at least 1")
    if sc.launcher not in LAUNCHERS:
        fail("scheduler.launcher", f"must be one of {', '.join(LAUNCHERS)} (got {sc.launcher!r})")
    if sc.broker_url and not sc.broker_url.startswith(("redis://", "rediss://", "redis+socket://")):
        fail("scheduler.broker_url", "must be a Redis URL such as redis://redis:6379/0")
    # broker_url is checked where it is used (serve's cluster_options, the worker's worker_options): a bot
    # on a worker host reads the same settings without the service's broker (its URL never reaches a bot).
    if sc.host_timeout_s <= 0:
        fail("scheduler.host_timeout_s", "must be a positive number of seconds")
    if not 0 <= sc.relaunch_attempts <= 10:
        fail("scheduler.relaunch_attempts", "must be between 0 and 10")
    wk = s.worker
    if len(wk.name) > 200 or any(c.isspace() for c in wk.name):
        fail("worker.name", "must be at most 200 characters without spaces")
    if not 1 <= wk.capacity <= 1000:
        fail("worker.capacity", "must be between 1 and 1000 bots")
    if wk.drain not in DRAINS:
        fail("worker.drain", f"must be one of {', '.join(DRAINS)} (got {wk.drain!r})")
    if wk.poll_interval_s <= 0:
        fail("worker.poll_interval_s", "must be a positive number of seconds")
    if not 0 < wk.heartbeat_interval_s <= sc.host_timeout_s / 3:
        fail(
            "worker.heartbeat_interval_s", "must be positive and at most a third of scheduler.host_timeout_s"
        )
