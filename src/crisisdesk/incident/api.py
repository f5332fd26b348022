"""REST API: incidents, their updates, notes, roles, severity, postmortem, timeline; severity policy."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query, status

from crisisdesk.auth.deps import ApiAdmin, ApiReader, ApiWriter, Tx
from crisisdesk.auth.schemas import errors
from crisisdesk.incident import policy as policies
from crisisdesk.incident import service
from crisisdesk.incident.models import (
    Incident,
    IncidentRole,
    IncidentUpdate,
    Kind,
    Severity,
    SeverityPolicy,
    TimelineEvent,
)
from crisisdesk.incident.schemas import (
    IncidentCreate,
    IncidentRead,
    NoteCreate,
    PostmortemPut,
    ResolveCreate,
    RoleAssign,
    SeverityChange,
    SeverityPolicyPatch,
    SeverityPolicyRead,
    TimelineEventRead,
    UpdateCreate,
    UpdateRead,
)
from crisisdesk.kit.db import MAX_OFFSET

router = APIRouter(tags=["incidents"])


async def _load(session: Tx, incident_id: str) -> Incident:
    return await service.get_incident(session, incident_id, kind=Kind.incident)


@router.get("/incidents", summary="List incidents", response_model=list[IncidentRead], responses=errors(401, 403, 422))
async def list_incidents(
    session: Tx,
    actor: ApiReader,
    state: Literal["open", "resolved"] | None = Query(
        default=None,
        alias="status",
        description="open (investigating/identified/monitoring) or resolved; all if omitted.",
    ),
    limit: int = Query(default=50, ge=1, le=200, description="At most this many, newest first."),
    offset: int = Query(default=0, ge=0, le=MAX_OFFSET, description="Skip this many (for paging)."),
) -> list[Incident]:
    """Incidents, newest first, with their updates, components and roles."""
    if state == "resolved":
        return await service.list_resolved(session, limit=limit, offset=offset)
    return await service.list_incidents(session, open_only=state == "open", limit=limit, offset=offset)


@router.post(
    "/incidents",
    summary="Declare an incident",
    status_code=status.HTTP_201_CREATED,
    response_model=IncidentRead,
    responses=errors(401, 403, 404, 422),
)
async def declare(data: IncidentCreate, session: Tx, actor: ApiWriter) -> Incident:
    """Declare an incident with its first public update, affected components and roles."""
    declared = await service.declare(
        session,
        actor,
        name=data.name,
        severity=data.severity,
        body=data.body,
        status=data.status,
        components=data.components,
        next_update_at=data.next_update_at,
        started_at=data.started_at,
        roles={role.value: user_id for role, user_id in data.roles.items()},
        deliver_notifications=data.deliver_notifications,
    )
    return await _load(session, declared.incident.id)


@router.get(
    "/incidents/{incident_id}", summary="Get an incident", response_model=IncidentRead, responses=errors(401, 403, 404)
)
async def get_incident(incident_id: str, session: Tx, actor: ApiReader) -> Incident:
    """One incident with its updates (newest first), components and role history."""
    return await _load(session, incident_id)


@router.post(
    "/incidents/{incident_id}/updates",
    summary="Post a public update",
    status_code=status.HTTP_201_CREATED,
    response_model=UpdateRead,
    responses=errors(401, 403, 404, 409, 422),
)
async def post_update(incident_id: str, data: UpdateCreate, session: Tx, actor: ApiWriter) -> IncidentUpdate:
    """Post an update that may change the status and component statuses and promises the next one."""
    incident = await _load(session, incident_id)
    row = await service.post_update(
        session,
        actor,
        incident,
        status=data.status,
        body=data.body,
        components=data.components,
        next_update_at=data.next_update_at,
        deliver_notifications=data.deliver_notifications,
    )
    return await _update_of(session, incident_id, row.id)


@router.post(
    "/incidents/{incident_id}/notes",
    summary="Add an internal note",
    status_code=status.HTTP_201_CREATED,
    response_model=UpdateRead,
    responses=errors(401, 403, 404, 422),
)
async def add_note(incident_id: str, data: NoteCreate, session: Tx, actor: ApiWriter) -> IncidentUpdate:
    """An internal note: on the timeline and in the console, never public."""
    row = await service.add_note(session, actor, await _load(session, incident_id), body=data.body)
    return await _update_of(session, incident_id, row.id)


@router.put(
    "/incidents/{incident_id}/roles/{role}",
    summary="Assign or free a role",
    response_model=IncidentRead,
    responses=errors(401, 403, 404, 422),
)
async def assign_role(
    incident_id: str, role: IncidentRole, data: RoleAssign, session: Tx, actor: ApiWriter
) -> Incident:
    """Give the role to a user (handing it over from its holder), or free it with user_id null."""
    await service.assign_role(session, actor, await _load(session, incident_id), role=role, user_id=data.user_id)
    return await _load(session, incident_id)


@router.post(
    "/incidents/{incident_id}/severity",
    summary="Change the severity",
    response_model=IncidentRead,
    responses=errors(401, 403, 404, 409, 422),
)
async def change_severity(incident_id: str, data: SeverityChange, session: Tx, actor: ApiWriter) -> Incident:
    """Raise or lower the severity; the reason is recorded on the timeline."""
    await service.change_severity(
        session, actor, await _load(session, incident_id), severity=data.severity, reason=data.reason
    )
    return await _load(session, incident_id)


@router.post(
    "/incidents/{incident_id}/resolve",
    summary="Resolve the incident",
    response_model=IncidentRead,
    responses=errors(401, 403, 404, 409, 422),
)
async def resolve(incident_id: str, data: ResolveCreate, session: Tx, actor: ApiWriter) -> Incident:
    """Post the resolving update; affected components return to operational. Resolving twice is 409."""
    await service.post_update(
        session,
        actor,
        await _load(session, incident_id),
        status="resolved",
        body=data.body,
        components=data.components,
        deliver_notifications=data.deliver_notifications,
    )
    return await _load(session, incident_id)


@router.put(
    "/incidents/{incident_id}/postmortem",
    summary="Write or publish the postmortem",
    response_model=IncidentRead,
    responses=errors(401, 403, 404, 409, 422),
)
async def set_postmortem(incident_id: str, data: PostmortemPut, session: Tx, actor: ApiWriter) -> Incident:
    """Save the postmortem as a draft, or publish it on the status page (resolved incidents only)."""
    await service.set_postmortem(
        session, actor, await _load(session, incident_id), body=data.body, publish=data.publish
    )
    return await _load(session, incident_id)


@router.get(
    "/incidents/{incident_id}/timeline",
    summary="The incident's timeline",
    response_model=list[TimelineEventRead],
    responses=errors(401, 403, 404),
)
async def timeline(incident_id: str, session: Tx, actor: ApiReader) -> list[TimelineEvent]:
    """Every event on the incident, newest first."""
    await _load(session, incident_id)
    return await service.timeline_of(session, incident_id)


@router.get(
    "/severity-policies",
    summary="List severity policies",
    response_model=list[SeverityPolicyRead],
    tags=["severity policies"],
    responses=errors(401, 403),
)
async def list_policies(session: Tx, actor: ApiReader) -> list[SeverityPolicy]:
    """What SEV1 to SEV4 mean: cadence, required roles, postmortem."""
    return await policies.list_policies(session)


@router.put(
    "/severity-policies/{severity}",
    summary="Change a severity policy",
    response_model=SeverityPolicyRead,
    tags=["severity policies"],
    responses=errors(401, 403, 422),
)
async def update_policy(severity: Severity, data: SeverityPolicyPatch, session: Tx, actor: ApiAdmin) -> SeverityPolicy:
    """Change cadence, required roles, postmortem, free-text approval or description (admins only)."""
    return await policies.update_policy(
        session,
        actor,
        severity,
        cadence_minutes=data.cadence_minutes,
        required_roles=[r.value for r in data.required_roles] if data.required_roles is not None else None,
        postmortem_required=data.postmortem_required,
        description=data.description,
        free_text_approval=data.free_text_approval,
    )


async def _update_of(session: Tx, incident_id: str, update_id: str) -> IncidentUpdate:
    incident = await _load(session, incident_id)
    return next(u for u in incident.updates if u.id == update_id)
