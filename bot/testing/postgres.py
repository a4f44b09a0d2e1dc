"""A private PostgreSQL server (Debian's `postgresql` package) for tests and benchmarks.

It runs from a fresh `initdb` in a temporary directory, listens only on a unix socket there (no port
conflicts, nothing reachable from outside), with fsync off, and is stopped by its own handle. PostgreSQL
refuses to run as root, so under root it runs as the `postgres` user.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

PORT = 5432  # on the private socket directory only: never conflicts with another server


def pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}")) or [shutil.which(name) or ""]
    if not found[-1]:
        raise RuntimeError(
            f"PostgreSQL's {name} is missing: run scripts/setup (it installs Debian's postgresql)"
        )
    return found[-1]


def _as_user() -> dict[str, Any]:
    """Popen arguments that drop root to the `postgres` user."""
    if os.geteuid() != 0:
        return {}
    pw = pwd.getpwnam("postgres")
    return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}


class PostgresServer:
    """`start()` → `url` (SQLAlchemy URL of the `postgres` database), `create_database()`, `close()`."""

    def __init__(self) -> None:
        self.base: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return self.database_url("postgres")

    def database_url(self, name: str) -> str:
        assert self.base is not None
        return f"postgresql+psycopg://postgres@/{name}?host={self.base}&port={PORT}"

    def start(self, timeout_s: float = 60) -> str:
        self.base = Path(tempfile.mkdtemp(prefix="bot-pg-"))  # short: a socket path is limited to 107 bytes
        drop = _as_user()
        if drop:
            os.chown(self.base, drop["user"], drop["group"])
        subprocess.run(
            [pg_bin("initdb"), "-D", str(self.base / "data"), "-U", "postgres", "--auth=trust", "--no-sync"],
            check=True, capture_output=True, cwd=self.base, **drop,
        )  # fmt: skip
        return self._run(timeout_s)

    def stop(self) -> None:
        """Stops the server as an outage would ("fast" shutdown: clients are disconnected) and keeps its
        data; `resume()` starts it again with the same data and address."""
        self._stop_process()

    def resume(self, timeout_s: float = 60) -> str:
        """Starts the stopped server again (same data, same socket); returns its URL once it answers."""
        if self.base is None or self.proc is not None:
            raise RuntimeError("resume() needs a started, then stopped, server")
        return self._run(timeout_s)

    def _run(self, timeout_s: float) -> str:
        import psycopg

        assert self.base is not None
        self.proc = subprocess.Popen(
            [
                pg_bin("postgres"), "-D", str(self.base / "data"), "-k", str(self.base), "-p", str(PORT),
                "-c", "listen_addresses=", "-c", "fsync=off", "-c", "synchronous_commit=off",
                "-c", "max_connections=200",
            ],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=self.base, **_as_user(),
        )  # fmt: skip
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                psycopg.connect(host=str(self.base), port=PORT, user="postgres", dbname="postgres").close()
                return self.url
            except psycopg.OperationalError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    err = (
                        self.proc.stderr.read().decode()
                        if self.proc.stderr and self.proc.poll() is not None
                        else ""
                    )
                    self.close()
                    raise RuntimeError(f"PostgreSQL did not start: {err[-2000:]}") from None
                time.sleep(0.1)

    def create_database(self, name: str | None = None) -> str:
        """A fresh database on this server; returns its URL."""
        import psycopg

        assert self.base is not None
        name = name or f"bots_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(
            host=str(self.base), port=PORT, user="postgres", dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.database_url(name)

    def close(self) -> None:
        """Stops the server ("fast" shutdown: disconnects clients, exits cleanly) and removes its files."""
        self._stop_process()
        if self.base is not None:
            shutil.rmtree(self.base, ignore_errors=True)
            self.base = None

    def _stop_process(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stderr:
                proc.stderr.close()

    def __enter__(self) -> PostgresServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
