"""A cluster on one machine for tests and benchmarks: PostgreSQL and Redis on a virtual network's bridge,
`meeting-bot serve` with scheduler.launcher = celery, and worker hosts, each `meeting-bot worker` in its own
network namespace (tests/netns.py) reaching the servers over that network, never through 127.0.0.1.

With `meetings=True` real bots can join too (`Meetings`, `RealCall`): a Meet/Zoom replica and the agent
stand-in listen on the bridge address, each host's bots get the environment that points them there (host
mapping, certificate trust, ICE on the host's own address), and a bot scheduled with metadata `mode=real`
is the real `join` (tests/cluster_bot.py); the others stay the quick tests/fake_join.py. A bot's Xvfb and
PulseAudio are its own children, so they start inside its host's namespace.

Each host has its own temporary directory (TMPDIR of its worker and bots): a power cut wipes it, as a
reboot does, since nothing on the host is left to clean up.

Every process is started and stopped by its own handle; `Cluster.close()` checks that no process is left
in a host's namespace before deleting it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

from bot.system.processes import descendants
from bot.testing.postgres import pg_bin
from tests.bridge_support import KEY
from tests.netns import Host, VirtualNetwork
from tests.scheduler_support import FAKE_JOIN, MEET_URL

if TYPE_CHECKING:
    from bot.testing.agent import CallRecord, StandInAgent
    from bot.testing.participant import Participant
    from bot.testing.replica.server import ReplicaServer

CLUSTER_BOT = Path(__file__).with_name("cluster_bot.py")  # real bots beside fake ones (meetings=True)

TOKEN = "cluster-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TERMINAL = {"ended", "failed", "missed", "cancelled", "crashed"}
RUNNING = {"starting", "joining", "awaiting_admission", "in_call"}


# Processes a module-scoped cluster keeps across its tests and stops itself (conftest's no_leftovers leaves
# them alone): single processes (the service, the workers: their bots are still checked), and trees (a
# database server with the backend it forks per connection).
KEPT_PIDS: set[int] = set()
KEPT_TREES: set[int] = set()


def kept_processes() -> set[int]:
    kept = set(KEPT_PIDS)
    for root in KEPT_TREES:
        kept |= {root, *descendants(root)}
    return kept


def _as_postgres_user() -> dict[str, Any]:
    if os.geteuid() != 0:
        return {}
    import pwd

    pw = pwd.getpwnam("postgres")
    return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}


def free_port(address: str) -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        port: int = s.getsockname()[1]
        return port


def wait_until(check: Callable[[], Any], timeout: float, what: str, every: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)


def _stop(proc: subprocess.Popen[Any] | None, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class NetworkPostgres:
    """PostgreSQL listening on `address` only, trusting clients of `subnet` (and its own socket)."""

    def __init__(self, address: str, subnet: str) -> None:
        self.address, self.subnet = address, subnet
        self.port = free_port(address)
        self.base = Path(tempfile.mkdtemp(prefix="bot-pgn-"))
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@{self.address}:{self.port}/{database}"

    def start(self) -> NetworkPostgres:
        import psycopg

        drop = _as_postgres_user()
        if drop:
            os.chown(self.base, drop["user"], drop["group"])
        data = self.base / "data"
        subprocess.run(
            [pg_bin("initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "--no-sync"],
            check=True, capture_output=True, cwd=self.base, **drop,
        )  # fmt: skip
        (data / "pg_hba.conf").write_text(f"local all all trust\nhost all all {self.subnet} trust\n")
        self.proc = subprocess.Popen(
            [
                pg_bin("postgres"), "-D", str(data), "-k", str(self.base), "-p", str(self.port),
                "-c", f"listen_addresses={self.address}", "-c", "fsync=off", "-c", "synchronous_commit=off",
                "-c", "max_connections=300",
            ],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=self.base, **drop,
        )  # fmt: skip
        KEPT_TREES.add(self.proc.pid)

        def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError("PostgreSQL exited at start")
            try:
                psycopg.connect(self.url(), connect_timeout=2).close()
                return True
            except psycopg.OperationalError:
                return False

        wait_until(ready, 60, "PostgreSQL")
        return self

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def close(self) -> None:
        _stop(self.proc, signal.SIGINT)
        if self.proc is not None:
            KEPT_TREES.discard(self.proc.pid)
        self.proc = None
        shutil.rmtree(self.base, ignore_errors=True)


class RedisServer:
    """A redis-server on `address` that keeps nothing on disk: a restart is a flush."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.port = free_port(address)
        self.dir = Path(tempfile.mkdtemp(prefix="bot-redis-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.address}:{self.port}/0"

    def start(self) -> RedisServer:
        import redis

        self.proc = subprocess.Popen(
            [
                shutil.which("redis-server") or "/usr/bin/redis-server", "--bind", self.address,
                "--port", str(self.port), "--save", "", "--appendonly", "no", "--protected-mode", "no",
                "--dir", str(self.dir), "--loglevel", "warning",
            ],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        KEPT_PIDS.add(self.proc.pid)

        def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError("redis-server exited at start")
            try:
                return bool(redis.Redis(host=self.address, port=self.port, socket_timeout=1).ping())
            except redis.RedisError:
                return False

        wait_until(ready, 30, "Redis", every=0.05)
        return self

    def client(self) -> Any:
        import redis

        return redis.Redis(host=self.address, port=self.port, socket_timeout=5)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        _stop(self.proc, sig)
        if self.proc is not None:
            KEPT_PIDS.discard(self.proc.pid)
        self.proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


# A host's own X socket directory, as on a machine of its own. Xvfb -displayfd takes the first display
# number whose abstract socket is free, and abstract sockets are per network namespace: the first Xvfb on
# every host takes :0 and replaces /tmp/.X11-unix/X0, so X clients that use the socket file (python-xlib,
# the bots' OS-level input) would reach another host's display. `ip netns exec` runs the worker in a mount
# namespace of its own (not propagated back), where this tmpfs hides the shared directory; it goes with the
# host's last process.
_OWN_X11_SOCKETS = 'mkdir -p /tmp/.X11-unix && mount -t tmpfs -o mode=1777 tmpfs /tmp/.X11-unix && exec "$@"'


class WorkerProcess:
    """`meeting-bot worker` on one host; bots are tests/fake_join.py unless `bot_command` says otherwise."""

    def __init__(
        self,
        host: Host,
        name: str,
        env: dict[str, str],
        capacity: int = 2,
        drain: str = "finish",
        bot_command: str = f"{sys.executable} {FAKE_JOIN}",
        log_dir: Path | None = None,
        tmp_dir: Path | None = None,
    ) -> None:
        self.host, self.name, self.env = host, name, env
        self.capacity, self.drain, self.bot_command = capacity, drain, bot_command
        self.log_dir = log_dir
        self.tmp_dir = tmp_dir  # the host's own temporary directory (its TMPDIR), wiped by a power cut
        self.proc: subprocess.Popen[str] | None = None
        self.starts = 0

    @property
    def runs_log(self) -> Path | None:
        return self.log_dir / f"{self.name}.runs" if self.log_dir else None

    def start(self, timeout: float = 60) -> WorkerProcess:
        self.starts += 1
        env = {**self.env, "PYTHONUNBUFFERED": "1"}
        if self.tmp_dir:
            self.tmp_dir.mkdir(parents=True, exist_ok=True)
            env["TMPDIR"] = str(self.tmp_dir)
        if self.runs_log:
            env["FAKE_JOIN_LOG"] = str(self.runs_log)
        stderr: Any = subprocess.DEVNULL
        if self.log_dir:
            stderr = open(self.log_dir / f"{self.name}.{self.starts}.log", "w")  # noqa: SIM115
        try:
            self.proc = subprocess.Popen(
                [
                    *self.host.run_args(), "sh", "-c", _OWN_X11_SOCKETS, "worker-host",
                    sys.executable, "-m", "bot", "worker",
                    f"--capacity={self.capacity}", f"--name={self.name}", f"--drain={self.drain}",
                    f"--bot-command={self.bot_command}",
                ],
                env=env, stdout=subprocess.PIPE, stderr=stderr, text=True,
                cwd=Path(__file__).resolve().parent.parent,
            )  # fmt: skip
        finally:
            if stderr is not subprocess.DEVNULL:
                stderr.close()
        KEPT_PIDS.add(self.proc.pid)
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while True:
            ready, _, _ = select.select([self.proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
            line = self.proc.stdout.readline() if ready else ""
            if line.startswith(f"worker {self.name} ready"):
                return self
            if not line and (self.proc.poll() is not None or time.monotonic() > deadline):
                self.stop(signal.SIGKILL)
                raise RuntimeError(f"worker {self.name} did not start (exit {self.proc.poll()})")

    def send(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def power_cut(self) -> list[int]:
        """SIGKILLs every process of the host at once (a power cut); returns their pids. What they left in
        the host's temporary directory is wiped, as a reboot would (nothing of the host is left to clean
        up; its X socket directory goes with its mount namespace)."""
        pids = self.host.pids()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(timeout=30)
            KEPT_PIDS.discard(self.proc.pid)
            if self.proc.stdout:
                self.proc.stdout.close()
        self.proc = None
        wait_until(lambda: not any(map(_alive, pids)), 10, "the killed processes")
        if self.tmp_dir is not None:
            shutil.rmtree(self.tmp_dir, ignore_errors=True)
        return pids

    def stop(self, sig: int = signal.SIGQUIT, timeout: float = 60) -> None:
        """Stops the worker (default: cold shutdown, every bot leaves now) and waits for it."""
        if self.proc is not None:
            _stop(self.proc, sig, timeout)
            KEPT_PIDS.discard(self.proc.pid)
            if self.proc.stdout:
                self.proc.stdout.close()
        self.proc = None


def _alive(pid: int) -> bool:
    """Whether the process exists and is not a zombie (one whose parent died too may stay unreaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


T = TypeVar("T")


class Meetings:
    """The meeting side of real bots on the hosts: a Meet/Zoom replica and the agent stand-in, in this
    process on an event loop of their own (a thread), both listening on `address` (the bridge's), with the
    stand-in's ICE on that address too. Simulated people (`Participant`, headless, in this machine's
    network) join the replica's rooms on the same loop. `run(coro)` runs a coroutine there."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="cluster-meetings", daemon=True)
        self.replica: ReplicaServer | None = None
        self.agent: StandInAgent | None = None

    def start(self) -> Meetings:
        from bot.agent.peer import PeerOptions
        from bot.testing.agent import StandInAgent
        from bot.testing.replica.server import ReplicaServer

        self._thread.start()

        async def start() -> None:
            self.replica = ReplicaServer(host=self.address)
            await self.replica.start()
            self.agent = StandInAgent(
                KEY,
                host=self.address,
                peer_options=PeerOptions(ice_servers=[], host_addresses=[self.address]),
            )
            await self.agent.start()

        try:
            self.run(start())
        except BaseException:
            self.close()
            raise
        return self

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def bot_env(self, host: Host) -> dict[str, str]:
        """What a real bot on `host` needs to reach the replica and the stand-in over the network."""
        from bot.testing.local_env import local_bot_env

        assert self.replica is not None and self.agent is not None
        return {**local_bot_env(self.replica, self.agent, KEY), "BOT_AGENT_ICE_HOST_ADDRESSES": host.address}

    def close(self) -> None:
        async def stop() -> None:
            if self.agent is not None:
                await self.agent.close()
            if self.replica is not None:
                await self.replica.close()

        if self._thread.is_alive():
            try:
                self.run(stop(), timeout=30)
            finally:
                self.loop.call_soon_threadsafe(self.loop.stop)
                self._thread.join(10)
        self.loop.close()


def window_levels(samples: Any, hz: float, step_s: float = 0.1) -> list[tuple[float, bool]]:
    """(level in dBFS, whether `hz` dominates) of each `step_s` window of mono float32 48 kHz `samples`."""
    from bot.audio.analysis import dominant_frequency, rms_dbfs
    from bot.audio.frames import SAMPLE_RATE
    from bot.testing.participant import to_pcm

    n = int(SAMPLE_RATE * step_s)
    out = []
    for i in range(0, len(samples) - n + 1, n):
        pcm = to_pcm(samples[i : i + n])
        out.append((rms_dbfs(pcm), abs(dominant_frequency(pcm) - hz) < 25))
    return out


class RealCall:
    """One real bot in a replica meeting with a simulated person: the person speaks a steady tone the whole
    time (`person_hz`), the bot's agent is the stand-in's `tone-<agent_hz>` (it answers its own tone while
    it hears sound), so audio both ways can be checked at any moment. `start()` puts the person in the room
    and schedules the bot; `close()` takes the person out (end the bot first)."""

    def __init__(
        self, cluster: Cluster, meeting_id: str, person_hz: float, agent_hz: float, bot_name: str = "Agent"
    ) -> None:
        assert cluster.meetings is not None, "Cluster(meetings=True) runs real bots"
        self.cluster, self.meetings = cluster, cluster.meetings
        self.meeting_id, self.person_hz, self.agent_hz = meeting_id, person_hz, agent_hz
        self.bot_name = bot_name
        self.agent_id = f"tone-{agent_hz:g}"
        self.person: Participant | None = None
        self.bot_id = ""
        self.most_bots_in_room = 0  # the most members named `bot_name` in the call at once
        self._watch: asyncio.Future[None] | None = None  # on the meetings' loop

    @property
    def url(self) -> str:
        return f"https://meet.google.com/{self.meeting_id}"

    def start(self, **schedule: Any) -> RealCall:
        return start_calls([self], **schedule)[0]

    async def _join_person(self) -> None:
        from bot.testing.participant import Participant

        assert self.meetings.replica is not None
        person = Participant(self.meetings.replica, "meet", self.meeting_id, name="Person", host=True)
        await person.start()
        self.person = person
        await person.play_tone(self.person_hz, 3600.0, gain=0.3)
        self._watch = asyncio.ensure_future(self._watch_room())

    def _schedule(self, **schedule: Any) -> None:
        self.bot_id = self.cluster.schedule(
            mode="real", meeting_url=self.url, agent_id=self.agent_id, bot_name=self.bot_name, **schedule
        )

    async def _watch_room(self) -> None:
        assert self.meetings.replica is not None
        room = self.meetings.replica.room("meet", self.meeting_id)

        def count(r: Any) -> bool:
            here = sum(1 for p in r.in_call() if p.name == self.bot_name)
            self.most_bots_in_room = max(self.most_bots_in_room, here)
            return False

        with contextlib.suppress(TimeoutError):
            await room.wait_until(count, timeout=3600)

    def calls(self) -> list[CallRecord]:
        """The stand-in's calls of this bot's agent, in order."""
        assert self.meetings.agent is not None
        agent = self.meetings.agent

        async def calls() -> list[CallRecord]:
            return [c for c in agent.calls if c.agent_id == self.agent_id]

        return self.meetings.run(calls())

    def both_ways(self, last_s: float = 1.5) -> tuple[float, float, float]:
        """(what the agent heard lately, what the person heard lately: dominant Hz, and its dBFS)."""
        from bot.audio.analysis import dominant_frequency, rms_dbfs
        from bot.testing.participant import to_pcm

        assert self.person is not None
        person = self.person
        calls = self.calls()

        async def person_heard() -> bytes:
            now = await person.clock()
            return to_pcm((await person.heard_since(now - last_s))[1])

        agent_heard = bytes(calls[-1].heard[-int(96_000 * last_s) :]) if calls else b""
        heard = self.meetings.run(person_heard())
        return dominant_frequency(agent_heard), dominant_frequency(heard), rms_dbfs(heard)

    def hears_both_ways(self, timeout: float = 20) -> tuple[float, float, float]:
        """Waits until the agent hears the person's tone and the person the agent's; returns `both_ways()`."""
        last: tuple[float, float, float] = (0.0, 0.0, -120.0)

        def ok() -> bool:
            nonlocal last
            last = self.both_ways()
            agent_hz, person_hz, level = last
            return abs(agent_hz - self.person_hz) < 15 and abs(person_hz - self.agent_hz) < 15 and level > -45

        try:
            wait_until(ok, timeout, "audio both ways", every=0.5)
        except AssertionError:
            raise AssertionError(
                f"bot {self.bot_id}: no audio both ways within {timeout:g} s: the agent heard "
                f"{last[0]:.0f} Hz (want {self.person_hz:g}), the person {last[1]:.0f} Hz at "
                f"{last[2]:.0f} dBFS (want {self.agent_hz:g}); {self.cluster.bot(self.bot_id)}"
            ) from None
        return last

    def agent_heard_again(self, cut: float, timeout: float) -> float:
        """After a cut at `cut` (time.time()): when the person first hears the agent's tone from a new
        agent session, one that began after the cut (time.time() seconds). Counted from the moment that
        session started answering, so no late audio of the old session (delayed in the person's page when
        the machine is busy) can pass for it."""
        assert self.person is not None
        person = self.person
        wall_minus_mono = time.time() - time.monotonic()  # the stand-in's times are this process's monotonic

        def answering() -> float | None:
            for call in self.calls():
                if call.started_at + wall_minus_mono > cut and call.answer_started_at is not None:
                    return call.answer_started_at + wall_minus_mono
            return None

        what = f"bot {self.bot_id}'s new agent session answering"
        answered: float = wait_until(answering, max(1.0, cut + timeout - time.time()), what, every=0.2)

        async def heard() -> tuple[float, Any]:
            return await person.heard_since(person.page_time(answered))

        def back() -> float | None:
            start, samples = self.meetings.run(heard())
            for i, (level, tone) in enumerate(window_levels(samples, self.agent_hz)):
                if level > -45 and tone:
                    return person.wall_time(start + i * 0.1)
            return None

        what = f"the person hearing bot {self.bot_id}'s agent again"
        found: float = wait_until(back, max(1.0, cut + timeout - time.time()), what, every=0.2)
        return found

    def close(self) -> None:
        if self._watch is not None:
            self.meetings.loop.call_soon_threadsafe(self._watch.cancel)
        if self.person is not None:
            self.meetings.run(self.person.close())
            self.person = None


def start_calls(calls: list[RealCall], **schedule: Any) -> list[RealCall]:
    """Puts each call's person in its room (all at once), then schedules each real bot. On an error the
    people who joined leave again."""
    if not calls:
        return calls
    meetings = calls[0].meetings

    async def join_all() -> None:
        results = await asyncio.gather(*(c._join_person() for c in calls), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    try:
        meetings.run(join_all())
    except BaseException:
        for c in calls:
            c.close()
        raise
    for c in calls:
        c._schedule(**schedule)
    return calls


class Cluster:
    """The whole setup; see the module's docstring. `start()`/`close()`."""

    def __init__(
        self,
        hosts: int = 3,
        capacity: int = 2,
        host_timeout_s: float = 5.0,
        meetings: bool = False,
        **env: str,
    ) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="bot-cluster-"))
        self.net = VirtualNetwork(hosts)
        self.meetings = Meetings(self.net.address) if meetings else None
        self.capacity = capacity
        self.host_timeout_s = host_timeout_s
        self.extra_env = env
        self.pg: NetworkPostgres | None = None
        self.redis: RedisServer | None = None
        self.serve: subprocess.Popen[str] | None = None
        self.workers: list[WorkerProcess] = []
        self.db_url = ""
        self.api: httpx.Client | None = None

    def env(self) -> dict[str, str]:
        assert self.redis is not None
        return {
            **os.environ,
            "BOT_DB_URL": self.db_url,
            "BOT_BROKER_URL": self.redis.url,
            "BOT_SCHEDULER_LAUNCHER": "celery",
            "BOT_SCHEDULER_HOST_TIMEOUT_S": f"{self.host_timeout_s:g}",
            "BOT_WORKER_HEARTBEAT_INTERVAL_S": f"{self.host_timeout_s / 5:g}",
            "BOT_WORKER_POLL_INTERVAL_S": "0.25",
            "BOT_SCHEDULER_POLL_INTERVAL_S": "0.5",
            # A bot asked to leave is killed after this; a real bot leaving takes seconds on a loaded machine.
            "BOT_SCHEDULER_STOP_TIMEOUT_S": "20" if self.meetings is not None else "5",
            **self.extra_env,
        }

    def start(self) -> Cluster:
        try:
            self.net.start()
            if self.meetings is not None:
                self.meetings.start()
            self.pg = NetworkPostgres(self.net.address, str(self.net.subnet)).start()
            self.db_url = self.pg.create_database("bots")
            self.redis = RedisServer(self.net.address).start()
            self._start_serve()
            names = [f"w{i + 1}" for i in range(len(self.net.hosts))]
            self.workers = [
                self._worker(host, name) for host, name in zip(self.net.hosts, names, strict=True)
            ]
            for w in self.workers:
                w.start()
        except BaseException:
            self.close()
            raise
        return self

    def _worker(self, host: Host, name: str) -> WorkerProcess:
        env, command = self.env(), f"{sys.executable} {FAKE_JOIN}"
        if self.meetings is not None:
            env.update(self.meetings.bot_env(host))
            env["BOT_BOT_ARTIFACTS_DIR"] = str(self.tmp / name / "artifacts")
            command = f"{sys.executable} {CLUSTER_BOT}"
        return WorkerProcess(
            host,
            name,
            env,
            self.capacity,
            bot_command=command,
            log_dir=self.tmp,
            # Its own, directly in the temporary directory: Chromium's socket paths in it must stay short.
            tmp_dir=Path(tempfile.mkdtemp(prefix=f"mb{name}-")),
        )

    def _start_serve(self) -> None:
        env = {**self.env(), "BOT_API_TOKEN": TOKEN, "PYTHONUNBUFFERED": "1"}
        log = open(self.tmp / "serve.log", "w")  # noqa: SIM115
        try:
            self.serve = subprocess.Popen(
                [sys.executable, "-m", "bot", "serve", "--port=0"],
                env=env, stdout=subprocess.PIPE, stderr=log, text=True,
            )  # fmt: skip
        finally:
            log.close()
        KEPT_PIDS.add(self.serve.pid)
        assert self.serve.stdout is not None
        line = self.serve.stdout.readline()
        if not line.startswith("serving on http://"):
            said = (self.tmp / "serve.log").read_text()[-2000:]
            raise RuntimeError(f"serve did not start: {line!r} {said}")
        self.api = httpx.Client(base_url=line.split()[2], headers=AUTH, timeout=30)

    def close(self) -> None:
        """Stops everything; each step runs even when an earlier one fails (the errors are raised at the
        end), so nothing outlives a failed test run."""
        errors: list[str] = []

        def step(what: str, fn: Callable[..., Any], *args: Any) -> None:
            try:
                fn(*args)
            except Exception as e:
                errors.append(f"{what}: {e!r}")

        stopping = [  # all at once: each takes seconds when the machine is busy
            threading.Thread(target=step, args=(f"stopping {w.name}", w.stop)) for w in self.workers
        ]
        for t in stopping:
            t.start()
        for t in stopping:
            t.join()
        if self.api is not None:
            step("closing the API client", self.api.close)
        step("stopping serve", _stop, self.serve)
        if self.serve is not None:
            KEPT_PIDS.discard(self.serve.pid)
            if self.serve.stdout:
                self.serve.stdout.close()
        for host in self.net.hosts:
            step(f"emptying {host.name}", self._empty, host, errors)
        if self.redis is not None:
            step("stopping Redis", self.redis.close)
        if self.pg is not None:
            step("stopping PostgreSQL", self.pg.close)
        if self.meetings is not None:
            step("stopping the replica and the agent stand-in", self.meetings.close)
        step("deleting the network", self.net.close)
        for w in self.workers:
            if w.tmp_dir is not None:
                shutil.rmtree(w.tmp_dir, ignore_errors=True)
        shutil.rmtree(self.tmp, ignore_errors=True)
        if errors:
            raise AssertionError("; ".join(errors))

    @staticmethod
    def _empty(host: Host, errors: list[str]) -> None:
        """Kills what is still running on a stopped host (a bot's processes may take a moment to go)."""
        try:
            wait_until(lambda: not host.pids(), 10, f"the processes of {host.name} to end")
        except AssertionError:
            left = host.pids()
            errors.append(f"processes left on {host.name}: {left}")
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    # --- the API -------------------------------------------------------------------------------------

    def schedule(
        self, mode: str = "call", max_duration_s: float | None = None, join_in_s: float = 0, **kw: Any
    ) -> str:
        """POST /bots of a fake bot (tests/fake_join.py's `mode`); returns its id."""
        assert self.api is not None
        body: dict[str, Any] = {"meeting_url": MEET_URL, "agent_id": "agent-1", "metadata": {"mode": mode}}
        body.update(kw)
        if max_duration_s is not None:
            body["max_duration_s"] = max_duration_s
        if join_in_s:
            body["join_at"] = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=join_in_s)).isoformat()
        r = self.api.post("/bots", json=body)
        assert r.status_code == 201, r.text
        bot_id: str = r.json()["id"]
        return bot_id

    def bot(self, bot_id: str) -> dict[str, Any]:
        assert self.api is not None
        r = self.api.get(f"/bots/{bot_id}")
        assert r.status_code == 200, r.text
        data: dict[str, Any] = r.json()
        return data

    def bots(self, ids: Iterable[str]) -> list[dict[str, Any]]:
        return [self.bot(i) for i in ids]

    def hosts(self) -> dict[str, dict[str, Any]]:
        assert self.api is not None
        r = self.api.get("/hosts")
        assert r.status_code == 200, r.text
        return {h["name"]: h for h in r.json()}

    def cancel(self, bot_id: str) -> int:
        assert self.api is not None
        return self.api.delete(f"/bots/{bot_id}").status_code

    def wait_state(self, bot_id: str, states: set[str], timeout: float = 30) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            b = self.bot(bot_id)
            return b if b["state"] in states else None

        try:
            result: dict[str, Any] = wait_until(check, timeout, f"bot {bot_id} in {sorted(states)}")
        except AssertionError:
            raise AssertionError(f"bot {bot_id} never reached {sorted(states)}: {self.bot(bot_id)}") from None
        return result

    def end_all(self, ids: Iterable[str], timeout: float = 30) -> None:
        """Cancels the bots and waits until each has ended (a test leaves no bot running)."""
        ids = list(ids)
        for i in ids:
            self.cancel(i)
        for i in ids:
            self.wait_state(i, TERMINAL, timeout)

    def runs(self, worker: WorkerProcess) -> list[str]:
        """The bot ids the worker's fake bots logged at their start, in order."""
        log = worker.runs_log
        return [line.split()[0] for line in log.read_text().splitlines()] if log and log.exists() else []
