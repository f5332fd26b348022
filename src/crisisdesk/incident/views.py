"""Console pages for incidents: the front page, declaring, running and reviewing an incident."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from crisisdesk.auth import service as auth
from crisisdesk.auth.deps import ConsoleAdmin, ConsoleReader, ConsoleWriter, Tx
from crisisdesk.auth.service import Actor
from crisisdesk.catalog import service as catalog
from crisisdesk.catalog.models import ComponentStatus
from crisisdesk.catalog.views import board
from crisisdesk.incident import policy as policies
from crisisdesk.incident import service
from crisisdesk.incident.models import Incident, IncidentRole, IncidentStatus, Kind, MaintenanceStatus, Severity
from crisisdesk.kit.console import (
    Failure,
    act_on_form,
    as_list,
    discard,
    failure_of,
    form_values,
    parse_utc_input,
    render,
    see_other,
    text,
)
from crisisdesk.kit.errors import DomainError, InvalidInput

router = APIRouter(include_in_schema=False)

UPDATE_STATUSES = [
    IncidentStatus.investigating,
    IncidentStatus.identified,
    IncidentStatus.monitoring,
    IncidentStatus.resolved,
]
ACTIVE_MAINTENANCE = (MaintenanceStatus.scheduled, MaintenanceStatus.in_progress, MaintenanceStatus.verifying)

# Packages above incident (comms) add panels to these pages without this module importing them:
# each provider returns extra template context for the page.
IncidentPanel = Callable[[AsyncSession, Actor, Incident], Awaitable[dict[str, Any]]]
PagePanel = Callable[[AsyncSession, Actor], Awaitable[dict[str, Any]]]
incident_panels: list[IncidentPanel] = []
declare_panels: list[PagePanel] = []
dashboard_panels: list[PagePanel] = []


async def _panels(providers: list[Any], *args: Any) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    for provider in providers:
        extra.update(await provider(*args))
    return extra


def _status_of(failure: Failure | None) -> int:
    return 200 if failure is None else int(failure.values.get("_status", 422))


def component_choices(values: dict[str, Any]) -> dict[str, str]:
    """The ``component:<id>`` selects of a form that ask for a change ('' means no change)."""
    return {
        key.split(":", 1)[1]: text(values, key) for key in values if key.startswith("component:") and text(values, key)
    }


def declare_fields(values: dict[str, Any]) -> dict[str, Any]:
    """The declare form's fields as the incident service's ``declare`` takes them."""
    roles = {key.split(":", 1)[1]: text(values, key) for key in values if key.startswith("role:") and text(values, key)}
    return {
        "name": text(values, "name"),
        "severity": text(values, "severity"),
        "body": text(values, "body"),
        "status": text(values, "status") or IncidentStatus.investigating,
        "components": component_choices(values),
        "next_update_at": parse_utc_input(text(values, "next_update_at"), field="next_update_at"),
        "roles": roles,
    }


@router.get("/console", response_class=HTMLResponse)
async def dashboard(request: Request, actor: ConsoleReader, session: Tx) -> HTMLResponse:
    """The crisis at a glance: open incidents and their promises, maintenance, components."""
    rows = await service.overview(session)
    maintenances = [
        m
        for m in await service.list_incidents(session, kind=Kind.maintenance, limit=50)
        if m.status in ACTIVE_MAINTENANCE and m.cancelled_at is None
    ]
    maintenances.sort(key=lambda m: m.scheduled_for or m.created_at)
    components = await catalog.list_components(session)
    return render(
        request,
        "console/dashboard.html",
        actor=actor,
        rows=rows,
        maintenances=maintenances,
        board=board(components),
        **await _panels(dashboard_panels, session, actor),
    )


@router.get("/console/incidents", response_class=HTMLResponse)
async def incidents_page(request: Request, actor: ConsoleReader, session: Tx) -> HTMLResponse:
    """Every incident, open ones first."""
    incidents = await service.list_incidents(session, limit=200)
    open_ = [i for i in incidents if i.is_open]
    closed = [i for i in incidents if not i.is_open]
    return render(request, "console/incidents.html", actor=actor, open_incidents=open_, closed_incidents=closed)


async def declare_form_context(session: AsyncSession) -> dict[str, Any]:
    """What the declare form lists: policies, components, people, roles, statuses, severities."""
    return {
        "policies": await policies.list_policies(session),
        "board": board(await catalog.list_components(session)),
        "users": [u for u in await auth.list_users(session) if u.is_active],
        "roles": list(IncidentRole),
        "statuses": list(ComponentStatus),
        "severities": list(Severity),
    }


async def _declare_page(
    request: Request, actor: Actor, session: AsyncSession, *, failure: Failure | None = None
) -> HTMLResponse:
    return render(
        request,
        "console/incident_new.html",
        actor=actor,
        failure=failure,
        status_code=_status_of(failure),
        **await declare_form_context(session),
        **await _panels(declare_panels, session, actor),
    )


@router.get("/console/incidents/new", response_class=HTMLResponse)
async def declare_form(request: Request, actor: ConsoleWriter, session: Tx) -> HTMLResponse:
    """The declare form: severity with its policy, components, first public update, roles."""
    return await _declare_page(request, actor, session)


@router.post("/console/incidents", response_class=HTMLResponse)
async def declare(request: Request, actor: ConsoleWriter, session: Tx) -> Response:
    """Declare an incident from the form and open its page."""
    values = await form_values(request)
    try:
        declared = await service.declare(session, actor, **declare_fields(values))
    except DomainError as exc:
        await discard(session)
        return await _declare_page(request, actor, session, failure=failure_of(exc, "declare", values))
    return see_other(f"/console/incidents/{declared.incident.id}")


async def _incident_page(
    request: Request, actor: Actor, session: AsyncSession, incident_id: str, *, failure: Failure | None = None
) -> HTMLResponse:
    incident = await service.get_incident(session, incident_id, kind=Kind.incident)
    users = await auth.list_users(session)
    policy = await policies.get_policy(session, Severity(incident.severity or Severity.SEV3))
    history: dict[str, list[Any]] = {}
    for assignment in sorted(incident.roles, key=lambda r: (r.assigned_at, r.id or 0)):
        history.setdefault(assignment.role, []).append(assignment)
    holders = {r.role: r.user_id for r in incident.roles if r.ended_at is None}
    return render(
        request,
        "console/incident.html",
        actor=actor,
        incident=incident,
        failure=failure,
        status_code=_status_of(failure),
        timeline=await service.timeline_of(session, incident.id),
        updates={u.id: u for u in incident.updates},
        users={u.id: u for u in users},
        active_users=[u for u in users if u.is_active],
        policy=policy,
        roles=list(IncidentRole),
        role_history=history,
        holders=holders,
        statuses=list(ComponentStatus),
        update_statuses=UPDATE_STATUSES,
        severities=list(Severity),
        board=board(await catalog.list_components(session)),
        affected={c.component_id for c in incident.components},
        **await _panels(incident_panels, session, actor, incident),
    )


@router.get("/console/incidents/{incident_id}", response_class=HTMLResponse)
async def incident_page(request: Request, incident_id: str, actor: ConsoleReader, session: Tx) -> HTMLResponse:
    """One incident: header, the forms that move it on, and its timeline newest first."""
    return await _incident_page(request, actor, session, incident_id)


async def act(
    request: Request,
    actor: Actor,
    session: AsyncSession,
    incident_id: str,
    form: str,
    action: Any,
    *,
    anchor: str | None = None,
) -> Response:
    """Run one form's action on the incident; a refusal re-renders the page with the message.

    Done, the page opens at ``anchor`` (the form's own, ``<form>-form``, when None).
    """

    async def rerender(failure: Failure) -> Response:
        return await _incident_page(request, actor, session, incident_id, failure=failure)

    return await act_on_form(
        request,
        session,
        form=form,
        load=lambda: service.get_incident(session, incident_id, kind=Kind.incident),
        action=action,
        rerender=rerender,
        done=f"/console/incidents/{incident_id}#{anchor or f'{form}-form'}",
    )


@router.post("/console/incidents/{incident_id}/updates", response_class=HTMLResponse)
async def post_update(request: Request, incident_id: str, actor: ConsoleWriter, session: Tx) -> Response:
    """Post a public update: status, message, component statuses and the next promise."""

    async def action(incident: Incident, values: dict[str, Any]) -> None:
        status = text(values, "status")
        next_update_at = parse_utc_input(text(values, "next_update_at"), field="next_update_at")
        await service.post_update(
            session,
            actor,
            incident,
            status=status,
            body=text(values, "body"),
            components=component_choices(values),
            next_update_at=next_update_at,
        )

    return await act(request, actor, session, incident_id, "update", action)


@router.post("/console/incidents/{incident_id}/notes", response_class=HTMLResponse)
async def add_note(request: Request, incident_id: str, actor: ConsoleWriter, session: Tx) -> Response:
    """Add an internal note; it never leaves the console."""

    async def action(incident: Incident, values: dict[str, Any]) -> None:
        await service.add_note(session, actor, incident, body=text(values, "body"))

    return await act(request, actor, session, incident_id, "note", action)


@router.post("/console/incidents/{incident_id}/roles", response_class=HTMLResponse)
async def assign_role(request: Request, incident_id: str, actor: ConsoleWriter, session: Tx) -> Response:
    """Assign a role or hand it over; an empty choice frees it."""

    async def action(incident: Incident, values: dict[str, Any]) -> None:
        await service.assign_role(
            session, actor, incident, role=text(values, "role"), user_id=text(values, "user_id") or None
        )

    return await act(request, actor, session, incident_id, "roles", action)


@router.post("/console/incidents/{incident_id}/severity", response_class=HTMLResponse)
async def change_severity(request: Request, incident_id: str, actor: ConsoleWriter, session: Tx) -> Response:
    """Raise or lower the severity, with the reason on the timeline."""

    async def action(incident: Incident, values: dict[str, Any]) -> None:
        await service.change_severity(
            session, actor, incident, severity=text(values, "severity"), reason=text(values, "reason")
        )

    return await act(request, actor, session, incident_id, "severity", action)


@router.post("/console/incidents/{incident_id}/postmortem", response_class=HTMLResponse)
async def set_postmortem(request: Request, incident_id: str, actor: ConsoleWriter, session: Tx) -> Response:
    """Save the postmortem draft, or publish it."""

    async def action(incident: Incident, values: dict[str, Any]) -> None:
        await service.set_postmortem(
            session, actor, incident, body=text(values, "postmortem_body"), publish=text(values, "action") == "publish"
        )

    return await act(request, actor, session, incident_id, "postmortem", action)


async def _severity_page(
    request: Request, actor: Actor, session: AsyncSession, *, failure: Failure | None = None
) -> HTMLResponse:
    return render(
        request,
        "console/severity.html",
        actor=actor,
        policies=await policies.list_policies(session),
        roles=list(IncidentRole),
        failure=failure,
        status_code=_status_of(failure),
    )


@router.get("/console/severity", response_class=HTMLResponse)
async def severity_page(request: Request, actor: ConsoleReader, session: Tx) -> HTMLResponse:
    """What each severity means; admins edit cadence, required roles and the postmortem rule."""
    return await _severity_page(request, actor, session)


@router.post("/console/severity/{severity}", response_class=HTMLResponse)
async def update_policy(request: Request, severity: str, actor: ConsoleAdmin, session: Tx) -> Response:
    """Change one severity's policy."""
    values = await form_values(request)
    values["_severity"] = severity
    try:
        parsed = policies.parse_severity(severity)
        raw = text(values, "cadence_minutes").strip()
        try:
            cadence = int(raw)
        except ValueError:
            raise InvalidInput(f"{raw!r} is not a number of minutes", field="cadence_minutes") from None
        await policies.update_policy(
            session,
            actor,
            parsed,
            cadence_minutes=cadence,
            required_roles=as_list(values.get("required_roles")),
            postmortem_required=bool(values.get("postmortem_required")),
            description=values.get("description"),
            free_text_approval=bool(values.get("free_text_approval")),
        )
    except DomainError as exc:
        await discard(session)
        return await _severity_page(request, actor, session, failure=failure_of(exc, f"policy-{severity}", values))
    return see_other("/console/severity")
