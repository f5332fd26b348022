"""Console: the agent brief of an incident, its live parts, and escalating a ticket with one click.

The page is a frame of ``data-fragment`` parts (``static/fragments.js`` loads them); the
console's live channel (``static/live.js``) refreshes the page, hence its parts, when one of
the brief's change topics (``brief.topics``) changes, and only then. Every signed-in role reads
the brief; escalating needs the write permission, as posting an internal note does.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from crisisdesk.auth.deps import ConsoleReader, ConsoleWriter, Tx
from crisisdesk.auth.service import Actor
from crisisdesk.kit.console import Failure, discard, failure_of, form_values, render, see_other, text
from crisisdesk.kit.errors import DomainError, NotFound
from crisisdesk.kit.pages import templates
from crisisdesk.kit.runtime import runtime_of
from crisisdesk.support import brief, escalation, tickets

router = APIRouter(include_in_schema=False)


def arr_short(cents: int) -> str:
    """ARR in currency units, short: 950, 12.5k, 3.4M."""
    units = cents / 100
    for limit, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if units >= limit:
            return f"{units / limit:.1f}".removesuffix(".0") + suffix
    return f"{units:,.0f}"


templates.env.filters["brief_arr"] = arr_short


def brief_path(incident_id: str) -> str:
    return f"/console/incidents/{incident_id}/brief"


def _back_to(values: dict[str, Any], default: str) -> str:
    """Where the form came from (a console page), else the brief."""
    target = text(values, "next")
    if target.startswith("/console/") and not target.startswith("//") and "\\" not in target and "\n" not in target:
        return target
    return default


async def _part_context(request: Request, session: AsyncSession, part: str, incident: Any) -> dict[str, Any]:
    if part == "known":
        return {"known": await brief.known(session, incident)}
    if part == "talking":
        time_zone = runtime_of(request).settings.page_time_zone
        return {"talking": await brief.talking(session, incident, time_zone=time_zone)}
    if part == "guidance":
        found = await brief.guidance(session, incident)
        authors = {w.author_id or "" for w in ([found.workaround] if found.workaround else [])}
        authors |= {e.author_id or "" for e in found.etas}
        return {"guidance": found, "authors": await brief.user_names(session, authors)}
    return {"tickets": await brief.ticket_part(session, incident)}


async def _page(
    request: Request,
    actor: Actor,
    session: AsyncSession,
    incident_id: str,
    *,
    failure: Failure | None = None,
) -> HTMLResponse:
    incident = await brief.load_incident(session, incident_id)
    inline: dict[str, Any] = {}
    if failure is not None:
        # The refused form is in the tickets part: render it in place, with the message and the values.
        inline = await _part_context(request, session, "tickets", incident)
    return render(
        request,
        "support/brief.html",
        actor=actor,
        incident=incident,
        parts=brief.PARTS,
        topics=brief.topics(incident.id),
        failure=failure,
        inline=inline,
        status_code=200 if failure is None else int(failure.values.get("_status", 422)),
        **inline,
    )


@router.get("/console/incidents/{incident_id}/brief", response_class=HTMLResponse)
async def brief_page(request: Request, incident_id: str, actor: ConsoleReader, session: Tx) -> HTMLResponse:
    """The agent brief: what is known, what to say, workaround, ETA, tickets; live."""
    return await _page(request, actor, session, incident_id)


@router.get("/console/incidents/{incident_id}/brief/{part}", response_class=HTMLResponse)
async def brief_part(request: Request, incident_id: str, part: str, actor: ConsoleReader, session: Tx) -> HTMLResponse:
    """One part of the brief, as a fragment the page loads and refreshes."""
    if part not in brief.PARTS:
        raise NotFound(f"the brief has no part {part!r}; use one of: {', '.join(brief.PARTS)}", field="part")
    incident = await brief.load_incident(session, incident_id)
    context = await _part_context(request, session, part, incident)
    return render(request, f"support/_brief_{part}.html", actor=actor, incident=incident, **context)


@router.post("/console/tickets/{ticket_id}/escalate", response_class=HTMLResponse)
async def escalate(request: Request, ticket_id: str, actor: ConsoleWriter, session: Tx) -> Response:
    """Escalate a ticket to the Incident Commander; back to the page the form was on."""
    values = await form_values(request)
    try:
        done = await escalation.escalate(session, actor, ticket_id=ticket_id, note=text(values, "note"))
    except DomainError as exc:
        if exc.field == "ticket_id":
            raise
        await discard(session)
        ticket = await tickets.get_ticket(session, ticket_id)
        incident_id = ticket.incident_id or ticket.suggested_incident_id
        if incident_id is None:
            raise
        return await _page(
            request, actor, session, incident_id, failure=failure_of(exc, f"escalate-{ticket_id}", values)
        )
    return see_other(_back_to(values, f"{brief_path(done.incident.id)}#escalations"))
