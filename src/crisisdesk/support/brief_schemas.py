"""API shapes of the agent brief and of escalating a ticket to the Incident Commander."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from crisisdesk.incident.schemas import EtaRead, WorkaroundRead
from crisisdesk.support.brief import Brief
from crisisdesk.support.escalation import MAX_NOTE, Escalated


class BriefIncidentRead(BaseModel):
    """The incident the brief is about."""

    id: str = Field(description="Incident id.")
    number: int = Field(description="Its number (INC-<number>).")
    name: str = Field(description="Its public name.")
    status: str = Field(description="investigating, identified, monitoring, resolved or postmortem.")
    severity: str | None = Field(description="SEV1 to SEV4.")
    started_at: datetime = Field(description="When the problem started.")
    created_at: datetime = Field(description="When it was declared.")
    resolved_at: datetime | None = Field(description="When it was resolved; empty while open.")
    last_public_update_at: datetime | None = Field(description="When the last public update went out.")
    next_update_at: datetime | None = Field(description="When the next public update is promised.")
    commander: str | None = Field(description="The Incident Commander's name; empty while nobody holds the role.")


class BriefComponentRead(BaseModel):
    """A component the incident affects, directly or through a dependency."""

    model_config = ConfigDict(from_attributes=True)

    component_id: str = Field(description="Component id.")
    name: str = Field(description="Its name.")
    status: str = Field(description="The status the incident gives it (or the component it depends on).")
    via_id: str | None = Field(description="The incident's component it is affected through; empty when listed.")
    region_code: str | None = Field(description="The region it runs in, if any.")
    since: datetime = Field(description="Since when it is affected.")


class BriefTierRead(BaseModel):
    """Affected accounts of one tier."""

    model_config = ConfigDict(from_attributes=True)

    tier: str | None = Field(description="The tier; empty for accounts without one.")
    account_count: int = Field(description="How many accounts of this tier are affected.")
    arr_cents: int = Field(description="Their ARR, in cents.")


class BriefAccountRead(BaseModel):
    """One of the largest affected accounts."""

    model_config = ConfigDict(from_attributes=True)

    account_id: str = Field(description="Account id.")
    name: str = Field(description="Account name.")
    tier: str | None = Field(description="Its tier.")
    arr_cents: int = Field(description="Its ARR, in cents.")


class BriefImpactRead(BaseModel):
    """Who is hurt: affected accounts and ARR, by tier, and the largest accounts."""

    account_count: int = Field(description="Affected accounts.")
    arr_cents: int = Field(description="Their ARR, in cents.")
    arr_percent: float = Field(description="Their share of all ARR, in percent.")
    by_tier: list[BriefTierRead] = Field(description="Affected accounts and ARR by tier.")
    top: list[BriefAccountRead] = Field(description="The largest affected accounts by ARR.")


class BriefUpdateRead(BaseModel):
    """The latest public update: words customers have already been told."""

    model_config = ConfigDict(from_attributes=True)

    id: str = Field(description="Update id.")
    status: str = Field(description="The status it set.")
    body: str = Field(description="The message (Markdown).")
    body_html: str = Field(description="The message as sanitised HTML.")
    created_at: datetime = Field(description="When it was published.")


class BriefMacroRead(BaseModel):
    """An approved macro, rendered for this incident."""

    id: str = Field(description="Macro id.")
    kind: str = Field(description="acknowledge (first answer) or resolution (when the incident is resolved).")
    subject: str = Field(description="The subject, rendered.")
    body: str = Field(description="The text an agent copies, rendered.")
    approved_at: datetime | None = Field(description="When it was approved.")


class BriefTicketRead(BaseModel):
    """An open ticket linked to the incident or suggesting it."""

    model_config = ConfigDict(from_attributes=True)

    id: str = Field(description="Ticket id.")
    number: int = Field(description="Its number (#<number>).")
    subject: str = Field(description="Its subject.")
    status: str = Field(description="open or pending.")
    account_id: str | None = Field(description="The account it came from, if known.")
    incident_id: str | None = Field(description="The incident it is linked to; empty while only suggested.")
    confidence: float | None = Field(description="How sure the match is, 0 to 1.")
    created_at: datetime = Field(description="When it arrived.")


class BriefEscalationRead(BaseModel):
    """A ticket escalated to the Incident Commander, and whether anybody answered."""

    id: int = Field(description="Escalation id.")
    ticket_id: str = Field(description="The ticket.")
    ticket_number: int | None = Field(description="Its number.")
    note: str = Field(description="What the agent wrote.")
    actor_name: str | None = Field(description="Who escalated it.")
    created_at: datetime = Field(description="When.")
    outcome: str = Field(description="paged_commander, paged_policy, already_paged or nobody.")
    target: str | None = Field(description="Whom it paged, in words.")
    page_id: str | None = Field(description="The page it started or joined.")
    page_status: str | None = Field(description="triggered, acknowledged or resolved.")
    unanswered: bool = Field(description="Nobody was paged, or the page is not acknowledged yet.")


class BriefTicketsRead(BaseModel):
    """Tickets about the incident."""

    linked: int = Field(description="Tickets linked to the incident.")
    suggested: int = Field(description="Open tickets linked to no incident whose best candidate is this one.")
    open: list[BriefTicketRead] = Field(description="The newest open tickets linked or suggested, newest first.")
    escalations: list[BriefEscalationRead] = Field(description="Escalations to the commander, newest first.")


class BriefRead(BaseModel):
    """The agent brief: what is known, customer-safe words, workaround, ETA and its history, tickets."""

    incident: BriefIncidentRead = Field(description="The incident.")
    components: list[BriefComponentRead] = Field(description="Affected components, with those through dependencies.")
    impact: BriefImpactRead = Field(description="Affected accounts and ARR.")
    latest_update: BriefUpdateRead | None = Field(description="The latest public update; never an internal note.")
    macros: list[BriefMacroRead] = Field(description="Approved macros, rendered for the incident.")
    workaround: WorkaroundRead | None = Field(description="The current workaround (published or not).")
    workaround_since: datetime | None = Field(description="Since when the workaround says what it says.")
    eta: EtaRead | None = Field(description="The current ETA (published or not).")
    etas: list[EtaRead] = Field(description="Every estimate, newest first; no eta_at is a withdrawal.")
    tickets: BriefTicketsRead = Field(description="Linked and suggested tickets and escalations.")

    @classmethod
    def of(cls, brief: Brief) -> BriefRead:
        incident = brief.incident
        summary = brief.known.impact
        latest = brief.talking.latest_update
        return cls(
            incident=BriefIncidentRead(
                id=incident.id,
                number=incident.number,
                name=incident.name,
                status=incident.status,
                severity=incident.severity,
                started_at=incident.started_at,
                created_at=incident.created_at,
                resolved_at=incident.resolved_at,
                last_public_update_at=incident.last_public_update_at,
                next_update_at=incident.next_update_at,
                commander=brief.known.commander,
            ),
            components=[BriefComponentRead.model_validate(c) for c in summary.components],
            impact=BriefImpactRead(
                account_count=summary.account_count,
                arr_cents=summary.arr_cents,
                arr_percent=summary.arr_percent,
                by_tier=[BriefTierRead.model_validate(t) for t in summary.by_tier],
                top=[BriefAccountRead.model_validate(a) for a in summary.top],
            ),
            latest_update=BriefUpdateRead.model_validate(latest) if latest is not None else None,
            macros=[
                BriefMacroRead(
                    id=m.macro.id, kind=m.macro.kind, subject=m.subject, body=m.body, approved_at=m.macro.approved_at
                )
                for m in brief.talking.macros
            ],
            workaround=WorkaroundRead.model_validate(brief.guidance.workaround) if brief.guidance.workaround else None,
            workaround_since=brief.guidance.workaround_since,
            eta=EtaRead.model_validate(brief.guidance.eta) if brief.guidance.eta else None,
            etas=[EtaRead.model_validate(e) for e in brief.guidance.etas],
            tickets=BriefTicketsRead(
                linked=brief.tickets.linked,
                suggested=brief.tickets.suggested,
                open=[BriefTicketRead.model_validate(t) for t in brief.tickets.open_tickets],
                escalations=[
                    BriefEscalationRead(
                        id=e.escalation.id,
                        ticket_id=e.escalation.ticket_id,
                        ticket_number=e.ticket_number,
                        note=e.escalation.note,
                        actor_name=e.actor_name,
                        created_at=e.escalation.created_at,
                        outcome=e.outcome,
                        target=e.target,
                        page_id=e.page.id if e.page is not None else None,
                        page_status=str(e.page.status) if e.page is not None else None,
                        unanswered=e.unanswered,
                    )
                    for e in brief.tickets.escalations
                ],
            ),
        )


class TicketEscalationCreate(BaseModel):
    """Escalate a ticket to the Incident Commander of its incident."""

    model_config = ConfigDict(extra="forbid")

    note: str = Field(
        default="", max_length=MAX_NOTE, description="What the commander should know (at most 2000 characters)."
    )


class TicketEscalationRead(BaseModel):
    """An escalation, and whom it paged."""

    id: int = Field(description="Escalation id.")
    ticket_id: str = Field(description="The ticket.")
    ticket_number: int = Field(description="Its number.")
    incident_id: str = Field(description="The incident it was escalated on (linked, or else suggested).")
    incident_number: int = Field(description="Its number.")
    note: str = Field(description="The note.")
    actor_id: str | None = Field(description="Who escalated it.")
    created_at: datetime = Field(description="When.")
    outcome: str = Field(
        description="paged_commander (the Incident Commander was paged), paged_policy (no commander: the severity's "
        "paging policy was paged), already_paged (another escalation paged somebody less than a minute ago) or "
        "nobody (no commander and no paging policy: the brief flags it)."
    )
    target: str | None = Field(description="Whom it paged, in words.")
    page_id: str | None = Field(description="The page it started (or, already_paged, the page started before).")
    repeated: bool = Field(description="True when the same ticket was escalated less than a minute ago: nothing new.")

    @classmethod
    def of(cls, done: Escalated) -> TicketEscalationRead:
        row = done.escalation
        return cls(
            id=row.id,
            ticket_id=done.ticket.id,
            ticket_number=done.ticket.number,
            incident_id=done.incident.id,
            incident_number=done.incident.number,
            note=row.note,
            actor_id=row.actor_id,
            created_at=row.created_at,
            outcome=done.outcome,
            target=done.target,
            page_id=done.page_id,
            repeated=done.repeated,
        )
