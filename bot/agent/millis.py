"""Millis AI over WebRTC: `POST {base}/webrtc/offer` with the private key in `Authorization`.

Millis' docs say "Bearer token" but their own examples send the raw key: we send the raw key and, on
401/403 only, try `Bearer <key>` once. A refused key or an unknown agent is terminal (no retry storm);
a service that is down is retried a bounded number of times with exponential backoff.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import httpx

from bot.agent.errors import (
    AgentAuthError,
    AgentBadAnswer,
    AgentError,
    AgentNotFound,
    AgentTimeout,
    AgentUnavailable,
)
from bot.agent.options import KEY_ENV, REGION_BASES, MillisConfig

log = logging.getLogger(__name__)

_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


class MillisEndpoint:
    """`AgentEndpoint` for Millis. Pass `client` to share an httpx client; otherwise one per exchange."""

    def __init__(self, config: MillisConfig, client: httpx.AsyncClient | None = None) -> None:
        self.config = config
        self._client = client
        self.requests_sent = 0  # every HTTP attempt, for tests and diagnostics

    def describe(self) -> str:
        c = self.config
        return f"Millis agent {c.agent_id} at {c.url}"

    def __repr__(self) -> str:
        return f"MillisEndpoint({self.describe()})"

    async def exchange(self, offer_sdp: str) -> str:
        if self._client is not None:
            return await self._exchange(self._client, offer_sdp)
        async with httpx.AsyncClient(timeout=self.config.timeout_s) as client:
            return await self._exchange(client, offer_sdp)

    def _body(self, offer_sdp: str) -> dict[str, Any]:
        c = self.config
        body: dict[str, Any] = {"agent_id": c.agent_id, "offer": {"sdp": offer_sdp, "type": "offer"}}
        if c.metadata is not None:
            body["metadata"] = c.metadata
            body["include_metadata_in_prompt"] = c.include_metadata_in_prompt
        return body

    async def _exchange(self, client: httpx.AsyncClient, offer_sdp: str) -> str:
        c = self.config
        body = self._body(offer_sdp)
        delay = c.backoff_s
        last_problem = ""
        for attempt in range(c.max_retries + 1):
            if attempt:
                log.info("retrying %s in %.1f s (%s)", self.describe(), delay, last_problem)
                await asyncio.sleep(delay)
                delay *= 2
            try:
                response = await self._post_with_auth(client, body)
            except httpx.TimeoutException as e:
                if isinstance(e, httpx.ConnectTimeout):
                    last_problem = "connection timed out"
                    continue
                raise AgentTimeout(
                    f"{self.describe()} did not answer within {c.timeout_s:g} s; "
                    "the service may be overloaded: try again, or raise the agent timeout"
                ) from None
            except httpx.TransportError as e:
                last_problem = f"cannot connect: {type(e).__name__}: {self._redact(str(e))}"
                continue
            if response.status_code in _RETRY_STATUS:
                last_problem = f"HTTP {response.status_code}"
                continue
            return self._answer(response)
        raise AgentUnavailable(
            f"{self.describe()} is unreachable after {c.max_retries + 1} attempts ({last_problem}); "
            "check the region or URL and the service status, then try again"
        )

    async def _post_with_auth(self, client: httpx.AsyncClient, body: dict[str, Any]) -> httpx.Response:
        key = self.config.private_key
        response = await self._post(client, body, key)
        if response.status_code in (401, 403) and self.config.bearer_fallback:
            log.debug("raw key refused with HTTP %s; trying the Bearer form once", response.status_code)
            response = await self._post(client, body, f"Bearer {key}")
        if response.status_code in (401, 403):
            raise AgentAuthError(
                f"{self.describe()} refused the private key (HTTP {response.status_code}); "
                f"check {KEY_ENV} or the key file: it must be the Millis private key of this agent's account"
            )
        if response.status_code == 404:
            raise AgentNotFound(
                f"agent {self.config.agent_id!r} was not found at {self.config.url} (HTTP 404); "
                "check the agent id and the region"
            )
        return response

    async def _post(self, client: httpx.AsyncClient, body: dict[str, Any], auth: str) -> httpx.Response:
        self.requests_sent += 1
        return await client.post(
            self.config.url,
            json=body,
            headers={"Authorization": auth, "Content-Type": "application/json"},
            timeout=self.config.timeout_s,
        )

    def _answer(self, response: httpx.Response) -> str:
        text = response.text
        log.debug("%s answered HTTP %s: %s", self.describe(), response.status_code, self._redact(text))
        if response.status_code >= 400:
            raise AgentBadAnswer(
                f"{self.describe()} rejected the offer (HTTP {response.status_code}): "
                f"{self._redact(text)[:200]}"
            )
        try:
            return parse_answer(json.loads(text))
        except (ValueError, TypeError) as e:
            raise AgentBadAnswer(
                f"{self.describe()} sent an unusable answer ({e}): {self._redact(text)[:200]!r}"
            ) from None

    def _redact(self, text: str) -> str:
        key = self.config.private_key
        return text.replace(key, "***") if key else text


def parse_answer(body: Any) -> str:
    """The answer SDP from `{"answer": {"sdp", "type"}}` or a top-level `{"sdp", "type"}`."""
    if not isinstance(body, dict):
        raise ValueError("the body is not a JSON object")
    answer = body.get("answer", body)
    if not isinstance(answer, dict):
        raise ValueError('"answer" is not an object')
    sdp = answer.get("sdp")
    kind = answer.get("type", "answer")
    if not isinstance(sdp, str) or not sdp.startswith("v=0"):
        raise ValueError("no SDP in the answer")
    if kind != "answer":
        raise ValueError(f"the SDP type is {kind!r}, not 'answer'")
    return sdp


__all__ = ["KEY_ENV", "REGION_BASES", "AgentError", "MillisConfig", "MillisEndpoint", "parse_answer"]
