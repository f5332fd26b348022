"""Tickets, the helpdesks they come from, replies to them, and each incident's macros."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Numeric, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from crisisdesk.kit.db import Base
from crisisdesk.kit.ids import new_id
from crisisdesk.kit.time import utcnow


class HelpdeskKind(StrEnum):
    zendesk = "zendesk"
    freshdesk = "freshdesk"
    intercom = "intercom"


class TicketSource(StrEnum):
    api = "api"
    email = "email"
    zendesk = "zendesk"
    freshdesk = "freshdesk"
    intercom = "intercom"


class TicketStatus(StrEnum):
    open = "open"
    pending = "pending"  # answered, waiting on the customer or the incident
    solved = "solved"


class LinkedBy(StrEnum):
    auto = "auto"  # matched above the threshold
    agent = "agent"  # an agent accepted a suggestion or linked it by hand


class MacroKind(StrEnum):
    acknowledge = "acknowledge"  # the first answer to a ticket linked to the incident
    resolution = "resolution"  # the answer sent to every linked ticket when it is resolved


class ReplyState(StrEnum):
    pending = "pending"
    sent = "sent"
    failed = "failed"


class Helpdesk(Base):
    """A connected Zendesk, Freshdesk or Intercom: where its webhooks come in and replies go out."""

    __tablename__ = "helpdesk"

    id: Mapped[str] = mapped_column(String(24), primary_key=True, default=new_id)
    kind: Mapped[HelpdeskKind] = mapped_column(String(20))
    name: Mapped[str] = mapped_column(String(200))
    # The webhook URL is /support/hooks/{token}; the token only routes, the signature authenticates.
    token: Mapped[str] = mapped_column(String(64), unique=True)
    signing_secret: Mapped[str] = mapped_column(String(200))
    api_base_url: Mapped[str] = mapped_column(String(2048))
    api_user: Mapped[str | None] = mapped_column(String(320))  # Zendesk agent email; unused elsewhere
    api_token: Mapped[str | None] = mapped_column(String(400))
    enabled: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_received_at: Mapped[datetime | None]


class Ticket(Base):
    """A customer's request, from the API, an email or a helpdesk, and the incident it belongs to."""

    __tablename__ = "ticket"
    __table_args__ = (
        UniqueConstraint("helpdesk_id", "external_id", name="uq_ticket_helpdesk_external"),
        Index("ix_ticket_incident_status", "incident_id", "status"),
        Index("ix_ticket_created_at", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(24), primary_key=True, default=new_id)
    number: Mapped[int] = mapped_column(unique=True)
    source: Mapped[TicketSource] = mapped_column(String(20))
    helpdesk_id: Mapped[str | None] = mapped_column(String(24), ForeignKey("helpdesk.id", ondelete="SET NULL"))
    external_id: Mapped[str | None] = mapped_column(String(200))  # the helpdesk's id, or the Message-ID
    account_id: Mapped[str | None] = mapped_column(
        String(24), ForeignKey("account.id", ondelete="SET NULL"), index=True
    )
    requester_email: Mapped[str | None] = mapped_column(String(320), index=True)  # an email answer finds its ticket
    requester_name: Mapped[str | None] = mapped_column(String(300))
    subject: Mapped[str] = mapped_column(String(1000), default="")
    body: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[TicketStatus] = mapped_column(String(10), default=TicketStatus.open)
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    # The incident it is linked to (above the threshold, or by an agent) …
    incident_id: Mapped[str | None] = mapped_column(String(24), ForeignKey("incident.id", ondelete="SET NULL"))
    linked_by: Mapped[LinkedBy | None] = mapped_column(String(10))
    linked_at: Mapped[datetime | None]
    # … or the best candidate below the threshold, offered to the agent.
    suggested_incident_id: Mapped[str | None] = mapped_column(
        ForeignKey("incident.id", ondelete="SET NULL"), index=True
    )
    confidence: Mapped[float | None] = mapped_column(Numeric(6, 4, asdecimal=False))
    match_reasons: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    solved_at: Mapped[datetime | None]


class TicketCounter(Base):
    """Hands out ticket numbers without a race (one row)."""

    __tablename__ = "ticket_counter"

    id: Mapped[int] = mapped_column(primary_key=True)
    value: Mapped[int] = mapped_column(default=0)


class Macro(Base):
    """An incident's approved reply to its tickets; only an approved macro is ever sent."""

    __tablename__ = "macro"
    __table_args__ = (UniqueConstraint("incident_id", "kind", name="uq_macro_incident_kind"),)

    id: Mapped[str] = mapped_column(String(24), primary_key=True, default=new_id)
    incident_id: Mapped[str] = mapped_column(String(24), ForeignKey("incident.id", ondelete="CASCADE"))
    kind: Mapped[MacroKind] = mapped_column(String(20))
    subject: Mapped[str] = mapped_column(String(300), default="")
    body: Mapped[str] = mapped_column(Text)  # a template: {{ incident.name }}, {{ workaround }}, {{ eta }} …
    approved_at: Mapped[datetime | None]
    approved_by_id: Mapped[str | None] = mapped_column(String(24), ForeignKey("user_account.id", ondelete="SET NULL"))
    created_by_id: Mapped[str | None] = mapped_column(String(24), ForeignKey("user_account.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class TicketReply(Base):
    """One answer sent to a ticket: through its helpdesk's API, or by email through the ledger."""

    __tablename__ = "ticket_reply"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    ticket_id: Mapped[str] = mapped_column(String(24), ForeignKey("ticket.id", ondelete="CASCADE"), index=True)
    incident_id: Mapped[str | None] = mapped_column(String(24), ForeignKey("incident.id", ondelete="SET NULL"))
    macro_id: Mapped[str | None] = mapped_column(String(24), ForeignKey("macro.id", ondelete="SET NULL"))
    kind: Mapped[str] = mapped_column(String(20))  # acknowledge, resolution
    body: Mapped[str] = mapped_column(Text)
    solve: Mapped[bool] = mapped_column(default=False)  # mark the ticket solved in the helpdesk too
    via: Mapped[str] = mapped_column(String(10))  # "helpdesk" or "email"
    delivery_id: Mapped[int | None] = mapped_column(ForeignKey("delivery.id", ondelete="SET NULL"))
    state: Mapped[ReplyState] = mapped_column(String(10), default=ReplyState.pending)
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]


class TicketEscalation(Base):
    """An agent's one-click escalation of a ticket to the incident commander."""

    __tablename__ = "ticket_escalation"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    ticket_id: Mapped[str] = mapped_column(String(24), ForeignKey("ticket.id", ondelete="CASCADE"), index=True)
    incident_id: Mapped[str | None] = mapped_column(
        String(24), ForeignKey("incident.id", ondelete="CASCADE"), index=True
    )
    actor_id: Mapped[str | None] = mapped_column(String(24), ForeignKey("user_account.id", ondelete="SET NULL"))
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
