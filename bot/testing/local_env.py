"""The environment that points a real `meeting-bot join` at the local replica and agent stand-in.

Test and demo configuration only: host mapping and certificate trust for the replica, the stand-in's URL
and key, and ICE kept on loopback. The bot's code paths are the real ones.
"""

from __future__ import annotations

from bot.testing.agent import StandInAgent
from bot.testing.replica.server import ReplicaServer


def local_bot_env(server: ReplicaServer, agent: StandInAgent, key: str) -> dict[str, str]:
    browser = server.browser_section()
    return {
        "MILLIS_PRIVATE_KEY": key,
        "BOT_AGENT_URL": agent.base_url,
        "BOT_AGENT_ICE_SERVERS": "",
        "BOT_AGENT_ICE_HOST_ADDRESSES": "127.0.0.1",
        "BOT_BROWSER_HOST_RESOLVER_RULES": browser.host_resolver_rules,
        "BOT_BROWSER_TRUSTED_CERT_SPKI": browser.trusted_cert_spki,
        "BOT_BROWSER_ALLOW_LOOPBACK_WEBRTC": "true" if browser.allow_loopback_webrtc else "false",
    }
