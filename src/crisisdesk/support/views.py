"""Console: the tickets list (accept suggestions, link, unlink), a ticket's page, each incident's macros,
and the tickets panel on the incident page (counts, macro status, answering linked tickets in bulk).

The panel comes through :mod:`crisisdesk.incident.views`' provider list, so the incident package
does not import support.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from crisisdesk.auth.deps import ConsoleReader, ConsoleWriter, Tx
from crisisdesk.auth.models import Scope
from crisisdesk.auth.service import Actor
from crisisdesk.customer.models import Account
from crisisdesk.incident import service as incidents
from crisisdesk.incident import views as incident_views
from crisisdesk.incident.models import Incident, IncidentStatus, Kind
from crisisdesk.kit.console import Failure, discard, failure_of, form_values, parse_utc_input, render, see_other, text
from crisisdesk.kit.errors import DomainError, InvalidInput
from crisisdesk.kit.runtime import runtime_of
from crisisdesk.kit.time import utcnow
from crisisdesk.support import macros, tasks, tickets
from crisisdesk.support.models import MacroKind, ReplyState, Ticket, TicketReply, TicketStatus

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 50
MAX_PAGE = 20_000
VIEWS = {"suggested": "Waiting for an agent", "linked": "Linked", "all": "All"}


def _status_of(failure: Failure | None) -> int:
    return 200 if failure is None else int(failure.values.get("_status", 422))


def _back(values: dict[str, Any], default: str) -> str:
    """Where a form returns to: a console path it names, never another site."""
    target = text(values, "next")
    return target if target.startswith("/console/") and "//" not in target and "\\" not in target else default


# ---- the panel on the incident page -----------------------------------------------------------


async def incident_panel(session: AsyncSession, actor: Actor, incident: Incident) -> dict[str, Any]:
    """Linked and suggested tickets, macro status, and what answering them in bulk would do."""
    if incident.kind != Kind.incident:
        return {}
    found = await macros.macros_of(session, incident.id)
    unsolved = await session.scalar(
        select(func.count()).where(Ticket.incident_id == incident.id, Ticket.status != TicketStatus.solved)
    )
    failed = await session.scalar(
        select(func.count()).where(TicketReply.incident_id == incident.id, TicketReply.state == ReplyState.failed)
    )
    return {
        "tickets_panel": {
            "linked": await tickets.count_linked(session, incident.id),
            "suggested": await tickets.count_suggested(session, incident.id),
            "unsolved": int(unsolved or 0),
            "unacknowledged": await tickets.unacknowledged_count(session, incident.id),
            "failed_replies": int(failed or 0),
            "macros": {kind.value: found.get(kind) for kind in MacroKind},
            "may_write": actor.can(Scope.write),
        }
    }


incident_views.incident_panels.append(incident_panel)


# ---- the tickets list -------------------------------------------------------------------------


async def link_choices(session: AsyncSession, window_hours: float) -> list[Incident]:
    """Incidents an agent may link a ticket to: open ones, and those resolved within the match window."""
    since = utcnow() - timedelta(hours=window_hours)
    open_statuses = [s.value for s in incidents.OPEN_INCIDENT_STATUSES]
    return list(
        await session.scalars(
            select(Incident)
            .where(
                Incident.kind == Kind.incident,
                or_(
                    Incident.status.in_(open_statuses),
                    (Incident.status == IncidentStatus.resolved) & (Incident.resolved_at >= since),
                ),
            )
            .order_by(Incident.created_at.desc())
            .limit(100)
        )
    )


def _page(value: str) -> int:
    raw = value.strip() or "1"
    # isdigit() alone takes "²" and other Unicode digits that int() refuses.
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 6 or not 1 <= int(raw) <= MAX_PAGE:
        raise InvalidInput(f"page must be a whole number from 1 to {MAX_PAGE}", field="page")
    return int(raw)


async def _list_page(
    request: Request,
    actor: Actor,
    session: AsyncSession,
    *,
    view: str,
    incident_id: str,
    status: str,
    page: str,
    failure: Failure | None = None,
) -> HTMLResponse:
    if view not in VIEWS:
        raise InvalidInput(f"view must be one of: {', '.join(VIEWS)}", field="view")
    number = _page(page)
    parsed = tickets.parse_status(status) if status else None
    incident = await macros.load_incident(session, incident_id) if incident_id else None
    total, rows = await tickets.list_tickets(
        session,
        incident_id=incident.id if incident else None,
        status=parsed,
        suggested=True if view == "suggested" else None,
        linked=True if view == "linked" else None,
        limit=PAGE_SIZE,
        offset=(number - 1) * PAGE_SIZE,
    )
    wanted = {t.incident_id for t in rows if t.incident_id} | {
        t.suggested_incident_id for t in rows if t.suggested_incident_id
    }
    by_id = {i.id: i for i in await session.scalars(select(Incident).where(Incident.id.in_(wanted)))} if wanted else {}
    account_ids = {t.account_id for t in rows if t.account_id}
    accounts = (
        dict(
            (await session.execute(select(Account.id, Account.name).where(Account.id.in_(account_ids)))).tuples().all()
        )
        if account_ids
        else {}
    )
    settings = runtime_of(request).settings
    query = {"view": view, "incident": incident_id, "status": status}
    here = (
        "/console/tickets?"
        + "&".join(f"{k}={v}" for k, v in query.items() if v)
        + (f"&page={number}" if number > 1 else "")
    )
    return render(
        request,
        "support/tickets.html",
        actor=actor,
        section="tickets",
        failure=failure,
        status_code=_status_of(failure),
        rows=rows,
        total=total,
        page=number,
        pages=max(1, -(-total // PAGE_SIZE)),
        view=view,
        views=VIEWS,
        incident=incident,
        incident_filter=incident_id,
        status=status,
        statuses=list(TicketStatus),
        incidents_by_id=by_id,
        accounts=accounts,
        choices=await link_choices(session, settings.match_window_hours),
        threshold=settings.match_threshold,
        here=here,
        can_write=actor.can(Scope.write),
    )


@router.get("/console/tickets", response_class=HTMLResponse)
async def tickets_page(
    request: Request,
    actor: ConsoleReader,
    session: Tx,
    view: str = "suggested",
    incident: str = "",
    status: str = "",
    page: str = "1",
) -> HTMLResponse:
    """Tickets waiting for an agent (a suggested incident to accept), linked ones, or all, by incident."""
    return await _list_page(request, actor, session, view=view, incident_id=incident, status=status, page=page)


async def _ticket_action(
    request: Request, actor: Actor, session: AsyncSession, ticket_id: str, action: str
) -> Response:
    values = await form_values(request)
    back = _back(values, "/console/tickets")
    settings = runtime_of(request).settings
    try:
        if action == "link":
            incident_id = text(values, "incident_id")
            if not incident_id:
                raise InvalidInput("choose the incident to link the ticket to", field="incident_id")
            await tickets.link(session, settings, actor, ticket_id=ticket_id, incident_id=incident_id)
        else:
            await tickets.unlink(session, actor, ticket_id=ticket_id)
    except DomainError as exc:
        if exc.field == "ticket_id" and exc.status_code == 404:
            raise
        await discard(session)
        failure = failure_of(exc, f"ticket-{ticket_id}", values)
        if back.startswith(f"/console/tickets/{ticket_id}"):
            return await _ticket_page(request, actor, session, ticket_id, failure=failure)
        return await _list_page(
            request, actor, session, view="all", incident_id="", status="", page="1", failure=failure
        )
    return see_other(back)


@router.post("/console/tickets/{ticket_id}/link", response_class=HTMLResponse)
async def link_ticket(request: Request, ticket_id: str, actor: ConsoleWriter, session: Tx) -> Response:
    """Accept the suggested incident, or link the ticket to the incident chosen."""
    return await _ticket_action(request, actor, session, ticket_id, "link")


@router.post("/console/tickets/{ticket_id}/unlink", response_class=HTMLResponse)
async def unlink_ticket(request: Request, ticket_id: str, actor: ConsoleWriter, session: Tx) -> Response:
    """Take the ticket off its incident."""
    return await _ticket_action(request, actor, session, ticket_id, "unlink")


async def _ticket_page(
    request: Request, actor: Actor, session: AsyncSession, ticket_id: str, *, failure: Failure | None = None
) -> HTMLResponse:
    ticket = await tickets.get_ticket(session, ticket_id)
    replies = await tickets.replies_of(session, ticket.id)
    wanted = {i for i in (ticket.incident_id, ticket.suggested_incident_id) if i}
    by_id = {i.id: i for i in await session.scalars(select(Incident).where(Incident.id.in_(wanted)))} if wanted else {}
    account = await session.get(Account, ticket.account_id) if ticket.account_id else None
    return render(
        request,
        "support/ticket.html",
        actor=actor,
        section="tickets",
        failure=failure,
        status_code=_status_of(failure),
        ticket=ticket,
        replies=replies,
        reply_states=await tasks.reply_states(session, replies),
        incidents_by_id=by_id,
        account=account,
        choices=await link_choices(session, runtime_of(request).settings.match_window_hours),
        here=f"/console/tickets/{ticket.id}",
        can_write=actor.can(Scope.write),
    )


@router.get("/console/tickets/{ticket_id}", response_class=HTMLResponse)
async def ticket_page(request: Request, ticket_id: str, actor: ConsoleReader, session: Tx) -> HTMLResponse:
    """One ticket: what the customer wrote, the match, and every reply with its state."""
    return await _ticket_page(request, actor, session, ticket_id)


# ---- macros -----------------------------------------------------------------------------------


async def _macros_page(
    request: Request, actor: Actor, session: AsyncSession, incident_id: str, *, failure: Failure | None = None
) -> HTMLResponse:
    incident = await macros.load_incident(session, incident_id)
    zone = runtime_of(request).settings.page_time_zone
    found = await macros.macros_of(session, incident.id)
    previews: dict[str, tuple[str, str] | str] = {}
    for kind, macro in found.items():
        try:
            previews[kind.value] = await macros.render_macro(session, macro, time_zone=zone)
        except DomainError as exc:
            previews[kind.value] = exc.message
    return render(
        request,
        "support/macros.html",
        actor=actor,
        section="incidents",
        failure=failure,
        status_code=_status_of(failure),
        incident=incident,
        kinds=list(MacroKind),
        labels=macros.LABELS,
        found={k.value: v for k, v in found.items()},
        previews=previews,
        variables=macros.VARIABLES,
        can_write=actor.can(Scope.write),
        may_approve=actor.can(Scope.write) and await incidents.may_approve(session, actor, incident),
    )


@router.get("/console/incidents/{incident_id}/macros", response_class=HTMLResponse)
async def macros_page(request: Request, incident_id: str, actor: ConsoleReader, session: Tx) -> HTMLResponse:
    """The incident's acknowledge and resolution macros: words, preview, approval."""
    return await _macros_page(request, actor, session, incident_id)


