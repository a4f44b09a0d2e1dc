"""Settings layering and validation, with the key kept out of every repr."""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import tomllib
from pathlib import Path

import pytest

from bot.agent.peer import PeerOptions
from bot.call.config import SessionConfig
from bot.settings import DEFAULT_CONFIG, REGIONS, Settings, SettingsError, load_settings, parse_pairs

KEY = "sk-live-very-secret-123"


def test_layers_defaults_file_env_flags(tmp_path: Path) -> None:
    cfg = tmp_path / "bot.toml"
    cfg.write_text('[bot]\nname = "From File"\n[call]\nalone_after_s = 30\nmax_duration_s = 100\n')
    env = {"MILLIS_PRIVATE_KEY": KEY, "BOT_CALL_ALONE_AFTER_S": "20", "BOT_AGENT_REGION": "eu-west"}
    s = load_settings(cfg, env, {"call": {"alone_after_s": 10.0}})
    assert s.bot.name == "From File"  # file beats default
    assert s.call.max_duration_s == 100  # file
    assert s.agent.region == "eu-west"  # env beats default
    assert s.call.alone_after_s == 10.0  # flag beats env beats file
    assert s.agent.private_key == KEY
    assert s.browser.executable_path == "/usr/bin/chromium"


def test_env_lists_bools_and_dicts() -> None:
    env = {
        "MILLIS_PRIVATE_KEY": KEY,
        "BOT_AGENT_ICE_HOST_ADDRESSES": "127.0.0.1",
        "BOT_AGENT_BEARER_FALLBACK": "no",
        "BOT_AGENT_METADATA": "team=sales,call=42",
    }
    s = load_settings(None, env)
    assert s.agent.ice_host_addresses == ["127.0.0.1"]
    assert s.agent.bearer_fallback is False
    assert s.agent.metadata == {"team": "sales", "call": "42"}


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({}, "agent.private_key"),
        ({"BOT_AGENT_REGION": "mars"}, "agent.region"),
        ({"BOT_AGENT_URL": "ftp://x"}, "agent.url"),
        ({"BOT_CALL_ALONE_AFTER_S": "soon"}, "call.alone_after_s"),
        ({"BOT_CALL_MAX_DURATION_S": "-5"}, "call.max_duration_s"),
        ({"BOT_WEBHOOK_URL": "https://hooks.example/x"}, "webhook.secret"),
        ({"BOT_BROWSER_DISPLAY": "wayland"}, "browser.display"),
        ({"BOT_BROWSER_SCREEN_SIZE": "big"}, "browser.screen_size"),
        ({"BOT_BROWSER_PROFILE_DIR": "/nonexistent/profile"}, "browser.profile_dir"),
    ],
)
def test_invalid_settings_name_the_setting(env: dict[str, str], names: str) -> None:
    full = {"MILLIS_PRIVATE_KEY": KEY, **env} if names != "agent.private_key" else env
    with pytest.raises(SettingsError, match=names.replace(".", r"\.")):
        load_settings(None, full)


def test_unknown_setting_and_key_in_file_are_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "bot.toml"
    cfg.write_text("[call]\nalone_after = 3\n")
    with pytest.raises(SettingsError, match=r"unknown setting call\.alone_after"):
        load_settings(cfg, {"MILLIS_PRIVATE_KEY": KEY})
    cfg.write_text(f'[agent]\nprivate_key = "{KEY}"\n')
    with pytest.raises(SettingsError) as err:
        load_settings(cfg, {})
    assert KEY not in str(err.value)
    cfg.write_text("[call\n")
    with pytest.raises(SettingsError, match="not valid TOML"):
        load_settings(cfg, {"MILLIS_PRIVATE_KEY": KEY})


def test_service_tokens_come_from_the_environment_only(tmp_path: Path) -> None:
    token, metrics = "api-token-0123456789abcdef", "metrics-token-0123456789"
    env = {"BOT_API_TOKEN": token, "BOT_METRICS_TOKEN": metrics}
    s = load_settings(None, env, require_key=False)
    assert (s.scheduler.api_token, s.scheduler.metrics_token) == (token, metrics)
    assert token not in repr(s) and metrics not in repr(s)
    cfg = tmp_path / "bot.toml"
    for key in ("api_token", "metrics_token"):
        cfg.write_text(f'[scheduler]\n{key} = "{token}"\n')
        with pytest.raises(
            SettingsError, match=rf"scheduler\.{key} must not be stored in a config file"
        ) as err:
            load_settings(cfg, {}, require_key=False)
        assert token not in str(err.value)


