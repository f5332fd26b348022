"""REST API: an incident's workaround and ETA, with their history."""

from __future__ import annotations

from fastapi import APIRouter

from crisisdesk.auth.deps import ApiReader, ApiWriter, Tx
from crisisdesk.auth.schemas import errors
from crisisdesk.incident import guidance, service
from crisisdesk.incident.models import Kind
from crisisdesk.incident.schemas import EtaPut, EtaRead, GuidanceRead, WorkaroundPut, WorkaroundRead

router = APIRouter(tags=["incidents"])


async def _guidance(session: Tx, incident_id: str) -> GuidanceRead:
    now = await guidance.current(session, incident_id)
    workarounds, etas = await guidance.history(session, incident_id)
    return GuidanceRead(
        workaround=WorkaroundRead.model_validate(now.workaround) if now.workaround else None,
        eta=EtaRead.model_validate(now.eta) if now.eta else None,
        workarounds=[WorkaroundRead.model_validate(w) for w in workarounds],
        etas=[EtaRead.model_validate(e) for e in etas],
    )


@router.get(
    "/incidents/{incident_id}/guidance",
    summary="The workaround and ETA",
    response_model=GuidanceRead,
    responses=errors(401, 403, 404),
)
async def get_guidance(incident_id: str, session: Tx, actor: ApiReader) -> GuidanceRead:
    """The current workaround and ETA (published or not), and every earlier version, newest first."""
    await service.get_incident(session, incident_id, kind=Kind.incident)
    return await _guidance(session, incident_id)


@router.post(
    "/incidents/{incident_id}/workaround",
    summary="Set or withdraw the workaround",
    response_model=GuidanceRead,
    responses=errors(401, 403, 404, 409, 422),
)
async def set_workaround(incident_id: str, data: WorkaroundPut, session: Tx, actor: ApiWriter) -> GuidanceRead:
    """Write a new version of the workaround (an empty body withdraws it); published shows it on the status
    page. The same words and visibility again change nothing. A resolved incident takes no new workaround (409)."""
    await guidance.set_workaround(session, actor, incident_id=incident_id, body=data.body, published=data.published)
    return await _guidance(session, incident_id)


@router.post(
    "/incidents/{incident_id}/eta",
    summary="Set, move or withdraw the ETA",
    response_model=GuidanceRead,
    responses=errors(401, 403, 404, 409, 422),
)
async def set_eta(incident_id: str, data: EtaPut, session: Tx, actor: ApiWriter) -> GuidanceRead:
    """Write a new estimate (eta_at null withdraws it) with a note saying why it moved; published shows it on the
    status page. An ETA may lie in the past but not before the incident started; a resolved incident takes none."""
    await guidance.set_eta(
        session, actor, incident_id=incident_id, eta_at=data.eta_at, note=data.note, published=data.published
    )
    return await _guidance(session, incident_id)
