"""Follow-ups for customer success managers: listed by assignee and status, marked done."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from crisisdesk.auth.models import Scope
from crisisdesk.auth.service import Actor
from crisisdesk.customer.models import Account, CsmTask, TaskStatus
from crisisdesk.incident import service as incidents
from crisisdesk.incident.models import Incident
from crisisdesk.kit.errors import Conflict, InvalidInput, NotFound
from crisisdesk.kit.time import utcnow


def parse_status(value: str | None) -> TaskStatus | None:
    if value is None or value == "":
        return None
    try:
        return TaskStatus(value)
    except ValueError:
        allowed = ", ".join(s.value for s in TaskStatus)
        raise InvalidInput(f"{value[:40]!r} is not a task status; use one of: {allowed}", field="status") from None


def _filtered(statement: Any, *, assignee: str | None, status: TaskStatus | None, incident_id: str | None) -> Any:
    if assignee is not None:
        # The CSM owner is free text from the CRM (an email or a name): matched without case.
        statement = statement.where(func.lower(CsmTask.assignee) == assignee.strip().lower())
    if status is not None:
        statement = statement.where(CsmTask.status == status)
    if incident_id is not None:
        statement = statement.where(CsmTask.incident_id == incident_id)
    return statement


async def list_tasks(
    session: AsyncSession,
    *,
    assignee: str | None = None,
    status: TaskStatus | None = None,
    incident_id: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> Sequence[CsmTask]:
    """Tasks, open ones by due time first, then done ones newest first."""
    statement = _filtered(select(CsmTask), assignee=assignee, status=status, incident_id=incident_id)
    # "open" sorts after "done", so descending lists the open ones first.
    ordered = statement.order_by(CsmTask.status.desc(), CsmTask.due_at.asc().nulls_last(), CsmTask.id.desc())
    return (await session.scalars(ordered.limit(limit).offset(offset))).all()


async def count(
    session: AsyncSession,
    *,
    assignee: str | None = None,
    status: TaskStatus | None = None,
    incident_id: str | None = None,
) -> int:
    statement = _filtered(select(func.count(CsmTask.id)), assignee=assignee, status=status, incident_id=incident_id)
    return int(await session.scalar(statement) or 0)


async def names(session: AsyncSession, tasks: Sequence[CsmTask]) -> tuple[dict[str, str], dict[str, Incident]]:
    """The account names and incidents the tasks point at (for pages and answers)."""
    account_ids = {t.account_id for t in tasks}
    incident_ids = {t.incident_id for t in tasks if t.incident_id}
    accounts = {
        row.id: row.name
        for row in (await session.execute(select(Account.id, Account.name).where(Account.id.in_(account_ids)))).all()
    }
    found = {i.id: i for i in await session.scalars(select(Incident).where(Incident.id.in_(incident_ids)))}
    return accounts, found


async def get_task(session: AsyncSession, task_id: int) -> CsmTask:
    task = await session.get(CsmTask, task_id)
    if task is None:
        raise NotFound(f"no CSM task {task_id}", field="task_id")
    return task


async def complete(session: AsyncSession, actor: Actor, task_id: int) -> CsmTask:
    """Mark the task done; doing it twice is a conflict. The incident's timeline records it."""
    actor.require(Scope.write)
    task = await get_task(session, task_id)
    if task.status == TaskStatus.done:
        raise Conflict("this task is already done", field="status")
    task.status = TaskStatus.done
    task.done_at = utcnow()
    if task.incident_id is not None:
        incident = await incidents.get_incident(session, task.incident_id)
        await incidents.timeline(
            session, incident, actor, "csm_task_done", f"CSM task done: {task.title}", task_id=task.id
        )
    return task
