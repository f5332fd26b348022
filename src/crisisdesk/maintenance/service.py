"""Schedule, edit, cancel, start and complete maintenance windows.

A maintenance is stored as an incident of kind ``maintenance`` (as Statuspage models it); its
start and end are job rows, so they happen on time across restarts and exactly once.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from crisisdesk.auth.models import Scope
from crisisdesk.auth.service import Actor
from crisisdesk.catalog import service as catalog
from crisisdesk.catalog.models import ComponentStatus
from crisisdesk.incident import service as incidents
from crisisdesk.incident.models import Impact, Incident, IncidentComponent, Kind, MaintenanceStatus
from crisisdesk.kit import events, jobs
from crisisdesk.kit.errors import Conflict, InvalidInput
from crisisdesk.kit.time import utcnow

START, COMPLETE = "maintenance.start", "maintenance.complete"


def _job_key(maintenance_id: str, what: str) -> str:
    return f"maintenance:{maintenance_id}:{what}"


def _check_window(scheduled_for: datetime, scheduled_until: datetime, now: datetime) -> None:
    for field, value in (("scheduled_for", scheduled_for), ("scheduled_until", scheduled_until)):
        if value.tzinfo is None:
            raise InvalidInput(f"{field} needs a time zone offset, e.g. 2026-01-01T12:00:00Z", field=field)
    if scheduled_until <= scheduled_for:
        raise InvalidInput("scheduled_until must be after scheduled_for", field="scheduled_until")
    if scheduled_until <= now:
        raise InvalidInput("scheduled_until must be in the future", field="scheduled_until")
    if scheduled_until - scheduled_for > timedelta(days=14):
        raise InvalidInput("a maintenance window may last at most 14 days", field="scheduled_until")


async def _plan_jobs(session: AsyncSession, m: Incident) -> None:
    assert m.scheduled_for is not None and m.scheduled_until is not None
    if not m.auto_transition:
        return
    if m.status == MaintenanceStatus.scheduled:
        await jobs.schedule(session, START, m.scheduled_for, key=_job_key(m.id, "start"), payload={"id": m.id})
    await jobs.schedule(session, COMPLETE, m.scheduled_until, key=_job_key(m.id, "complete"), payload={"id": m.id})


async def _set_planned_components(session: AsyncSession, m: Incident, component_ids: list[str]) -> None:
    for component_id in component_ids:
        component = await catalog.get_component(session, component_id, field=f"components.{component_id}")
        if component.is_group:
            raise InvalidInput(
                f"{component.name!r} is a group; choose its components", field=f"components.{component_id}"
            )
    keep = set(component_ids)
    for link in list(m.components):
        if link.component_id not in keep:
            m.components.remove(link)
            await session.delete(link)
    have = {link.component_id for link in m.components}
    for component_id in component_ids:
        if component_id not in have:
            link = IncidentComponent(
                incident_id=m.id, component_id=component_id, status=ComponentStatus.under_maintenance
            )
            session.add(link)
            m.components.append(link)


async def schedule(
    session: AsyncSession,
    actor: Actor,
    *,
    name: str,
    body: str,
    scheduled_for: datetime,
    scheduled_until: datetime,
    components: list[str],
    auto_transition: bool = True,
) -> Incident:
    """Announce a maintenance window; it starts and completes by itself at its times."""
    actor.require(Scope.write)
    now = utcnow()
    name = incidents.check_name(name)
    body = incidents.check_body(body)
    _check_window(scheduled_for, scheduled_until, now)
    m = Incident(
        number=await incidents.next_number(session),
        kind=Kind.maintenance,
        name=name,
        status=MaintenanceStatus.scheduled,
        impact=Impact.maintenance,
        created_at=now,
        updated_at=now,
        started_at=scheduled_for,
        scheduled_for=scheduled_for,
        scheduled_until=scheduled_until,
        auto_transition=auto_transition,
        created_by_id=actor.user_id,
    )
    m.components, m.roles, m.updates = [], [], []
    session.add(m)
    await session.flush()
    await _set_planned_components(session, m, components)
    await incidents.timeline(
        session,
        m,
        actor,
        "maintenance_scheduled",
        f"{actor.name} scheduled maintenance “{name}”",
        scheduled_for=scheduled_for.isoformat(),
        scheduled_until=scheduled_until.isoformat(),
    )
    await incidents.add_update(
        session,
        actor,
        m,
        status=MaintenanceStatus.scheduled,
        body=body,
        components={},
        next_update_at=None,
        deliver_notifications=True,
        at=now,
    )
    await _plan_jobs(session, m)
    return m


async def edit(
    session: AsyncSession,
    actor: Actor,
    m: Incident,
    *,
    name: str | None = None,
    scheduled_for: datetime | None = None,
    scheduled_until: datetime | None = None,
    components: list[str] | None = None,
    body: str | None = None,
) -> Incident:
    """Change a maintenance; once it has started only its end time can move."""
    actor.require(Scope.write)
    if m.status == MaintenanceStatus.completed:
        raise Conflict("this maintenance is over and can no longer be edited", field="status")
    started = m.status != MaintenanceStatus.scheduled
    if started and (scheduled_for is not None or components is not None):
        raise Conflict("the maintenance has started: only its end time and name can change", field="scheduled_for")
    now = utcnow()
    new_for = scheduled_for or m.scheduled_for
    new_until = scheduled_until or m.scheduled_until
    assert new_for is not None and new_until is not None
    if scheduled_for is not None or scheduled_until is not None:
        _check_window(new_for, new_until, now)
    changes = []
    if name is not None and name.strip() != m.name:
        m.name = incidents.check_name(name)
        changes.append("name")
    if new_for != m.scheduled_for or new_until != m.scheduled_until:
        m.scheduled_for, m.scheduled_until = new_for, new_until
        if not started:
            m.started_at = new_for
        changes.append("window")
    if components is not None:
        await _set_planned_components(session, m, components)
        changes.append("components")
    m.updated_at = now
    await _plan_jobs(session, m)
    if body:
        await incidents.add_update(
            session,
            actor,
            m,
            status=m.status,
            body=incidents.check_body(body),
            components={},
            next_update_at=None,
            deliver_notifications=True,
            at=now,
        )
    await incidents.timeline(
        session,
        m,
        actor,
        "maintenance_edited",
        f"{actor.name} edited the maintenance ({', '.join(changes) or 'no change'})",
        changes=changes,
        scheduled_for=new_for.isoformat(),
        scheduled_until=new_until.isoformat(),
    )
    events.record(session, events.PUBLIC)
    return m


async def start(session: AsyncSession, actor: Actor | None, m: Incident, *, body: str | None = None) -> Incident:
    """Begin the window: its components go under maintenance."""
    if m.status != MaintenanceStatus.scheduled:
        raise Conflict(f"the maintenance is {m.status}, not scheduled", field="status")
    now = utcnow()
    m.status = MaintenanceStatus.in_progress
    m.started_at = now
    await incidents.add_update(
        session,
        actor,
        m,
        status=MaintenanceStatus.in_progress,
        body=body or "Scheduled maintenance is now in progress. We will provide updates as necessary.",
        components={link.component_id: ComponentStatus.under_maintenance for link in m.components},
        next_update_at=None,
        deliver_notifications=True,
        at=now,
    )
    await incidents.timeline(session, m, actor, "maintenance_started", "Maintenance started")
    return m


async def complete(session: AsyncSession, actor: Actor | None, m: Incident, *, body: str | None = None) -> Incident:
    """End the window: components return to their status outside the maintenance."""
    if m.status == MaintenanceStatus.completed:
        raise Conflict("the maintenance is already completed", field="status")
    now = utcnow()
    was_started = m.status != MaintenanceStatus.scheduled
    restore = await incidents.restore_components(session, m, {}, at=now) if was_started else {}
    m.status = MaintenanceStatus.completed
    m.resolved_at = now
    await incidents.add_update(
        session,
        actor,
        m,
        status=MaintenanceStatus.completed,
        body=body or "The scheduled maintenance has been completed.",
        components=restore,
        next_update_at=None,
        deliver_notifications=True,
        at=now,
    )
    await jobs.cancel(session, _job_key(m.id, "start"))
    await jobs.cancel(session, _job_key(m.id, "complete"))
    await incidents.timeline(session, m, actor, "maintenance_completed", "Maintenance completed")
    return m


async def cancel(session: AsyncSession, actor: Actor, m: Incident, *, reason: str = "") -> Incident:
    """Call the maintenance off; shown as completed with a cancellation notice."""
    actor.require(Scope.write)
    if m.status == MaintenanceStatus.completed:
        raise Conflict("the maintenance is already over", field="status")
    m.cancelled_at = utcnow()
    text = "This scheduled maintenance has been cancelled."
    if reason.strip():
        text += " " + incidents.check_body(reason, field="reason")
    await complete(session, actor, m, body=text)
    await incidents.timeline(session, m, actor, "maintenance_cancelled", f"{actor.name} cancelled the maintenance")
    return m


async def list_maintenances(session: AsyncSession, *, limit: int = 50) -> list[Incident]:
    return await incidents.list_incidents(session, kind=Kind.maintenance, limit=limit)


async def run_start(session: AsyncSession, payload: dict[str, object]) -> None:
    m = await incidents.get_incident(session, str(payload["id"]), kind=Kind.maintenance)
    if m.status == MaintenanceStatus.scheduled and m.cancelled_at is None:
        await start(session, None, m)


async def run_complete(session: AsyncSession, payload: dict[str, object]) -> None:
    m = await incidents.get_incident(session, str(payload["id"]), kind=Kind.maintenance)
    if m.status != MaintenanceStatus.completed:
        await complete(session, None, m)
