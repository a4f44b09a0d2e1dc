"""`meeting-bot agent-standin`: the local stand-in agent (the Millis offer contract) for demos and tests."""

from __future__ import annotations

import argparse
import asyncio

from bot.settings import JITTER_BUFFERS

HELP = "run a local stand-in agent (echo, tone, speak, …) speaking the Millis offer contract"
DESCRIPTION = (
    "A local aiortc agent behind POST /webrtc/offer. The agent id picks the behaviour: "
    "echo, tone[-HZ], speak, hangup-after-S, freeze-after-S, slow-answer[-S], fail-500, with modifiers "
    "after a + (hangup-after-S, freeze-after-S, slow-answer-S, slow-reconnect-S). "
    "Prints its base URL, then serves until Ctrl+C."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # Kept here, light: building the CLI must not import aiortc/aiohttp for every command.
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port (default: any free port)")
    parser.add_argument("--key", help="the private key to accept (default: $MILLIS_PRIVATE_KEY)")
    parser.add_argument(
        "--jitter-buffer",
        choices=JITTER_BUFFERS,
        default=JITTER_BUFFERS[0],
        help="receive jitter buffer",
    )
    parser.add_argument(
        "--prefetch", type=int, default=1, help="with --jitter-buffer aiortc: packets held before playout"
    )
    parser.add_argument("--sentence", help="what the `speak` agent says")
    parser.add_argument(
        "--ice-address",
        help="the one address for its ICE host candidates (default 127.0.0.1; tests on a virtual network "
        "give the stand-in's own address there)",
    )


def run(args: argparse.Namespace) -> int:
    from bot.testing.agent import serve

    return asyncio.run(serve(args))
