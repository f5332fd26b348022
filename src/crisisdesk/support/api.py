"""REST API: tickets (create, list, read, link, unlink), incident macros, and answering linked tickets in bulk."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request, Response, status

from crisisdesk.auth.deps import ApiReader, ApiWriter, Tx
from crisisdesk.auth.schemas import errors
from crisisdesk.kit.errors import NotFound
from crisisdesk.kit.runtime import runtime_of
from crisisdesk.support import macros, tasks, tickets
from crisisdesk.support.models import Macro, MacroKind, Ticket, TicketSource
from crisisdesk.support.schemas import (
    BulkAnswerRead,
    MacroApprove,
    MacroPut,
    MacroRead,
    ReplyRead,
    TicketCreate,
    TicketDetailRead,
    TicketLink,
    TicketPageRead,
    TicketRead,
)
from crisisdesk.support.tickets import BulkResult

router = APIRouter(tags=["tickets"])


async def _detail(session: Tx, ticket: Ticket) -> TicketDetailRead:
    replies = await tickets.replies_of(session, ticket.id)
    states = await tasks.reply_states(session, replies)
    return TicketDetailRead.of(
        ticket,
        [
            ReplyRead(
                id=r.id,
                kind=r.kind,
                incident_id=r.incident_id,
                via=r.via,
                state=states[r.id][0],
                solve=r.solve,
                attempts=r.attempts,
                last_error=states[r.id][1],
                delivery_id=r.delivery_id,
                body=r.body,
                created_at=r.created_at,
                sent_at=r.sent_at,
            )
            for r in replies
        ],
    )


@router.post(
    "/tickets",
    summary="Create a ticket",
    status_code=status.HTTP_201_CREATED,
    response_model=TicketDetailRead,
    responses={**errors(401, 403, 422), 200: {"model": TicketDetailRead, "description": "Already stored."}},
)
async def create_ticket(
    data: TicketCreate, request: Request, response: Response, session: Tx, actor: ApiWriter
) -> TicketDetailRead:
    """Store a ticket; it is matched to the open incidents at once. Above the match threshold it is
    linked and answered with the incident's approved acknowledgement; below it the best incident is
    suggested to an agent. A ticket from an unknown account is accepted and matched on its text.
    Sending the same external_id again answers 200 with the ticket already stored."""
    settings = runtime_of(request).settings
    before = await tickets.find_existing(
        session, source=TicketSource.api, helpdesk_id=None, external_id=(data.external_id or "").strip() or None
    )
    ticket = await tickets.receive(
        session,
        settings,
        source=TicketSource.api,
        subject=data.subject,
        body=data.body,
        requester_email=data.requester_email,
        requester_name=data.requester_name,
        external_id=data.external_id,
        account_external_id=data.account_external_id,
        created_at=data.created_at,
    )
    if before is not None:
        response.status_code = status.HTTP_200_OK
    return await _detail(session, ticket)


@router.get("/tickets", summary="List tickets", response_model=TicketPageRead, responses=errors(401, 403, 422))
async def list_tickets(
    session: Tx,
    actor: ApiReader,
    incident_id: str | None = Query(default=None, max_length=64, description="Only tickets linked to this incident."),
    status_: str | None = Query(default=None, alias="status", description="Only tickets with this status."),
    suggested: bool | None = Query(
        default=None,
        description="true: only unlinked tickets with a suggested incident (with incident_id: suggested for it); "
        "false: only tickets without a suggestion.",
    ),
    limit: int = Query(default=50, ge=1, le=500, description="At most this many, newest first."),
    offset: int = Query(default=0, ge=0, le=1_000_000, description="Skip this many (for paging)."),
) -> TicketPageRead:
    """Tickets newest first: those linked to an incident, or those waiting for an agent's decision."""
    total, items = await tickets.list_tickets(
        session,
        incident_id=incident_id,
        status=tickets.parse_status(status_) if status_ else None,
        suggested=suggested,
        limit=limit,
        offset=offset,
    )
    return TicketPageRead(total=total, items=[TicketRead.model_validate(t) for t in items])


@router.get(
    "/tickets/{ticket_id}", summary="Get a ticket", response_model=TicketDetailRead, responses=errors(401, 403, 404)
)
async def get_ticket(ticket_id: str, session: Tx, actor: ApiReader) -> TicketDetailRead:
    """One ticket with its replies and their state."""
    return await _detail(session, await tickets.get_ticket(session, ticket_id))


@router.post(
    "/tickets/{ticket_id}/link",
    summary="Link a ticket to an incident",
    response_model=TicketDetailRead,
    responses=errors(401, 403, 404, 422),
)
async def link_ticket(
    ticket_id: str, data: TicketLink, request: Request, session: Tx, actor: ApiWriter
) -> TicketDetailRead:
    """Accept the suggestion or choose the incident: the ticket gets the incident's tag and, once, its
    approved acknowledgement."""
    ticket = await tickets.link(
        session, runtime_of(request).settings, actor, ticket_id=ticket_id, incident_id=data.incident_id
    )
    return await _detail(session, ticket)


