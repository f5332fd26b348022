"""REST API: proactive outreach to affected accounts, what each account was sent, and CSM tasks."""

from __future__ import annotations

from fastapi import APIRouter, Path, Query, Request, Response, status
from sqlalchemy.ext.asyncio import AsyncSession

from crisisdesk.auth.deps import ApiReader, ApiWriter, Tx
from crisisdesk.auth.schemas import errors
from crisisdesk.customer import csm_tasks, outreach
from crisisdesk.customer.models import CsmTask
from crisisdesk.customer.outreach_schemas import (
    AccountOutreachRead,
    CsmTaskPageRead,
    CsmTaskRead,
    OutreachCreate,
    OutreachRead,
    OutreachResultRead,
    SampleRead,
)
from crisisdesk.kit.db import MAX_INT_ID, MAX_OFFSET
from crisisdesk.kit.runtime import runtime_of

router = APIRouter(tags=["outreach"])
TaskId = Path(ge=1, le=MAX_INT_ID, description="CSM task id.")


def _outreach_read(view: outreach.OutreachView) -> OutreachRead:
    row = view.outreach
    return OutreachRead(
        id=row.id,
        incident_id=row.incident_id,
        template_id=row.template_id,
        template_name=view.template_name,
        actor_id=row.actor_id,
        subject=row.subject,
        account_count=row.account_count,
        delivery_count=row.delivery_count,
        task_count=row.task_count,
        created_at=row.created_at,
        deliveries=view.states,
    )


@router.post(
    "/incidents/{incident_id}/outreach",
    summary="Write to the affected accounts",
    status_code=status.HTTP_201_CREATED,
    response_model=OutreachResultRead,
    responses={**errors(401, 403, 404, 409, 422), 200: {"description": "A dry run: what would be sent."}},
)
async def send_outreach(
    incident_id: str, data: OutreachCreate, request: Request, response: Response, session: Tx, actor: ApiWriter
) -> OutreachResultRead:
    """Send an approved template (409 if unapproved or archived) to the contacts of exactly the accounts the
    incident affects, each email rendered with that account's impact; top-tier accounts get a CSM task. Admins
    and the incident's Incident Commander or Communications Lead send; any writer may preview with dry_run
    (200). The same template again within a minute is refused (409)."""
    plan = await outreach.send(
        session,
        actor,
        runtime_of(request).settings,
        incident_id=incident_id,
        template_id=data.template_id,
        tiers=data.tiers,
        contact_roles=data.contact_roles,
        top_tiers=data.top_tiers,
        dry_run=data.dry_run,
    )
    stored = None
    if plan.outreach is not None:
        await session.flush()
        [view] = [
            v for v in await outreach.list_for_incident(session, incident_id) if v.outreach.id == plan.outreach.id
        ]
        stored = _outreach_read(view)
    else:
        response.status_code = status.HTTP_200_OK
    sample = plan.sample
    return OutreachResultRead(
        dry_run=plan.outreach is None,
        account_count=plan.account_count,
        delivery_count=plan.delivery_count,
        task_count=plan.task_count,
        accounts_without_contacts=plan.accounts_without_contacts,
        sample=SampleRead(
            account_id=sample.account_id,
            account_name=sample.account_name,
            to=sample.to,
            subject=sample.subject,
            text=sample.text,
            html=sample.html,
        )
        if sample is not None
        else None,
        outreach=stored,
    )


@router.get(
    "/incidents/{incident_id}/outreach",
    summary="The incident's outreaches",
    response_model=list[OutreachRead],
    responses=errors(401, 403, 404),
)
async def list_outreach(incident_id: str, session: Tx, actor: ApiReader) -> list[OutreachRead]:
    """Every outreach on the incident, newest first, with its emails counted by delivery state."""
    return [_outreach_read(v) for v in await outreach.list_for_incident(session, incident_id)]


@router.get(
    "/accounts/{account_id}/outreach",
    summary="What outreach told an account",
    response_model=list[AccountOutreachRead],
    responses=errors(401, 403, 404, 422),
)
async def account_outreach(
    account_id: str,
    session: Tx,
    actor: ApiReader,
    limit: int = Query(default=50, ge=1, le=500, description="At most this many, newest first."),
    offset: int = Query(default=0, ge=0, le=MAX_OFFSET, description="Skip this many (for paging)."),
) -> list[AccountOutreachRead]:
    """Everything proactive outreach sent to this account: the incident, the impact it told, the addresses."""
    return [
        AccountOutreachRead(
            outreach_id=item.outreach.id,
            incident_id=item.outreach.incident_id,
            incident_number=item.incident_number,
            incident_name=item.incident_name,
            template_id=item.outreach.template_id,
            subject=item.outreach.subject,
            sent_at=item.outreach.created_at,
            impact=item.record.impact,
            contacts=item.record.contacts,
            delivery_count=item.record.delivery_count,
            task_id=item.record.task_id,
        )
        for item in await outreach.list_for_account(session, account_id, limit=limit, offset=offset)
    ]


async def task_reads(session: AsyncSession, tasks: list[CsmTask]) -> list[CsmTaskRead]:
    names, found = await csm_tasks.names(session, tasks)
    reads = []
    for task in tasks:
        read = CsmTaskRead.model_validate(task)
        read.account_name = names.get(task.account_id)
        incident = found.get(task.incident_id or "")
        read.incident_number = incident.number if incident is not None else None
        reads.append(read)
    return reads


@router.get(
    "/csm-tasks",
    summary="List CSM tasks",
    tags=["csm tasks"],
    response_model=CsmTaskPageRead,
    responses=errors(401, 403, 422),
)
async def list_tasks(
    session: Tx,
    actor: ApiReader,
    assignee: str | None = Query(default=None, max_length=320, description="Only tasks of this CSM (no case)."),
    task_status: str | None = Query(default=None, alias="status", description="open or done; both if omitted."),
    incident: str | None = Query(default=None, max_length=64, description="Only tasks of this incident id."),
    limit: int = Query(default=50, ge=1, le=500, description="At most this many."),
    offset: int = Query(default=0, ge=0, le=MAX_OFFSET, description="Skip this many (for paging)."),
) -> CsmTaskPageRead:
    """Follow-ups for customer success managers: open ones by due time first, then done ones."""
    parsed = csm_tasks.parse_status(task_status)
    tasks = list(
        await csm_tasks.list_tasks(
            session, assignee=assignee, status=parsed, incident_id=incident, limit=limit, offset=offset
        )
    )
    total = await csm_tasks.count(session, assignee=assignee, status=parsed, incident_id=incident)
    return CsmTaskPageRead(total=total, items=await task_reads(session, tasks))


@router.post(
    "/csm-tasks/{task_id}/done",
    summary="Mark a CSM task done",
    tags=["csm tasks"],
    response_model=CsmTaskRead,
    responses=errors(401, 403, 404, 409, 422),
)
async def complete_task(session: Tx, actor: ApiWriter, task_id: int = TaskId) -> CsmTaskRead:
    """Mark the task done (409 if it already is); the incident's timeline records it."""
    task = await csm_tasks.complete(session, actor, task_id)
    [read] = await task_reads(session, [task])
    return read
