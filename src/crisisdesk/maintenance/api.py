"""REST API: scheduled maintenance windows."""

from __future__ import annotations

from fastapi import APIRouter, Query, status

from crisisdesk.auth.deps import ApiReader, ApiWriter, Tx
from crisisdesk.auth.schemas import errors
from crisisdesk.incident import service as incidents
from crisisdesk.incident.models import Incident, Kind
from crisisdesk.maintenance import service
from crisisdesk.maintenance.schemas import MaintenanceCancel, MaintenanceCreate, MaintenancePatch, MaintenanceRead

router = APIRouter(tags=["maintenance"])


async def _load(session: Tx, maintenance_id: str) -> Incident:
    return await incidents.get_incident(session, maintenance_id, kind=Kind.maintenance)


@router.get(
    "/maintenances", summary="List maintenances", response_model=list[MaintenanceRead], responses=errors(401, 403, 422)
)
async def list_maintenances(
    session: Tx, actor: ApiReader, limit: int = Query(default=50, ge=1, le=200, description="At most this many.")
) -> list[Incident]:
    """Maintenance windows, newest first, in every state."""
    return await service.list_maintenances(session, limit=limit)


@router.post(
    "/maintenances",
    summary="Schedule a maintenance",
    status_code=status.HTTP_201_CREATED,
    response_model=MaintenanceRead,
    responses=errors(401, 403, 404, 422),
)
async def schedule(data: MaintenanceCreate, session: Tx, actor: ApiWriter) -> Incident:
    """Announce a window; it starts and completes by itself at its times unless auto_transition is off."""
    m = await service.schedule(
        session,
        actor,
        name=data.name,
        body=data.body,
        scheduled_for=data.scheduled_for,
        scheduled_until=data.scheduled_until,
        components=data.components,
        auto_transition=data.auto_transition,
    )
    return await _load(session, m.id)


@router.get(
    "/maintenances/{maintenance_id}",
    summary="Get a maintenance",
    response_model=MaintenanceRead,
    responses=errors(401, 403, 404),
)
async def get_maintenance(maintenance_id: str, session: Tx, actor: ApiReader) -> Incident:
    """One maintenance window with its components and updates."""
    return await _load(session, maintenance_id)


@router.patch(
    "/maintenances/{maintenance_id}",
    summary="Edit a maintenance",
    response_model=MaintenanceRead,
    responses=errors(401, 403, 404, 409, 422),
)
async def edit(maintenance_id: str, data: MaintenancePatch, session: Tx, actor: ApiWriter) -> Incident:
    """Change the name, window, components, or post an update; after the start only name and end may move."""
    await service.edit(
        session,
        actor,
        await _load(session, maintenance_id),
        name=data.name,
        scheduled_for=data.scheduled_for,
        scheduled_until=data.scheduled_until,
        components=data.components,
        body=data.body,
    )
    return await _load(session, maintenance_id)


@router.post(
    "/maintenances/{maintenance_id}/cancel",
    summary="Cancel a maintenance",
    response_model=MaintenanceRead,
    responses=errors(401, 403, 404, 409, 422),
)
async def cancel(maintenance_id: str, data: MaintenanceCancel, session: Tx, actor: ApiWriter) -> Incident:
    """Call the window off; it shows as completed with a cancellation notice. Cancelling twice is 409."""
    await service.cancel(session, actor, await _load(session, maintenance_id), reason=data.reason)
    return await _load(session, maintenance_id)
