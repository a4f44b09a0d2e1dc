"""The HTTP API of the bot service (FastAPI): schedule, list, inspect and cancel bots.

Every `/bots` route needs `Authorization: Bearer <BOT_API_TOKEN>`, checked before anything else reads the
request (`_TokenGate`) and compared in constant time; `GET /metrics` (Prometheus) needs its own token only
when one is set (BOT_METRICS_TOKEN). Invalid input gets a 422 whose `detail` names the field and says what
to fix, in FastAPI's usual shape. The OpenAPI schema is at /openapi.json, the interactive docs at /docs.

The store is synchronous (SQLAlchemy): each route runs its database work on one of `DB_THREADS` threads
(`_DatabaseThreads`), so the event loop (the scheduler, the webhook dispatcher, other requests) never
waits for the database, and the engine's pool has a connection for each thread.
"""

from __future__ import annotations

import hmac
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from functools import partial
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

import anyio
import anyio.to_thread
from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response, Security, status
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import DBAPIError
from starlette.types import ASGIApp, Receive, Scope, Send

from bot.service.bot_request import RequestError, validate_request
from bot.service.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from bot.service.scheduler import BotService, NotFound
from bot.service.store import DB_THREADS, BotRecord, BotState, database_unavailable
from bot.settings import REGIONS

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    Region = str
else:
    Region = Literal[REGIONS]  # the one list of regions, an enum in the OpenAPI schema


class BotCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    meeting_url: str = Field(
        min_length=1,
        max_length=2000,
        description="Google Meet, Zoom or Microsoft Teams meeting URL",
        examples=["https://meet.google.com/abc-defg-hij"],
    )
    agent_id: str = Field(min_length=1, max_length=200, description="Millis agent id")
    join_at: str | None = Field(
        default=None,
        max_length=64,
        description="ISO 8601 time with a time zone; omitted: now. The bot starts `lead_time_s` earlier.",
        examples=["2030-05-01T14:00:00+02:00"],
    )
    bot_name: str | None = Field(default=None, min_length=1, max_length=64, description="display name")
    metadata: dict[str, str] | None = Field(default=None, max_length=32, description="sent to the agent")
    webhook_url: str | None = Field(default=None, max_length=2000, description="receives every event")
    region: Region | None = Field(default=None, description="Millis region")
    max_duration_s: float | None = Field(default=None, gt=0, le=86400, description="leave after this long")


class BotOut(BaseModel):
    id: str
    state: BotState
    meeting_url: str
    agent_id: str
    request: dict[str, Any]
    join_at: str
    run_at: str = Field(description="when the bot is started: join_at minus the lead time")
    created_at: str
    updated_at: str
    queued_at: str | None
    started_at: str | None
    in_call_at: str | None
    ended_at: str | None
    stop_requested_at: str | None
    end_reason: str | None
    failure_code: str | None
    message: str | None
    exit_code: int | None
    summary: dict[str, Any] | None
    last_stats: dict[str, Any] | None
    events: list[dict[str, Any]] | None = None
    host: str | None = Field(
        default=None, description="the worker host running it, or that ran it last (launcher = celery)"
    )
    heartbeat_at: str | None = Field(default=None, description="its host's last heartbeat for it")
    attempts: int = Field(default=0, description="launches so far (a lost host's bot is launched again)")


class HostOut(BaseModel):
    name: str
    address: str | None = Field(description="its address on the way to the broker")
    pid: int | None
    capacity: int = Field(description="bots it runs at once at most")
    running: int
    bots: list[str] = Field(description="the bots it runs now")
    state: Literal["up", "draining", "stopped", "lost"]
    drain: str = Field(description="on SIGTERM: finish (its bots end first) or handoff (to other hosts)")
    started_at: str
    heartbeat_at: str = Field(description="its last heartbeat")


class Problem(BaseModel):
    detail: str


