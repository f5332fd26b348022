"""The incident lifecycle: declare, update, note, roles, severity, resolve, postmortem.

Every function writes rows, appends timeline events and records change topics; none commits.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from crisisdesk.auth.models import Scope, User
from crisisdesk.auth.service import Actor
from crisisdesk.catalog import service as catalog
from crisisdesk.catalog.models import ComponentStatus
from crisisdesk.incident import policy as policies
from crisisdesk.incident.models import (
    Impact,
    Incident,
    IncidentComponent,
    IncidentCounter,
    IncidentRole,
    IncidentStatus,
    IncidentUpdate,
    Kind,
    RoleAssignment,
    Severity,
    TimelineEvent,
    UpdateComponentChange,
    UpdatePromise,
    Visibility,
)
from crisisdesk.kit import events, jobs
from crisisdesk.kit.errors import Conflict, Forbidden, InvalidInput, NotFound
from crisisdesk.kit.render import markdown_to_html
from crisisdesk.kit.time import utcnow

MAX_BODY = 20_000
MAX_NAME = 300
OPEN_INCIDENT_STATUSES = (IncidentStatus.investigating, IncidentStatus.identified, IncidentStatus.monitoring)
DASHBOARD = "console"
# Work this domain records for the ones above it (notify and comms register the handlers).
FANOUT_JOB = "notify.fanout"
PROMISE_JOB = "comms.promise"
MOBILISE_JOB = "oncall.mobilise"


def incident_topic(incident_id: str) -> str:
    return f"incident:{incident_id}"


def parse_status(value: str, *, field: str = "status") -> IncidentStatus:
    try:
        status = IncidentStatus(value)
    except ValueError:
        status = None
    if status is None or status is IncidentStatus.postmortem:
        allowed = ", ".join(s.value for s in (*OPEN_INCIDENT_STATUSES, IncidentStatus.resolved))
        raise InvalidInput(f"{value!r} is not an incident status; use one of: {allowed}", field=field)
    return status


def parse_role(value: str, *, field: str = "role") -> IncidentRole:
    try:
        return IncidentRole(value)
    except ValueError:
        allowed = ", ".join(r.value for r in IncidentRole)
        raise InvalidInput(f"{value!r} is not a role; use one of: {allowed}", field=field) from None


def check_body(body: str, *, field: str = "body", required: bool = True) -> str:
    body = body.strip()
    if "\x00" in body:
        raise InvalidInput("the message must not contain a NUL character", field=field)
    if required and not body:
        raise InvalidInput("the message must not be empty", field=field)
    if len(body) > MAX_BODY:
        raise InvalidInput(f"the message is {len(body)} characters; at most {MAX_BODY} are allowed", field=field)
    return body


def check_name(name: str) -> str:
    name = name.strip()
    if "\x00" in name:
        raise InvalidInput("name must not contain a NUL character", field="name")
    if not name or len(name) > MAX_NAME:
        raise InvalidInput(f"name must be 1 to {MAX_NAME} characters", field="name")
    return name


def check_next_update(next_update_at: datetime | None, now: datetime) -> datetime | None:
    if next_update_at is None:
        return None
    if next_update_at.tzinfo is None:
        raise InvalidInput("next_update_at needs a time zone offset, e.g. 2026-01-01T12:00:00Z", field="next_update_at")
    if next_update_at <= now:
        raise InvalidInput("next_update_at must be in the future", field="next_update_at")
    if next_update_at > now + timedelta(days=7):
        raise InvalidInput("next_update_at must be within 7 days", field="next_update_at")
    return next_update_at


async def timeline(
    session: AsyncSession, incident: Incident, actor: Actor | None, kind: str, summary: str, **data: object
) -> TimelineEvent:
    """Append an immutable event to the incident's timeline."""
    event = TimelineEvent(
        incident_id=incident.id,
        kind=kind,
        summary=summary,
        data=data,
        actor_id=actor.user_id if actor else None,
        at=utcnow(),
    )
    session.add(event)
    events.record(session, incident_topic(incident.id), DASHBOARD)
    return event


async def next_number(session: AsyncSession) -> int:
    result = await session.execute(
        update(IncidentCounter)
        .where(IncidentCounter.name == "incident")
        .values(value=IncidentCounter.value + 1)
        .returning(IncidentCounter.value)
    )
    value = result.scalar()
    if value is None:
        await session.execute(insert(IncidentCounter).values(id=1, name="incident", value=1))
        return 1
    return int(value)


