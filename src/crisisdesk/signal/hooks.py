"""The receiving end of alert sources: ``POST /hooks/{token}`` and ``POST /v2/enqueue``.

The token in the URL (or the Events v2 ``routing_key``) is the key: these routes need no login.
They are the hot path, so they read the raw body with orjson, check it by hand, find the
integration in an in-process cache, and hand the alerts to this process's :class:`Committer`.
Each integration has its own token bucket (``rate_limit_per_minute``), so a flood from one
source is answered 429 before any database work and does not slow the others.

The committer writes the requests that arrive while it is writing in one transaction (group
commit): one request alone is written at once; under load, the alerts of every request for the
same integration become one batch for :func:`ingest`, in arrival order, and each request is
answered with the counts of its own alerts. A request is answered only after its transaction
commits. If a shared transaction fails, each request in it is written again in a transaction of
its own, so one request's failure is its own 4xx/5xx and never another's, and nothing is half
stored.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from crisisdesk.kit.db import Database
from crisisdesk.kit.runtime import Runtime, runtime_of
from crisisdesk.signal import sources
from crisisdesk.signal.ingest import AlertIn, IngestResult, ingest
from crisisdesk.signal.models import Integration, SourceKind

router = APIRouter(tags=["alert ingestion"])

CACHE_SECONDS = 5.0
HOOK_KINDS = frozenset({SourceKind.alertmanager, SourceKind.grafana, SourceKind.generic})
JSON = "application/json"
# Transactions one process writes at once on PostgreSQL (SQLite has a single writer).
WRITERS = 4


class HookAccepted(BaseModel):
    """What one webhook delivery did."""

    status: str = Field(description="Always 'ok'.")
    accepted: int = Field(description="Alerts in the body.")
    created: int = Field(description="New alerts opened.")
    repeated: int = Field(description="Repeats of alerts already open (deduplicated on their key).")
    acknowledged: int = Field(description="Alerts acknowledged.")
    resolved: int = Field(description="Open alerts resolved.")
    ignored: int = Field(description="Acknowledgements or resolutions of keys with no open alert.")


class HookErrorDetail(BaseModel):
    loc: list[str | int] = Field(description="Path to the problem in the body, e.g. ['body', 'alerts', 3, 'labels'].")
    msg: str = Field(description="What is wrong.")
    type: str = Field(description="invalid_json, invalid_payload, not_found, rate_limited or too_large.")


class HookError(BaseModel):
    detail: list[HookErrorDetail] = Field(description="The problems found.")


class EventAccepted(BaseModel):
    """PagerDuty Events API v2's answer to an accepted event."""

    status: str = Field(description="'success'.")
    message: str = Field(description="'Event processed'.")
    dedup_key: str = Field(description="The event's key; generated when the event had none.")


class EventRejected(BaseModel):
    """PagerDuty Events API v2's answer to a refused event."""

    status: str = Field(description="'invalid event', 'unrecognized routing key' or 'throttle event'.")
    message: str = Field(description="A summary of the problem.")
    errors: list[str] = Field(description="Each problem, naming the field.")


# --- integrations by token, and their token buckets -------------------------------------------


@dataclass(slots=True)
class _Cached:
    engine: object
    expires: float
    integration: Integration | None


_by_token: dict[str, _Cached] = {}
# Tokens that named no integration, kept apart: a flood of made-up tokens fills and clears this
# one and never pushes the real integrations out of their cache.
_unknown: dict[str, _Cached] = {}
MAX_UNKNOWN = 10_000


def forget_integrations() -> None:
    """Drop cached integrations (after an edit), so the next request reads them again.

    The rate-limit buckets stay: a bucket notices a changed limit by itself (``_throttle``).
    """
    _by_token.clear()
    _unknown.clear()


@event.listens_for(Session, "after_flush")
def _forget_on_edit(session: Session, _context: object) -> None:
    """An integration changed through this process's ORM (disabled, new limit): read it again."""
    if _by_token and any(isinstance(o, Integration) for o in (*session.new, *session.dirty, *session.deleted)):
        forget_integrations()


async def _integration(runtime: Runtime, token: str) -> Integration | None:
    if not token or len(token) > 64 or "\x00" in token:
        return None
    db = runtime.db
    now = time.monotonic()
    cached = _by_token.get(token) or _unknown.get(token)
    if cached is not None and cached.engine is db.engine and cached.expires > now:
        return cached.integration
    async with db.sessionmaker() as session:
        integration = await session.scalar(select(Integration).where(Integration.token == token))
    entry = _Cached(db.engine, now + CACHE_SECONDS, integration)
    if integration is None:
        if len(_unknown) >= MAX_UNKNOWN:
            _unknown.clear()
        _unknown[token] = entry
    else:
        _unknown.pop(token, None)
        _by_token[token] = entry
    return integration


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float
    rate: int


