"""Builds and runs the project's image with buildah (no Docker engine, no registry on this machine).

vfs storage and chroot isolation need no daemon and no kernel overlay support. A working container shares
the host's network and PID namespace, so loopback servers are reachable and its processes are visible in
/proc (with their root directory inside the container's file system).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bot.system.processes import descendants

ROOT = Path(__file__).resolve().parent.parent
STORAGE_DRIVER = os.environ.get("BUILDAH_STORAGE_DRIVER", "vfs")
BUILDAH = ["buildah", "--storage-driver", STORAGE_DRIVER]
HOST_CA = Path(os.environ.get("PIP_CERT") or "/etc/ssl/certs/ca-certificates.crt")

# The floor: the same base with only Debian's chromium, pulseaudio and xvfb (the size goal's reference;
# xvfb since bots run headful on their own X display).
FLOOR_CONTAINERFILE = """\
FROM debian:bookworm-slim
RUN apt-get update \\
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium pulseaudio xvfb \\
    && rm -rf /var/lib/apt/lists/*
"""


class BuildError(RuntimeError):
    pass


def missing_tools() -> list[str]:
    return [tool for tool in ("buildah", "debootstrap") if shutil.which(tool) is None]


def buildah(*args: str, timeout: float = 120) -> str:
    done = subprocess.run(
        [*BUILDAH, *args], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )
    if done.returncode != 0:
        raise BuildError(f"buildah {' '.join(args[:3])} failed ({done.returncode}): {done.stderr[-2000:]}")
    return done.stdout


def make_base_image() -> float:
    """Runs scripts/make-base-image (a no-op when the image exists); returns its seconds."""
    start = time.monotonic()
    done = subprocess.run(
        [str(ROOT / "scripts" / "make-base-image")],
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )
    if done.returncode != 0:
        raise BuildError(f"scripts/make-base-image failed: {done.stdout[-1000:]}{done.stderr[-2000:]}")
    return time.monotonic() - start


@dataclass(frozen=True)
class Build:
    tag: str
    seconds: float
    size_bytes: int
    cached_steps: int  # steps taken from buildah's layer cache (0: a cold build)
    step_images: frozenset[str]  # short ids of the images of each step: this build's layer cache


def prune_build_cache(keep: set[str]) -> None:
    """Removes untagged images that are not in `keep` (steps of earlier builds). With vfs every layer is a
    full copy of the file system, so a stale cache costs about 1 GB per source change."""
    images = json.loads(buildah("images", "--all", "--json"))
    stale = [img["id"] for img in images if not img.get("names") and img["id"][:11] not in keep]
    if stale:
        subprocess.run([*BUILDAH, "rmi", *stale], capture_output=True, timeout=300, check=False)


def build(tag: str, context: Path, containerfile: Path, workdir: Path, no_cache: bool = False) -> Build:
    """Builds like `docker build` would, plus two build-time-only mounts: the host's CA bundle and a
    pip.conf naming it, so pip in the build trusts what the host trusts (a machine may reach PyPI through
    an intercepting TLS proxy). RUN mounts are not part of any layer: nothing of them enters the image."""
    pip_conf = workdir / "pip.conf"
    pip_conf.write_text("[global]\ncert = /etc/ssl/build-host-ca.pem\n")
    args = [
        "bud",
        "--format",
        "docker",  # OCI image configs have no HEALTHCHECK
        "--isolation",
        "chroot",
        "--no-cache" if no_cache else "--layers",
        "--force-rm",  # also remove the working container of a step that failed
        "-v",
        f"{HOST_CA}:/etc/ssl/build-host-ca.pem:ro",
        "-v",
        f"{pip_conf}:/etc/pip.conf:ro",
        "-f",
        str(containerfile),
        "-t",
        tag,
        str(context),
    ]
    log = workdir / f"build-{tag.replace(':', '-').replace('/', '-')}.log"
    start = time.monotonic()
    with log.open("w") as out:
        done = subprocess.run(
            [*BUILDAH, *args], stdout=out, stderr=subprocess.STDOUT, timeout=900, stdin=subprocess.DEVNULL
        )
    seconds = time.monotonic() - start
    text = log.read_text(errors="replace")
    if done.returncode != 0:
        raise BuildError(f"building {tag} failed ({done.returncode}); end of {log}:\n{text[-4000:]}")
    steps = frozenset(m[:11] for m in re.findall(r"^--> (?:Using cache )?([0-9a-f]{11,64})$", text, re.M))
    return Build(tag, seconds, image_size(tag), text.count("--> Using cache"), steps)


def image_size(tag: str) -> int:
    """Uncompressed size: the sum of the image's layers, what `docker images` shows."""
    manifest = json.loads(str(inspect_image(tag)["Manifest"]))
    return sum(int(layer["size"]) for layer in manifest["layers"])


def inspect_image(tag: str) -> dict[str, object]:
    data: dict[str, object] = json.loads(buildah("inspect", "--type", "image", tag))
    return data


def image_config(tag: str) -> dict[str, object]:
    """The image's Docker config (Entrypoint, Cmd, User, Env, Healthcheck, ...)."""
    docker = inspect_image(tag)["Docker"]
    assert isinstance(docker, dict)
    config: dict[str, object] = docker["config"]
    return config


class Container:
    """One working container of an image; `run` executes a command in it as the image's user."""

    def __init__(self, image: str) -> None:
        self.image = image
        self.id = buildah("from", "--pull-never", image, timeout=300).strip()
        self.root = Path(buildah("mount", self.id).strip())

    def argv(self, command: Sequence[str], env: dict[str, str] | None = None) -> list[str]:
        # buildah run has no --env here (1.28): /usr/bin/env inside the container sets it.
        prefix = ["/usr/bin/env", *(f"{k}={v}" for k, v in (env or {}).items())] if env else []
        return [*BUILDAH, "run", "--isolation", "chroot", self.id, "--", *prefix, *command]

    def run(
        self, command: Sequence[str], env: dict[str, str] | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(command, env),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def processes(self) -> list[int]:
        """Host pids of processes running inside this container: their root directory is its file
        system (buildah chroots into a bind mount of it, so compare the directory, not the path)."""
        want = os.stat(self.root)
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    root = os.stat(entry / "root")
                except OSError:
                    continue
                if (root.st_dev, root.st_ino) == (want.st_dev, want.st_ino):
                    found.append(int(entry.name))
        return found

    def remove(self) -> None:
        subprocess.run([*BUILDAH, "rm", self.id], capture_output=True, timeout=120, check=False)


# Helpers for long-running commands (in the image or on this machine).


class Lines:
    """Collects a process's output lines in a thread, so a test can wait for one with a timeout."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._proc = proc
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, needle: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines:
                if needle in line:
                    return line
            if self._proc.poll() is not None and not self._thread.is_alive():
                break
            time.sleep(0.05)
        raise AssertionError(f"no line with {needle!r} within {timeout} s; output:\n" + self.text())

    def text(self) -> str:
        return "\n".join(self.lines[-60:])

    def join(self) -> None:
        self._thread.join(timeout=10)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def stop_and_time(proc: subprocess.Popen[str], pid: int, sig: signal.Signals, timeout: float) -> float:
    """Sends `sig` to `pid` and returns the seconds until `proc` exited (killing it past `timeout`)."""
    start = time.monotonic()
    os.kill(pid, sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    return time.monotonic() - start


def kill_quietly(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        for pid in descendants(proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.kill()
        proc.wait()


def health(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
        status: int = response.status
        return status