def test_key_file_and_secret_never_in_repr(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")
    caplog.set_level(logging.DEBUG)
    s = load_settings(
        None, {"BOT_AGENT_KEY_FILE": str(key_file), "BOT_WEBHOOK_SECRET": "hook-secret-xyz"}, None
    )
    assert s.agent.private_key == KEY
    logging.getLogger("test").info("settings: %r", s)
    for text in (repr(s), repr(s.agent), repr(s.webhook), caplog.text):
        assert KEY not in text
        assert "hook-secret-xyz" not in text
    (tmp_path / "empty").write_text("")
    with pytest.raises(SettingsError, match=r"agent\.key_file"):
        load_settings(None, {"BOT_AGENT_KEY_FILE": str(tmp_path / "empty")})


def test_shipped_config_file_loads() -> None:
    s = load_settings(None, {"MILLIS_PRIVATE_KEY": KEY})
    assert s.call.alone_after_s == 60.0
    assert s.agent.receive_prefetch == 1


def test_metadata_pairs() -> None:
    assert parse_pairs(["a=1", "b=x=y"]) == {"a": "1", "b": "x=y"}
    with pytest.raises(SettingsError, match="--metadata"):
        parse_pairs(["nokey"])


# --- one settings path: every command's options come from `Settings` through bot.call.config ----------


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """os.environ without this machine's BOT_* and MILLIS_* variables (commands read os.environ)."""
    for name in list(os.environ):
        if name.startswith(("BOT_", "MILLIS_")):
            monkeypatch.delenv(name)
    return monkeypatch


def test_empty_ice_servers_in_the_environment_means_none() -> None:
    """The local environment of tests, benchmarks and the demo sets BOT_AGENT_ICE_SERVERS="": those bots
    must not use the public STUN server (an empty variable used to be dropped)."""
    from bot.settings import BrowserSection
    from bot.testing.local_env import local_bot_env

    class Replica:
        def browser_section(self) -> BrowserSection:
            return BrowserSection(host_resolver_rules="MAP * 127.0.0.1", allow_loopback_webrtc=True)

    class Agent:
        base_url = "http://127.0.0.1:9"

    env = local_bot_env(Replica(), Agent(), KEY)  # type: ignore[arg-type]
    assert env["BOT_AGENT_ICE_SERVERS"] == ""
    s = load_settings(None, env)
    assert s.agent.ice_servers == []
    peer = SessionConfig.from_settings(s).bridge.peer
    assert peer.ice_servers == []  # [] is "none"; None would be aiortc's default STUN
    assert peer.host_addresses == ["127.0.0.1"]


def test_empty_environment_values(tmp_path: Path) -> None:
    cfg = tmp_path / "bot.toml"
    cfg.write_text(
        '[agent]\nurl = "http://127.0.0.1:9"\nmetadata = { a = "1" }\n[browser]\nextra_args = ["--x"]\n'
    )
    env = {
        "MILLIS_PRIVATE_KEY": KEY,
        "BOT_AGENT_URL": "",  # a single value: empty is unset (compose's `${BOT_AGENT_URL:-}`)
        "BOT_CALL_ALONE_AFTER_S": "",
        "BOT_AGENT_METADATA": "",  # a list or a table: empty is none
        "BOT_BROWSER_EXTRA_ARGS": " ",
    }
    s = load_settings(cfg, env)
    assert s.agent.url == "http://127.0.0.1:9"
    assert s.call.alone_after_s == 60.0
    assert s.agent.metadata == {}
    assert s.browser.extra_args == []
    assert load_settings(None, {"MILLIS_PRIVATE_KEY": KEY}).agent.ice_servers == [
        "stun:stun.l.google.com:19302"
    ]
    with pytest.raises(SettingsError, match=r"agent\.ice_servers"):
        load_settings(None, {"MILLIS_PRIVATE_KEY": KEY, "BOT_AGENT_ICE_SERVERS": "stun.example.org:3478"})


def test_scheduler_settings_from_toml_env_and_flags(tmp_path: Path) -> None:
    from bot.service.options import SchedulerConfig

    cfg = tmp_path / "bot.toml"
    cfg.write_text(
        "[scheduler]\nlead_time_s = 10\nmisfire_grace_s = 60\nmax_concurrent_bots = 2\n"
        'db_url = "sqlite:////from/file.db"\n'
    )
    env = {"BOT_SCHEDULER_LEAD_TIME_S": "5", "BOT_DB_URL": "postgresql://bot:pg-secret@db/bots"}
    s = load_settings(cfg, env, {"scheduler": {"max_concurrent_bots": 3}}, require_key=False)
    config = SchedulerConfig.from_settings(s)
    assert config.misfire_grace_s == 60  # file beats default
    assert config.lead_time_s == 5  # env beats file
    assert config.db_url == "postgresql://bot:pg-secret@db/bots"  # BOT_DB_URL, as documented
    assert config.max_concurrent_bots == 3  # flag beats file
    assert config.stop_timeout_s == 15.0  # default
    for text in (repr(s), repr(s.scheduler), repr(config)):
        assert "pg-secret" not in text
    # Without BOT_DB_URL or a file: a SQLite file in the user's state directory.
    assert SchedulerConfig.from_settings(load_settings(None, {}, require_key=False)).db_url.startswith(
        "sqlite:///"
    )
    with pytest.raises(SettingsError, match=r"scheduler\.max_concurrent_bots"):
        load_settings(None, {"BOT_SCHEDULER_MAX_CONCURRENT_BOTS": "0"}, require_key=False)
    with pytest.raises(SettingsError, match=r"scheduler\.lead_time_s"):
        load_settings(None, {"BOT_SCHEDULER_LEAD_TIME_S": "soon"}, require_key=False)


def test_schedule_command_reads_the_scheduler_section(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    """`schedule` computes the start time from [scheduler] lead_time_s of --config, as `serve` does."""
    from bot.commands.bot_records import load_scheduler_config

    cfg = tmp_path / "bot.toml"
    cfg.write_text("[scheduler]\nlead_time_s = 600\nmax_concurrent_bots = 2\n")
    clean_env.setenv("BOT_SCHEDULER_MAX_CONCURRENT_BOTS", "7")
    config = load_scheduler_config(cfg, db_url=f"sqlite:///{tmp_path / 'bots.db'}", lead_time_s=None)
    assert (config.lead_time_s, config.max_concurrent_bots) == (600, 7)
    assert config.db_url == f"sqlite:///{tmp_path / 'bots.db'}"


def test_bridge_command_honours_agent_jitter_buffer_unless_the_flag_is_given(
    tmp_path: Path, clean_env: pytest.MonkeyPatch
) -> None:
    from bot.call.config import bridge_options
    from bot.cli import build_parser
    from bot.commands import bridge

    def options(*argv: str) -> PeerOptions:
        args = build_parser("bridge").parse_args(["bridge", "--agent-id", "echo", *argv])
        return bridge_options(bridge.load(args)).peer

    clean_env.setenv("MILLIS_PRIVATE_KEY", KEY)
    cfg = tmp_path / "bot.toml"
    cfg.write_text('[agent]\njitter_buffer = "aiortc"\nreceive_prefetch = 2\n')
    assert options("--config", str(cfg)).jitter_buffer == "aiortc"
    assert options("--config", str(cfg)).receive_prefetch == 2
    assert options("--config", str(cfg), "--jitter-buffer", "low-latency").jitter_buffer == "low-latency"
    clean_env.setenv("BOT_AGENT_JITTER_BUFFER", "aiortc")
    assert options().jitter_buffer == "aiortc"
    assert options("--jitter-buffer", "low-latency").jitter_buffer == "low-latency"
    loopback = options("--loopback-ice")
    assert (loopback.ice_servers, loopback.host_addresses) == ([], ["127.0.0.1"])
    assert options().ice_servers == ["stun:stun.l.google.com:19302"]


def test_each_vocabulary_is_listed_once() -> None:
    """The regions and jitter buffers the flags, the API and the parts accept are the settings' lists."""
    import argparse

    from bot.cli import build_parser
    from bot.service.api import BotCreate
    from bot.settings import JITTER_BUFFERS, REGION_BASES

    def choices(command: str, flag: str) -> tuple[str, ...]:
        parser = build_parser(command)
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        action = next(a for a in sub.choices[command]._actions if flag in a.option_strings)
        assert action.choices is not None
        return tuple(action.choices)

    for command in ("join", "schedule", "bridge"):
        assert choices(command, "--region") == REGIONS
    for command in ("bridge", "agent-standin"):
        assert choices(command, "--jitter-buffer") == JITTER_BUFFERS
    region = BotCreate.model_json_schema()["properties"]["region"]["anyOf"][0]
    assert tuple(region["enum"]) == REGIONS
    assert tuple(REGION_BASES) == REGIONS
    with pytest.raises(ValueError, match="jitter_buffer"):
        PeerOptions(jitter_buffer="big")


def test_shipped_config_file_is_the_generated_one(capsys: pytest.CaptureFixture[str]) -> None:
    """config/bot.toml is what `meeting-bot config --defaults` prints (regenerate it after changing a
    setting: `meeting-bot config --defaults > config/bot.toml`)."""
    from bot.cli import main

    assert main(["config", "--defaults"]) == 0
    assert DEFAULT_CONFIG.read_text() == capsys.readouterr().out


def test_config_file_only_shows_the_defaults() -> None:
    """Every line of the generated file is commented out and, uncommented, equals the default."""
    from bot.commands.config import defaults_file

    text = defaults_file()
    assert tomllib.loads(text).keys() == {f.name for f in dataclasses.fields(Settings)}
    assert all(not values for values in tomllib.loads(text).values())  # nothing set
    shown = tomllib.loads(re.sub(r"(?m)^# (?=[a-z_]+ = )", "", text))
    defaults = Settings()
    for section in dataclasses.fields(Settings):
        for setting in dataclasses.fields(getattr(defaults, section.name)):
            if not setting.metadata["in_file"]:  # secrets belong in the environment
                assert setting.name not in shown[section.name]
                continue
            assert shown[section.name][setting.name] == getattr(getattr(defaults, section.name), setting.name)
            assert setting.metadata["doc"], f"{section.name}.{setting.name} has no doc"
    assert load_settings(None, {"MILLIS_PRIVATE_KEY": KEY}) == Settings(
        agent=dataclasses.replace(Settings().agent, private_key=KEY)
    )


def test_config_command_wants_what_to_print(capsys: pytest.CaptureFixture[str]) -> None:
    from bot.cli import main

    with pytest.raises(SystemExit) as exited:
        main(["config"])
    assert exited.value.code == 2
    assert "--defaults" in capsys.readouterr().err


def test_parts_own_the_defaults_and_rules() -> None:
    """The [agent] and [call] defaults are the parts' options' own, and a part's rule is reported as the
    setting it came from."""
    from bot.agent.options import MillisConfig
    from bot.platforms.policies import CallPolicy, JoinPolicy

    a, c = Settings().agent, Settings().call
    peer = PeerOptions()
    assert (a.receive_prefetch, a.jitter_buffer, a.codecs) == (
        peer.receive_prefetch,
        peer.jitter_buffer,
        peer.codecs,
    )
    assert (a.region, a.timeout_s, a.bearer_fallback) == (
        MillisConfig.region,
        MillisConfig.timeout_s,
        MillisConfig.bearer_fallback,
    )
    assert (c.join_retries, c.ui_stuck_s, c.alone_after_s) == (
        JoinPolicy().retries,
        JoinPolicy().ui_stuck_s,
        CallPolicy().alone_after_s,
    )
    env = {"MILLIS_PRIVATE_KEY": KEY}
    for variable, setting in [
        ("BOT_CALL_JOIN_RETRIES", "call.join_retries"),
        ("BOT_CALL_JOIN_RETRY_DELAY_S", "call.join_retry_delay_s"),
        ("BOT_AGENT_RECEIVE_PREFETCH", "agent.receive_prefetch"),
        ("BOT_AGENT_TIMEOUT_S", "agent.timeout_s"),
    ]:
        with pytest.raises(SettingsError, match=rf"^{re.escape(setting)}: "):
            load_settings(None, {**env, variable: "-1"})
    with pytest.raises(SettingsError, match=r"^agent\.codecs: must be one of inline, aiortc"):
        load_settings(None, {**env, "BOT_AGENT_CODECS": "gpu"})
    with pytest.raises(SettingsError, match=r"^agent\.url: must be a full http"):
        load_settings(None, {**env, "BOT_AGENT_URL": "api.millis.ai"})


def test_policies_and_scheduler_take_the_settings_defaults() -> None:
    from bot.platforms.policies import CallPolicy, JoinPolicy
    from bot.service.options import SchedulerConfig

    s = load_settings(None, {}, require_key=False)
    config = SessionConfig.from_settings(s)
    assert config.join_policy == JoinPolicy()
    assert config.call_policy == CallPolicy()
    assert SchedulerConfig.from_settings(s) == SchedulerConfig()


def test_key_file_that_cannot_be_read(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"agent\.key_file: cannot read"):
        load_settings(None, {"BOT_AGENT_KEY_FILE": str(tmp_path / "missing")})
    assert load_settings(None, {"MILLIS_PRIVATE_KEY": f" {KEY}\n"}).agent.private_key == KEY
