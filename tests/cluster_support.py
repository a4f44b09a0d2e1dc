"""A cluster on one machine for tests and benchmarks: PostgreSQL and Redis on a virtual network's bridge,
`meeting-bot serve` with scheduler.launcher = celery, and worker hosts, each `meeting-bot worker` in its own
network namespace (tests/netns.py) reaching the servers over that network, never through 127.0.0.1.

Every process is started and stopped by its own handle; `Cluster.close()` checks that no process is left
in a host's namespace before deleting it.
"""

from __future__ import annotations

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
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import httpx

from bot.testing.postgres import pg_bin
from tests.netns import Host, VirtualNetwork
from tests.scheduler_support import FAKE_JOIN, MEET_URL

TOKEN = "cluster-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TERMINAL = {"ended", "failed", "missed", "cancelled", "crashed"}
RUNNING = {"starting", "joining", "awaiting_admission", "in_call"}


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
        self.proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


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
    ) -> None:
        self.host, self.name, self.env = host, name, env
        self.capacity, self.drain, self.bot_command = capacity, drain, bot_command
        self.log_dir = log_dir
        self.proc: subprocess.Popen[str] | None = None
        self.starts = 0

    @property
    def runs_log(self) -> Path | None:
        return self.log_dir / f"{self.name}.runs" if self.log_dir else None

    def start(self, timeout: float = 60) -> WorkerProcess:
        self.starts += 1
        env = {**self.env, "PYTHONUNBUFFERED": "1"}
        if self.runs_log:
            env["FAKE_JOIN_LOG"] = str(self.runs_log)
        stderr: Any = subprocess.DEVNULL
        if self.log_dir:
            stderr = open(self.log_dir / f"{self.name}.{self.starts}.log", "w")  # noqa: SIM115
        try:
            self.proc = subprocess.Popen(
                [
                    *self.host.run_args(), sys.executable, "-m", "bot", "worker",
                    f"--capacity={self.capacity}", f"--name={self.name}", f"--drain={self.drain}",
                    f"--bot-command={self.bot_command}",
                ],
                env=env, stdout=subprocess.PIPE, stderr=stderr, text=True,
                cwd=Path(__file__).resolve().parent.parent,
            )  # fmt: skip
        finally:
            if stderr is not subprocess.DEVNULL:
                stderr.close()
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
        """SIGKILLs every process of the host at once (a power cut); returns their pids."""
        pids = self.host.pids()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(timeout=30)
        return pids

    def stop(self, sig: int = signal.SIGQUIT, timeout: float = 60) -> None:
        """Stops the worker (default: cold shutdown, every bot leaves now) and waits for it."""
        if self.proc is not None:
            _stop(self.proc, sig, timeout)
            if self.proc.stdout:
                self.proc.stdout.close()
        self.proc = None


class Cluster:
    """The whole setup; see the module's docstring. `start()`/`close()`."""

    def __init__(self, hosts: int = 3, capacity: int = 2, host_timeout_s: float = 5.0, **env: str) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="bot-cluster-"))
        self.net = VirtualNetwork(hosts)
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
            "BOT_SCHEDULER_STOP_TIMEOUT_S": "5",
            **self.extra_env,
        }

    def start(self) -> Cluster:
        try:
            self.net.start()
            self.pg = NetworkPostgres(self.net.address, str(self.net.subnet)).start()
            self.db_url = self.pg.create_database("bots")
            self.redis = RedisServer(self.net.address).start()
            self._start_serve()
            names = [f"w{i + 1}" for i in range(len(self.net.hosts))]
            self.workers = [
                WorkerProcess(host, name, self.env(), self.capacity, log_dir=self.tmp)
                for host, name in zip(self.net.hosts, names, strict=True)
            ]
            for w in self.workers:
                w.start()
        except BaseException:
            self.close()
            raise
        return self

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
        assert self.serve.stdout is not None
        line = self.serve.stdout.readline()
        if not line.startswith("serving on http://"):
            said = (self.tmp / "serve.log").read_text()[-2000:]
            raise RuntimeError(f"serve did not start: {line!r} {said}")
        self.api = httpx.Client(base_url=line.split()[2], headers=AUTH, timeout=30)

    def close(self) -> None:
        errors: list[str] = []
        for w in self.workers:
            w.stop()
        if self.api is not None:
            self.api.close()
        _stop(self.serve)
        if self.serve is not None and self.serve.stdout:
            self.serve.stdout.close()
        for host in self.net.hosts:
            left = host.pids()
            if left:
                errors.append(f"processes left on {host.name}: {left}")
                for pid in left:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
        if self.redis is not None:
            self.redis.close()
        if self.pg is not None:
            self.pg.close()
        self.net.close()
        shutil.rmtree(self.tmp, ignore_errors=True)
        if errors:
            raise AssertionError("; ".join(errors))

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