_buckets: dict[str, _Bucket] = {}


def _throttle(integration: Integration) -> float | None:
    """Seconds to wait when this integration is over its limit, else None (and a token is taken)."""
    rate = integration.rate_limit_per_minute
    if rate <= 0:
        return None
    now = time.monotonic()
    bucket = _buckets.get(integration.id)
    if bucket is None or bucket.rate != rate:
        bucket = _buckets[integration.id] = _Bucket(float(rate), now, rate)
    bucket.tokens = min(float(rate), bucket.tokens + (now - bucket.updated) * rate / 60.0)
    bucket.updated = now
    if bucket.tokens >= 1.0:
        bucket.tokens -= 1.0
        return None
    return (1.0 - bucket.tokens) * 60.0 / rate


# --- answers ----------------------------------------------------------------------------------


@dataclass(slots=True)
class Answer:
    """A JSON answer, served by the FastAPI route or by the server's lean path (server.py)."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)

    def response(self) -> Response:
        return Response(orjson.dumps(self.body), status_code=self.status, media_type=JSON, headers=self.headers)


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Answer:
    return Answer(status, body, headers or {})


def _problem(status: int, loc: tuple[str | int, ...], msg: str, kind: str, **headers: str) -> Answer:
    return _json(status, {"detail": [{"loc": ["body", *loc], "msg": msg, "type": kind}]}, headers or None)


def _retry_after(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))


HOOK_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {
        "model": HookError,
        "description": "The body is not JSON or not in the integration's format; loc names the field.",
    },
    404: {"model": HookError, "description": "No enabled integration of a webhook kind has this token."},
    413: {"model": HookError, "description": "The body is larger than CRISISDESK_MAX_BODY_BYTES."},
    429: {"model": HookError, "description": "The integration is over its rate limit; see Retry-After."},
}


@router.post(
    "/hooks/{token}",
    summary="Receive alerts (Alertmanager, Grafana or generic JSON)",
    response_model=HookAccepted,
    responses=HOOK_RESPONSES,
)
async def receive_alerts(token: str, request: Request) -> Response:
    """Alerts from the integration whose secret token is in the URL, in its kind's format.

    Alertmanager: a ``webhook_config`` body (version "4"); Grafana: its alerting webhook
    (version "1"); generic: any JSON read through the integration's mapping. Repeats of an open
    alert (same fingerprint or key) are counted, not stored twice.
    """
    runtime = runtime_of(request)
    return (await answer_hook(runtime, token, request.body)).response()


async def answer_hook(runtime: Runtime, token: str, read_body: Callable[[], Awaitable[bytes]]) -> Answer:
    """``POST /hooks/{token}``; the body is read only once the token is known and within its limit."""
    integration = await _integration(runtime, token)
    if integration is None or not integration.enabled or integration.kind not in HOOK_KINDS:
        return _problem(404, (), "no enabled webhook integration has this token", "not_found")
    wait = _throttle(integration)
    if wait is not None:
        return _problem(
            429,
            (),
            f"this integration sends more than {integration.rate_limit_per_minute} requests a minute",
            "rate_limited",
            **{"retry-after": _retry_after(wait)},
        )
    body = await read_body()
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return _problem(400, (), f"the body is not valid JSON: {exc}", "invalid_json")
    try:
        if integration.kind == SourceKind.alertmanager:
            alerts = sources.parse_alertmanager(data)
        elif integration.kind == SourceKind.grafana:
            alerts = sources.parse_grafana(data)
        else:
            alerts = sources.parse_generic(data, integration.mapping or {})
    except sources.PayloadError as exc:
        return _problem(400, exc.loc, f"{exc.path}: {exc.message}", "invalid_payload")
    result = await _committer(runtime).write(integration, alerts)
    return _json(200, {"status": "ok", **result.counts()})


EVENT_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": EventRejected, "description": "The event is invalid; errors names each field."},
    401: {"model": EventRejected, "description": "The routing_key is not an enabled Events v2 integration's key."},
    413: {"model": HookError, "description": "The body is larger than CRISISDESK_MAX_BODY_BYTES."},
    429: {"model": EventRejected, "description": "The integration is over its rate limit; see Retry-After."},
}


def _invalid(errors: list[str]) -> Answer:
    return _json(400, {"status": "invalid event", "message": "Event object is invalid", "errors": errors})


@router.post(
    "/v2/enqueue",
    summary="Receive an event (PagerDuty Events API v2)",
    status_code=202,
    response_model=EventAccepted,
    responses=EVENT_RESPONSES,
)
async def enqueue_event(request: Request) -> Response:
    """One Events API v2 event: trigger, acknowledge or resolve, for the integration whose
    routing key it carries. A trigger with the key of an open alert joins it; after a resolve
    the same key opens a new alert; a blank key gets a generated one, returned here."""
    return (await answer_event(runtime_of(request), await request.body())).response()


async def answer_event(runtime: Runtime, body: bytes) -> Answer:
    """``POST /v2/enqueue``."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return _invalid(["the body is not valid JSON"])
    routing_key, alert, errors = sources.parse_events_v2(data)
    if errors or alert is None or routing_key is None:
        return _invalid(errors or ["Event object is invalid"])
    integration = await _integration(runtime, routing_key)
    if integration is None or not integration.enabled or integration.kind != SourceKind.events_v2:
        return _json(
            401,
            {
                "status": "unrecognized routing key",
                "message": "Routing key is not recognized",
                "errors": ["'routing_key' is not the key of an enabled Events v2 integration"],
            },
        )
    wait = _throttle(integration)
    if wait is not None:
        return _json(
            429,
            {
                "status": "throttle event",
                "message": "Requests for this service are arriving too quickly. Please retry later.",
                "errors": [f"more than {integration.rate_limit_per_minute} events a minute"],
            },
            {"retry-after": _retry_after(wait)},
        )
    await _committer(runtime).write(integration, [alert])
    return _json(202, {"status": "success", "message": "Event processed", "dedup_key": alert.dedup_key})


