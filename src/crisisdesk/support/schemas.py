"""API shapes for tickets, their replies, incident macros and bulk answers."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from crisisdesk.support.models import LinkedBy, MacroKind, Ticket, TicketSource, TicketStatus


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TicketCreate(_Input):
    """A ticket sent to crisisdesk through the API (by a contact form, a chat bot, another tool)."""

    subject: str = Field(default="", max_length=1000, description="The ticket's subject (subject or body required).")
    body: str = Field(default="", max_length=50_000, description="What the customer wrote.")
    requester_email: str | None = Field(
        default=None,
        max_length=320,
        description="The requester's email address: answers go there, and it finds "
        "the account by contact or email domain.",
    )
    requester_name: str | None = Field(default=None, max_length=300, description="The requester's name.")
    account_external_id: str | None = Field(
        default=None, max_length=200, description="The account's external id, when the sender knows it."
    )
    external_id: str | None = Field(
        default=None,
        max_length=200,
        description="Your id for this ticket: sending it again returns the ticket already stored (200) "
        "instead of a second one.",
    )
    created_at: datetime | None = Field(
        default=None, description="When the customer wrote it (ISO 8601 with offset); now if omitted."
    )


class TicketLink(_Input):
    """The incident an agent links the ticket to."""

    incident_id: str = Field(min_length=1, max_length=64, description="The incident's id.")


class ReplyRead(BaseModel):
    """One answer sent (or to be sent) to a ticket."""

    id: int = Field(description="Reply id.")
    kind: str = Field(description="acknowledge or resolution: the macro it was written from.")
    incident_id: str | None = Field(description="The incident whose macro it is.")
    via: str = Field(description="helpdesk (through its API) or email (through the delivery ledger).")
    state: str = Field(description="pending, sent or failed.")
    solve: bool = Field(description="Whether it marks the ticket solved in the helpdesk too.")
    attempts: int = Field(description="Tries through the helpdesk's API so far.")
    last_error: str | None = Field(description="Why the last try failed, if it did.")
    delivery_id: int | None = Field(description="The email's delivery in the ledger (email replies).")
    body: str = Field(description="The words sent: the approved macro rendered for this ticket.")
    created_at: datetime = Field(description="When it was queued.")
    sent_at: datetime | None = Field(description="When the helpdesk took it (helpdesk replies).")


class TicketRead(BaseModel):
    """A customer's ticket and the incident it belongs to."""

    model_config = ConfigDict(from_attributes=True)

    id: str = Field(description="Ticket id.")
    number: int = Field(description="Ticket number, counting up from 1.")
    source: TicketSource = Field(description="api, email, zendesk, freshdesk or intercom.")
    helpdesk_id: str | None = Field(description="The helpdesk it came from.")
    external_id: str | None = Field(description="The helpdesk's ticket id, the email's Message-ID, or yours.")
    account_id: str | None = Field(description="The account it was found to come from; null when unknown.")
    requester_email: str | None = Field(description="The requester's address.")
    requester_name: str | None = Field(description="The requester's name.")
    subject: str = Field(description="Subject.")
    body: str = Field(description="What the customer wrote.")
    status: TicketStatus = Field(description="open, pending (answered, waiting on the incident) or solved.")
    tags: list[str] = Field(description="Tags; a linked ticket carries incident-<number>.")
    incident_id: str | None = Field(description="The incident it is linked to.")
    linked_by: LinkedBy | None = Field(description="auto (matched above the threshold) or agent.")
    linked_at: datetime | None = Field(description="When it was linked.")
    suggested_incident_id: str | None = Field(description="The incident suggested to an agent (below the threshold).")
    confidence: float | None = Field(description="The best match's confidence, 0 to 1.")
    match_reasons: dict[str, Any] = Field(description="What each signal contributed to the confidence.")
    created_at: datetime = Field(description="When the customer wrote it.")
    updated_at: datetime = Field(description="When crisisdesk last changed it.")
    solved_at: datetime | None = Field(description="When it was solved.")


class TicketDetailRead(TicketRead):
    """A ticket with its replies."""

    replies: list[ReplyRead] = Field(description="Replies, oldest first.")

    @classmethod
    def of(cls, ticket: Ticket, replies: list[ReplyRead]) -> TicketDetailRead:
        return cls.model_validate({**TicketRead.model_validate(ticket).model_dump(), "replies": replies})


class TicketPageRead(BaseModel):
    """A page of tickets, newest first."""

    total: int = Field(description="How many tickets match the filters.")
    items: list[TicketRead] = Field(description="This page's tickets.")


class MacroPut(_Input):
    """The words of an incident's macro: Jinja2 templates (see the variables in the description)."""

    subject: str = Field(default="", max_length=300, description="Subject (email replies use 'Re: <ticket subject>').")
    body: str = Field(
        min_length=1,
        max_length=10_000,
        description="Body. Variables: incident (name, number, reference, status), components, latest_update, "
        "workaround, eta, eta_note, ticket (number, subject, requester_name), requester_name.",
    )


class MacroApprove(_Input):
    """Approve the version of the macro you read."""

    updated_at: datetime | None = Field(
        default=None, description="The updated_at you read: if the macro changed since, 409 and nothing is approved."
    )


class MacroRead(BaseModel):
    """An incident's macro and whether it may be sent."""

    model_config = ConfigDict(from_attributes=True)

    id: str = Field(description="Macro id.")
    incident_id: str = Field(description="The incident.")
    kind: MacroKind = Field(description="acknowledge or resolution.")
    subject: str = Field(description="Subject template.")
    body: str = Field(description="Body template.")
    approved_at: datetime | None = Field(description="When it was approved; only an approved macro is sent.")
    approved_by_id: str | None = Field(description="Who approved it.")
    created_by_id: str | None = Field(description="Who wrote it first.")
    updated_at: datetime = Field(description="When its words last changed (send it back when approving).")
    preview_subject: str = Field(
        default="", description="The subject rendered with the requester left as a placeholder."
    )
    preview_body: str = Field(default="", description="The body rendered with the requester left as a placeholder.")


class BulkAnswerRead(BaseModel):
    """What a bulk answer did."""

    answered: int = Field(description="Tickets a reply was queued for now (for the resolution: and marked solved).")
    replies: int = Field(description="Replies queued (the same as answered).")
    skipped: int = Field(description="Tickets left alone: already solved, or already answered.")
    solved_without_reply: int = Field(
        default=0,
        description="Resolution: tickets marked solved with neither a helpdesk nor an address to answer them at.",
    )
    failed: int = Field(
        default=0,
        description="Tickets the macro could not be written for: each has a failed reply saying why, and a "
        "resolution leaves it unsolved.",
    )
