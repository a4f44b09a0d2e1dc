"""The service's HTTP API served for a test: real uvicorn on 127.0.0.1 (port 0), stopped by its handle."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator

import httpx
import uvicorn
from prometheus_client.parser import text_string_to_metric_families

from bot.service.api import create_app, listen_socket
from bot.service.scheduler import BotService
from tests.scheduler_support import wait_for

TOKEN = "test-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:  # leave pytest's signal handling alone
        yield


@contextlib.asynccontextmanager
async def api_client(
    service: BotService, metrics_token: str = "", start_service: bool = False
) -> AsyncIterator[httpx.AsyncClient]:
    """Serves `service` (already started, or started by the app with `start_service`; the app closes it
    when it stops) and yields a client of it."""
    sock = listen_socket("127.0.0.1", 0)
    app = create_app(service, TOKEN, start_service=start_service, metrics_token=metrics_token)
    server = _Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    await wait_for(lambda: server.started or task.done(), 30, "the API server")
    port = sock.getsockname()[1]
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as c:
            yield c
    finally:
        server.should_exit = True
        await task
        sock.close()


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse_metrics(text: str) -> Samples:
    """Every sample of a /metrics page, keyed by (sample name, sorted labels)."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def sample(samples: Samples, name: str, **labels: str) -> float:
    """The value of one series (0 if absent: a labelled counter appears on its first increment)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def scrape(client: httpx.AsyncClient, token: str = "") -> Samples:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = await client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return parse_metrics(response.text)