async def get_incident(session: AsyncSession, incident_id: str, *, kind: Kind | None = None) -> Incident:
    """The incident with its updates, components and roles loaded."""
    if "\x00" in incident_id or len(incident_id) > 64:
        raise NotFound("no incident with that id", field="incident_id")
    query = (
        select(Incident)
        .where(Incident.id == incident_id)
        .options(
            selectinload(Incident.updates).selectinload(IncidentUpdate.affected),
            selectinload(Incident.components),
            selectinload(Incident.roles),
        )
        .execution_options(populate_existing=True)
    )
    incident = await session.scalar(query)
    if incident is None or (kind is not None and incident.kind != kind):
        raise NotFound(f"no {(kind or 'incident')} with id {incident_id!r}", field="incident_id")
    return incident


async def incident_row(session: AsyncSession, incident_id: str) -> Incident:
    """The incident (or maintenance) alone, nothing loaded with it; 404 naming incident_id."""
    incident = None
    if "\x00" not in incident_id and len(incident_id) <= 64:
        incident = await session.get(Incident, incident_id)
    if incident is None:
        raise NotFound(f"no incident with id {incident_id!r}", field="incident_id")
    return incident


async def list_incidents(
    session: AsyncSession, *, kind: Kind = Kind.incident, open_only: bool = False, limit: int = 50, offset: int = 0
) -> list[Incident]:
    query = (
        select(Incident)
        .where(Incident.kind == kind)
        .options(
            selectinload(Incident.updates).selectinload(IncidentUpdate.affected),
            selectinload(Incident.components),
            selectinload(Incident.roles),
        )
        .order_by(Incident.created_at.desc())
        .limit(limit)
        .offset(offset)
    )
    if open_only:
        query = query.where(Incident.status.in_([s.value for s in OPEN_INCIDENT_STATUSES]))
    return list(await session.scalars(query))


async def timeline_of(session: AsyncSession, incident_id: str) -> list[TimelineEvent]:
    return list(
        await session.scalars(
            select(TimelineEvent)
            .where(TimelineEvent.incident_id == incident_id)
            .order_by(TimelineEvent.at.desc(), TimelineEvent.id.desc())
        )
    )


async def apply_components(
    session: AsyncSession,
    incident: Incident,
    update_row: IncidentUpdate | None,
    statuses: Mapping[str, ComponentStatus | str],
    *,
    at: datetime,
) -> list[tuple[str, ComponentStatus, ComponentStatus]]:
    """Set the statuses an incident or maintenance asks for, recording each change."""
    changed = []
    current = {link.component_id: link for link in incident.components}
    for component_id, raw_status in statuses.items():
        status = catalog.parse_status(str(raw_status), field=f"components.{component_id}")
        component = await catalog.get_component(session, component_id, field=f"components.{component_id}")
        if component.is_group:
            raise InvalidInput(
                f"{component.name!r} is a group; choose its components", field=f"components.{component_id}"
            )
        old = ComponentStatus(component.status)
        await catalog.set_status(session, component, status, cause_id=incident.id, at=at)
        if update_row is not None:
            session.add(
                UpdateComponentChange(
                    update_id=update_row.id, component_id=component_id, old_status=old, new_status=status
                )
            )
        link = current.get(component_id)
        if link is None:
            link = IncidentComponent(incident_id=incident.id, component_id=component_id, status=status, added_at=at)
            session.add(link)
            incident.components.append(link)
            current[component_id] = link
        else:
            link.status = status
        if old != status:
            changed.append((component.name, old, status))
    return changed


async def restore_components(
    session: AsyncSession, incident: Incident, explicit: Mapping[str, object], *, at: datetime
) -> dict[str, ComponentStatus]:
    """On resolution: put affected components back, unless another open event still holds them."""
    restore: dict[str, ComponentStatus] = {}
    for link in incident.components:
        if link.component_id in explicit:
            continue
        others = await session.scalars(
            select(IncidentComponent.status)
            .join(Incident, Incident.id == IncidentComponent.incident_id)
            .where(
                IncidentComponent.component_id == link.component_id,
                Incident.id != incident.id,
                Incident.resolved_at.is_(None),
                Incident.cancelled_at.is_(None),
                Incident.status.in_(["investigating", "identified", "monitoring", "in_progress", "verifying"]),
            )
        )
        restore[link.component_id] = catalog.worst([ComponentStatus(s) for s in others])
    return restore