class FieldError(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ValidationProblem(BaseModel):
    detail: list[FieldError]


class Health(BaseModel):
    status: Literal["ok"]
    running: int
    queued: int


class DeliveryOut(BaseModel):
    state: Literal["pending", "delivered", "dead"]
    attempts: int = Field(description="attempts made so far")
    next_attempt_at: str | None = Field(description="when a pending event is tried next")
    finished_at: str | None = Field(description="when it was delivered, or given up on")
    last_status: int | None = Field(description="the receiver's last HTTP status (none: no answer)")
    last_error: str | None


class EventOut(BaseModel):
    seq: int = Field(description="increasing per service; poll with ?after=<the last seq seen>")
    event: dict[str, Any] = Field(description="the event as recorded (`event`, `at`, `id`, its fields)")
    delivery: DeliveryOut | None = Field(description="its webhook delivery; none if the bot has no webhook")


# Module level: FastAPI resolves the (postponed) annotations that name it from this module's globals.
_bearer = HTTPBearer(auto_error=False, description="the service's BOT_API_TOKEN")


def _out(record: BotRecord) -> BotOut:
    return BotOut.model_validate(record.to_dict())


_UNAUTHORIZED = {"model": Problem, "description": "missing or wrong bearer token"}
_INVALID = {"model": ValidationProblem, "description": "invalid input; `detail` names the field"}
_NOT_FOUND = {"model": Problem, "description": "no bot with this id"}
_UNAUTHORIZED_DETAIL = "missing or wrong bearer token: send Authorization: Bearer <BOT_API_TOKEN>"
_RETRY_AFTER_S = 5  # told to clients while the database is unavailable


_T = TypeVar("_T")


class _DatabaseThreads:
    """Runs blocking store work on at most `size` threads at a time, off the event loop. Each holds one
    pooled connection while it runs (`bot.service.store.POOL_SIZE` leaves some for the loop's own store
    calls). A request whose client goes away still finishes its database work (no half-made bot)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._limiter: anyio.CapacityLimiter | None = None  # made on the event loop, at first use

    async def __call__(self, fn: Callable[..., _T], /, *args: Any) -> _T:
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.size)
        return await anyio.to_thread.run_sync(fn, *args, limiter=self._limiter)


def _bearer_matches(scope: Scope, expected: bytes) -> bool:
    """`Authorization: Bearer <token>` equal to `expected`. `hmac.compare_digest` takes a time that depends
    only on the expected token's length, never on how much of a wrong token was right."""
    given = b""
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, credentials = value.partition(b" ")
            if scheme.lower() == b"bearer":
                given = credentials
            break
    return hmac.compare_digest(given, expected)


class _TokenGate:
    """Refuses a request to a protected path without the right bearer token before anything reads it.

    FastAPI parses a JSON body before it runs a route's dependencies, so with the check only in a
    dependency a wrong token sent with a malformed body got a 422 instead of a 401. `rules` maps a path
    (and everything under it) to its token."""

    def __init__(self, app: ASGIApp, rules: Sequence[tuple[str, bytes, str]]) -> None:
        self.app = app
        self.rules = rules

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            for prefix, expected, detail in self.rules:
                if path == prefix or path.startswith(prefix + "/"):
                    if not _bearer_matches(scope, expected):
                        refused = JSONResponse(
                            {"detail": detail}, 401, headers={"WWW-Authenticate": "Bearer"}
                        )
                        await refused(scope, receive, send)
                        return
                    break
        await self.app(scope, receive, send)


def listen_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket for uvicorn (`serve` opens it first, to report a busy port plainly).

    Made with proto=IPPROTO_TCP, unlike `socket.create_server`'s proto 0: asyncio sets TCP_NODELAY only on
    sockets whose proto says TCP, and without it each response on a kept-alive connection waited ~40 ms
    (uvicorn writes headers and body separately; Nagle held the body until the client's delayed ACK)."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(socket.SOMAXCONN)
    except OSError:
        sock.close()
        raise
    return sock


def create_app(
    service: BotService, token: str, start_service: bool = True, metrics_token: str = ""
) -> FastAPI:
    """The API for `service`, which the app closes when it shuts down (making running bots leave) and,
    with `start_service`, starts (`serve` starts it first, to report a bad database URL plainly).
    `metrics_token`: the bearer token /metrics needs (empty: /metrics is open, like /health)."""
    if not token:
        raise ValueError("an API token is required (BOT_API_TOKEN)")
    expected = token.encode()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if start_service:
            await service.start()
        try:
            yield
        finally:
            await service.close()

    app = FastAPI(
        title="meeting-bot",
        version="0.1.0",
        description="Schedule bots that bring a Millis AI voice agent into Meet, Zoom and Teams calls.",
        lifespan=lifespan,
    )
    rules = [("/bots", expected, _UNAUTHORIZED_DETAIL), ("/hosts", expected, _UNAUTHORIZED_DETAIL)]
    if metrics_token:
        rules.append(("/metrics", metrics_token.encode(), "send Authorization: Bearer <BOT_METRICS_TOKEN>"))
    app.add_middleware(_TokenGate, rules=rules)
    app.add_exception_handler(DBAPIError, _database_error)  # type: ignore[arg-type]
    auth = [Depends(_authorized(expected))]
    in_thread = _DatabaseThreads(DB_THREADS)
    _add_service_routes(app, service)
    _add_bot_routes(app, service, auth, in_thread)
    _add_host_routes(app, service, auth, in_thread)
    return app


async def _database_error(_: Request, error: DBAPIError) -> JSONResponse:
    # The database is down or restarting: say so (503, retry), never a bare 500. Bots already running
    # are not affected: their events wait in memory and reach the database when it is back.
    if not database_unavailable(error):
        log.error("database error: %s", error)
        return JSONResponse({"detail": "internal error"}, 500)
    text = str(error.orig or error).strip()
    cause = text.splitlines()[0][:200] if text else "no answer"
    return JSONResponse(
        {
            "detail": "the service's database is unavailable; try again shortly. Running bots go on, "
            f"and their events are stored once it is back. ({cause})"
        },
        status.HTTP_503_SERVICE_UNAVAILABLE,
        headers={"Retry-After": str(_RETRY_AFTER_S)},
    )


def _authorized(expected: bytes) -> Callable[..., Awaitable[None]]:
    """The routes' dependency on the API token (the OpenAPI schema shows it; `_TokenGate` enforces it
    first)."""

    # async: a plain `def` dependency costs every request a trip through a worker thread.
    async def authorized(creds: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)]) -> None:
        given = creds.credentials.encode() if creds is not None else b""
        if not hmac.compare_digest(given, expected):
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED, _UNAUTHORIZED_DETAIL, headers={"WWW-Authenticate": "Bearer"}
            )

    return authorized