@router.post(
    "/tickets/{ticket_id}/unlink",
    summary="Unlink a ticket",
    response_model=TicketDetailRead,
    responses=errors(401, 403, 404, 409),
)
async def unlink_ticket(ticket_id: str, session: Tx, actor: ApiWriter) -> TicketDetailRead:
    """Take the ticket off its incident: the tag goes, and a reply not sent yet is not sent."""
    return await _detail(session, await tickets.unlink(session, actor, ticket_id=ticket_id))


async def _macro_read(session: Tx, macro: Macro, time_zone: str) -> MacroRead:
    subject, body = await macros.render_macro(session, macro, time_zone=time_zone)
    read = MacroRead.model_validate(macro)
    return read.model_copy(update={"preview_subject": subject, "preview_body": body})


@router.get(
    "/incidents/{incident_id}/macros",
    summary="List an incident's macros",
    response_model=list[MacroRead],
    responses=errors(401, 403, 404),
)
async def list_macros(incident_id: str, request: Request, session: Tx, actor: ApiReader) -> list[MacroRead]:
    """The incident's acknowledge and resolution macros, approved or not, with previews."""
    incident = await macros.load_incident(session, incident_id)
    found = await macros.macros_of(session, incident.id)
    zone = runtime_of(request).settings.page_time_zone
    return [await _macro_read(session, found[kind], zone) for kind in MacroKind if kind in found]


@router.get(
    "/incidents/{incident_id}/macros/{kind}",
    summary="Get an incident's macro",
    response_model=MacroRead,
    responses=errors(401, 403, 404, 422),
)
async def get_macro(incident_id: str, kind: MacroKind, request: Request, session: Tx, actor: ApiReader) -> MacroRead:
    """One macro with a preview (the requester left as a placeholder)."""
    incident = await macros.load_incident(session, incident_id)
    macro = await macros.get_macro(session, incident.id, kind)
    if macro is None:
        raise NotFound(f"this incident has no {kind} macro yet", field="kind")
    return await _macro_read(session, macro, runtime_of(request).settings.page_time_zone)


@router.put(
    "/incidents/{incident_id}/macros/{kind}",
    summary="Write an incident's macro",
    response_model=MacroRead,
    responses=errors(401, 403, 404, 409, 422),
)
async def put_macro(
    incident_id: str, kind: MacroKind, data: MacroPut, request: Request, session: Tx, actor: ApiWriter
) -> MacroRead:
    """Write the macro; it is checked (syntax, variables, a trial render). A change to an approved macro
    withdraws the approval: it is not sent until approved again."""
    zone = runtime_of(request).settings.page_time_zone
    macro = await macros.put_macro(
        session, actor, incident_id=incident_id, kind=kind, subject=data.subject, body=data.body, time_zone=zone
    )
    return await _macro_read(session, macro, zone)


@router.post(
    "/incidents/{incident_id}/macros/{kind}/approve",
    summary="Approve an incident's macro",
    response_model=MacroRead,
    responses=errors(401, 403, 404, 409, 422),
)
async def approve_macro(
    incident_id: str,
    kind: MacroKind,
    request: Request,
    session: Tx,
    actor: ApiWriter,
    data: MacroApprove | None = None,
) -> MacroRead:
    """The Communications Lead or an admin approves the macro; only an approved macro is ever sent."""
    macro = await macros.approve(
        session, actor, incident_id=incident_id, kind=kind, seen=data.updated_at if data else None
    )
    return await _macro_read(session, macro, runtime_of(request).settings.page_time_zone)


def _bulk(result: BulkResult) -> BulkAnswerRead:
    return BulkAnswerRead(
        answered=result.answered,
        replies=result.replies,
        skipped=result.skipped,
        solved_without_reply=result.solved_without_reply,
        failed=result.failed,
    )


@router.post(
    "/incidents/{incident_id}/tickets/resolve",
    summary="Answer and solve every linked ticket",
    response_model=BulkAnswerRead,
    responses=errors(401, 403, 404, 409),
)
async def resolve_tickets(incident_id: str, request: Request, session: Tx, actor: ApiWriter) -> BulkAnswerRead:
    """Send the approved resolution macro to every linked unsolved ticket and mark them solved (helpdesk
    tickets are solved in the helpdesk too). 409 without an approved resolution macro; tickets already
    solved are skipped, so repeating it answers nobody twice."""
    return _bulk(await tickets.resolve_all(session, runtime_of(request).settings, actor, incident_id=incident_id))


@router.post(
    "/incidents/{incident_id}/tickets/acknowledge",
    summary="Acknowledge linked tickets not yet answered",
    response_model=BulkAnswerRead,
    responses=errors(401, 403, 404, 409),
)
async def acknowledge_tickets(incident_id: str, request: Request, session: Tx, actor: ApiWriter) -> BulkAnswerRead:
    """Send the approved acknowledgement to linked unsolved tickets that have not had it (linked before the
    macro was approved). 409 without an approved acknowledge macro."""
    return _bulk(await tickets.acknowledge_all(session, runtime_of(request).settings, actor, incident_id=incident_id))