async def add_update(
    session: AsyncSession,
    actor: Actor | None,
    incident: Incident,
    *,
    status: str,
    body: str,
    components: Mapping[str, ComponentStatus | str],
    next_update_at: datetime | None,
    deliver_notifications: bool,
    at: datetime,
    template_id: str | None = None,
    approved_by_id: str | None = None,
) -> IncidentUpdate:
    """Store one public update and the component changes it makes (shared with maintenance).

    In the same transaction it records the fan-out that will deliver the update on every
    channel, and closes the previous next-update promise and opens the new one.
    """
    row = IncidentUpdate(
        incident_id=incident.id,
        status=status,
        body=body,
        body_html=markdown_to_html(body),
        visibility=Visibility.public,
        created_at=at,
        updated_at=at,
        display_at=at,
        deliver_notifications=deliver_notifications,
        next_update_at=next_update_at,
        author_id=actor.user_id if actor else None,
        template_id=template_id,
        approved_by_id=approved_by_id,
    )
    session.add(row)
    await session.flush()
    changes = await apply_components(session, incident, row, components, at=at)
    if deliver_notifications:
        await jobs.schedule(session, FANOUT_JOB, at, key=f"fanout:update:{row.id}", payload={"update_id": row.id})
    await keep_promise(session, incident, row, at=at)
    incident.updated_at = at
    incident.last_public_update_at = at
    incident.next_update_at = next_update_at
    await timeline(
        session,
        incident,
        actor,
        "update_posted",
        f"Public update ({status}): {body[:200]}",
        update_id=row.id,
        status=status,
        components=[{"name": n, "old_status": o, "new_status": s} for n, o, s in changes],
        next_update_at=next_update_at.isoformat() if next_update_at else None,
    )
    events.record(session, events.PUBLIC)
    return row


async def keep_promise(session: AsyncSession, incident: Incident, update: IncidentUpdate, *, at: datetime) -> None:
    """Close the open promise (kept now, perhaps late) and record the one this update makes."""
    open_promises = await session.scalars(
        select(UpdatePromise).where(UpdatePromise.incident_id == incident.id, UpdatePromise.kept_at.is_(None))
    )
    for promise in open_promises:
        promise.kept_at = at
        promise.kept_by_update_id = update.id
        promise.overdue_seconds = max(0, int((at - promise.due_at).total_seconds()))
        for timer in ("open", "remind", "overdue"):
            await jobs.cancel(session, f"promise:{promise.id}:{timer}")
    if update.next_update_at is None:
        return
    promise = UpdatePromise(incident_id=incident.id, update_id=update.id, due_at=update.next_update_at)
    session.add(promise)
    await session.flush()
    # comms sets the reminder and the overdue alarm from its own settings.
    await jobs.schedule(session, PROMISE_JOB, at, key=f"promise:{promise.id}:open", payload={"promise_id": promise.id})


async def holds_role(session: AsyncSession, incident: Incident, user_id: str, role: IncidentRole) -> bool:
    holder = await session.scalar(
        select(RoleAssignment.user_id).where(
            RoleAssignment.incident_id == incident.id, RoleAssignment.role == role, RoleAssignment.ended_at.is_(None)
        )
    )
    return holder == user_id


async def may_approve(session: AsyncSession, actor: Actor, incident: Incident) -> bool:
    """Admins and the incident's Communications Lead approve public updates."""
    if actor.can(Scope.admin):
        return True
    return await holds_role(session, incident, actor.user_id, IncidentRole.communications_lead)


async def check_approval(
    session: AsyncSession,
    actor: Actor,
    incident: Incident,
    severity: Severity,
    *,
    template_id: str | None,
    approved_by_id: str | None,
) -> None:
    """Refuse a free-text public update that the severity policy says needs approval."""
    if template_id is not None or approved_by_id is not None:
        return
    policy = await policies.get_policy(session, severity)
    if not policy.free_text_approval or await may_approve(session, actor, incident):
        return
    raise Forbidden(
        f"a free-text public update on a {severity} incident needs approval by the Communications Lead "
        "or an admin: submit it as a draft, or write it from an approved template",
        field="body",
    )


@dataclass
class Declared:
    incident: Incident
    first_update: IncidentUpdate


