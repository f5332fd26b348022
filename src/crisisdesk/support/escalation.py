"""Escalating a ticket to the Incident Commander: one click from the agent brief or the tickets list.

An escalation is a :class:`TicketEscalation` row, a timeline event on the incident ("Ticket #12
escalated by Ana: …") and a high-urgency page:

- to the user holding the Incident Commander role, directly, by their notification rules
  (``oncall.paging.page_user``: notified again once after five minutes if nobody acknowledges);
- with no Incident Commander, on the escalation policy the severity's paging grid names (the
  row that fills the Incident Commander role first, else the first row), as declaring does;
- with neither, nobody is paged: a second timeline event says so and the brief flags the
  escalation until somebody takes the role.

A ticket not linked to an incident is escalated to its suggested incident; with neither, 409.
Clicking again on the same ticket within a minute returns the first escalation, and while an
escalation of the same incident paged somebody less than a minute ago, another ticket's
escalation is recorded without a second page: a burst of agents clicking on the same outage
wakes the commander once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crisisdesk.auth.models import Scope, User
from crisisdesk.auth.service import Actor
from crisisdesk.incident import service as incidents
from crisisdesk.incident.models import Incident, IncidentRole, Kind, RoleAssignment, TimelineEvent
from crisisdesk.kit.errors import Conflict, InvalidInput, NotFound
from crisisdesk.kit.time import utcnow
from crisisdesk.oncall import paging
from crisisdesk.oncall.models import EscalationPolicy, Page, SeverityPaging, Urgency
from crisisdesk.support import tickets
from crisisdesk.support.models import Ticket, TicketEscalation

WINDOW = timedelta(minutes=1)
MAX_NOTE = 2000
KIND = "ticket_escalated"
UNREACHED_KIND = "ticket_escalation_unreached"


class Outcome:
    """What an escalation did, as stored on its timeline event."""

    commander = "paged_commander"  # the Incident Commander was paged directly
    policy = "paged_policy"  # no commander: the severity's paging policy was paged
    already = "already_paged"  # another escalation paged somebody less than a minute ago
    nobody = "nobody"  # no commander and no paging policy: flagged on the brief


@dataclass(frozen=True)
class Escalated:
    """One escalation and what it set off."""

    escalation: TicketEscalation
    ticket: Ticket
    incident: Incident
    outcome: str
    page_id: str | None  # the page started for it (or, already_paged, the one started before)
    target: str | None  # whom it paged, in words
    repeated: bool  # a second click within the minute: nothing new was done


def check_note(note: str | None) -> str:
    note = (note or "").strip()
    if "\x00" in note:
        raise InvalidInput("the note must not contain a NUL character", field="note")
    if len(note) > MAX_NOTE:
        raise InvalidInput(f"the note is {len(note)} characters; at most {MAX_NOTE} are allowed", field="note")
    return note


async def commander_of(session: AsyncSession, incident_id: str) -> User | None:
    """The active user holding the Incident Commander role now, if any."""
    user_id = await session.scalar(
        select(RoleAssignment.user_id).where(
            RoleAssignment.incident_id == incident_id,
            RoleAssignment.role == IncidentRole.incident_commander,
            RoleAssignment.ended_at.is_(None),
        )
    )
    user = await session.get(User, user_id) if user_id else None
    return user if user is not None and user.is_active else None


async def paging_policy_for(session: AsyncSession, severity: str | None) -> EscalationPolicy | None:
    """The policy the severity's paging grid pages: the row filling the commander role first."""
    if not severity:
        return None
    rows = list(
        await session.scalars(
            select(SeverityPaging).where(SeverityPaging.severity == severity).order_by(SeverityPaging.id)
        )
    )
    rows.sort(key=lambda r: r.role != IncidentRole.incident_commander)
    for row in rows:
        policy = await session.get(EscalationPolicy, row.escalation_policy_id)
        if policy is not None:
            return policy
    return None


def _title(incident: Incident, ticket: Ticket, actor: Actor, note: str) -> str:
    about = note or ticket.subject or "no note"
    title = f"INC-{incident.number} ticket #{ticket.number} escalated by {actor.name}: {about}"
    return " ".join(title.split())[: paging.MAX_TITLE]


async def _recent_events(session: AsyncSession, incident_id: str, since: Any) -> list[TimelineEvent]:
    return list(
        await session.scalars(
            select(TimelineEvent)
            .where(TimelineEvent.incident_id == incident_id, TimelineEvent.kind == KIND, TimelineEvent.at >= since)
            .order_by(TimelineEvent.at.desc(), TimelineEvent.id.desc())
        )
    )


