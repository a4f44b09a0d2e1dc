"""A local stand-in for meet.google.com, zoom.us and Microsoft Teams: one HTTPS server that platform pages
plug into.

Chromium reaches it at the real hostnames through test configuration only (`browser_section()`:
host-resolver rules that map the hosts to 127.0.0.1:<port>, and trust for this server's certificate
alone), so the bot's adapters run unchanged against pages at `https://meet.google.com/...`.

Shared parts served on every host: `/_replica/room.js` (the browser side of a `Room`), the WebSocket
`/_replica/ws`, the simulated participant page `/_replica/participant`, and the control API
`/_replica/control/{platform}/{meeting_id}[/{action}]` (actions: `config` sets the room's `RoomConfig`
fields, `options` the platform client's options for that meeting, the rest are a host's actions), and a
reCAPTCHA widget at `/recaptcha/api2/anchor`. Platform pages (`PlatformPages`) are mounted per
host; by default the server loads `bot.testing.replica.meet_pages`, `bot.testing.replica.zoom_pages` and
`bot.testing.replica.teams_pages` when they exist, each exposing `create_pages() -> PlatformPages`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import datetime
import hashlib
import importlib
import ipaddress
import json
import logging
import shutil
import ssl
import tempfile
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from aiohttp import WSMsgType, web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bot.settings import BrowserSection
from bot.testing.replica.accounts import Accounts
from bot.testing.replica.room import Room, RoomConfig, RoomError

log = logging.getLogger(__name__)

REPLICA_DIR = Path(__file__).resolve().parent
# Teams: its two web hosts, and the sign-in host a tenant that refuses guests redirects to.
HOSTS = (
    "meet.google.com",
    "zoom.us",
    "*.zoom.us",
    "teams.microsoft.com",
    "teams.live.com",
    "login.microsoftonline.com",
)
PAGE_MODULES = (
    "bot.testing.replica.meet_pages",
    "bot.testing.replica.zoom_pages",
    "bot.testing.replica.teams_pages",
)
_PLATFORM_OF_HOST = {
    "meet.google.com": "meet",
    "zoom.us": "zoom",
    "teams.microsoft.com": "teams",
    "teams.live.com": "teams",
    "login.microsoftonline.com": "teams",
}


@runtime_checkable
class PlatformPages(Protocol):
    """One platform's pages: mounted on its hosts (exact names or `*.domain` masks)."""

    platform: str
    hosts: tuple[str, ...]

    def routes(self, server: ReplicaServer) -> list[web.AbstractRouteDef]: ...


