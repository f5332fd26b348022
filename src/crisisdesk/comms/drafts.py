"""Free-text public updates awaiting approval: submit, approve, reject (with a reason), withdraw.

On a severity whose policy asks for it, a responder who is neither an admin nor the incident's
Communications Lead cannot publish free text; the words wait here as a draft until one of them
approves (which publishes it) or rejects it. Every step is a timeline event.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from crisisdesk.auth.models import Scope, User
from crisisdesk.auth.service import Actor
from crisisdesk.catalog import service as catalog
from crisisdesk.catalog.models import ComponentStatus
from crisisdesk.comms.models import DraftState, UpdateDraft
from crisisdesk.comms.templates import refuse_nul
from crisisdesk.incident import policy as policies
from crisisdesk.incident import service as incidents
from crisisdesk.incident.models import Incident, IncidentStatus, IncidentUpdate, Kind, Severity
from crisisdesk.kit.errors import Conflict, Forbidden, InvalidInput, NotFound
from crisisdesk.kit.time import utcnow

MAX_REASON = 2000


async def needs_approval(session: AsyncSession, actor: Actor, incident: Incident) -> bool:
    """Whether this actor's free-text public update on this incident waits for approval."""
    if incident.kind != Kind.incident:
        return False
    policy = await policies.get_policy(session, Severity(incident.severity or Severity.SEV3))
    return policy.free_text_approval and not await incidents.may_approve(session, actor, incident)


async def submit_draft(
    session: AsyncSession,
    actor: Actor,
    incident: Incident,
    *,
    status: str,
    body: str,
    components: Mapping[str, ComponentStatus | str] | None = None,
    next_update_at: datetime | None = None,
    deliver_notifications: bool = True,
) -> UpdateDraft:
    """Hold a free-text public update for the Communications Lead or an admin to approve."""
    actor.require(Scope.write)
    if incident.kind != Kind.incident:
        raise InvalidInput("drafts are for incidents; maintenance updates need no approval", field="incident_id")
    parsed = incidents.parse_status(status)
    refuse_nul(body, label="the message", field="body")
    body = incidents.check_body(body)
    next_update_at = incidents.check_next_update(next_update_at, utcnow())
    if parsed is IncidentStatus.resolved and next_update_at is not None:
        raise InvalidInput("a resolved incident promises no next update", field="next_update_at")
    if not incident.is_open and parsed is IncidentStatus.resolved:
        raise Conflict("this incident is already resolved", field="status")
    checked: dict[str, str] = {}
    for component_id, raw in (components or {}).items():
        where = f"components.{component_id}"
        checked[component_id] = catalog.parse_status(str(raw), field=where).value
        component = await catalog.get_component(session, component_id, field=where)
        if component.is_group:
            raise InvalidInput(f"{component.name!r} is a group; choose its components", field=where)
    draft = UpdateDraft(
        incident_id=incident.id,
        state=DraftState.pending,
        status=parsed.value,
        body=body,
        components=checked,
        next_update_at=next_update_at,
        deliver_notifications=deliver_notifications,
        author_id=actor.user_id,
        created_at=utcnow(),
    )
    session.add(draft)
    await session.flush()
    await incidents.timeline(
        session,
        incident,
        actor,
        "draft_submitted",
        f"{actor.name} submitted a public update ({parsed.value}) for approval: {body[:200]}",
        draft_id=draft.id,
        status=parsed.value,
    )
    return draft


async def get_draft(session: AsyncSession, draft_id: str) -> UpdateDraft:
    """One draft by id (404 naming ``draft_id``)."""
    # A NUL is in no id, and PostgreSQL refuses one in a query (the app answered 503).
    draft = await session.get(UpdateDraft, draft_id) if "\x00" not in draft_id else None
    if draft is None:
        raise NotFound(f"no draft with id {draft_id!r}", field="draft_id")
    return draft


async def list_drafts(session: AsyncSession, incident_id: str, *, pending_only: bool = False) -> list[UpdateDraft]:
    """An incident's drafts, newest first."""
    query = select(UpdateDraft).where(UpdateDraft.incident_id == incident_id)
    if pending_only:
        query = query.where(UpdateDraft.state == DraftState.pending)
    return list(await session.scalars(query.order_by(UpdateDraft.created_at.desc(), UpdateDraft.id)))


