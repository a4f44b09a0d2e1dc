"""The bot command of the cluster tests' worker hosts when real bots join too (tests/cluster_support.py,
`Cluster(meetings=True)`): a bot whose metadata has `mode=real` becomes the real bot (this process is
replaced by `python -m bot join` with the same arguments and environment); any other runs
tests/fake_join.py in this process (the quick `join --json` stand-in, its `mode` as before).

Both log their start to FAKE_JOIN_LOG when it is set ("<BOT_ID> <unix time> <url>"), so a test sees every
run of every bot on a host. For debugging: with CLUSTER_BOT_LOG_DIR set, a real bot logs at debug level to
a file of its own there instead of its stderr (then its worker records no stderr tail).
"""

from __future__ import annotations

import os
import runpy
import sys
import time
from pathlib import Path

FAKE_JOIN = Path(__file__).with_name("fake_join.py")


def is_real(args: list[str]) -> bool:
    if "--metadata" not in args:
        return False
    return "mode=real" in args[args.index("--metadata") + 1 :]


def main() -> None:
    args = sys.argv[1:]
    if is_real(args):
        if log := os.environ.get("FAKE_JOIN_LOG"):
            with open(log, "a") as f:
                f.write(f"{os.environ.get('BOT_ID', '?')} {time.time():.3f} {args[0] if args else ''}\n")
        verbose = []
        if folder := os.environ.get("CLUSTER_BOT_LOG_DIR"):
            path = Path(folder) / f"{os.environ.get('BOT_ID', 'bot')}.{time.time():.0f}.log"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.dup2(fd, 2)
            os.close(fd)
            verbose = ["-vv"]
        os.execv(sys.executable, [sys.executable, "-m", "bot", *verbose, "join", *args])
    sys.argv = [str(FAKE_JOIN), *args]
    runpy.run_path(str(FAKE_JOIN), run_name="__main__")


if __name__ == "__main__":
    main()