class ReplicaServer:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, load_default_pages: bool = True) -> None:
        self.host = host
        self.port = port
        self._pages: list[PlatformPages] = []
        self._rooms: dict[tuple[str, str], Room] = {}
        self.accounts = Accounts()  # signed-in users (the sign-in page's session cookies)
        self._sockets: set[web.WebSocketResponse] = set()
        self._runner: web.AppRunner | None = None
        self._cert = _certificate()
        self._closed = False
        if load_default_pages:
            for name in PAGE_MODULES:
                try:
                    module = importlib.import_module(name)
                except ModuleNotFoundError as e:
                    if e.name != name:
                        raise
                    continue
                self.add_pages(module.create_pages())

    # ---- test configuration ----------------------------------------------------------------------
    @property
    def host_resolver_rules(self) -> str:
        target = f"{self.host}:{self.port}"
        rules = [f"MAP {h} {target}" for h in HOSTS]
        # Anything else must not leave the machine.
        return ",".join([*rules, "MAP * ~NOTFOUND"])

    @property
    def cert_spki(self) -> str:
        return self._cert.spki

    def browser_section(self, base: BrowserSection | None = None) -> BrowserSection:
        """Settings for a BotBrowser that should reach this replica at the real hostnames."""
        return dataclasses.replace(
            base or BrowserSection(),
            host_resolver_rules=self.host_resolver_rules,
            trusted_cert_spki=self.cert_spki,
            allow_loopback_webrtc=True,
        )

    def ssl_context(self) -> ssl.SSLContext:
        """A client context trusting this server (for httpx/aiohttp clients in tests)."""
        ctx = ssl.create_default_context(cadata=self._cert.cert_pem.decode())
        return ctx

    # ---- rooms and pages ---------------------------------------------------------------------------
    def room(self, platform: str, meeting_id: str) -> Room:
        key = (platform, meeting_id)
        if key not in self._rooms:
            self._rooms[key] = Room(platform, meeting_id, RoomConfig())
        return self._rooms[key]

    @property
    def pages(self) -> list[PlatformPages]:
        return list(self._pages)

    def add_pages(self, pages: PlatformPages) -> None:
        if self._runner is not None:
            raise RuntimeError("add_pages() must be called before start()")
        self._pages = [p for p in self._pages if p.platform != pages.platform]
        self._pages.append(pages)

    # ---- lifecycle --------------------------------------------------------------------------------
    async def start(self) -> None:
        app = web.Application()
        self._add_shared_routes(app)
        for pages in self._pages:
            routes = pages.routes(self)
            for host in pages.hosts:
                # A domain's app answers every path on that host (aiohttp does not fall back to the
                # parent), so each gets the shared routes too.
                sub = web.Application()
                self._add_shared_routes(sub)
                sub.add_routes(routes)
                app.add_domain(host, sub)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=self._cert.server_context())
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.Server)
        self.port = server.sockets[0].getsockname()[1]
        log.info("replica at https://127.0.0.1:%s for %s", self.port, ", ".join(HOSTS))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for ws in list(self._sockets):
            with contextlib.suppress(Exception):
                await ws.close()
        for room in self._rooms.values():
            await room.close()
        if self._runner is not None:
            await self._runner.cleanup()

    # ---- handlers -----------------------------------------------------------------------------------
    def _add_shared_routes(self, app: web.Application) -> None:
        app.router.add_get("/_replica/room.js", self._static("room.js"))
        app.router.add_get("/_replica/participant.js", self._static("participant.js"))
        app.router.add_get("/_replica/participant", self._static("participant.html"))
        app.router.add_get("/_replica/ws", self._websocket)
        app.router.add_get("/_replica/entry_check.js", self._static("entry_check.js"))
        app.router.add_routes(self.accounts.routes())  # /_replica/signin: a signed-in session cookie
        # What a page embeds when it asks for a reCAPTCHA (Meet and Zoom both use Google's widget).
        app.router.add_get("/recaptcha/api2/anchor", self._static("recaptcha.html"))
        app.router.add_get("/_replica/control/{platform}/{meeting_id}", self._control_state)
        app.router.add_post("/_replica/control/{platform}/{meeting_id}/{action}", self._control_action)

    @staticmethod
    def _static(name: str) -> Any:
        path = REPLICA_DIR / name

        async def handler(request: web.Request) -> web.StreamResponse:
            return web.FileResponse(path, headers={"Cache-Control": "no-store"})

        return handler

    async def _websocket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=None)
        await ws.prepare(request)
        self._sockets.add(ws)
        room: Room | None = None
        pid: str | None = None
        lock = asyncio.Lock()

        async def send(message: dict[str, Any]) -> None:
            async with lock:
                if not ws.closed:
                    await ws.send_str(json.dumps(message))

        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                data = json.loads(msg.data)
                kind = data.get("type")
                if kind == "join" and pid is None:
                    platform = data.get("platform") or _platform_of(request.host)
                    room = self.room(platform, str(data["room"]))
                    account = self.accounts.of_request(request)
                    result, pid = await room.join(
                        account.name if account else str(data.get("name", "")),
                        str(data.get("passcode", "")),
                        bool(data.get("host")),
                        send,
                        entry=data.get("entry"),
                        account=account.email if account else "",
                    )
                    await send({"type": "joined", "result": result, "pid": pid})
                    if pid is None:
                        break
                elif room is None or pid is None:
                    continue
                elif kind == "audio":
                    await room.start_audio(pid, camera_capable=bool(data.get("camera")))
                elif kind == "video_stats":
                    room.video_stats(pid, dict(data.get("peers") or {}))
                elif kind == "signal":
                    await room.relay(pid, str(data["to"]), data["data"])
                elif kind == "media":
                    await room.media(pid, bool(data.get("audio")), bool(data.get("video")))
                elif kind == "leave":
                    room.goodbye(pid)  # the page left through its own Leave: not a dropped connection
                    break
        finally:
            self._sockets.discard(ws)
            if room is not None and pid is not None:
                await room.disconnected(pid)
            await ws.close()
        return ws

    async def _control_state(self, request: web.Request) -> web.Response:
        room = self.room(request.match_info["platform"], request.match_info["meeting_id"])
        return web.json_response(room.state())

    async def _control_action(self, request: web.Request) -> web.Response:
        room = self.room(request.match_info["platform"], request.match_info["meeting_id"])
        action = request.match_info["action"]
        body: dict[str, Any] = await request.json() if request.can_read_body else {}
        try:
            if action == "config":
                room.configure(**body)
            elif action == "options":
                self._platform_pages(room.platform).configure(room.meeting_id, **body)
            elif action in ("admit", "deny", "time_out_lobby", "remove"):
                await getattr(room, action)(str(body["name"]))
            elif action in ("end", "start_host"):
                await getattr(room, action)()
            else:
                raise web.HTTPNotFound(text=f"unknown action {action!r}")
        except (RoomError, KeyError) as e:
            raise web.HTTPNotFound(text=str(e)) from e
        except (ValueError, TypeError) as e:
            raise web.HTTPBadRequest(text=str(e)) from e
        return web.json_response(room.state())

    def _platform_pages(self, platform: str) -> Any:
        """The pages of `platform`, for per-meeting client options (`configure(meeting_id, **fields)`)."""
        for pages in self._pages:
            if pages.platform == platform and hasattr(pages, "configure"):
                return pages
        raise web.HTTPNotFound(text=f"no client options for {platform!r}")


