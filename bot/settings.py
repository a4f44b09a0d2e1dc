"""Typed settings: defaults < TOML file < environment < command-line flags, validated once.

Every setting is `section.key`; its environment variable is `BOT_<SECTION>_<KEY>` (exceptions in
`ENV_NAMES`; the Millis key is `MILLIS_PRIVATE_KEY`, or a file named by `agent.key_file`, and is read here
only). An empty environment variable counts as unset, except for a list or a table, where it means "none"
(`BOT_AGENT_ICE_SERVERS=` turns STUN off). Errors name the setting and say what to fix. Secrets never
reach a repr, a log line or a stored file.

Each part owns its options' defaults and rules (the agent's in bot.agent.options, the join and call
policies in bot.platforms.base): a section's field takes its default from there, and validation builds
the part's options (through bot.call.config, the one mapping) and reports an `OptionError` as the setting
it came from. Each field's `doc` (its metadata) is the line beside it in config/bot.toml, which
`meeting-bot config --defaults` prints from these classes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tomllib
import typing
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

# The vocabularies the [agent] settings accept (regions, jitter buffers, codec paths) and the key's variable
# are the agent's (bot.agent.options); the flags and the API import them from here.
from bot.agent.options import CODEC_PATHS as CODEC_PATHS
from bot.agent.options import DEFAULT_ICE_SERVERS, MillisConfig, PeerOptions
from bot.agent.options import JITTER_BUFFERS as JITTER_BUFFERS
from bot.agent.options import KEY_ENV as KEY_ENV
from bot.agent.options import REGION_BASES as REGION_BASES
from bot.agent.options import REGIONS as REGIONS
from bot.options import OptionError
from bot.platforms.policies import CallPolicy, JoinPolicy

T = TypeVar("T")
DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "config" / "bot.toml"
# Settings whose environment variable is not BOT_<SECTION>_<KEY> (kept from before the section existed).
ENV_NAMES: dict[tuple[str, str], str] = {
    ("scheduler", "db_url"): "BOT_DB_URL",
    ("scheduler", "broker_url"): "BOT_BROKER_URL",
    ("scheduler", "api_token"): "BOT_API_TOKEN",
    ("scheduler", "metrics_token"): "BOT_METRICS_TOKEN",
}
# Secrets read from the environment only: a config file holding one is refused (files get copied and shared).
ENV_ONLY: dict[tuple[str, str], str] = {
    ("agent", "private_key"): f"set {KEY_ENV} or agent.key_file instead",
    ("scheduler", "api_token"): "set BOT_API_TOKEN instead",
    ("scheduler", "metrics_token"): "set BOT_METRICS_TOKEN instead",
}
# scheduler.launcher: bots as child processes of `serve`, or on worker hosts through Celery (bot.cluster).
LAUNCHERS: tuple[str, ...] = ("local", "celery")
# worker.drain: on SIGTERM a worker lets its bots finish, or hands them to another host.
DRAINS: tuple[str, ...] = ("finish", "handoff")


class SettingsError(ValueError):
    """A setting is missing or invalid; the message names it."""


def doc(text: str, in_file: bool = True) -> dict[str, Any]:
    """A field's metadata: its one-line documentation in config/bot.toml; `in_file=False` leaves a secret
    out of that file (it belongs in the environment)."""
    return {"doc": text, "in_file": in_file}


def setting(default: T, text: str) -> T:
    """A setting with a plain default and its one-line doc (see `doc`)."""
    return field(default=default, metadata=doc(text))


@contextmanager
def as_setting(section: str, **renamed: str) -> Iterator[None]:
    """Reports a part's `OptionError` as the setting `section.<option>` (or the `renamed` key)."""
    try:
        yield
    except OptionError as e:
        raise SettingsError(f"{section}.{renamed.get(e.option, e.option)}: {e.why}") from None


@dataclass
class BotSection:
    name: str = setting("AI Agent", "display name in the meeting")
    json: bool = setting(False, "one JSON object per event on stdout")
    record_dir: str = setting("", "write WAVs of both directions here when set")
    artifacts_dir: str = setting("artifacts", "screenshots and HTML on join failures")
    stats_interval_s: float = setting(5.0, "period of `stats` events")


