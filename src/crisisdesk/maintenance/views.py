"""Console pages for scheduled maintenance: list, schedule, edit, start, complete and cancel."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from crisisdesk.auth.deps import ConsoleReader, ConsoleWriter, Tx
from crisisdesk.auth.service import Actor
from crisisdesk.catalog import service as catalog
from crisisdesk.catalog.views import board
from crisisdesk.incident import service as incidents
from crisisdesk.incident.models import Incident, Kind, MaintenanceStatus
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
    utc_input,
)
from crisisdesk.kit.errors import DomainError, InvalidInput
from crisisdesk.maintenance import service

router = APIRouter(include_in_schema=False)


def _required_time(values: dict[str, Any], name: str) -> Any:
    value = parse_utc_input(text(values, name), field=name)
    if value is None:
        raise InvalidInput("enter a date and time (UTC)", field=name)
    return value


@router.get("/console/maintenance", response_class=HTMLResponse)
async def maintenance_list(request: Request, actor: ConsoleReader, session: Tx) -> HTMLResponse:
    """Maintenance windows: in progress and upcoming first, then past ones."""
    items = await service.list_maintenances(session, limit=200)
    current = [m for m in items if m.status != MaintenanceStatus.completed]
    current.sort(key=lambda m: m.scheduled_for or m.created_at)
    past = [m for m in items if m.status == MaintenanceStatus.completed]
    return render(request, "console/maintenance_list.html", actor=actor, current=current, past=past)


async def _form_page(
    request: Request,
    actor: Actor,
    session: AsyncSession,
    *,
    maintenance: Incident | None,
    values: dict[str, Any],
    failure: Failure | None = None,
) -> HTMLResponse:
    return render(
        request,
        "console/maintenance_form.html",
        actor=actor,
        maintenance=maintenance,
        values=values,
        board=board(await catalog.list_components(session)),
        failure=failure,
        status_code=200 if failure is None else int(failure.values.get("_status", 422)),
    )


@router.get("/console/maintenance/new", response_class=HTMLResponse)
async def new_form(request: Request, actor: ConsoleWriter, session: Tx) -> HTMLResponse:
    """The form to announce a maintenance window."""
    values = {"auto_transition": "on", "components": []}
    return await _form_page(request, actor, session, maintenance=None, values=values)


@router.post("/console/maintenance", response_class=HTMLResponse)
async def create(request: Request, actor: ConsoleWriter, session: Tx) -> Response:
    """Schedule the maintenance; it starts and completes by itself when automatic."""
    values = await form_values(request)
    values["components"] = as_list(values.get("components"))
    try:
        m = await service.schedule(
            session,
            actor,
            name=text(values, "name"),
            body=text(values, "body"),
            scheduled_for=_required_time(values, "scheduled_for"),
            scheduled_until=_required_time(values, "scheduled_until"),
            components=values["components"],
            auto_transition=bool(values.get("auto_transition")),
        )
    except DomainError as exc:
        await discard(session)
        return await _form_page(
            request, actor, session, maintenance=None, values=values, failure=failure_of(exc, "maintenance", values)
        )
    return see_other(f"/console/maintenance/{m.id}")


async def _detail(
    request: Request, actor: Actor, session: AsyncSession, maintenance_id: str, *, failure: Failure | None = None
) -> HTMLResponse:
    m = await incidents.get_incident(session, maintenance_id, kind=Kind.maintenance)
    values = (
        failure.values
        if failure is not None and failure.form == "maintenance"
        else {
            "name": m.name,
            "scheduled_for": utc_input(m.scheduled_for),
            "scheduled_until": utc_input(m.scheduled_until),
            "components": [c.component_id for c in m.components],
        }
    )
    components = await catalog.list_components(session)
    return render(
        request,
        "console/maintenance.html",
        actor=actor,
        maintenance=m,
        values=values,
        timeline=await incidents.timeline_of(session, m.id),
        board=board(components),
        names={c.id: c.name for c in components},
        failure=failure,
        status_code=200 if failure is None else int(failure.values.get("_status", 422)),
    )


@router.get("/console/maintenance/{maintenance_id}", response_class=HTMLResponse)
async def detail(request: Request, maintenance_id: str, actor: ConsoleReader, session: Tx) -> HTMLResponse:
    """One maintenance: its window, components, updates and the edit and cancel forms."""
    return await _detail(request, actor, session, maintenance_id)


async def _act(
    request: Request, actor: Actor, session: AsyncSession, maintenance_id: str, form: str, action: Any
) -> Response:
    async def rerender(failure: Failure) -> Response:
        return await _detail(request, actor, session, maintenance_id, failure=failure)

    return await act_on_form(
        request,
        session,
        form=form,
        load=lambda: incidents.get_incident(session, maintenance_id, kind=Kind.maintenance),
        action=action,
        rerender=rerender,
        done=f"/console/maintenance/{maintenance_id}",
    )


@router.post("/console/maintenance/{maintenance_id}/edit", response_class=HTMLResponse)
async def edit(request: Request, maintenance_id: str, actor: ConsoleWriter, session: Tx) -> Response:
    """Change the name, window or components; an optional message goes out as an update."""

    async def action(m: Incident, values: dict[str, Any]) -> None:
        values["components"] = as_list(values.get("components"))
        scheduled_for = _required_time(values, "scheduled_for") if "scheduled_for" in values else None
        scheduled_until = _required_time(values, "scheduled_until")
        components: list[str] | None = values["components"]
        # Only what changed is passed on: a started window refuses a new start or new components.
        if scheduled_for is not None and m.scheduled_for and utc_input(scheduled_for) == utc_input(m.scheduled_for):
            scheduled_for = None
        if m.scheduled_until and utc_input(scheduled_until) == utc_input(m.scheduled_until):
            scheduled_until = None
        if "components_shown" not in values or set(components or []) == {c.component_id for c in m.components}:
            components = None
        await service.edit(
            session,
            actor,
            m,
            name=text(values, "name"),
            scheduled_for=scheduled_for,
            scheduled_until=scheduled_until,
            components=components,
            body=text(values, "body") or None,
        )

    return await _act(request, actor, session, maintenance_id, "maintenance", action)


@router.post("/console/maintenance/{maintenance_id}/cancel", response_class=HTMLResponse)
async def cancel(request: Request, maintenance_id: str, actor: ConsoleWriter, session: Tx) -> Response:
    """Call the maintenance off, with a reason that is published."""

    async def action(m: Incident, values: dict[str, Any]) -> None:
        await service.cancel(session, actor, m, reason=text(values, "reason"))

    return await _act(request, actor, session, maintenance_id, "cancel", action)


@router.post("/console/maintenance/{maintenance_id}/start", response_class=HTMLResponse)
async def start(request: Request, maintenance_id: str, actor: ConsoleWriter, session: Tx) -> Response:
    """Start the window now, ahead of its time or when it is not automatic."""

    async def action(m: Incident, values: dict[str, Any]) -> None:
        await service.start(session, actor, m)

    return await _act(request, actor, session, maintenance_id, "transition", action)


@router.post("/console/maintenance/{maintenance_id}/complete", response_class=HTMLResponse)
async def complete(request: Request, maintenance_id: str, actor: ConsoleWriter, session: Tx) -> Response:
    """Complete the window now: its components return to their status outside it."""

    async def action(m: Incident, values: dict[str, Any]) -> None:
        await service.complete(session, actor, m)

    return await _act(request, actor, session, maintenance_id, "transition", action)