async def escalate(session: AsyncSession, actor: Actor, *, ticket_id: str, note: str = "") -> Escalated:
    """Escalate a ticket to its incident's commander (see the module for whom it pages)."""
    actor.require(Scope.write)
    note = check_note(note)
    ticket = await tickets.get_ticket(session, ticket_id)
    incident_id = ticket.incident_id or ticket.suggested_incident_id
    if incident_id is None:
        raise Conflict(
            f"ticket #{ticket.number} is linked to no incident and none is suggested for it: "
            "link it to an incident first, then escalate",
            field="incident_id",
        )
    # Locked, so two agents escalating the same incident at once take turns (PostgreSQL; SQLite
    # has one writer anyway): the second sees the first and does not page again.
    incident = await session.scalar(select(Incident).where(Incident.id == incident_id).with_for_update())
    if incident is None or incident.kind != Kind.incident:
        raise NotFound(f"no incident with id {incident_id!r}", field="incident_id")
    now = utcnow()
    recent = await _recent_events(session, incident.id, now - WINDOW)
    for event in recent:
        if event.data.get("ticket_id") == ticket.id:
            earlier = await session.get(TicketEscalation, event.data.get("escalation_id"))
            if earlier is not None:
                return Escalated(
                    escalation=earlier,
                    ticket=ticket,
                    incident=incident,
                    outcome=str(event.data.get("outcome")),
                    page_id=event.data.get("page_id"),
                    target=event.data.get("target"),
                    repeated=True,
                )
    row = TicketEscalation(
        ticket_id=ticket.id, incident_id=incident.id, actor_id=actor.user_id, note=note, created_at=now
    )
    session.add(row)
    await session.flush()

    paged = next((e for e in recent if e.data.get("page_id")), None)
    page: Page | None = None
    target: str | None = None
    if paged is not None:
        outcome, page_id, target = Outcome.already, paged.data.get("page_id"), paged.data.get("target")
    else:
        title = _title(incident, ticket, actor, note)
        commander = await commander_of(session, incident.id)
        policy = None if commander is not None else await paging_policy_for(session, incident.severity)
        if commander is not None:
            page = await paging.page_user(
                session,
                user_id=commander.id,
                title=title,
                urgency=Urgency.high,
                incident_id=incident.id,
                reason=f"Incident Commander of INC-{incident.number}",
                actor=actor,
            )
            outcome, target = Outcome.commander, f"{commander.name} (Incident Commander)"
        elif policy is not None:
            page = await paging.start_page(
                session,
                escalation_policy_id=policy.id,
                title=title,
                urgency=Urgency.high,
                incident_id=incident.id,
                actor=actor,
            )
            outcome, target = Outcome.policy, f"{policy.name} (no Incident Commander)"
        else:
            outcome = Outcome.nobody
        page_id = page.id if page is not None else None

    summary = f"Ticket #{ticket.number} escalated by {actor.name}" + (f": {note}" if note else "")
    await incidents.timeline(
        session,
        incident,
        actor,
        KIND,
        summary,
        ticket_id=ticket.id,
        ticket_number=ticket.number,
        escalation_id=row.id,
        note=note,
        outcome=outcome,
        page_id=page_id,
        target=target,
        linked=ticket.incident_id == incident.id,
    )
    if outcome == Outcome.nobody:
        await incidents.timeline(
            session,
            incident,
            None,
            UNREACHED_KIND,
            f"Nobody was paged for ticket #{ticket.number}: INC-{incident.number} has no Incident Commander "
            f"and {incident.severity or 'its severity'} pages no escalation policy",
            ticket_id=ticket.id,
            escalation_id=row.id,
        )
    return Escalated(
        escalation=row,
        ticket=ticket,
        incident=incident,
        outcome=outcome,
        page_id=page_id,
        target=target,
        repeated=False,
    )


@dataclass(frozen=True)
class EscalationView:
    """An escalation as the brief lists it: the ticket, who escalated, whom it paged, whether answered."""

    escalation: TicketEscalation
    ticket_number: int | None
    ticket_subject: str
    actor_name: str | None
    outcome: str
    target: str | None
    page: Page | None

    @property
    def unanswered(self) -> bool:
        """Nobody was paged, or the page is still waiting for an acknowledgement."""
        if self.outcome == Outcome.nobody:
            return True
        return self.page is not None and self.page.acknowledged_at is None and self.page.resolved_at is None


async def recent_escalations(session: AsyncSession, incident_id: str, *, limit: int = 20) -> list[EscalationView]:
    """The incident's escalations, newest first, with the page each started (or joined)."""
    rows = list(
        await session.execute(
            select(TicketEscalation, Ticket.number, Ticket.subject, User.name)
            .join(Ticket, Ticket.id == TicketEscalation.ticket_id)
            .outerjoin(User, User.id == TicketEscalation.actor_id)
            .where(TicketEscalation.incident_id == incident_id)
            .order_by(TicketEscalation.created_at.desc(), TicketEscalation.id.desc())
            .limit(limit)
        )
    )
    if not rows:
        return []
    events = await session.scalars(
        select(TimelineEvent).where(TimelineEvent.incident_id == incident_id, TimelineEvent.kind == KIND)
    )
    data = {e.data.get("escalation_id"): e.data for e in events}
    page_ids = {str(d["page_id"]) for d in data.values() if d.get("page_id")}
    pages = {p.id: p for p in await session.scalars(select(Page).where(Page.id.in_(page_ids)))} if page_ids else {}
    views = []
    for escalation, number, subject, actor_name in rows:
        details = data.get(escalation.id, {})
        page_id = details.get("page_id")
        views.append(
            EscalationView(
                escalation=escalation,
                ticket_number=number,
                ticket_subject=subject,
                actor_name=actor_name,
                outcome=str(details.get("outcome") or Outcome.nobody),
                target=details.get("target"),
                page=pages.get(str(page_id)) if page_id else None,
            )
        )
    return views
