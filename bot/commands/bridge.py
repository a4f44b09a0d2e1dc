"""`meeting-bot bridge --agent-id ID`: devices + agent, no browser. Bind any PulseAudio client to them.

Useful to talk to an agent by hand (e.g. `PULSE_SERVER=… PULSE_SINK=… paplay speech.wav`) and to see the
live figures; Ctrl+C stops it cleanly.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.outcome import ExitCode, exit_code_for
from bot.settings import JITTER_BUFFERS, REGIONS, Settings, SettingsError, load_settings, parse_pairs

if TYPE_CHECKING:
    from bot.agent.millis import MillisConfig
    from bot.bridge import BridgeOptions


HELP = "start the audio devices and connect them to an agent (no meeting)"
DESCRIPTION = (
    "Start the bot's PulseAudio devices, connect them to a Millis agent and print live "
    "stats until Ctrl+C. The private key comes from MILLIS_PRIVATE_KEY or agent.key_file."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--agent-id", required=True, help="Millis agent id")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--region", choices=REGIONS, help="Millis region (default us-west)")
    where.add_argument("--agent-url", help="full agent base URL, e.g. a local stand-in")
    p.add_argument("--record", metavar="DIR", help="write WAVs of both directions to DIR")
    p.add_argument("--metadata", nargs="*", default=[], metavar="K=V", help="metadata sent to the agent")
    p.add_argument("--config", type=Path, help="TOML settings file (default config/bot.toml)")
    p.add_argument(
        "--jitter-buffer",
        choices=JITTER_BUFFERS,
        help="receive jitter buffer (agent.jitter_buffer): ours, no added delay, or aiortc's holding "
        "agent.receive_prefetch packets",
    )
    p.add_argument(
        "--loopback-ice",
        action="store_true",
        help="test configuration: no STUN and ICE on 127.0.0.1 only (for a local agent stand-in)",
    )


def load(args: argparse.Namespace) -> Settings:
    """The settings with this command's flags as the top layer (a flag not given leaves the setting)."""
    agent: dict[str, Any] = {"agent_id": args.agent_id}
    if args.region:
        agent["region"] = args.region
    if args.agent_url:
        agent["url"] = args.agent_url
    if args.metadata:
        agent["metadata"] = parse_pairs(args.metadata)
    if args.jitter_buffer:
        agent["jitter_buffer"] = args.jitter_buffer
    if args.loopback_ice:
        agent["ice_servers"] = []
        agent["ice_host_addresses"] = ["127.0.0.1"]
    layer: dict[str, dict[str, Any]] = {"agent": agent}
    if args.record:
        layer["bot"] = {"record_dir": args.record}
    return load_settings(args.config, overrides=layer)


def run(args: argparse.Namespace) -> int:
    from bot.call.config import bridge_options

    try:
        settings = load(args)
        agent = settings.agent.millis_config()
        options = bridge_options(settings)
    except (SettingsError, ValueError) as e:
        print(f"meeting-bot bridge: {e}", file=sys.stderr)
        return ExitCode.USAGE
    return asyncio.run(bridge(agent, options))


async def bridge(config: MillisConfig, options: BridgeOptions) -> int:
    from bot.agent.errors import AgentError
    from bot.agent.millis import MillisEndpoint
    from bot.aio import cancel_and_wait
    from bot.audio import AudioDevices
    from bot.bridge import Bridge, BridgeEvent

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    def on_event(event: BridgeEvent) -> None:
        print(f"[{event.kind}] {event.detail}" + (f" (attempt {event.attempt})" if event.attempt else ""))

    devices = AudioDevices.from_env()
    the_bridge: Bridge | None = None
    try:
        audio = await devices.start()
        print("Bind a browser or any PulseAudio client to the bot's devices:")
        for name, value in audio.env().items():
            print(f"  {name}={value}")
        streams = await devices.open_streams()
        the_bridge = Bridge(MillisEndpoint(config), streams.source, streams.sink, options, on_event)
        try:
            await the_bridge.start()
        except AgentError as e:
            print(f"meeting-bot bridge: {e}", file=sys.stderr)
            return int(exit_code_for(e.code))
        print("Connected. Live stats every second; Ctrl+C to stop.", flush=True)
        started = time.monotonic()
        lost = asyncio.create_task(the_bridge.wait_lost())
        stopped = asyncio.create_task(stop.wait())
        try:
            while not (lost.done() or stopped.done()):
                await asyncio.wait({lost, stopped}, timeout=1.0)
                s = the_bridge.stats
                print(
                    f"{time.monotonic() - started:6.0f}s  to agent {s.frames_out:6d} frames "
                    f"{s.level_out_dbfs:6.1f} dBFS | from agent {s.frames_in:6d} frames "
                    f"{s.level_in_dbfs:6.1f} dBFS | dropped {s.dropped_out}/{s.dropped_in} | "
                    f"reconnects {s.reconnects} | trimmed {s.trimmed_in}"
                    + (f" | reply {s.reply_delay_ms:.0f} ms" if s.reply_delay_ms is not None else ""),
                    flush=True,
                )
        finally:
            await cancel_and_wait(lost, stopped)
        delays = the_bridge.reply_delays_ms
        if delays:
            print("reply delays (ms): " + " ".join(f"{d:.1f}" for d in delays), flush=True)
        if the_bridge.lost:
            print("meeting-bot bridge: the agent was lost", file=sys.stderr)
            return int(ExitCode.AGENT_UNREACHABLE)
        return int(ExitCode.COMPLETED)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        if the_bridge is not None:
            await the_bridge.close()
        await devices.close()
