"""Mobilise on declare: page by the severity's paging rows and fill empty roles from who is on call.

``incident.service.declare`` records the job ``oncall.mobilise`` (key ``mobilise:<incident id>``);
its handler starts one page per ``SeverityPaging`` row of the incident's severity, and gives the
row's role, when nobody holds it yet, to the first user the policy's first level reaches (its
first user target, or whoever is on call on its first schedule target).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from crisisdesk.incident import service as incidents
from crisisdesk.incident.models import Incident, IncidentRole
from crisisdesk.oncall import paging
from crisisdesk.oncall.models import EscalationPolicy, Page, SeverityPaging, Urgency

MOBILISE = incidents.MOBILISE_JOB


async def run_mobilise(session: AsyncSession, payload: dict[str, Any]) -> None:
    """Page every policy the incident's severity names; fill their roles from the first level."""
    incident = await session.scalar(
        select(Incident).where(Incident.id == str(payload.get("incident_id"))).options(selectinload(Incident.roles))
    )
    if incident is None or not incident.is_open:
        return
    rows = list(
        await session.scalars(
            select(SeverityPaging).where(SeverityPaging.severity == str(incident.severity)).order_by(SeverityPaging.id)
        )
    )
    for row in rows:
        policy = await session.get(EscalationPolicy, row.escalation_policy_id)
        if policy is None:
            continue
        started = await session.scalar(
            select(Page.id).where(Page.incident_id == incident.id, Page.escalation_policy_id == policy.id)
        )
        if started is not None:
            continue  # this policy was paged for the incident already
        page = await paging.start_page(
            session,
            escalation_policy_id=policy.id,
            title=f"INC-{incident.number} {incident.severity}: {incident.name}",
            urgency=Urgency.high,
            incident_id=incident.id,
            role=row.role,
        )
        if row.role:
            await _fill_role(session, incident, page, row.role)


async def _fill_role(session: AsyncSession, incident: Incident, page: Page, role: str) -> None:
    held = any(r.role == role and r.ended_at is None for r in incident.roles)
    if held:
        return
    reached = await paging.reached_by(session, paging.levels_of(page), 0)
    if not reached:
        return
    first = reached[0]
    await incidents.assign_role(session, None, incident, role=role, user_id=first.user.id)
    await incidents.timeline(
        session,
        incident,
        None,
        "role_from_oncall",
        f"{first.user.name} is {IncidentRole(role).label} from on-call ({first.via}, {page.policy.get('name', '')})",
        role=role,
        user_id=first.user.id,
        page_id=page.id,
    )
