"""Message templates and update drafts awaiting approval."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from crisisdesk.kit.db import Base
from crisisdesk.kit.ids import new_id
from crisisdesk.kit.time import utcnow


class MessageTemplate(Base):
    """A pre-approved message for one crisis scenario and phase, with a variant per channel.

    ``variables`` declares what the template may use, each as ``{"name", "type", "label",
    "required"}``; a template that reaches beyond them fails to save.
    """

    __tablename__ = "message_template"
    __table_args__ = (UniqueConstraint("scenario", "phase", name="uq_message_template_scenario_phase"),)

    id: Mapped[str] = mapped_column(String(24), primary_key=True, default=new_id)
    scenario: Mapped[str] = mapped_column(String(120))
    phase: Mapped[str] = mapped_column(String(20))  # investigating, identified, monitoring, resolved, …
    title: Mapped[str] = mapped_column(String(300))  # the incident name it suggests
    variables: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    body: Mapped[str] = mapped_column(Text)  # the status page update (Markdown)
    email_subject: Mapped[str] = mapped_column(Text, default="")
    email_html: Mapped[str] = mapped_column(Text, default="")
    email_text: Mapped[str] = mapped_column(Text, default="")
    sms: Mapped[str] = mapped_column(Text, default="")
    slack: Mapped[str] = mapped_column(Text, default="")
    teams: Mapped[str] = mapped_column(Text, default="")
    social: Mapped[str] = mapped_column(Text, default="")
    approved_at: Mapped[datetime | None]
    approved_by_id: Mapped[str | None] = mapped_column(ForeignKey("user_account.id", ondelete="SET NULL"))
    created_by_id: Mapped[str | None] = mapped_column(ForeignKey("user_account.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    archived_at: Mapped[datetime | None]


class DraftState(StrEnum):
    pending = "pending"
    published = "published"  # approved and posted
    rejected = "rejected"
    withdrawn = "withdrawn"


class UpdateDraft(Base):
    """A public update waiting for the Communications Lead's or an admin's approval."""

    __tablename__ = "update_draft"
    __table_args__ = (Index("ix_update_draft_incident_state", "incident_id", "state"),)

    id: Mapped[str] = mapped_column(String(24), primary_key=True, default=new_id)
    incident_id: Mapped[str] = mapped_column(ForeignKey("incident.id", ondelete="CASCADE"))
    state: Mapped[DraftState] = mapped_column(String(20), default=DraftState.pending)
    status: Mapped[str] = mapped_column(String(20))  # the incident status the update sets
    body: Mapped[str] = mapped_column(Text)
    components: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # component id -> status
    next_update_at: Mapped[datetime | None]
    deliver_notifications: Mapped[bool] = mapped_column(default=True)
    author_id: Mapped[str | None] = mapped_column(ForeignKey("user_account.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    decided_by_id: Mapped[str | None] = mapped_column(ForeignKey("user_account.id", ondelete="SET NULL"))
    decided_at: Mapped[datetime | None]
    reason: Mapped[str | None] = mapped_column(Text)
    update_id: Mapped[str | None] = mapped_column(ForeignKey("incident_update.id", ondelete="SET NULL"))