def drop_connection(request: web.Request) -> None:
    """Closes the connection without an answer, so Chromium shows its own network error page
    (ERR_EMPTY_RESPONSE): what a page load that never reaches the platform looks like."""
    if request.transport is not None:
        request.transport.close()
    raise web.HTTPServiceUnavailable()  # never sent: the connection is gone


NO_CACHE = {"Cache-Control": "no-store"}  # the replica's pages change with each room's options


def read_page(name: str) -> str:
    """A file of the replica's pages, by its name in this folder."""
    return (REPLICA_DIR / name).read_text(encoding="utf-8")


def html_page(text: str, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """An HTML answer, never cached; `headers` add to (or override) the default ones."""
    return web.Response(
        text=text, status=status, content_type="text/html", headers={**NO_CACHE, **(headers or {})}
    )


def asset_route(platform: str, assets: dict[str, str]) -> web.RouteDef:
    """`/_replica/<platform>/<name>`: the client's scripts and styles, each with its content type in
    `assets`; any other name is not found."""

    async def asset(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in assets:
            raise web.HTTPNotFound()
        return web.Response(text=read_page(name), content_type=assets[name], headers=NO_CACHE)

    return web.get(f"/_replica/{platform}/{{name}}", asset)


def _platform_of(host: str) -> str:
    name = host.split(":")[0].lower()
    if name in _PLATFORM_OF_HOST:
        return _PLATFORM_OF_HOST[name]
    return "zoom" if name.endswith(".zoom.us") else "meet"


@dataclasses.dataclass(frozen=True)
class _Certificate:
    cert_pem: bytes
    key_pem: bytes
    spki: str

    def server_context(self) -> ssl.SSLContext:
        # The ssl module loads keys from files only: write them to a private dir and remove it at once.
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tmp = Path(tempfile.mkdtemp(prefix="bot-replica-"))
        try:
            (tmp / "cert.pem").write_bytes(self.cert_pem)
            (tmp / "key.pem").write_bytes(self.key_pem)
            ctx.load_cert_chain(tmp / "cert.pem", tmp / "key.pem")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return ctx


_CERT: _Certificate | None = None


def _certificate() -> _Certificate:
    """A self-signed certificate for the replica's hosts, made once per process (EC keys are quick)."""
    global _CERT
    if _CERT is None:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "meeting replica")])
        now = datetime.datetime.now(datetime.UTC)
        san = x509.SubjectAlternativeName(
            [*(x509.DNSName(h) for h in HOSTS), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        )
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(san, critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        spki_der = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        _CERT = _Certificate(
            cert_pem=cert.public_bytes(serialization.Encoding.PEM),
            key_pem=key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
            spki=base64.b64encode(hashlib.sha256(spki_der).digest()).decode(),
        )
    return _CERT
