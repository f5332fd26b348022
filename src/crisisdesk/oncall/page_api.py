"""Pages over HTTP: the REST API, the public acknowledge link, and the pager's heartbeat.

The acknowledge link in every message (``/pages/ack/<token>``) shows a small page with a button;
only its POST acknowledges, because mail scanners and chat unfurlers fetch links by GET. The
heartbeat (``/heartbeat``) is for an outside monitor: 200 while some worker has beaten recently
and no escalation is overdue, else 503 with the reason.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select

from crisisdesk.auth.deps import ApiReader, ApiWriter, Tx
from crisisdesk.auth.schemas import errors
from crisisdesk.kit.errors import NotFound
from crisisdesk.kit.jobs import Job
from crisisdesk.kit.runtime import runtime_of
from crisisdesk.kit.time import iso, utcnow
from crisisdesk.oncall import heartbeat, paging
from crisisdesk.oncall.models import Page, PageEvent, PageStatus
from crisisdesk.statuspage import personal

router = APIRouter(tags=["pages"])
public = APIRouter(include_in_schema=False)


class PageEventRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    at: datetime = Field(description="When it happened (UTC).")
    kind: str = Field(description="triggered, notified, escalated, acknowledged, resolved, exhausted or unreached.")
    user_id: str | None = Field(description="The user it concerns, if any.")
    summary: str = Field(description="What happened, in words.")
    data: dict[str, Any] = Field(description="Details: level, cycle, channel, how the user was reached.")


class PageRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str = Field(description="Page id.")
    title: str = Field(description="What the page is about.")
    urgency: str = Field(description="high (escalates on time) or low (never escalates).")
    status: PageStatus = Field(description="triggered, acknowledged or resolved.")
    escalation_policy_id: str | None = Field(description="The policy it started from (None if since deleted).")
    policy: dict[str, Any] = Field(description="The policy as frozen when the page started: name, levels, repeats.")
    level: int = Field(description="The level reached (0 is the first).")
    cycle: int = Field(description="How many times the policy has started again from its first level.")
    next_escalation_at: datetime | None = Field(description="When the next level is notified unless acknowledged.")
    incident_id: str | None = Field(description="The incident it pages for, if any.")
    alert_group_id: str | None = Field(description="The alert group it pages for, if any.")
    role: str | None = Field(description="The incident role this page fills, if any.")
    started_at: datetime = Field(description="When it started.")
    acknowledged_at: datetime | None = Field(description="When it was acknowledged.")
    acknowledged_by_id: str | None = Field(description="Who acknowledged it.")
    resolved_at: datetime | None = Field(description="When it was resolved.")


class PageDetail(PageRead):
    events: list[PageEventRead] = Field(description="What happened on the page, oldest first.")


async def _detail(session: Tx, page: Page) -> PageDetail:
    events: list[PageEvent] = await paging.events_of(session, page.id)
    read = PageRead.model_validate(page)
    return PageDetail(**read.model_dump(), events=[PageEventRead.model_validate(e) for e in events])


@router.get("/pages", summary="List pages", response_model=list[PageRead], responses=errors(401, 403, 422))
async def list_pages(
    session: Tx,
    actor: ApiReader,
    state: str | None = Query(default=None, alias="status", description="triggered, acknowledged or resolved."),
    limit: int = Query(default=50, ge=1, le=200, description="At most this many, newest first."),
    offset: int = Query(default=0, ge=0, le=100_000, description="Skip this many (for paging)."),
) -> list[Page]:
    """Pages, newest first."""
    return await paging.list_pages(session, status=state, limit=limit, offset=offset)


@router.get("/pages/{page_id}", summary="Get a page", response_model=PageDetail, responses=errors(401, 403, 404))
async def get_page(page_id: str, session: Tx, actor: ApiReader) -> PageDetail:
    """One page with its frozen policy and its events."""
    return await _detail(session, await paging.get_page(session, page_id))


@router.post(
    "/pages/{page_id}/acknowledge",
    summary="Acknowledge a page",
    response_model=PageDetail,
    responses=errors(401, 403, 404),
)
async def acknowledge(page_id: str, session: Tx, actor: ApiWriter) -> PageDetail:
    """Stop the escalation: nobody further is paged. Acknowledging again changes nothing."""
    page = await paging.acknowledge(session, await paging.get_page(session, page_id), user_id=actor.user_id, via="api")
    return await _detail(session, page)


@router.post(
    "/pages/{page_id}/resolve", summary="Resolve a page", response_model=PageDetail, responses=errors(401, 403, 404)
)
async def resolve(page_id: str, session: Tx, actor: ApiWriter) -> PageDetail:
    """Close the page; its timers stop. Resolving again changes nothing."""
    page = await paging.resolve(session, await paging.get_page(session, page_id), user_id=actor.user_id, via="api")
    return await _detail(session, page)


# ------------------------------------------------------------------------- acknowledge link


# The token is the key: never cached, never sent on as a referrer, never indexed.
_ACK_HEADERS = {"cache-control": "no-store", "referrer-policy": "no-referrer", "x-robots-tag": "noindex"}


def _ack_page(request: Request, *, status_code: int = 200, **context: Any) -> HTMLResponse:
    return personal.render(
        request, "oncall/page_ack.html", active="", headers=_ACK_HEADERS, status_code=status_code, **context
    )


@public.get("/pages/ack/{token}", response_class=HTMLResponse)
async def ack_form(request: Request, token: str, session: Tx) -> HTMLResponse:
    """The page's title and an Acknowledge button; a GET acknowledges nothing (link scanners fetch it)."""
    try:
        page = await paging.page_by_token(session, token)
    except NotFound as exc:
        return _ack_page(request, status_code=404, page=None, message=exc.message, done=False)
    return _ack_page(request, page=page, done=False, message=None)


