"""REST API: the agent brief of an incident, and escalating a ticket to the Incident Commander."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status

from crisisdesk.auth.deps import ApiReader, ApiWriter, Tx
from crisisdesk.auth.schemas import errors
from crisisdesk.kit.runtime import runtime_of
from crisisdesk.support import brief, escalation
from crisisdesk.support.brief_schemas import BriefRead, TicketEscalationCreate, TicketEscalationRead

router = APIRouter(tags=["support"])


@router.get(
    "/incidents/{incident_id}/brief",
    summary="The agent brief",
    response_model=BriefRead,
    responses=errors(401, 403, 404),
)
async def get_brief(request: Request, incident_id: str, session: Tx, actor: ApiReader) -> BriefRead:
    """What support agents need about an incident: what is known, affected components and accounts, the latest
    public update and the approved macros (never internal notes), the workaround, the ETA and its history, the
    linked and suggested ticket counts and the escalations. The console's brief page shows the same."""
    time_zone = runtime_of(request).settings.page_time_zone
    return BriefRead.of(await brief.assemble(session, incident_id, time_zone=time_zone))


@router.post(
    "/tickets/{ticket_id}/escalate",
    summary="Escalate a ticket to the Incident Commander",
    status_code=status.HTTP_201_CREATED,
    response_model=TicketEscalationRead,
    responses={
        **errors(401, 403, 404, 409, 422),
        200: {"model": TicketEscalationRead, "description": "Escalated less than a minute ago: the same escalation."},
    },
)
async def escalate_ticket(
    ticket_id: str, data: TicketEscalationCreate, response: Response, session: Tx, actor: ApiWriter
) -> TicketEscalationRead:
    """Record the escalation and a timeline event on the ticket's incident (or, unlinked, its suggested incident;
    409 with neither) and page the Incident Commander at high urgency by their notification rules. Without a
    commander the severity's paging policy is paged; with neither nobody is, and the brief flags it. The same ticket
    again within a minute answers 200 with the first escalation; another ticket of the same incident within a
    minute of a page is recorded without paging again."""
    done = await escalation.escalate(session, actor, ticket_id=ticket_id, note=data.note)
    if done.repeated:
        response.status_code = status.HTTP_200_OK
    return TicketEscalationRead.of(done)