async def _macro_action(
    request: Request, actor: Actor, session: AsyncSession, incident_id: str, kind: str, action: str
) -> Response:
    values = await form_values(request)
    zone = runtime_of(request).settings.page_time_zone
    try:
        parsed = macros.parse_kind(kind)
        if action == "save":
            await macros.put_macro(
                session,
                actor,
                incident_id=incident_id,
                kind=parsed,
                subject=text(values, "subject"),
                body=text(values, "body"),
                time_zone=zone,
            )
        else:
            seen = parse_utc_input(text(values, "updated_at"), field="updated_at")
            await macros.approve(session, actor, incident_id=incident_id, kind=parsed, seen=seen)
    except DomainError as exc:
        if exc.field == "incident_id":
            raise
        await discard(session)
        return await _macros_page(
            request, actor, session, incident_id, failure=failure_of(exc, f"macro-{kind}", values)
        )
    return see_other(f"/console/incidents/{incident_id}/macros#macro-{kind}")


@router.post("/console/incidents/{incident_id}/macros/{kind}", response_class=HTMLResponse)
async def save_macro(request: Request, incident_id: str, kind: str, actor: ConsoleWriter, session: Tx) -> Response:
    """Save a macro's words; a change to an approved macro needs approval again."""
    return await _macro_action(request, actor, session, incident_id, kind, "save")


