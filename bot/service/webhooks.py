"""Status events POSTed to a user's URL, signed with HMAC-SHA256, each delivered once with bounded retries.

Headers: `X-Bot-Signature: sha256=<hex HMAC of "<timestamp>.<body>">`, `X-Bot-Timestamp`, `X-Bot-Event-Id`
(receivers deduplicate on it: a retry after a lost response can deliver an event twice).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from dataclasses import dataclass, field

import httpx

from bot.aio import cancel_and_wait
from bot.events import BotEvent

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Bot-Signature"
TIMESTAMP_HEADER = "X-Bot-Timestamp"
EVENT_ID_HEADER = "X-Bot-Event-Id"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def signed_headers(secret: str, event_id: str, body: bytes) -> dict[str, str]:
    """The headers of one delivery attempt: a fresh timestamp, and the signature over it and the body."""
    stamp = str(int(time.time()))
    return {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: sign(secret, stamp, body),
        TIMESTAMP_HEADER: stamp,
        EVENT_ID_HEADER: event_id,
    }


def verify(secret: str, timestamp: str, body: bytes, signature: str) -> bool:
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


@dataclass
class WebhookConfig:
    url: str
    secret: str = field(repr=False)
    retries: int = 3
    timeout_s: float = 5.0
    backoff_s: float = 0.5

    def __post_init__(self) -> None:
        if not self.url.startswith(("https://", "http://")):
            raise ValueError(f"webhook.url must be an http(s) URL (got {self.url!r})")
        if not self.secret:
            raise ValueError("webhook.secret is empty: set BOT_WEBHOOK_SECRET to sign webhook deliveries")
        if self.retries < 0:
            raise ValueError("webhook.retries must be >= 0")


class WebhookSender:
    """Listener for `EventBus`: queues events and delivers them in order from one owned task."""

    def __init__(self, config: WebhookConfig) -> None:
        self.config = config
        self.delivered = 0
        self.failed = 0
        self._queue: asyncio.Queue[BotEvent | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None

    def start(self) -> None:
        self._client = httpx.AsyncClient(timeout=self.config.timeout_s)
        self._task = asyncio.create_task(self._run(), name="webhook")

    def __call__(self, event: BotEvent) -> None:
        self._queue.put_nowait(event)

    async def _run(self) -> None:
        while (event := await self._queue.get()) is not None:
            await self._deliver(event)

    async def _deliver(self, event: BotEvent) -> None:
        assert self._client is not None
        body = event.to_json().encode()
        for attempt in range(self.config.retries + 1):
            headers = signed_headers(self.config.secret, event.id, body)
            try:
                response = await self._client.post(self.config.url, content=body, headers=headers)
                if response.status_code < 500 and response.status_code != 429:
                    if response.status_code >= 400:
                        log.warning("webhook refused %s: HTTP %s", event.kind, response.status_code)
                        self.failed += 1
                    else:
                        self.delivered += 1
                    return
                reason = f"HTTP {response.status_code}"
            except httpx.HTTPError as e:
                reason = type(e).__name__
            if attempt < self.config.retries:
                await asyncio.sleep(self.config.backoff_s * 2**attempt)
            log.info("webhook delivery of %s failed (%s), attempt %d", event.kind, reason, attempt + 1)
        self.failed += 1
        log.warning("webhook gave up on %s after %d attempts", event.kind, self.config.retries + 1)

    async def close(self, deadline_s: float = 5.0) -> None:
        """Deliver what is queued (within the deadline), then stop. Idempotent."""
        if self._task is None:
            return
        task, self._task = self._task, None
        self._queue.put_nowait(None)
        try:
            await asyncio.wait_for(task, deadline_s)
        except TimeoutError:
            log.warning("webhook: %d events not delivered before exit", self._queue.qsize())
        finally:
            await cancel_and_wait(task)
            if self._client is not None:
                await self._client.aclose()