@dataclass
class AgentSection:
    agent_id: str = setting("", "the Millis agent id (`join` requires one)")
    region: str = setting(MillisConfig.region, f"{' | '.join(REGIONS)}; or set url to a full base URL")
    url: str = setting("", "full base URL; overrides region")
    key_file: str = setting("", "a file holding the private key (else MILLIS_PRIVATE_KEY)")
    # From MILLIS_PRIVATE_KEY or key_file only: a config file holding it is refused.
    private_key: str = field(default="", repr=False, metadata=doc("", in_file=False))
    metadata: dict[str, str] = field(default_factory=dict, metadata=doc("sent with the offer"))
    include_metadata_in_prompt: bool = setting(
        MillisConfig.include_metadata_in_prompt, "Millis' flag of the same name"
    )
    bearer_fallback: bool = setting(MillisConfig.bearer_fallback, 'retry once with "Bearer <key>" on 401/403')
    timeout_s: float = setting(MillisConfig.timeout_s, "HTTP timeout of the offer exchange")
    ice_servers: list[str] = field(
        default_factory=lambda: list(DEFAULT_ICE_SERVERS), metadata=doc("[] for none")
    )
    ice_host_addresses: list[str] = field(
        default_factory=list,
        metadata=doc(
            "test configuration only: restrict ICE host candidates (e.g. 127.0.0.1 for a local stand-in)"
        ),
    )
    jitter_buffer: str = setting(
        PeerOptions.jitter_buffer, 'or "aiortc": aiortc\'s buffer holding receive_prefetch packets'
    )
    receive_prefetch: int = setting(
        PeerOptions.receive_prefetch, 'with jitter_buffer = "aiortc" (aiortc default: 4)'
    )
    codecs: str = setting(
        PeerOptions.codecs, 'Opus in mono on the event loop; or "aiortc": aiortc\'s codec threads (stereo)'
    )

    def peer_options(self) -> PeerOptions:
        """The agent peer's options, checked by the peer's own rules."""
        with as_setting("agent", host_addresses="ice_host_addresses"):
            return PeerOptions(
                # Always a list: [] means no STUN/TURN at all (local tests), never aiortc's default server.
                ice_servers=list(self.ice_servers),
                # Empty means "every interface", the real-call path; tests pin 127.0.0.1.
                host_addresses=list(self.ice_host_addresses) or None,
                receive_prefetch=self.receive_prefetch,
                jitter_buffer=self.jitter_buffer,
                codecs=self.codecs,
            )

    def millis_config(self) -> MillisConfig:
        """The Millis endpoint's options (`join` and `bridge` name an agent; `serve` builds none)."""
        with as_setting("agent", base_url="url"):
            return MillisConfig(
                agent_id=self.agent_id,
                private_key=self.private_key,
                region=self.region,
                base_url=self.url or None,
                metadata=dict(self.metadata) or None,
                include_metadata_in_prompt=self.include_metadata_in_prompt,
                bearer_fallback=self.bearer_fallback,
                timeout_s=self.timeout_s,
            )

    def check(self) -> None:
        """These settings against the agent's own rules, before any agent is named (`serve` has none):
        where the service is and the peer's options."""
        with as_setting("agent", base_url="url"):
            MillisConfig.check_service(self.region, self.url or None, self.timeout_s)
        self.peer_options()


@dataclass
class BrowserSection:
    executable_path: str = setting("/usr/bin/chromium", "the Chromium binary")
    # "headless": no X server needed, input synthesized by the browser (Meet drops such guests).
    display: str = setting(
        "xvfb",
        'headful on the bot\'s own Xvfb with OS-level input (what Meet and Zoom accept); or "headless"',
    )
    screen_size: str = setting("1280x800", "the virtual display's size (xvfb): a common laptop screen")
    profile_dir: str = setting("", "a signed-in profile from `meeting-bot login`; each bot runs on a copy")
    host_resolver_rules: str = setting(
        "", "test configuration only: map meet.google.com / *.zoom.us to a local replica"
    )
    trusted_cert_spki: str = setting("", "test configuration only: trust the replica's cert")
    allow_loopback_webrtc: bool = setting(False, "test configuration only")
    # The browser levers (bot.browser.levers): what Chromium leaves undone because the bot never looks at
    # video, without changing what the platform sees of its sound or presence.
    lean: bool = setting(
        True,
        "browser levers: remote video not drawn, no omnibox WebUI, no spare renderer, small driver heap "
        '(docs/benchmarks.md "Browser levers")',
    )
    extra_args: list[str] = field(default_factory=list, metadata=doc("more Chromium flags"))


_JOIN = JoinPolicy()
_CALL = CallPolicy()


@dataclass
class CallSection:
    """The defaults are the join and call policies' (bot.platforms.policies)."""

    max_duration_s: float = setting(_CALL.max_duration_s, "leave after this long in the call")
    alone_after_s: float = setting(
        _CALL.alone_after_s, "leave when nobody else has been in the call this long"
    )
    lobby_timeout_s: float = setting(_JOIN.lobby_timeout_s, "give up waiting for admission")
    host_absent_timeout_s: float = setting(
        _JOIN.host_absent_timeout_s, "give up waiting for the host to start the meeting"
    )
    join_retries: int = setting(
        _JOIN.retries, 'extra attempts when Meet blocks the join ("You can\'t join this video call")'
    )
    join_retry_delay_s: float = setting(_JOIN.retry_delay_s, "pause before each of those attempts")
    ui_stuck_s: float = setting(
        _JOIN.ui_stuck_s, "no known screen this long while joining: ui_changed, with the page's buttons"
    )
    network_retry_s: float = setting(
        _JOIN.network_retry_s,
        "the browser's own error page while joining: retried this long, then network_error",
    )

    def join_policy(self) -> JoinPolicy:
        with as_setting("call", retries="join_retries", retry_delay_s="join_retry_delay_s"):
            return JoinPolicy(
                lobby_timeout_s=self.lobby_timeout_s,
                host_absent_timeout_s=self.host_absent_timeout_s,
                retries=self.join_retries,
                retry_delay_s=self.join_retry_delay_s,
                ui_stuck_s=self.ui_stuck_s,
                network_retry_s=self.network_retry_s,
            )

    def call_policy(self) -> CallPolicy:
        with as_setting("call"):
            return CallPolicy(alone_after_s=self.alone_after_s, max_duration_s=self.max_duration_s)


