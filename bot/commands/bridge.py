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

from bot.exit_codes import ExitCode, exit_code_for
from bot.settings import REGIONS, Settings, SettingsError, load_settings, parse_pairs


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "bridge",
        help="start the audio devices and connect them to an agent (no meeting)",
        description="Start the bot's PulseAudio devices, connect them to a Millis agent and print live "
        "stats until Ctrl+C. The private key comes from MILLIS_PRIVATE_KEY or agent.key_file.",
    )
    p.add_argument("--agent-id", required=True, help="Millis agent id")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--region", choices=REGIONS, help="Millis region (default us-west)")
    where.add_argument("--agent-url", help="full agent base URL, e.g. a local stand-in")
    p.add_argument("--record", metavar="DIR", help="write WAVs of both directions to DIR")
    p.add_argument("--metadata", nargs="*", default=[], metavar="K=V", help="metadata sent to the agent")
    p.add_argument("--config", type=Path, help="TOML settings file (default config/bot.toml)")
    p.add_argument(
        "--jitter-buffer",
        choices=("low-latency", "aiortc"),
        default="low-latency",
        help="receive jitter buffer: ours (no added delay) or aiortc's with agent.receive_prefetch packets",
    )
    p.add_argument(
        "--loopback-ice",
        action="store_true",
        help="test configuration: no STUN and ICE on 127.0.0.1 only (for a local agent stand-in)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    layer: dict[str, dict[str, object]] = {"agent": {"agent_id": args.agent_id}}
    if args.region:
        layer["agent"]["region"] = args.region
    if args.agent_url:
        layer["agent"]["url"] = args.agent_url
    try:
        if args.metadata:
            layer["agent"]["metadata"] = parse_pairs(args.metadata)
        settings = load_settings(args.config, overrides=layer)
    except SettingsError as e:
        print(f"meeting-bot bridge: {e}", file=sys.stderr)
        return ExitCode.USAGE
    record_dir = Path(args.record) if args.record else None
    return asyncio.run(bridge(settings, record_dir, args.loopback_ice, args.jitter_buffer))


async def bridge(
    settings: Settings, record_dir: Path | None, loopback_ice: bool, jitter_buffer: str = "low-latency"
) -> int:
    from bot.agent.errors import AgentError
    from bot.agent.millis import MillisConfig, MillisEndpoint
    from bot.agent.peer import PeerOptions
    from bot.audio import AudioDevices
    from bot.bridge import Bridge, BridgeEvent, BridgeOptions

    a = settings.agent
    config = MillisConfig(
        agent_id=a.agent_id,
        private_key=a.private_key,
        region=a.region,
        base_url=a.url or None,
        metadata=a.metadata or None,
        include_metadata_in_prompt=a.include_metadata_in_prompt,
        bearer_fallback=a.bearer_fallback,
        timeout_s=a.timeout_s,
    )
    if loopback_ice:
        peer = PeerOptions.loopback(receive_prefetch=a.receive_prefetch, jitter_buffer=jitter_buffer)
    else:
        peer = PeerOptions(
            ice_servers=a.ice_servers,
            host_addresses=a.ice_host_addresses or None,
            receive_prefetch=a.receive_prefetch,
            jitter_buffer=jitter_buffer,
        )
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
        the_bridge = Bridge(
            MillisEndpoint(config),
            server=audio.server,
            capture_source=f"{audio.sink}.monitor",
            playback_sink=devices.names.agent_sink,
            options=BridgeOptions(peer=peer, record_dir=record_dir),
            on_event=on_event,
            reclock=devices.reclock,
        )
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
            for task in (lost, stopped):
                task.cancel()
            await asyncio.gather(lost, stopped, return_exceptions=True)
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


def main(argv: list[str] | None = None) -> int:
    """`python -m bot.commands.bridge …`: this command alone, without importing the other commands."""
    import logging

    parser = argparse.ArgumentParser(prog="python -m bot.commands.bridge")
    sub = parser.add_subparsers(dest="command", required=True)
    register(sub)
    args = parser.parse_args(["bridge", *(sys.argv[1:] if argv is None else argv)])
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