def _add_service_routes(app: FastAPI, service: BotService) -> None:
    @app.get("/health", response_model=Health, tags=["service"])
    async def health() -> Health:
        return Health(status="ok", running=len(service.running_ids), queued=len(service.queued_ids))

    @app.get(
        "/metrics",
        response_class=PlainTextResponse,
        tags=["service"],
        responses={401: {"model": Problem, "description": "BOT_METRICS_TOKEN is set and was not sent"}},
        description="Prometheus metrics (text format). Needs `Bearer <BOT_METRICS_TOKEN>` when that is set.",
    )
    async def metrics() -> Response:
        return Response(service.metrics.exposition(), media_type=METRICS_CONTENT_TYPE)


def _add_bot_routes(app: FastAPI, service: BotService, auth: list[Any], in_thread: _DatabaseThreads) -> None:
    @app.post(
        "/bots",
        status_code=201,
        response_model=BotOut,
        dependencies=auth,
        responses={401: _UNAUTHORIZED, 422: _INVALID},
        tags=["bots"],
    )
    async def create_bot(body: BotCreate) -> BotOut | JSONResponse:
        try:
            request = validate_request(
                meeting_url=body.meeting_url,
                agent_id=body.agent_id,
                bot_name=body.bot_name,
                region=body.region,
                max_duration_s=body.max_duration_s,
                metadata=body.metadata,
                webhook_url=body.webhook_url,
            )
            record = await in_thread(service.schedule, request, body.join_at)
        except RequestError as e:
            return JSONResponse(
                status_code=422,
                content={"detail": [{"loc": ["body", e.field], "msg": e.message, "type": "value_error"}]},
            )
        return _out(record)

    @app.get(
        "/bots", response_model=list[BotOut], dependencies=auth, responses={401: _UNAUTHORIZED}, tags=["bots"]
    )
    async def list_bots(
        state: Annotated[list[BotState] | None, Query(description="only bots in these states")] = None,
        agent_id: Annotated[str | None, Query(max_length=200)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
    ) -> list[BotOut]:
        return [_out(r) for r in await in_thread(service.list_bots, state, agent_id, limit, offset)]

    @app.get(
        "/bots/{bot_id}",
        response_model=BotOut,
        dependencies=auth,
        responses={401: _UNAUTHORIZED, 404: _NOT_FOUND},
        tags=["bots"],
    )
    async def get_bot(bot_id: str) -> BotOut:
        try:
            return _out(await in_thread(partial(service.get, bot_id, with_events=True)))
        except NotFound as e:
            raise HTTPException(404, str(e)) from None

    @app.delete(
        "/bots/{bot_id}",
        response_model=BotOut,
        dependencies=auth,
        responses={
            202: {"model": BotOut, "description": "the bot was running and has been asked to leave"},
            401: _UNAUTHORIZED,
            404: _NOT_FOUND,
            409: {"model": Problem, "description": "the bot had already finished"},
        },
        tags=["bots"],
        description="Cancels a scheduled or queued bot (200), or makes a running bot leave its call (202).",
    )
    async def cancel_bot(bot_id: str, response: Response) -> BotOut:
        try:
            outcome, record = await in_thread(service.cancel, bot_id)
        except NotFound as e:
            raise HTTPException(404, str(e)) from None
        if outcome == "finished":
            raise HTTPException(409, f"bot {bot_id} already finished (state {record.state.value})")
        if outcome == "leaving":
            response.status_code = 202
        return _out(record)

    @app.get(
        "/bots/{bot_id}/events",
        response_model=list[EventOut],
        dependencies=auth,
        responses={401: _UNAUTHORIZED, 404: _NOT_FOUND},
        tags=["bots"],
        description="The bot's events in order, each with its webhook delivery state (pending, delivered, "
        "dead). Poll with `after` (the last `seq` seen) instead of, or beside, a webhook.",
    )
    async def bot_events(
        bot_id: str,
        after: Annotated[int, Query(ge=0, le=2**62)] = 0,
        limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
    ) -> list[EventOut]:
        try:
            events = await in_thread(service.events, bot_id, after, limit)
        except NotFound as e:
            raise HTTPException(404, str(e)) from None
        return [
            EventOut(
                seq=e.seq,
                event=e.data,
                delivery=DeliveryOut.model_validate(e.delivery.status()) if e.delivery else None,
            )
            for e in events
        ]


def _add_host_routes(app: FastAPI, service: BotService, auth: list[Any], in_thread: _DatabaseThreads) -> None:
    @app.get(
        "/hosts",
        response_model=list[HostOut],
        dependencies=auth,
        responses={401: _UNAUTHORIZED},
        tags=["hosts"],
        description="The worker hosts (scheduler.launcher = celery) with their capacity, running bots and "
        "last heartbeat; empty when the bots run in the service itself.",
    )
    async def list_hosts() -> list[HostOut]:
        return [HostOut.model_validate(h.to_dict()) for h in await in_thread(service.hosts)]