# --- group commit -----------------------------------------------------------------------------


@dataclass(slots=True)
class _Request:
    integration: Integration
    alerts: list[AlertIn]
    done: asyncio.Future[IngestResult]


@dataclass
class Committer:
    """Writes the alerts of concurrent requests in shared transactions (see the module's text).

    SQLite has one writer, so one transaction at a time. PostgreSQL takes several at once: while
    one waits on its round trips and its commit, ``writers - 1`` others can be writing too.
    """

    db: Database
    writers: int = 1
    waiting: list[_Request] = field(default_factory=list)
    running: set[asyncio.Task[None]] = field(default_factory=set)

    async def write(self, integration: Integration, alerts: list[AlertIn]) -> IngestResult:
        """Store these alerts; returns when their transaction has committed (or raises its error)."""
        done: asyncio.Future[IngestResult] = asyncio.get_running_loop().create_future()
        self.waiting.append(_Request(integration, alerts, done))
        if len(self.running) < self.writers:
            task = asyncio.create_task(self._drain(), name="signal.committer")
            self.running.add(task)
            task.add_done_callback(self.running.discard)
        return await asyncio.shield(done)

    async def _drain(self) -> None:
        await asyncio.sleep(0)  # requests that arrived in the same loop pass join this batch
        while self.waiting:
            batch, self.waiting = self.waiting, []
            try:
                results = await self._write(batch)
            except Exception as exc:
                if len(batch) == 1:
                    _fail(batch[0], exc)
                    continue
                for one in batch:  # each alone: a request's failure is its own
                    try:
                        [result] = await self._write([one])
                    except Exception as alone:
                        _fail(one, alone)
                    else:
                        _succeed(one, result)
                continue
            for one, result in zip(batch, results, strict=True):
                _succeed(one, result)

    async def _write(self, batch: list[_Request]) -> list[IngestResult]:
        """One ingest() call per integration for the whole batch, in arrival order; each request
        gets the counts of its own alerts."""
        results: list[IngestResult] = [IngestResult()] * len(batch)
        merged: dict[str, list[int]] = {}
        for i, one in enumerate(batch):
            merged.setdefault(one.integration.id, []).append(i)
        async with self.db.session() as session:
            for indexes in merged.values():
                integration = batch[indexes[0]].integration
                shared = await ingest(session, integration, [a for i in indexes for a in batch[i].alerts])
                start = 0
                for i in indexes:
                    stop = start + len(batch[i].alerts)
                    results[i] = shared.part(start, stop)
                    start = stop
        return results


def _succeed(one: _Request, result: IngestResult) -> None:
    if not one.done.done():
        one.done.set_result(result)


def _fail(one: _Request, exc: Exception) -> None:
    if not one.done.done():
        one.done.set_exception(exc)


def _committer(runtime: Runtime) -> Committer:
    committer = runtime.extras.get("signal.committer")
    if not isinstance(committer, Committer):
        writers = 1 if runtime.db.is_sqlite else WRITERS
        committer = runtime.extras["signal.committer"] = Committer(runtime.db, writers=writers)
    return committer
