"""The HTTP API of the bot service (FastAPI): schedule, list, inspect and cancel bots.

Every route but `GET /health` needs `Authorization: Bearer <BOT_API_TOKEN>` (compared in constant time).
Invalid input gets a 422 whose `detail` names the field and says what to fix, in FastAPI's usual shape.
The OpenAPI schema is at /openapi.json, the interactive docs at /docs.
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Query, Response, Security, status
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from bot.bot_request import RequestError, validate_request
from bot.scheduler import BotService, NotFound
from bot.store import BotRecord, BotState


class BotCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    meeting_url: str = Field(
        min_length=1,
        max_length=2000,
        description="Google Meet or Zoom meeting URL",
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
    region: Literal["us-west", "eu-west"] | None = Field(default=None, description="Millis region")
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


# Module level: FastAPI resolves the (postponed) annotations that name it from this module's globals.
_bearer = HTTPBearer(auto_error=False, description="the service's BOT_API_TOKEN")


def _out(record: BotRecord) -> BotOut:
    return BotOut.model_validate(record.to_dict())


_UNAUTHORIZED = {"model": Problem, "description": "missing or wrong bearer token"}
_INVALID = {"model": ValidationProblem, "description": "invalid input; `detail` names the field"}
_NOT_FOUND = {"model": Problem, "description": "no bot with this id"}


def create_app(service: BotService, token: str, start_service: bool = True) -> FastAPI:
    """The API for `service`, which the app closes when it shuts down (making running bots leave) and,
    with `start_service`, starts (`serve` starts it first, to report a bad database URL plainly)."""
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
        description="Schedule bots that bring a Millis AI voice agent into Google Meet and Zoom calls.",
        lifespan=lifespan,
    )

    def authorized(creds: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)]) -> None:
        given = creds.credentials.encode() if creds is not None else b""
        if not hmac.compare_digest(given, expected):
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "missing or wrong bearer token: send Authorization: Bearer <BOT_API_TOKEN>",
                headers={"WWW-Authenticate": "Bearer"},
            )

    auth = [Depends(authorized)]

    @app.get("/health", response_model=Health, tags=["service"])
    async def health() -> Health:
        return Health(status="ok", running=len(service.running_ids), queued=len(service.queued_ids))

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
            record = service.schedule(request, body.join_at)
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
        return [_out(r) for r in service.list_bots(state, agent_id, limit, offset)]

    @app.get(
        "/bots/{bot_id}",
        response_model=BotOut,
        dependencies=auth,
        responses={401: _UNAUTHORIZED, 404: _NOT_FOUND},
        tags=["bots"],
    )
    async def get_bot(bot_id: str) -> BotOut:
        try:
            return _out(service.get(bot_id, with_events=True))
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
            outcome, record = service.cancel(bot_id)
        except NotFound as e:
            raise HTTPException(404, str(e)) from None
        if outcome == "finished":
            raise HTTPException(409, f"bot {bot_id} already finished (state {record.state.value})")
        if outcome == "leaving":
            response.status_code = 202
        return _out(record)

    return app