@router.post("/console/incidents/{incident_id}/macros/{kind}/approve", response_class=HTMLResponse)
async def approve_macro(request: Request, incident_id: str, kind: str, actor: ConsoleWriter, session: Tx) -> Response:
    """The Communications Lead or an admin approves the version shown."""
    return await _macro_action(request, actor, session, incident_id, kind, "approve")


# ---- answering linked tickets in bulk ---------------------------------------------------------


async def _bulk(request: Request, actor: Actor, session: AsyncSession, incident_id: str, action: str) -> Response:
    values = await form_values(request)
    settings = runtime_of(request).settings
    try:
        if action == "resolve":
            await tickets.resolve_all(session, settings, actor, incident_id=incident_id)
        else:
            await tickets.acknowledge_all(session, settings, actor, incident_id=incident_id)
    except DomainError as exc:
        if exc.field == "incident_id":
            raise
        await discard(session)
        return await incident_views._incident_page(
            request, actor, session, incident_id, failure=failure_of(exc, "tickets", values)
        )
    return see_other(f"/console/incidents/{incident_id}#tickets")


@router.post("/console/incidents/{incident_id}/tickets/resolve", response_class=HTMLResponse)
async def resolve_tickets(request: Request, incident_id: str, actor: ConsoleWriter, session: Tx) -> Response:
    """Send the approved resolution macro to every linked unsolved ticket and mark them solved."""
    return await _bulk(request, actor, session, incident_id, "resolve")


@router.post("/console/incidents/{incident_id}/tickets/acknowledge", response_class=HTMLResponse)
async def acknowledge_tickets(request: Request, incident_id: str, actor: ConsoleWriter, session: Tx) -> Response:
    """Send the approved acknowledgement to linked tickets that have not had it."""
    return await _bulk(request, actor, session, incident_id, "acknowledge")