@dataclass
class WebhookSection:
    url: str = setting("", "POST every event here, signed with BOT_WEBHOOK_SECRET")
    # Also signs `serve`'s deliveries; required with url.
    secret: str = field(default="", repr=False, metadata=doc("", in_file=False))
    retries: int = setting(3, "`join`: in-memory retries per event")
    # Svix's schedule, about 3 h 45 min in all; then the event is dead. Tests shrink it.
    retry_schedule_s: list[float] = field(
        default_factory=lambda: [5.0, 30.0, 120.0, 600.0, 1800.0, 3600.0, 7200.0],
        metadata=doc("`serve`: delays before each retry of a stored event"),
    )
    timeout_s: float = setting(10.0, "`serve`: one delivery attempt")


@dataclass
class SchedulerSection:
    """`serve` and the direct `schedule`/`list`/`cancel` (they compute the same start times)."""

    # May hold a password: never in a repr.
    db_url: str = field(
        default="",
        repr=False,
        metadata=doc("BOT_DB_URL; empty: a SQLite file in $XDG_STATE_HOME/meeting-bot/"),
    )
    lead_time_s: float = setting(30.0, "start each bot this early, so it is in the meeting at join_at")
    misfire_grace_s: float = setting(
        120.0, "a job found later than this (service down) is recorded as missed"
    )
    max_concurrent_bots: int = setting(4, "bots running at once; the rest wait as queued")
    queue_timeout_s: float = setting(1800.0, "still without a slot this long after join_at: missed")
    stop_timeout_s: float = setting(15.0, "asked to leave this long ago and still running: killed")
    poll_interval_s: float = setting(1.0, "how often `serve` looks for jobs and stop requests from clients")
    launcher: str = setting(
        "local", 'or "celery": bots run on `meeting-bot worker` hosts (see docs/cluster.md)'
    )
    broker_url: str = field(
        default="",
        repr=False,
        metadata=doc('BOT_BROKER_URL: the Redis of launcher = "celery", e.g. redis://redis:6379/0'),
    )
    host_timeout_s: float = setting(
        15.0, "a worker host silent this long is lost: its bots are re-launched elsewhere"
    )
    relaunch_attempts: int = setting(2, "re-launches of one bot after lost hosts")
    # The service's bearer tokens (BOT_API_TOKEN, BOT_METRICS_TOKEN): from the environment only, no repr.
    api_token: str = field(default="", repr=False, metadata=doc("", in_file=False))
    metrics_token: str = field(default="", repr=False, metadata=doc("", in_file=False))


@dataclass
class WorkerSection:
    """`meeting-bot worker`: a bot host of a cluster (scheduler.launcher = "celery")."""

    name: str = setting("", "in GET /hosts; empty: the machine's host name")
    capacity: int = setting(2, "bots at once (a bot in a call uses about a third of a core)")
    drain: str = setting("finish", 'on SIGTERM: let the bots finish, or "handoff" them to another host')
    heartbeat_interval_s: float = setting(2.0, "at most a third of scheduler.host_timeout_s")
    poll_interval_s: float = setting(0.5, "how often it looks for stop requests of its bots")


@dataclass
class Settings:
    bot: BotSection = field(default_factory=BotSection)
    agent: AgentSection = field(default_factory=AgentSection)
    browser: BrowserSection = field(default_factory=BrowserSection)
    call: CallSection = field(default_factory=CallSection)
    webhook: WebhookSection = field(default_factory=WebhookSection)
    scheduler: SchedulerSection = field(
        default_factory=SchedulerSection,
        metadata=doc("`serve`, and `schedule`/`list`/`cancel` without --api"),
    )
    worker: WorkerSection = field(
        default_factory=WorkerSection,
        metadata=doc('`meeting-bot worker` (a bot host of launcher = "celery")'),
    )


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
    for (section, key), instead in ENV_ONLY.items():
        if key in data.get(section, {}):
            raise SettingsError(f"{path}: {section}.{key} must not be stored in a config file; {instead}")
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

    s.agent.check()
    if require_key and not s.agent.private_key:
        fail("agent.private_key", f"no Millis private key: set {KEY_ENV} or agent.key_file")
    s.call.join_policy()  # the parts' own rules, through the one mapping from settings to options
    s.call.call_policy()
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
    # broker_url is checked where it is used (ClusterOptions and WorkerOptions.from_settings): a bot on a
    # worker host reads the same settings without the service's broker (its URL never reaches a bot).
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
