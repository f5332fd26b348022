"""The agent brief: one page per incident for the support team, assembled from what others record.

Four parts, each read on its own so the console refreshes one without the others:

- ``known``: the incident (name, status, severity, started, the next update promised), the
  components it affects directly and through dependencies, and its impact (accounts and ARR
  by tier, the largest accounts);
- ``talking``: what an agent may say: the latest *public* update and the approved macros,
  rendered; never an internal note;
- ``guidance``: the current workaround (and since when it says what it says) and the ETA with
  every estimate before it;
- ``tickets``: how many tickets are linked and how many suggest this incident, the open ones
  to escalate, and the escalations so far (flagged while unanswered).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from crisisdesk.auth.models import User
from crisisdesk.customer import impact
from crisisdesk.customer.impact import ImpactSummary
from crisisdesk.incident import guidance as guidance_service
from crisisdesk.incident import service as incidents
from crisisdesk.incident.models import (
    EtaEstimate,
    Incident,
    IncidentUpdate,
    Kind,
    Visibility,
    Workaround,
)
from crisisdesk.support import escalation, macros, tickets
from crisisdesk.support.escalation import EscalationView
from crisisdesk.support.models import Macro, Ticket, TicketStatus

PARTS = ("known", "talking", "guidance", "tickets")
TOP_ACCOUNTS = 5
OPEN_TICKETS = 10


def topics(incident_id: str) -> list[str]:
    """The change topics the brief refreshes on: everything about the incident lands on its topic
    (updates, roles, guidance, escalations and pages on the timeline; tickets linked to it)."""
    return [incidents.incident_topic(incident_id)]


@dataclass(frozen=True)
class Known:
    incident: Incident
    commander: str | None  # the Incident Commander's name
    impact: ImpactSummary  # its components: those the incident affects, with dependencies


@dataclass(frozen=True)
class ApprovedMacro:
    """An approved macro rendered for the incident, as an agent copies it."""

    macro: Macro
    subject: str
    body: str


@dataclass(frozen=True)
class Talking:
    latest_update: IncidentUpdate | None  # the newest public update
    macros: list[ApprovedMacro]


@dataclass(frozen=True)
class Guidance:
    workaround: Workaround | None
    workaround_since: datetime | None  # when the current words were first written
    eta: EtaEstimate | None
    etas: list[EtaEstimate]  # every estimate, newest first; eta_at None is a withdrawal


@dataclass(frozen=True)
class Tickets:
    linked: int
    suggested: int  # tickets below the threshold whose best candidate is this incident
    open_tickets: list[Ticket]  # the newest open tickets linked to it or suggesting it
    escalations: list[EscalationView]
    has_commander: bool

    @property
    def unreached(self) -> list[EscalationView]:
        """Escalations that paged nobody, while the incident still has no commander: the brief flags them."""
        if self.has_commander:
            return []
        return [e for e in self.escalations if e.outcome == escalation.Outcome.nobody]


@dataclass(frozen=True)
class Brief:
    known: Known
    talking: Talking
    guidance: Guidance
    tickets: Tickets

    @property
    def incident(self) -> Incident:
        return self.known.incident


async def load_incident(session: AsyncSession, incident_id: str) -> Incident:
    """The incident a brief is about (404 for a maintenance or an unknown id)."""
    return await incidents.get_incident(session, incident_id, kind=Kind.incident)


async def known(session: AsyncSession, incident: Incident) -> Known:
    """What is known: the incident, its commander, the components and accounts it affects."""
    commander = await escalation.commander_of(session, incident.id)
    summary = await impact.summarize(session, incident.id, top=TOP_ACCOUNTS)
    return Known(incident=incident, commander=commander.name if commander else None, impact=summary)


def latest_public_update(incident: Incident) -> IncidentUpdate | None:
    public = [u for u in incident.updates if u.visibility == Visibility.public]
    return max(public, key=lambda u: (u.created_at, u.id), default=None)


async def talking(session: AsyncSession, incident: Incident, *, time_zone: str = "Etc/UTC") -> Talking:
    """Customer-safe words: the latest public update and the approved macros, rendered (times in ``time_zone``)."""
    rendered = []
    for macro in await macros.approved_macros(session, incident.id):
        subject, body = await macros.render_macro(session, macro, time_zone=time_zone)
        rendered.append(ApprovedMacro(macro=macro, subject=subject, body=body))
    return Talking(latest_update=latest_public_update(incident), macros=rendered)


async def guidance(session: AsyncSession, incident: Incident) -> Guidance:
    """The current workaround (and since when it says so) and the ETA with its history."""
    now = await guidance_service.current(session, incident.id)
    workarounds, etas = await guidance_service.history(session, incident.id)
    since = None
    if now.workaround is not None:
        # Publishing or unpublishing writes a new row with the same words: they date from the oldest.
        for row in workarounds:
            if row.body != now.workaround.body:
                break
            since = row.created_at
    return Guidance(workaround=now.workaround, workaround_since=since, eta=now.eta, etas=etas)


async def count_suggested(session: AsyncSession, incident_id: str) -> int:
    """Open tickets not linked to any incident whose best candidate is this one."""
    count = await session.scalar(
        select(func.count())
        .select_from(Ticket)
        .where(
            Ticket.suggested_incident_id == incident_id,
            Ticket.incident_id.is_(None),
            Ticket.status != TicketStatus.solved,
        )
    )
    return int(count or 0)


async def open_tickets(session: AsyncSession, incident_id: str, *, limit: int = OPEN_TICKETS) -> list[Ticket]:
    """The newest open tickets linked to the incident or suggesting it."""
    return list(
        await session.scalars(
            select(Ticket)
            .where(
                or_(
                    Ticket.incident_id == incident_id,
                    (Ticket.suggested_incident_id == incident_id) & Ticket.incident_id.is_(None),
                ),
                Ticket.status != TicketStatus.solved,
            )
            .order_by(Ticket.created_at.desc(), Ticket.number.desc())
            .limit(limit)
        )
    )


async def ticket_part(session: AsyncSession, incident: Incident) -> Tickets:
    """Linked and suggested counts, the open tickets, and the escalations."""
    return Tickets(
        linked=await tickets.count_linked(session, incident.id),
        suggested=await count_suggested(session, incident.id),
        open_tickets=await open_tickets(session, incident.id),
        escalations=await escalation.recent_escalations(session, incident.id),
        has_commander=await escalation.commander_of(session, incident.id) is not None,
    )


async def assemble(session: AsyncSession, incident_id: str, *, time_zone: str = "Etc/UTC") -> Brief:
    """The whole brief of one incident."""
    incident = await load_incident(session, incident_id)
    return Brief(
        known=await known(session, incident),
        talking=await talking(session, incident, time_zone=time_zone),
        guidance=await guidance(session, incident),
        tickets=await ticket_part(session, incident),
    )


async def user_names(session: AsyncSession, ids: set[str]) -> dict[str, str]:
    """Names of the authors the brief shows."""
    ids.discard("")
    if not ids:
        return {}
    rows = await session.execute(select(User.id, User.name).where(User.id.in_(ids)))
    return {user_id: name for user_id, name in rows}
