"""A real local HTTP server that receives signed webhook deliveries (used by the webhook and e2e tests)."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from bot.webhook import EVENT_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, verify


class WebhookReceiver:
    def __init__(self, secret: str, fail_first: int = 0) -> None:
        self.secret = secret
        self.fail_first = fail_first
        self.requests = 0
        self.bad_signatures = 0
        self.events: list[dict[str, Any]] = []
        self.ids: list[str] = []
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/hook"

    async def _hook(self, request: web.Request) -> web.Response:
        self.requests += 1
        body = await request.read()
        if self.requests <= self.fail_first:
            return web.Response(status=503)
        ok = verify(
            self.secret,
            request.headers.get(TIMESTAMP_HEADER, ""),
            body,
            request.headers.get(SIGNATURE_HEADER, ""),
        )
        if not ok:
            self.bad_signatures += 1
            return web.Response(status=401)
        event_id = request.headers.get(EVENT_ID_HEADER, "")
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