async def declare(
    session: AsyncSession,
    actor: Actor | None,
    *,
    name: str,
    severity: Severity | str,
    body: str,
    status: str = IncidentStatus.investigating,
    components: Mapping[str, ComponentStatus | str] | None = None,
    next_update_at: datetime | None = None,
    started_at: datetime | None = None,
    roles: Mapping[str, str] | None = None,
    deliver_notifications: bool = True,
    template_id: str | None = None,
    declared_from: str | None = None,
) -> Declared:
    """Declare an incident with its first public update; it promises the next one.

    On a severity whose policy asks for approval, a responder who is neither an admin nor the
    named Communications Lead declares from an approved template. ``actor`` None is crisisdesk
    declaring for an admin-written alert rule (``declared_from`` names the alert group): the
    rule's text is admin-approved, so no scope or approval check applies
    (docs/decisions/0012-automatic-declaration.md).
    """
    if actor is not None:
        actor.require(Scope.write)
    now = utcnow()
    name = check_name(name)
    severity = policies.parse_severity(str(severity))
    parsed_status = parse_status(str(status))
    if parsed_status is IncidentStatus.resolved:
        raise InvalidInput("a new incident cannot start resolved", field="status")
    body = check_body(body)
    next_update_at = check_next_update(next_update_at, now)
    if started_at is not None and started_at > now:
        raise InvalidInput("started_at must not be in the future", field="started_at")
    policy = await policies.get_policy(session, severity)
    lead = (roles or {}).get(IncidentRole.communications_lead)
    if (
        actor is not None
        and policy.free_text_approval
        and template_id is None
        and not actor.can(Scope.admin)
        and lead != actor.user_id
    ):
        raise Forbidden(
            f"a free-text public update on a {severity} incident needs approval by the Communications Lead "
            "or an admin: declare from an approved template, or name yourself Communications Lead",
            field="body",
        )
    incident = Incident(
        number=await next_number(session),
        kind=Kind.incident,
        name=name,
        status=parsed_status,
        impact=Impact(policy.impact),
        severity=severity,
        created_at=now,
        updated_at=now,
        started_at=started_at or now,
        created_by_id=actor.user_id if actor else None,
    )
    incident.components = []
    incident.roles = []
    incident.updates = []
    session.add(incident)
    if parsed_status is IncidentStatus.identified:
        incident.identified_at = now
    elif parsed_status is IncidentStatus.monitoring:
        incident.monitoring_at = now
    await session.flush()
    await timeline(
        session,
        incident,
        actor,
        "declared",
        f"{actor.name} declared {severity} “{name}”"
        if actor is not None
        else f"crisisdesk declared {severity} “{name}” from alert group “{declared_from or name}”",
        severity=severity,
        status=parsed_status,
        **({"declared_from": declared_from} if declared_from else {}),
    )
    promise = next_update_at or now + timedelta(minutes=policy.cadence_minutes)
    first = await add_update(
        session,
        actor,
        incident,
        status=parsed_status,
        body=body,
        components=components or {},
        next_update_at=promise,
        deliver_notifications=deliver_notifications,
        at=now,
        template_id=template_id,
    )
    for role, user_id in (roles or {}).items():
        await assign_role(session, actor, incident, role=role, user_id=user_id)
    # On-call pages by the severity's paging policies and fills the roles still empty.
    await jobs.schedule(session, MOBILISE_JOB, now, key=f"mobilise:{incident.id}", payload={"incident_id": incident.id})
    return Declared(incident, first)


