"""Several "hosts" on one machine: a bridge and one network namespace per host (needs root and iproute2).

Each host gets a veth pair, one end in its namespace with its own address, the other on the bridge; the
machine itself has the bridge's address, so a server bound to it (PostgreSQL, Redis, a replica) is reached
from every host over the virtual network, never through the host's own 127.0.0.1. Addresses come from
198.18.0.0/15 (reserved for benchmarks, never routed): 198.18.0.0/24 unless another bridge on the machine
already uses it. Every name starts with `PREFIX`, which `tests/conftest.py`'s `no_leftovers` checks, and
`close()` deletes everything on every path.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

PREFIX = "mbt"  # every namespace, bridge and veth the tests make


def leftover_names() -> set[str]:
    """The test-made namespaces and links that exist now."""
    found: set[str] = set()
    for folder in (Path("/run/netns"), Path("/sys/class/net")):
        if folder.is_dir():
            found |= {p.name for p in folder.iterdir() if p.name.startswith(PREFIX)}
    return found


def unavailable() -> str | None:
    """Why namespaces cannot be made here (a skip reason), or None."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2's `ip` is missing"
    return None


def _ip(*args: str) -> str:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def _free_subnet() -> ipaddress.IPv4Network:
    used = _ip("-4", "-o", "addr", "show")
    for third in range(256):
        net = ipaddress.IPv4Network(f"198.18.{third}.0/24")
        if f" 198.18.{third}." not in used:
            return net
    raise RuntimeError("no free /24 left in 198.18.0.0/16")


@dataclass(frozen=True)
class Host:
    name: str  # the namespace
    address: str

    def run_args(self) -> list[str]:
        """The argv prefix that runs a command on this host."""
        return ["ip", "netns", "exec", self.name]

    def pids(self) -> list[int]:
        """Every process whose network is this host's."""
        return [int(p) for p in _ip("netns", "pids", self.name).split()]


class VirtualNetwork:
    """`start()` makes the bridge and `count` hosts; `close()` removes them. A context manager."""

    def __init__(self, count: int) -> None:
        self.tag = f"{PREFIX}{secrets.token_hex(2)}"
        self.count = count
        self.bridge = f"{self.tag}br"
        self.subnet = _free_subnet()
        self.address = str(self.subnet.network_address + 1)  # the machine's, on the bridge
        self.hosts: list[Host] = []
        self._made: list[tuple[str, str]] = []  # ("netns" | "link", name), to delete in reverse

    def start(self) -> VirtualNetwork:
        try:
            _ip("link", "add", self.bridge, "type", "bridge")
            self._made.append(("link", self.bridge))
            _ip("addr", "add", f"{self.address}/{self.subnet.prefixlen}", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
            for i in range(1, self.count + 1):
                host = Host(f"{self.tag}h{i}", str(self.subnet.network_address + 10 + i))
                _ip("netns", "add", host.name)
                self._made.append(("netns", host.name))
                outside, inside = f"{self.tag}v{i}", f"{self.tag}p{i}"
                _ip("link", "add", outside, "type", "veth", "peer", "name", inside, "netns", host.name)
                self._made.append(("link", outside))
                _ip("link", "set", outside, "master", self.bridge, "up")
                ns = ["-n", host.name]
                _ip(*ns, "addr", "add", f"{host.address}/{self.subnet.prefixlen}", "dev", inside)
                _ip(*ns, "link", "set", inside, "up")
                _ip(*ns, "link", "set", "lo", "up")
                self.hosts.append(host)
        except BaseException:
            self.close()
            raise
        return self

    def cut(self, host: Host) -> None:
        """Breaks the path to `host`: its link to the bridge goes down, packets to and from it are lost
        (no error reaches either side, as when a network path fails). `restore()` brings it back."""
        _ip("link", "set", self._outside(host), "down")

    def restore(self, host: Host) -> None:
        _ip("link", "set", self._outside(host), "up")

    def _outside(self, host: Host) -> str:
        return f"{self.tag}v{self.hosts.index(host) + 1}"

    def close(self) -> None:
        """Deletes every namespace, veth and the bridge this network made (a veth goes with its peer)."""
        errors = []
        for kind, name in reversed(self._made):
            if kind == "netns":
                done = subprocess.run(["ip", "netns", "del", name], capture_output=True, text=True)
            else:
                if not Path(f"/sys/class/net/{name}").exists():
                    continue
                done = subprocess.run(["ip", "link", "del", name], capture_output=True, text=True)
            if done.returncode != 0:
                errors.append(done.stderr.strip())
        self._made.clear()
        self.hosts.clear()
        if errors:
            raise RuntimeError("; ".join(errors))

    def __enter__(self) -> VirtualNetwork:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