@public.post("/pages/ack/{token}", response_class=HTMLResponse)
async def ack_submit(request: Request, token: str, session: Tx) -> HTMLResponse:
    """Acknowledge by the link: the token in it is the key."""
    try:
        page = await paging.page_by_token(session, token)
    except NotFound as exc:
        return _ack_page(request, status_code=404, page=None, message=exc.message, done=False)
    was = page.status
    page = await paging.acknowledge(session, page, user_id=None, via="link")
    return _ack_page(request, page=page, done=True, already=was != PageStatus.triggered, message=None)


# ------------------------------------------------------------------------------- heartbeat


@public.get("/heartbeat")
async def heartbeat_status(request: Request) -> JSONResponse:
    """For an outside monitor: 200 while workers beat and escalations run on time, else 503 with the reason."""
    runtime = runtime_of(request)
    stale = timedelta(seconds=runtime.settings.heartbeat_stale_seconds)
    now = utcnow()
    last = await heartbeat.last_beat(runtime.db)
    async with runtime.db.sessionmaker() as session:
        overdue = int(
            await session.scalar(
                select(func.count())
                .select_from(Job)
                .where(Job.kind == paging.ESCALATE, Job.finished_at.is_(None), Job.due_at < now - stale)
            )
            or 0
        )
    body: dict[str, Any] = {"status": "ok", "last_beat": iso(last), "overdue_timers": overdue}
    headers = {"cache-control": "no-store"}
    reasons = []
    if last is None:
        reasons.append("no worker has ever beaten")
    elif now - last > stale:
        reasons.append(f"no worker has beaten for {int((now - last).total_seconds())} s")
    if overdue:
        reasons.append(f"{overdue} escalation timer(s) overdue by more than {int(stale.total_seconds())} s")
    if reasons:
        body |= {"status": "failing", "reason": "; ".join(reasons)}
        return JSONResponse(body, status_code=503, headers=headers)
    return JSONResponse(body, headers=headers)