async def post_update(
    session: AsyncSession,
    actor: Actor,
    incident: Incident,
    *,
    status: str,
    body: str,
    components: Mapping[str, ComponentStatus | str] | None = None,
    next_update_at: datetime | None = None,
    deliver_notifications: bool = True,
    template_id: str | None = None,
    approved_by_id: str | None = None,
) -> IncidentUpdate:
    """Post a public update; a resolving update puts the components back to operational.

    ``template_id`` marks an update written from an approved template; ``approved_by_id`` one
    approved as a draft. Without either, the severity policy may require approval.
    """
    actor.require(Scope.write)
    if incident.kind != Kind.incident:
        raise InvalidInput("use the maintenance actions for a scheduled maintenance", field="incident_id")
    now = utcnow()
    new_status = parse_status(status)
    body = check_body(body)
    next_update_at = check_next_update(next_update_at, now)
    await check_approval(
        session,
        actor,
        incident,
        Severity(incident.severity or Severity.SEV3),
        template_id=template_id,
        approved_by_id=approved_by_id,
    )
    was_open = incident.is_open
    if not was_open and new_status is IncidentStatus.resolved:
        raise Conflict("this incident is already resolved", field="status")
    components = dict(components or {})
    if new_status is IncidentStatus.resolved:
        if next_update_at is not None:
            raise InvalidInput("a resolved incident promises no next update", field="next_update_at")
        for component_id, restored in (await restore_components(session, incident, components, at=now)).items():
            components[component_id] = restored
    elif next_update_at is None:
        policy = await policies.get_policy(session, Severity(incident.severity or Severity.SEV3))
        next_update_at = now + timedelta(minutes=policy.cadence_minutes)
    old_status = incident.status
    row = await add_update(
        session,
        actor,
        incident,
        status=new_status,
        body=body,
        components=components,
        next_update_at=next_update_at,
        deliver_notifications=deliver_notifications,
        at=now,
        template_id=template_id,
        approved_by_id=approved_by_id,
    )
    incident.status = new_status
    if new_status is IncidentStatus.identified and incident.identified_at is None:
        incident.identified_at = now
    if new_status is IncidentStatus.monitoring and incident.monitoring_at is None:
        incident.monitoring_at = now
    if new_status is IncidentStatus.resolved:
        incident.resolved_at = now
        await timeline(session, incident, actor, "resolved", f"{actor.name} resolved the incident")
    elif not was_open:
        incident.resolved_at = None
        await timeline(session, incident, actor, "reopened", f"{actor.name} reopened the incident")
    if old_status != new_status:
        await timeline(
            session,
            incident,
            actor,
            "status_changed",
            f"Status {old_status} → {new_status}",
            old_status=old_status,
            new_status=new_status,
        )
    return row


async def add_note(session: AsyncSession, actor: Actor, incident: Incident, *, body: str) -> IncidentUpdate:
    """An internal note: on the timeline and in the console, never on public channels."""
    actor.require(Scope.write)
    body = check_body(body)
    now = utcnow()
    row = IncidentUpdate(
        incident_id=incident.id,
        status=incident.status,
        body=body,
        body_html=markdown_to_html(body),
        visibility=Visibility.internal,
        created_at=now,
        updated_at=now,
        display_at=now,
        deliver_notifications=False,
        author_id=actor.user_id,
    )
    session.add(row)
    await session.flush()
    incident.updated_at = now
    await timeline(session, incident, actor, "note_added", f"Internal note: {body[:200]}", update_id=row.id)
    return row


async def assign_role(
    session: AsyncSession, actor: Actor | None, incident: Incident, *, role: str, user_id: str | None
) -> RoleAssignment | None:
    """Give a role to a user, handing it over from the current holder; ``None`` frees it.

    ``actor`` is None when automation assigns it (a role filled from who is on call).
    """
    if actor is not None:
        actor.require(Scope.write)
    parsed = parse_role(role)
    user = None
    if user_id:
        user = await session.get(User, user_id)
        if user is None or not user.is_active:
            raise NotFound(f"no active user with id {user_id!r}", field="user_id")
    now = utcnow()
    current = next((r for r in incident.roles if r.role == parsed and r.ended_at is None), None)
    if current is not None and user is not None and current.user_id == user.id:
        return current
    previous = None
    if current is not None:
        current.ended_at = now
        previous = await session.get(User, current.user_id)
    incident.updated_at = now
    if user is None:
        if current is None:
            return None
        await timeline(
            session,
            incident,
            actor,
            "role_released",
            f"{previous.name if previous else 'Someone'} is no longer {parsed.label}",
            role=parsed,
        )
        return None
    assignment = RoleAssignment(
        incident_id=incident.id,
        role=parsed,
        user_id=user.id,
        assigned_by_id=actor.user_id if actor else None,
        assigned_at=now,
    )
    session.add(assignment)
    incident.roles.append(assignment)
    if previous is not None:
        summary = f"{parsed.label} handed over from {previous.name} to {user.name}"
    else:
        summary = f"{user.name} is {parsed.label}"
    await timeline(
        session,
        incident,
        actor,
        "role_assigned",
        summary,
        role=parsed,
        user_id=user.id,
        previous_user_id=previous.id if previous else None,
    )
    return assignment


