"""Tickets: receiving them from any source, matching them to incidents, linking, and answering in bulk.

A ticket arrives through :func:`receive` whatever its source (the API, inbound email, a helpdesk
webhook). It is matched against the open and recently resolved incidents; above
``CRISISDESK_MATCH_THRESHOLD`` it is linked to the best one, tagged ``incident-<number>`` and
answered with the incident's approved acknowledgement macro; below it the best incident is kept
as a suggestion for an agent; a ticket about an incident already resolved is answered with its
approved resolution macro and solved, or, without one, only suggested. Nothing here commits, the
caller owns the transaction, except :func:`store`: the webhooks and the support mail answer only
once their ticket is committed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from crisisdesk.auth.models import Scope
from crisisdesk.auth.service import Actor
from crisisdesk.config import Settings
from crisisdesk.customer.models import Account, AccountComponent, AccountContact, AccountDomain
from crisisdesk.incident import service as incidents
from crisisdesk.incident.models import Incident
from crisisdesk.kit import events
from crisisdesk.kit.db import Database, dialect_insert
from crisisdesk.kit.errors import Conflict, InvalidInput, NotFound
from crisisdesk.kit.time import utcnow
from crisisdesk.support import macros, tasks
from crisisdesk.support.checks import check_email, check_time
from crisisdesk.support.models import (
    LinkedBy,
    Macro,
    MacroKind,
    ReplyState,
    Ticket,
    TicketCounter,
    TicketReply,
    TicketSource,
    TicketStatus,
)

MAX_SUBJECT = 1000
MAX_BODY = 50_000
MAX_EXTERNAL_ID = 200
MAX_NAME = 300
# A candidate scoring at least this share of the threshold is offered to an agent; weaker ones are
# noise (every question would carry a suggestion during an incident).
SUGGEST_FRACTION = 0.5
# A helpdesk may send a ticket created a little "in the future" by its clock.
CLOCK_SKEW = timedelta(minutes=5)
# Resolve-all reads and answers linked tickets this many at a time.
BATCH = 500
TICKETS_TOPIC = "tickets"


def incident_tag(number: int) -> str:
    """The tag every ticket linked to incident ``number`` carries, here and in the helpdesk."""
    return f"incident-{number}"


def is_milestone(count: int) -> bool:
    """Linked-ticket counts worth a timeline event: the first, then 10, 100, 1,000 …

    One event per ticket would bury the timeline under a flood of thousands.
    """
    if count == 1:
        return True
    while count >= 10 and count % 10 == 0:
        count //= 10
    return count == 1


# ------------------------------------------------------------------------------ checks


def _clean(value: str | None, limit: int) -> str:
    """Text from outside as it can be stored: NUL (PostgreSQL refuses it) as U+FFFD, at most ``limit``."""
    text = (value or "").replace("\x00", "\ufffd").strip()
    return text[:limit]


def _optional(value: str | None, limit: int) -> str | None:
    return _clean(value, limit) or None


def parse_status(value: str, *, field: str = "status") -> TicketStatus:
    try:
        return TicketStatus(value)
    except ValueError:
        allowed = ", ".join(s.value for s in TicketStatus)
        raise InvalidInput(f"{value[:40]!r} is not a ticket status; use one of: {allowed}", field=field) from None


# ------------------------------------------------------------------------------ numbers and accounts


async def next_number(session: AsyncSession) -> int:
    """The next ticket number, without a race.

    The counter row stays locked until the transaction ends, so concurrent tickets take turns;
    the very first ticket creates the row, and a concurrent first waits for it and counts on.
    """
    bump = update(TicketCounter).where(TicketCounter.id == 1).values(value=TicketCounter.value + 1)
    value = (await session.execute(bump.returning(TicketCounter.value))).scalar()
    if value is None:
        insert = dialect_insert(session)
        await session.execute(insert(TicketCounter).values(id=1, value=0).on_conflict_do_nothing())
        value = (await session.execute(bump.returning(TicketCounter.value))).scalar()
    return int(value or 0)


async def find_account(
    session: AsyncSession,
    *,
    account_external_id: str | None = None,
    org_id: str | None = None,
    email: str | None = None,
) -> str | None:
    """The account a ticket comes from: by its external id, its helpdesk organisation, the
    requester's contact address, then the requester's allow-listed email domain. None is fine."""
    if account_external_id:
        found = await session.scalar(select(Account.id).where(Account.external_id == account_external_id))
        if found:
            return found
    if org_id:
        found = await session.scalar(
            select(Account.id).where(Account.helpdesk_org_id == org_id).order_by(Account.external_id).limit(1)
        )
        if found:
            return found
    if email:
        found = await session.scalar(
            select(AccountContact.account_id)
            .where(AccountContact.email == email)
            .order_by(AccountContact.account_id)
            .limit(1)
        )
        if found:
            return found
        domain = email.rpartition("@")[2]
        found = await session.scalar(select(AccountDomain.account_id).where(AccountDomain.domain == domain))
        if found:
            return found
    return None


async def account_components(session: AsyncSession, account_id: str | None) -> frozenset[str]:
    if account_id is None:
        return frozenset()
    rows = await session.scalars(select(AccountComponent.component_id).where(AccountComponent.account_id == account_id))
    return frozenset(rows)


async def find_existing(
    session: AsyncSession, *, source: TicketSource, helpdesk_id: str | None, external_id: str | None
) -> Ticket | None:
    """The ticket already stored under this key (a redelivered webhook, email or API call), if any."""
    if not external_id:
        return None
    query = select(Ticket).where(Ticket.external_id == external_id)
    if helpdesk_id is not None:
        query = query.where(Ticket.helpdesk_id == helpdesk_id)
    else:
        # Without a helpdesk the key is the source's own (an email's Message-ID, an API client's id).
        query = query.where(Ticket.helpdesk_id.is_(None), Ticket.source == source)
    return await session.scalar(query.limit(1))


# ------------------------------------------------------------------------------ receiving


@dataclass(frozen=True)
class Placement:
    """Where the matcher puts a new ticket: linked, suggested, or neither."""

    incident_id: str | None
    confidence: float | None
    reasons: dict[str, float]
    link: bool


async def place(
    session: AsyncSession,
    settings: Settings,
    *,
    subject: str,
    body: str,
    component_ids: frozenset[str],
    created_at: datetime,
) -> Placement:
    """Rank the candidate incidents for this text; the best decides link or suggestion."""
    # Imported here: scikit-learn loads with the first ticket, not with every command line.
    from crisisdesk.support import matching

    matcher = await matching.matcher_for(session, now=utcnow(), window_hours=settings.match_window_hours)
    ranked = matcher.rank(
        matching.TicketText(subject=subject, body=body, component_ids=component_ids, created_at=created_at)
    )
    if not ranked:
        return Placement(None, None, {}, False)
    best = ranked[0]
    confidence = round(float(best.confidence), 4)
    reasons = {str(k): round(float(v), 4) for k, v in best.reasons.items()}
    if confidence >= settings.match_threshold:
        return Placement(best.incident_id, confidence, reasons, True)
    if confidence >= settings.match_threshold * SUGGEST_FRACTION and confidence > 0:
        return Placement(best.incident_id, confidence, reasons, False)
    return Placement(None, confidence, reasons, False)


async def receive(
    session: AsyncSession,
    settings: Settings,
    *,
    source: TicketSource,
    subject: str,
    body: str,
    requester_email: str | None = None,
    requester_name: str | None = None,
    helpdesk_id: str | None = None,
    external_id: str | None = None,
    org_id: str | None = None,
    account_external_id: str | None = None,
    created_at: datetime | None = None,
) -> Ticket:
    """Store a new ticket, or return the one already stored under (helpdesk, external id).

    Resolves the account (unknown is fine), matches the ticket to an incident, links it and queues
    the acknowledgement when the match is confident, or keeps the incident as a suggestion.
    """
    source = TicketSource(source)
    external_id = _optional(external_id, MAX_EXTERNAL_ID)
    found = await find_existing(session, source=source, helpdesk_id=helpdesk_id, external_id=external_id)
    if found is not None:
        return found
    now = utcnow()
    subject = _clean(subject, MAX_SUBJECT)
    body = _clean(body, MAX_BODY)
    if not subject and not body:
        raise InvalidInput("a ticket needs a subject or a body", field="body")
    email = check_email(requester_email)
    moment = check_time(created_at, field="created_at") if created_at is not None else now
    if moment > now + CLOCK_SKEW:
        raise InvalidInput("created_at must not be in the future", field="created_at")
    account_id = await find_account(
        session,
        account_external_id=_optional(account_external_id, 200),
        org_id=_optional(org_id, 200),
        email=email,
    )
    # Reads and matching come before the first write: on SQLite the write lock is held from the
    # first write to the commit, and on PostgreSQL the counter row's lock is.
    placement = await place(
        session,
        settings,
        subject=subject,
        body=body,
        component_ids=await account_components(session, account_id),
        created_at=moment,
    )
    number = await next_number(session)
    # A concurrent delivery of the same ticket committed while this one waited for the counter.
    found = await find_existing(session, source=source, helpdesk_id=helpdesk_id, external_id=external_id)
    if found is not None:
        return found
    ticket = Ticket(
        number=number,
        source=source,
        helpdesk_id=helpdesk_id,
        external_id=external_id,
        account_id=account_id,
        requester_email=email,
        requester_name=_optional(requester_name, MAX_NAME),
        subject=subject,
        body=body,
        status=TicketStatus.open,
        tags=[],
        confidence=placement.confidence,
        match_reasons=placement.reasons,
        created_at=moment,
        updated_at=now,
    )
    session.add(ticket)
    await session.flush()
    events.record(session, TICKETS_TOPIC)
    if placement.incident_id is None:
        return ticket
    incident = await session.get(Incident, placement.incident_id)
    if incident is None:
        return ticket
    # A resolved incident's ticket gets the resolution, not "we are working on it"; without an
    # approved resolution macro an agent decides what to tell the customer.
    link = placement.link and (
        incident.is_open or await macros.approved(session, incident.id, MacroKind.resolution) is not None
    )
    if link:
        await _attach(session, settings, None, ticket, incident, by=LinkedBy.auto)
    else:
        ticket.suggested_incident_id = incident.id
        events.record(session, incidents.incident_topic(incident.id))
    return ticket


@dataclass(frozen=True)
class Stored:
    """What storing one incoming ticket (or a customer's answer on one) did."""

    ticket: Ticket
    new: bool  # a new ticket; False: stored before under the same key, or an answer added to it
    answer: bool = False  # the message was the customer's answer on this ticket


async def store(
    db: Database,
    settings: Settings,
    *,
    source: TicketSource,
    external_id: str,
    helpdesk_id: str | None = None,
    also: Callable[[AsyncSession], Awaitable[None]] | None = None,
    **fields: Any,
) -> Stored:
    """:func:`receive` in a transaction of its own, committed before this returns; once per key.

    A ticket already stored under (helpdesk, external id) is returned as it is; when a concurrent
    delivery of the same ticket commits first, the unique key refuses this one and that ticket
    is returned. ``also`` runs in the same transaction (a helpdesk's last delivery time).
    """
    key = _optional(external_id, MAX_EXTERNAL_ID)
    try:
        async with db.session() as session:
            found = await find_existing(session, source=source, helpdesk_id=helpdesk_id, external_id=key)
            if found is not None:
                stored = Stored(found, new=False)
            else:
                ticket = await receive(
                    session, settings, source=source, helpdesk_id=helpdesk_id, external_id=key, **fields
                )
                stored = Stored(ticket, new=True)
            if also is not None:
                await also(session)
    except IntegrityError:
        async with db.sessionmaker() as session:
            found = await find_existing(session, source=source, helpdesk_id=helpdesk_id, external_id=key)
        if found is None:
            raise
        return Stored(found, new=False)
    return stored


# ------------------------------------------------------------------------------ a customer's answer by email

MAX_REFERENCES = 20
# Replies of ours a Message-ID is looked for among: the sender's newest ones.
RECENT_REPLIES = 200


async def find_thread(session: AsyncSession, *, references: Sequence[str], sender: str | None) -> Ticket | None:
    """The ticket an email answers, from its In-Reply-To and References (newest last).

    A reference names a ticket by its thread id (in every answer we send), by the Message-ID of
    the email that made it, or by the Message-ID of one of our email answers to it. Only the
    requester, or someone of the same account, continues a ticket: anybody else's message
    (a stranger quoting the thread) becomes a ticket of its own.
    """
    refs = [" ".join(r.split()) for r in references if r and r.strip()][-MAX_REFERENCES:]
    if not refs or sender is None:
        return None
    by_ref: dict[str, str] = {}
    named = {ref: tid for ref in refs if (tid := tasks.ticket_id_in(ref))}
    if named:
        found = set(await session.scalars(select(Ticket.id).where(Ticket.id.in_(list(named.values())))))
        by_ref |= {ref: tid for ref, tid in named.items() if tid in found}
    rows = await session.execute(
        select(Ticket.external_id, Ticket.id).where(
            Ticket.helpdesk_id.is_(None), Ticket.source == TicketSource.email, Ticket.external_id.in_(refs)
        )
    )
    by_ref |= {str(external_id): ticket_id for external_id, ticket_id in rows}
    ours = {ref.strip("<>").partition("@")[0]: ref for ref in refs if ref.strip("<>").startswith("msg_")}
    if ours:
        # Our Message-IDs are digests, so they are worked out for the sender's own recent answers.
        sent = await session.execute(
            select(TicketReply.id, TicketReply.ticket_id)
            .join(Ticket, Ticket.id == TicketReply.ticket_id)
            .where(Ticket.requester_email == sender, TicketReply.via == tasks.VIA_EMAIL)
            .order_by(TicketReply.id.desc())
            .limit(RECENT_REPLIES)
        )
        for reply_id, ticket_id in sent:
            ref = ours.get(tasks.reply_message_id(reply_id, ticket_id))
            if ref is not None:
                by_ref.setdefault(ref, ticket_id)
    for ref in reversed(refs):
        ticket = await session.get(Ticket, by_ref[ref]) if ref in by_ref else None
        if ticket is not None and await _continues(session, ticket, sender):
            return ticket
    return None


async def _continues(session: AsyncSession, ticket: Ticket, sender: str) -> bool:
    if ticket.requester_email == sender:
        return True
    return ticket.account_id is not None and await find_account(session, email=sender) == ticket.account_id


async def add_answer(
    session: AsyncSession, ticket: Ticket, *, message_id: str, sender: str, text: str, sent_at: datetime | None
) -> bool:
    """Add the customer's answer to the ticket's text; False when this message was added before.

    A solved ticket is opened again: the customer's problem is not over. No acknowledgement is
    sent again, and the incident link stays.
    """
    marker = f"Message-ID {_clean(message_id, MAX_EXTERNAL_ID)}"
    if marker in ticket.body:
        return False
    now = utcnow()
    at = sent_at or now
    heading = f"\n\n--- Answer from {sender}, {at:%d %b %Y %H:%M} UTC, {marker} ---\n"
    words = _clean(text, MAX_BODY // 2) or "(no text)"
    ticket.body = ticket.body[: max(0, MAX_BODY - len(heading) - len(words))] + heading + words
    ticket.updated_at = now
    if ticket.status == TicketStatus.solved:
        ticket.status, ticket.solved_at = TicketStatus.open, None
    events.record(session, TICKETS_TOPIC)
    if ticket.incident_id is not None:
        events.record(session, incidents.incident_topic(ticket.incident_id))
    await session.flush()
    return True


# ------------------------------------------------------------------------------ linking


async def count_linked(session: AsyncSession, incident_id: str) -> int:
    """How many tickets are linked to the incident (solved ones included)."""
    return int(await session.scalar(select(func.count()).where(Ticket.incident_id == incident_id)) or 0)


async def count_suggested(session: AsyncSession, incident_id: str) -> int:
    """Tickets waiting for an agent to accept the incident suggested for them."""
    return int(
        await session.scalar(
            select(func.count()).where(Ticket.suggested_incident_id == incident_id, Ticket.incident_id.is_(None))
        )
        or 0
    )


async def _attach(
    session: AsyncSession,
    settings: Settings,
    actor: Actor | None,
    ticket: Ticket,
    incident: Incident,
    *,
    by: LinkedBy,
) -> None:
    now = utcnow()
    if ticket.incident_id is not None and ticket.incident_id != incident.id:
        await _detach(session, ticket)
    tag = incident_tag(incident.number)
    ticket.incident_id = incident.id
    ticket.linked_by = by
    ticket.linked_at = now
    ticket.suggested_incident_id = None
    ticket.updated_at = now
    if tag not in ticket.tags:
        ticket.tags = [*ticket.tags, tag]
    await session.flush()
    if ticket.status != TicketStatus.solved:
        if incident.is_open:
            ticket.status = TicketStatus.pending
            await acknowledge(session, settings, ticket, incident)
        else:
            await _answer_resolved(session, settings, ticket, incident)
    linked = await count_linked(session, incident.id)
    if is_milestone(linked):
        how = f"linked by {actor.name}" if actor is not None else "matched and linked"
        summary = (
            f"First support ticket {how}: #{ticket.number} “{ticket.subject[:120]}”"
            if linked == 1
            else f"{linked:,} support tickets linked"
        )
        await incidents.timeline(
            session, incident, actor, "tickets_linked", summary, count=linked, ticket_id=ticket.id, linked_by=by
        )
    events.record(session, incidents.incident_topic(incident.id), TICKETS_TOPIC)


async def _detach(session: AsyncSession, ticket: Ticket) -> None:
    old_id = ticket.incident_id
    if old_id is None:
        return
    number = await session.scalar(select(Incident.number).where(Incident.id == old_id))
    if number is not None:
        ticket.tags = [t for t in ticket.tags if t != incident_tag(number)]
    await tasks.cancel_pending(session, ticket_id=ticket.id, incident_id=old_id)
    events.record(session, incidents.incident_topic(old_id))
    ticket.incident_id = None
    ticket.linked_by = None
    ticket.linked_at = None


async def acknowledge(
    session: AsyncSession,
    settings: Settings,
    ticket: Ticket,
    incident: Incident,
    *,
    macro: Macro | None = None,
    values: dict[str, Any] | None = None,
) -> TicketReply | None:
    """Queue the incident's approved acknowledgement for this ticket, once per incident.

    Without an approved acknowledge macro nothing is sent (the incident's panel says so).
    """
    macro = macro or await macros.approved(session, incident.id, MacroKind.acknowledge)
    if macro is None or await _answered(session, ticket.id, incident.id, MacroKind.acknowledge):
        return None
    return await tasks.queue_reply(session, settings, ticket, incident, macro, solve=False, values=values)


async def _answer_resolved(session: AsyncSession, settings: Settings, ticket: Ticket, incident: Incident) -> None:
    """A ticket linked after its incident resolved: the approved resolution macro, and solved."""
    macro = await macros.approved(session, incident.id, MacroKind.resolution)
    if macro is None or await _answered(session, ticket.id, incident.id, MacroKind.resolution):
        return
    reply = await tasks.queue_reply(session, settings, ticket, incident, macro, solve=True)
    if reply is None or reply.state != ReplyState.failed:
        now = utcnow()
        ticket.status, ticket.solved_at, ticket.updated_at = TicketStatus.solved, now, now


def _counts() -> ColumnElement[bool]:
    """A reply that reached the customer or still may: not one that failed before going out
    (its macro could not be written, the ticket was unlinked first), which may be sent again."""
    return or_(TicketReply.state != ReplyState.failed, TicketReply.sent_at.is_not(None))


def _answered_tickets(incident_id: str, kind: MacroKind) -> Select[Any]:
    return select(TicketReply.ticket_id).where(
        TicketReply.incident_id == incident_id, TicketReply.kind == kind, _counts()
    )


async def _answered(session: AsyncSession, ticket_id: str, incident_id: str, kind: MacroKind) -> bool:
    found = await session.scalar(
        _answered_tickets(incident_id, kind).where(TicketReply.ticket_id == ticket_id).limit(1)
    )
    return found is not None


async def get_ticket(session: AsyncSession, ticket_id: str) -> Ticket:
    """One ticket by id (404 naming ``ticket_id``)."""
    ticket = await session.get(Ticket, ticket_id) if "\x00" not in ticket_id and len(ticket_id) <= 64 else None
    if ticket is None:
        raise NotFound(f"no ticket with id {ticket_id[:40]!r}", field="ticket_id")
    return ticket


async def link(session: AsyncSession, settings: Settings, actor: Actor, *, ticket_id: str, incident_id: str) -> Ticket:
    """An agent links a ticket to an incident (accepting the suggestion, or choosing another)."""
    actor.require(Scope.write)
    ticket = await get_ticket(session, ticket_id)
    incident = await macros.load_incident(session, incident_id)
    if ticket.incident_id == incident.id:
        return ticket
    await _attach(session, settings, actor, ticket, incident, by=LinkedBy.agent)
    return ticket


async def unlink(session: AsyncSession, actor: Actor, *, ticket_id: str) -> Ticket:
    """An agent takes a ticket off its incident; its tag goes, and an unsent acknowledgement is not sent."""
    actor.require(Scope.write)
    ticket = await get_ticket(session, ticket_id)
    if ticket.incident_id is None:
        raise Conflict("this ticket is not linked to an incident", field="ticket_id")
    await _detach(session, ticket)
    ticket.suggested_incident_id = None
    if ticket.status == TicketStatus.pending:
        ticket.status = TicketStatus.open
    ticket.updated_at = utcnow()
    events.record(session, TICKETS_TOPIC)
    await session.flush()
    return ticket


# ------------------------------------------------------------------------------ reading


def _filtered(
    query: Select[Any],
    *,
    incident_id: str | None,
    status: TicketStatus | None,
    suggested: bool | None,
    linked: bool | None,
) -> Select[Any]:
    if suggested:
        query = query.where(Ticket.suggested_incident_id.is_not(None), Ticket.incident_id.is_(None))
        if incident_id:
            query = query.where(Ticket.suggested_incident_id == incident_id)
    else:
        if suggested is False:
            query = query.where(Ticket.suggested_incident_id.is_(None))
        if incident_id:
            query = query.where(Ticket.incident_id == incident_id)
    if linked is not None:
        query = query.where(Ticket.incident_id.is_not(None) if linked else Ticket.incident_id.is_(None))
    if status is not None:
        query = query.where(Ticket.status == status)
    return query


async def list_tickets(
    session: AsyncSession,
    *,
    incident_id: str | None = None,
    status: TicketStatus | None = None,
    suggested: bool | None = None,
    linked: bool | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[int, list[Ticket]]:
    """Tickets newest first, with how many match: linked to an incident, or (``suggested``) waiting
    for an agent to accept the incident suggested for them; ``linked`` keeps to linked (or unlinked) ones."""

    def filtered(query: Select[Any]) -> Select[Any]:
        return _filtered(query, incident_id=incident_id, status=status, suggested=suggested, linked=linked)

    total = await session.scalar(filtered(select(func.count()).select_from(Ticket)))
    rows = await session.scalars(
        filtered(select(Ticket)).order_by(Ticket.created_at.desc(), Ticket.number.desc()).limit(limit).offset(offset)
    )
    return int(total or 0), list(rows)


async def replies_of(session: AsyncSession, ticket_id: str) -> list[TicketReply]:
    """A ticket's replies, oldest first."""
    return list(
        await session.scalars(select(TicketReply).where(TicketReply.ticket_id == ticket_id).order_by(TicketReply.id))
    )


# ------------------------------------------------------------------------------ answering in bulk


@dataclass(frozen=True)
class BulkResult:
    """What a bulk answer did to the incident's linked tickets."""

    answered: int  # a reply was queued (for the resolution: and the ticket solved)
    replies: int  # replies queued (as answered; kept for the API's callers)
    skipped: int  # already solved, or already answered
    solved_without_reply: int = 0  # resolution: solved, but with neither a helpdesk nor an address to answer
    failed: int = 0  # the macro could not be written for the ticket: a failed reply says why, and it is left unsolved


async def _batches(session: AsyncSession, *conditions: ColumnElement[bool]) -> AsyncIterator[list[str]]:
    """Ids of the tickets meeting ``conditions``, :data:`BATCH` at a time by number (keyset: a ticket
    changed by the caller meanwhile is neither read twice nor skipped)."""
    after = -1
    while True:
        rows = (
            await session.execute(
                select(Ticket.id, Ticket.number)
                .where(*conditions, Ticket.number > after)
                .order_by(Ticket.number)
                .limit(BATCH)
            )
        ).all()
        if not rows:
            return
        after = rows[-1].number
        yield [row.id for row in rows]


async def _load(session: AsyncSession, ids: Sequence[str]) -> list[Ticket]:
    return list(
        await session.scalars(
            select(Ticket)
            .where(Ticket.id.in_(list(ids)))
            .order_by(Ticket.number)
            .execution_options(populate_existing=True)
        )
    )


def _plural(count: int, word: str) -> str:
    return f"{count:,} {word}{'' if count == 1 else 's'}"


async def resolve_all(session: AsyncSession, settings: Settings, actor: Actor, *, incident_id: str) -> BulkResult:
    """Send the approved resolution macro to every linked unsolved ticket and mark them solved.

    Refused (409) without an approved resolution macro. Tickets already solved, or already sent
    the resolution (one reopened by the customer's answer), are skipped, so a second click (or a
    concurrent one) answers nobody twice. A ticket the macro cannot be written for keeps its
    status and gets a failed reply saying why; the others are answered all the same.
    """
    actor.require(Scope.write)
    incident = await macros.load_incident(session, incident_id)
    macro = await macros.approved(session, incident.id, MacroKind.resolution)
    if macro is None:
        raise Conflict(
            "this incident has no approved resolution macro: write one and have it approved before answering "
            "its tickets",
            field="macro",
        )
    linked = await count_linked(session, incident.id)
    values = await macros.incident_values(session, incident)
    answered = without_reply = failed = 0
    unanswered = (
        Ticket.incident_id == incident.id,
        Ticket.status != TicketStatus.solved,
        Ticket.id.not_in(_answered_tickets(incident.id, MacroKind.resolution)),
    )
    async for ids in _batches(session, *unanswered):
        before = {
            row.id: row.status
            for row in await session.execute(select(Ticket.id, Ticket.status).where(Ticket.id.in_(ids)))
        }
        now = utcnow()
        # The status is checked in the UPDATE itself: a concurrent resolve-all that solved a ticket
        # first leaves it out here (PostgreSQL re-checks the row once the other commits).
        solved = list(
            await session.scalars(
                update(Ticket)
                .where(Ticket.id.in_(ids), Ticket.status != TicketStatus.solved)
                .values(status=TicketStatus.solved, solved_at=now, updated_at=now)
                .returning(Ticket.id)
                .execution_options(synchronize_session=False)
            )
        )
        for ticket in await _load(session, solved):
            reply = await tasks.queue_reply(session, settings, ticket, incident, macro, solve=True, values=values)
            if reply is None:
                without_reply += 1
            elif reply.state == ReplyState.failed:
                failed += 1
                ticket.status, ticket.solved_at = before[ticket.id], None
            else:
                answered += 1
        await session.flush()
    if answered or without_reply or failed:
        parts = [
            f"{actor.name} answered {_plural(answered, 'linked ticket')} with the resolution macro and marked "
            "them solved"
        ]
        if without_reply:
            parts.append(
                f"{_plural(without_reply, 'ticket')} with no helpdesk or address marked solved without a reply"
            )
        if failed:
            parts.append(f"the macro could not be written for {_plural(failed, 'ticket')}, left unsolved")
        await incidents.timeline(
            session,
            incident,
            actor,
            "tickets_resolved",
            "; ".join(parts),
            answered=answered,
            replies=answered,
            solved_without_reply=without_reply,
            failed=failed,
        )
    events.record(session, incidents.incident_topic(incident.id), TICKETS_TOPIC)
    return BulkResult(
        answered=answered,
        replies=answered,
        skipped=max(0, linked - answered - without_reply - failed),
        solved_without_reply=without_reply,
        failed=failed,
    )


async def acknowledge_all(session: AsyncSession, settings: Settings, actor: Actor, *, incident_id: str) -> BulkResult:
    """Send the approved acknowledgement to linked open tickets that have not had it (they were linked
    before the macro was approved, or its words could not be written for them before)."""
    actor.require(Scope.write)
    incident = await macros.load_incident(session, incident_id)
    macro = await macros.approved(session, incident.id, MacroKind.acknowledge)
    if macro is None:
        raise Conflict(
            "this incident has no approved acknowledge macro: write one and have it approved first", field="macro"
        )
    linked = await count_linked(session, incident.id)
    values = await macros.incident_values(session, incident)
    answered = failed = 0
    async for ids in _batches(session, Ticket.incident_id == incident.id, Ticket.status != TicketStatus.solved):
        for ticket in await _load(session, ids):
            reply = await acknowledge(session, settings, ticket, incident, macro=macro, values=values)
            if reply is None:
                continue  # answered before, or no way to reach the requester
            if reply.state == ReplyState.failed:
                failed += 1
                continue
            answered += 1
            ticket.status = TicketStatus.pending
        await session.flush()
    if answered:
        await incidents.timeline(
            session,
            incident,
            actor,
            "tickets_acknowledged",
            f"{actor.name} sent the acknowledgement to {_plural(answered, 'linked ticket')}",
            answered=answered,
        )
    events.record(session, incidents.incident_topic(incident.id), TICKETS_TOPIC)
    return BulkResult(answered=answered, replies=answered, skipped=max(0, linked - answered - failed), failed=failed)


async def unacknowledged_count(session: AsyncSession, incident_id: str) -> int:
    """Linked unsolved tickets that have had no acknowledgement for this incident (or only a failed one)."""
    return int(
        await session.scalar(
            select(func.count()).where(
                Ticket.incident_id == incident_id,
                Ticket.status != TicketStatus.solved,
                Ticket.id.not_in(_answered_tickets(incident_id, MacroKind.acknowledge)),
            )
        )
        or 0
    )
