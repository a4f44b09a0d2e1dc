"""Typed settings: defaults < TOML file < environment < command-line flags, validated once.

Every setting is `section.key`; its environment variable is `BOT_<SECTION>_<KEY>` (the Millis key is
`MILLIS_PRIVATE_KEY`, or a file named by `agent.key_file`). Errors name the setting and say what to fix.
Secrets never reach a repr, a log line or a stored file.
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
REGIONS = ("us-west", "eu-west")


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


@dataclass
class BrowserSection:
    executable_path: str = "/usr/bin/chromium"
    headless: bool = True
    # Test configuration only: map meet.google.com / *.zoom.us to a local replica and trust its cert.
    host_resolver_rules: str = ""
    trusted_cert_spki: str = ""
    allow_loopback_webrtc: bool = False
    extra_args: list[str] = field(default_factory=list)


@dataclass
class CallSection:
    max_duration_s: float = 3 * 3600.0
    alone_after_s: float = 60.0
    lobby_timeout_s: float = 600.0
    host_absent_timeout_s: float = 300.0
    join_retries: int = 2  # extra attempts when the platform blocks the join (Meet often lets a retry in)
    join_retry_delay_s: float = 5.0


@dataclass
class WebhookSection:
    url: str = ""
    secret: str = field(default="", repr=False)
    retries: int = 3


@dataclass
class Settings:
    bot: BotSection = field(default_factory=BotSection)
    agent: AgentSection = field(default_factory=AgentSection)
    browser: BrowserSection = field(default_factory=BrowserSection)
    call: CallSection = field(default_factory=CallSection)
    webhook: WebhookSection = field(default_factory=WebhookSection)

    def agent_base_url(self) -> str:
        return self.agent.url


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
        for f in dataclasses.fields(_section_type(section.name)):
            if f.name == "private_key":
                continue
            value = env.get(f"BOT_{section.name}_{f.name}".upper())
            if value is not None and value != "":
                layer.setdefault(section.name, {})[f.name] = value
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
            if isinstance(raw, str):
                return [item.strip() for item in raw.split(",") if item.strip()]
            if isinstance(raw, list):
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
    if a.jitter_buffer not in ("low-latency", "aiortc"):
        fail("agent.jitter_buffer", f"must be 'low-latency' or 'aiortc' (got {a.jitter_buffer!r})")
    c = s.call
    for name in ("max_duration_s", "alone_after_s", "lobby_timeout_s", "host_absent_timeout_s"):
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
    if not s.browser.executable_path:
        fail("browser.executable_path", "must name a Chromium binary")