async def change_severity(
    session: AsyncSession, actor: Actor, incident: Incident, *, severity: str, reason: str
) -> Incident:
    """Raise or lower the severity; the reason goes on the timeline."""
    actor.require(Scope.write)
    if incident.kind != Kind.incident:
        raise InvalidInput("a maintenance has no severity", field="severity")
    new = policies.parse_severity(severity)
    reason = reason.strip()
    if not reason:
        raise InvalidInput("say why the severity changes", field="reason")
    if len(reason) > 2000:
        raise InvalidInput("reason must be at most 2000 characters", field="reason")
    if new == incident.severity:
        raise Conflict(f"the incident is already {new}", field="severity")
    old = incident.severity
    policy = await policies.get_policy(session, new)
    incident.severity = new
    if incident.impact != policy.impact:
        incident.impact = Impact(policy.impact)
        events.record(session, events.PUBLIC)
    incident.updated_at = utcnow()
    await timeline(
        session,
        incident,
        actor,
        "severity_changed",
        f"Severity {old} → {new}: {reason}",
        old_severity=old,
        new_severity=new,
        reason=reason,
    )
    return incident


async def set_postmortem(
    session: AsyncSession, actor: Actor, incident: Incident, *, body: str, publish: bool
) -> Incident:
    """Write the postmortem; publishing it shows it on the page and sets status postmortem."""
    actor.require(Scope.write)
    if incident.kind != Kind.incident:
        raise InvalidInput("a maintenance has no postmortem", field="incident_id")
    if incident.resolved_at is None:
        raise Conflict("resolve the incident before publishing its postmortem", field="status")
    body = check_body(body, field="postmortem_body")
    now = utcnow()
    incident.postmortem_body = body
    incident.postmortem_html = markdown_to_html(body)
    incident.postmortem_updated_at = now
    incident.updated_at = now
    if publish:
        incident.postmortem_published_at = incident.postmortem_published_at or now
        incident.status = IncidentStatus.postmortem
        events.record(session, events.PUBLIC)
    await timeline(
        session,
        incident,
        actor,
        "postmortem_published" if publish else "postmortem_updated",
        "Postmortem published" if publish else "Postmortem draft saved",
    )
    return incident


@dataclass
class Overview:
    """One open incident as the console's front page shows it."""

    incident: Incident
    holders: dict[str, str]  # role -> user name
    missing_roles: list[str]
    since_last_public_update: timedelta | None
    overdue_by: timedelta | None


async def overview(session: AsyncSession) -> list[Overview]:
    """Open incidents with their roles and the state of the next-update promise."""
    incidents = await list_incidents(session, open_only=True, limit=200)
    users = {u.id: u.name for u in await session.scalars(select(User))}
    policy_roles = {p.severity: p.required_roles for p in await policies.list_policies(session)}
    now = utcnow()
    rows = []
    for incident in incidents:
        holders = {str(r.role): users.get(r.user_id, "?") for r in incident.roles if r.ended_at is None}
        required = policy_roles.get(Severity(incident.severity), []) if incident.severity else []
        missing = [r for r in required if r not in holders]
        since = now - incident.last_public_update_at if incident.last_public_update_at else None
        overdue = now - incident.next_update_at if incident.next_update_at and incident.next_update_at < now else None
        rows.append(Overview(incident, holders, missing, since, overdue))
    severity_rank = {s.value: i for i, s in enumerate(Severity)}
    rows.sort(key=lambda o: (severity_rank.get(o.incident.severity or "SEV4", 9), o.incident.created_at))
    return rows


async def list_resolved(session: AsyncSession, *, limit: int = 50, offset: int = 0) -> list[Incident]:
    """Resolved incidents (postmortems included), newest first."""
    query = (
        select(Incident)
        .where(
            Incident.kind == Kind.incident, Incident.status.in_([IncidentStatus.resolved, IncidentStatus.postmortem])
        )
        .options(
            selectinload(Incident.updates).selectinload(IncidentUpdate.affected),
            selectinload(Incident.components),
            selectinload(Incident.roles),
        )
        .order_by(Incident.created_at.desc())
        .limit(limit)
        .offset(offset)
    )
    return list(await session.scalars(query))


async def find_incident(session: AsyncSession, ref: str) -> Incident:
    """An incident by id, by number, or as INC-<number> (for the CLI and people typing)."""
    text = ref.strip()
    digits = text[4:] if text.upper().startswith("INC-") else text
    # ASCII and short: isdigit() also takes "²" (int() refuses it), and the number column is 32-bit.
    if digits.isascii() and digits.isdigit() and len(digits) <= 9:
        incident_id = await session.scalar(select(Incident.id).where(Incident.number == int(digits)))
        if incident_id is not None:
            return await get_incident(session, incident_id, kind=Kind.incident)
    return await get_incident(session, text, kind=Kind.incident)
