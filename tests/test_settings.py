"""Settings layering and validation, with the key kept out of every repr."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from bot.settings import SettingsError, load_settings, parse_pairs

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
        "BOT_BROWSER_HEADLESS": "no",
        "BOT_AGENT_METADATA": "team=sales,call=42",
    }
    s = load_settings(None, env)
    assert s.agent.ice_host_addresses == ["127.0.0.1"]
    assert s.browser.headless is False
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
        ({"BOT_BROWSER_HEADLESS": "maybe"}, "browser.headless"),
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
