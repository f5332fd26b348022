"""Console: open and recent pages, a page's events and frozen policy, acknowledge and resolve."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select

from crisisdesk.auth.deps import ConsoleReader, ConsoleWriter, Tx
from crisisdesk.auth.models import User
from crisisdesk.incident.models import Incident
from crisisdesk.kit.console import render, see_other
from crisisdesk.oncall import paging
from crisisdesk.oncall.models import PageStatus

router = APIRouter(include_in_schema=False)
RECENT = 50


@router.get("/console/pages", response_class=HTMLResponse)
async def pages(request: Request, actor: ConsoleReader, session: Tx) -> HTMLResponse:
    """Open pages (triggered, then acknowledged), and the most recent resolved ones."""
    triggered = await paging.list_pages(session, status=PageStatus.triggered, limit=200)
    acknowledged = await paging.list_pages(session, status=PageStatus.acknowledged, limit=200)
    resolved = await paging.list_pages(session, status=PageStatus.resolved, limit=RECENT)
    return render(
        request,
        "oncall/pages.html",
        actor=actor,
        section="pages",
        open_pages=[*triggered, *acknowledged],
        resolved_pages=resolved,
    )


@router.get("/console/pages/{page_id}", response_class=HTMLResponse)
async def page_detail(request: Request, page_id: str, actor: ConsoleReader, session: Tx) -> HTMLResponse:
    """One page: its events, the policy as frozen, and the acknowledge and resolve buttons."""
    page = await paging.get_page(session, page_id)
    events = await paging.events_of(session, page.id)
    ids = {e.user_id for e in events if e.user_id} | {page.acknowledged_by_id} - {None}
    for level in paging.levels_of(page):
        ids |= {str(t.get("id")) for t in level.get("targets") or [] if t.get("type") == "user"}
    users = {u.id: u for u in await session.scalars(select(User).where(User.id.in_(ids)))} if ids else {}
    incident = await session.get(Incident, page.incident_id) if page.incident_id else None
    return render(
        request,
        "oncall/pages_detail.html",
        actor=actor,
        section="pages",
        page=page,
        events=events,
        users=users,
        incident=incident,
    )


@router.post("/console/pages/{page_id}/acknowledge")
async def acknowledge(page_id: str, actor: ConsoleWriter, session: Tx) -> Response:
    page = await paging.get_page(session, page_id)
    await paging.acknowledge(session, page, user_id=actor.user_id, via="console")
    return see_other(f"/console/pages/{page.id}")


@router.post("/console/pages/{page_id}/resolve")
async def resolve(page_id: str, actor: ConsoleWriter, session: Tx) -> Response:
    page = await paging.get_page(session, page_id)
    await paging.resolve(session, page, user_id=actor.user_id, via="console")
    return see_other(f"/console/pages/{page.id}")