async def pending_count(session: AsyncSession) -> dict[str, int]:
    """Pending drafts per incident (for the dashboard)."""
    rows = await session.execute(
        select(UpdateDraft.incident_id, func.count())
        .where(UpdateDraft.state == DraftState.pending)
        .group_by(UpdateDraft.incident_id)
    )
    return {incident_id: int(count) for incident_id, count in rows}


def _pending(draft: UpdateDraft) -> None:
    if draft.state != DraftState.pending:
        raise Conflict(f"this draft is already {draft.state}", field="draft_id")


async def _decide(session: AsyncSession, actor: Actor, draft: UpdateDraft, state: DraftState) -> None:
    """Move a pending draft to ``state``, once: a second approver who loaded it too gets a 409.

    The row's state is checked in the UPDATE itself; the draft object may have been loaded before
    someone else's decision committed (two approvers clicking at once), and on PostgreSQL the
    second UPDATE waits for the first transaction and then matches no row.
    """
    _pending(draft)
    now = utcnow()
    result = await session.execute(
        update(UpdateDraft)
        .where(UpdateDraft.id == draft.id, UpdateDraft.state == DraftState.pending)
        .values(state=state, decided_by_id=actor.user_id, decided_at=now)
        .execution_options(synchronize_session=False)
    )
    if getattr(result, "rowcount", 0) != 1:
        await session.refresh(draft)
        raise Conflict(f"this draft is already {draft.state}", field="draft_id")
    draft.state, draft.decided_by_id, draft.decided_at = state, actor.user_id, now


async def _approver(session: AsyncSession, actor: Actor, incident: Incident, verb: str) -> None:
    actor.require(Scope.write)
    if not await incidents.may_approve(session, actor, incident):
        raise Forbidden(f"only the Communications Lead of this incident or an admin may {verb} a draft")


async def approve(session: AsyncSession, actor: Actor, draft: UpdateDraft) -> IncidentUpdate:
    """Publish the draft as a public update, approved by the Communications Lead or an admin."""
    incident = await incidents.get_incident(session, draft.incident_id, kind=Kind.incident)
    await _approver(session, actor, incident, "approve")
    await _decide(session, actor, draft, DraftState.published)
    now = utcnow()
    promise = draft.next_update_at
    if promise is not None and promise <= now:
        # The time the author promised has passed while the draft waited: the cadence applies.
        promise = None
    row = await incidents.post_update(
        session,
        actor,
        incident,
        status=draft.status,
        body=draft.body,
        components=draft.components,
        next_update_at=promise,
        deliver_notifications=draft.deliver_notifications,
        approved_by_id=actor.user_id,
    )
    # The words are the author's; the approval is the approver's.
    row.author_id = draft.author_id
    draft.update_id = row.id
    author = await session.get(User, draft.author_id) if draft.author_id else None
    await incidents.timeline(
        session,
        incident,
        actor,
        "draft_approved",
        f"{actor.name} approved and published {author.name if author else 'a'}'s draft update",
        draft_id=draft.id,
        # Not "update_id": the timeline shows an event with one as the update itself.
        published_update_id=row.id,
    )
    return row


async def reject(session: AsyncSession, actor: Actor, draft: UpdateDraft, *, reason: str) -> UpdateDraft:
    """Turn the draft down; the reason is required and goes on the timeline."""
    incident = await incidents.get_incident(session, draft.incident_id, kind=Kind.incident)
    await _approver(session, actor, incident, "reject")
    reason = reason.strip()
    if not reason:
        raise InvalidInput("say why the draft is rejected", field="reason")
    if len(reason) > MAX_REASON:
        raise InvalidInput(f"reason must be at most {MAX_REASON} characters", field="reason")
    refuse_nul(reason, label="reason", field="reason")
    await _decide(session, actor, draft, DraftState.rejected)
    draft.reason = reason
    await incidents.timeline(
        session,
        incident,
        actor,
        "draft_rejected",
        f"{actor.name} rejected a draft update: {reason}",
        draft_id=draft.id,
        reason=reason,
    )
    return draft


async def withdraw(session: AsyncSession, actor: Actor, draft: UpdateDraft) -> UpdateDraft:
    """The author takes back a draft nobody has decided on yet."""
    actor.require(Scope.write)
    if draft.author_id != actor.user_id:
        raise Forbidden("only the author withdraws a draft")
    incident = await incidents.get_incident(session, draft.incident_id, kind=Kind.incident)
    await _decide(session, actor, draft, DraftState.withdrawn)
    await incidents.timeline(
        session, incident, actor, "draft_withdrawn", f"{actor.name} withdrew a draft update", draft_id=draft.id
    )
    return draft
