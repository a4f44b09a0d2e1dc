"""A real local HTTP server that receives signed webhook deliveries (used by the webhook and e2e tests)."""

from __future__ import annotations

import collections
import json
from collections.abc import Callable
from typing import Any

from aiohttp import web

from bot.service.webhooks import EVENT_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, verify


class WebhookReceiver:
    """`events`/`ids`: each event once (deduplicated on X-Bot-Event-Id, as a receiver should);
    `accepted`: how often each id was answered 2xx (a sender that resends a delivered event shows as 2);
    `log`: (event id, status) of every request. `fail_first` requests, and those for which `fail_when`
    says so, are answered 503. `close()` then `start(port)` brings it back on the same URL."""

    def __init__(
        self, secret: str, fail_first: int = 0, fail_when: Callable[[dict[str, Any]], bool] | None = None
    ) -> None:
        self.secret = secret
        self.fail_first = fail_first
        self.fail_when = fail_when
        self.requests = 0
        self.bad_signatures = 0
        self.events: list[dict[str, Any]] = []
        self.ids: list[str] = []
        self.accepted: collections.Counter[str] = collections.Counter()
        self.log: list[tuple[str, int]] = []
        self._runner: web.AppRunner | None = None
        self.url = ""
        self.port = 0

    async def start(self, port: int = 0) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{self.port}/hook"

    async def _hook(self, request: web.Request) -> web.Response:
        self.requests += 1
        body = await request.read()
        event_id = request.headers.get(EVENT_ID_HEADER, "")
        if self.requests <= self.fail_first or (
            self.fail_when is not None and self.fail_when(json.loads(body))
        ):
            self.log.append((event_id, 503))
            return web.Response(status=503)
        ok = verify(
            self.secret,
            request.headers.get(TIMESTAMP_HEADER, ""),
            body,
            request.headers.get(SIGNATURE_HEADER, ""),
        )
        if not ok:
            self.bad_signatures += 1
            self.log.append((event_id, 401))
            return web.Response(status=401)
        self.log.append((event_id, 204))
        self.accepted[event_id] += 1
        if event_id not in self.ids:
            self.ids.append(event_id)
            self.events.append(json.loads(body))
        return web.Response(status=204)

    def kinds(self) -> list[str]:
        return [e["event"] for e in self.events]

    async def close(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
