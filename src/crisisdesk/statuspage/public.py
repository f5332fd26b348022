"""Everything the public site shows, read in one pass at render time.

Only public updates are kept: internal notes are dropped here, so no renderer downstream can
show them by mistake.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from crisisdesk.catalog.models import Component, ComponentStatus, ComponentStatusChange
from crisisdesk.catalog.service import worst
from crisisdesk.config import Settings
from crisisdesk.incident.guidance import Guidance, current_many
from crisisdesk.incident.models import Incident, IncidentStatus, IncidentUpdate, Kind, MaintenanceStatus, Visibility
from crisisdesk.kit.time import utcnow
from crisisdesk.statuspage.models import StatusPage
from crisisdesk.statuspage.uptime import DAYS

HISTORY_LIMIT = 500  # incidents and maintenances each; older ones leave the public history
OPEN_INCIDENT = (IncidentStatus.investigating, IncidentStatus.identified, IncidentStatus.monitoring)
ACTIVE_MAINTENANCE = (MaintenanceStatus.in_progress, MaintenanceStatus.verifying)

COMPONENT_LABELS = {
    ComponentStatus.operational: "Operational",
    ComponentStatus.degraded_performance: "Degraded performance",
    ComponentStatus.partial_outage: "Partial outage",
    ComponentStatus.major_outage: "Major outage",
    ComponentStatus.under_maintenance: "Under maintenance",
}
STATUS_LABELS = {
    "investigating": "Investigating",
    "identified": "Identified",
    "monitoring": "Monitoring",
    "resolved": "Resolved",
    "postmortem": "Postmortem",
    "scheduled": "Scheduled",
    "in_progress": "In progress",
    "verifying": "Verifying",
    "completed": "Completed",
}
IMPACT_LABELS = {
    "none": "No impact",
    "minor": "Minor",
    "major": "Major",
    "critical": "Critical",
    "maintenance": "Maintenance",
}


@dataclass
class PublicData:
    """The database state one rendering is made of."""

    page: StatusPage
    base_url: str
    now: datetime
    components: list[Component]  # page order: position, then name
    incidents: list[Incident]  # newest first, public updates only (newest first)
    maintenances: list[Incident]  # newest window first
    history: dict[str, list[tuple[datetime, ComponentStatus]]] = field(default_factory=dict)
    # The published current workaround and ETA of open incidents; unpublished ones never get here.
    guidance: dict[str, Guidance] = field(default_factory=dict)

    @property
    def by_id(self) -> dict[str, Component]:
        return {c.id: c for c in self.components}

    def children(self, group: Component) -> list[Component]:
        return [c for c in self.components if c.group_id == group.id and not c.is_group]

    def top_level(self) -> list[Component]:
        ids = {c.id for c in self.components if c.is_group}
        return [c for c in self.components if c.is_group or c.group_id not in ids]

    def status_of(self, component: Component) -> ComponentStatus:
        """A component's status; a group shows the worst of its components."""
        if component.is_group:
            return worst([ComponentStatus(c.status) for c in self.children(component)])
        return ComponentStatus(component.status)

    def updated_at_of(self, component: Component) -> datetime:
        if component.is_group:
            return max([component.updated_at, *(c.updated_at for c in self.children(component))])
        return component.updated_at

    def open_incidents(self) -> list[Incident]:
        return [i for i in self.incidents if i.status in OPEN_INCIDENT]

    def active_maintenances(self) -> list[Incident]:
        return [m for m in self.maintenances if m.status in ACTIVE_MAINTENANCE and m.cancelled_at is None]

    def upcoming_maintenances(self) -> list[Incident]:
        upcoming = [m for m in self.maintenances if m.status == MaintenanceStatus.scheduled and m.cancelled_at is None]
        return sorted(upcoming, key=lambda m: m.scheduled_for or m.created_at)

    def updated_at(self) -> datetime:
        """When anything the page shows last changed."""
        stamps = [self.page.updated_at]
        stamps += [c.updated_at for c in self.components]
        stamps += [i.updated_at for i in self.incidents + self.maintenances]
        return max(stamps)


def public_updates(incident: Incident) -> list[IncidentUpdate]:
    """The incident's public updates, newest first; internal notes never leave this function."""
    rows = [u for u in incident.updates if u.visibility == Visibility.public]
    return sorted(rows, key=lambda u: (u.display_at, u.created_at), reverse=True)


def shortlink(base_url: str, incident: Incident) -> str:
    return f"{base_url}/incidents/{incident.id}"


async def load(
    session: AsyncSession, settings: Settings, page: StatusPage, *, now: datetime | None = None
) -> PublicData:
    """Read components, incidents, maintenances and 90 days of status history."""
    now = now or utcnow()
    components = list(await session.scalars(select(Component).order_by(Component.position, Component.name)))

    def events(kind: Kind, order: ColumnElement[Any]) -> Select[Incident]:
        return (
            select(Incident).where(Incident.kind == kind)
            .options(selectinload(Incident.updates).selectinload(IncidentUpdate.affected),
                     selectinload(Incident.components))
            .order_by(order, Incident.id).limit(HISTORY_LIMIT)
        )  # fmt: skip

    incidents = list(await session.scalars(events(Kind.incident, Incident.created_at.desc())))
    maintenances = list(await session.scalars(events(Kind.maintenance, Incident.scheduled_for.desc())))
    history = await _history(session, now)
    guidance = await published_guidance(session, [i.id for i in incidents if i.status in OPEN_INCIDENT])
    return PublicData(page=page, base_url=settings.base_url.rstrip("/"), now=now, components=components,
                      incidents=incidents, maintenances=maintenances, history=history,
                      guidance=guidance)  # fmt: skip


async def published_guidance(session: AsyncSession, incident_ids: list[str]) -> dict[str, Guidance]:
    """The current workaround and ETA of these incidents, each only if published."""
    found = {}
    for incident_id, now in (await current_many(session, incident_ids)).items():
        workaround = now.workaround if now.workaround is not None and now.workaround.published else None
        eta = now.eta if now.eta is not None and now.eta.published else None
        if workaround is not None or eta is not None:
            found[incident_id] = Guidance(workaround=workaround, eta=eta)
    return found


async def _history(session: AsyncSession, now: datetime) -> dict[str, list[tuple[datetime, ComponentStatus]]]:
    """Status changes inside the uptime window, plus the last one before it (the starting status)."""
    window_start = datetime.combine(now.date() - timedelta(days=DAYS - 1), datetime.min.time(), tzinfo=now.tzinfo)
    before = (
        select(ComponentStatusChange.component_id, func.max(ComponentStatusChange.at).label("last_at"))
        .where(ComponentStatusChange.at < window_start)
        .group_by(ComponentStatusChange.component_id)
        .subquery()
    )
    query = (
        select(ComponentStatusChange.component_id, ComponentStatusChange.at, ComponentStatusChange.new_status)
        .outerjoin(before, and_(before.c.component_id == ComponentStatusChange.component_id,
                                before.c.last_at == ComponentStatusChange.at))
        .where(or_(ComponentStatusChange.at >= window_start, before.c.last_at.is_not(None)))
        .order_by(ComponentStatusChange.at, ComponentStatusChange.id)
    )  # fmt: skip
    history: dict[str, list[tuple[datetime, ComponentStatus]]] = {}
    for component_id, at, status in (await session.execute(query)).all():
        history.setdefault(component_id, []).append((at, ComponentStatus(status)))
    return history
