from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from crisisdesk.catalog.models import ComponentStatus
from crisisdesk.kit.db import Base
from crisisdesk.kit.ids import new_id
from crisisdesk.kit.time import utcnow


class Severity(StrEnum):
    SEV1 = "SEV1"
    SEV2 = "SEV2"
    SEV3 = "SEV3"
    SEV4 = "SEV4"


class IncidentStatus(StrEnum):
    investigating = "investigating"
    identified = "identified"
    monitoring = "monitoring"
    resolved = "resolved"
    postmortem = "postmortem"


class MaintenanceStatus(StrEnum):
    scheduled = "scheduled"
    in_progress = "in_progress"
    verifying = "verifying"
    completed = "completed"


class Impact(StrEnum):
    none = "none"
    minor = "minor"
    major = "major"
    critical = "critical"
    maintenance = "maintenance"


class Kind(StrEnum):
    incident = "incident"
    maintenance = "maintenance"


class IncidentRole(StrEnum):
    incident_commander = "incident_commander"
    communications_lead = "communications_lead"
    technical_lead = "technical_lead"
    support_lead = "support_lead"
    customer_liaison = "customer_liaison"
    scribe = "scribe"

    @property
    def label(self) -> str:
        return self.replace("_", " ").title()


class Visibility(StrEnum):
    public = "public"
    internal = "internal"


class SeverityPolicy(Base):
    """What a severity level means for the response; editable by admins."""

    __tablename__ = "severity_policy"

    severity: Mapped[Severity] = mapped_column(String(8), primary_key=True)
    label: Mapped[str] = mapped_column(String(60))
    description: Mapped[str] = mapped_column(Text, default="")
    impact: Mapped[Impact] = mapped_column(String(20))
    cadence_minutes: Mapped[int]
    required_roles: Mapped[list[str]] = mapped_column(JSON, default=list)
    postmortem_required: Mapped[bool] = mapped_column(default=False)
    # A public update written as free text (not from an approved template) needs the
    # Communications Lead's or an admin's approval.
    free_text_approval: Mapped[bool] = mapped_column(default=False, server_default=false())


class Incident(Base):
    """An incident, or a scheduled maintenance when ``kind`` is maintenance.

    Statuspage models both the same way (a maintenance is an incident with impact
    ``maintenance`` and a schedule), so they share updates, components and the timeline.
    """

    __tablename__ = "incident"
    __table_args__ = (Index("ix_incident_kind_status", "kind", "status"),)

    id: Mapped[str] = mapped_column(String(24), primary_key=True, default=new_id)
    number: Mapped[int] = mapped_column(unique=True)
    kind: Mapped[Kind] = mapped_column(String(20), default=Kind.incident)
    name: Mapped[str] = mapped_column(String(300))
    status: Mapped[str] = mapped_column(String(20))
    impact: Mapped[Impact] = mapped_column(String(20))
    severity: Mapped[Severity | None] = mapped_column(String(8))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    identified_at: Mapped[datetime | None]
    monitoring_at: Mapped[datetime | None]
    resolved_at: Mapped[datetime | None]
    last_public_update_at: Mapped[datetime | None]
    next_update_at: Mapped[datetime | None]
    postmortem_body: Mapped[str | None] = mapped_column(Text)
    postmortem_html: Mapped[str | None] = mapped_column(Text)
    postmortem_updated_at: Mapped[datetime | None]
    postmortem_published_at: Mapped[datetime | None]
    scheduled_for: Mapped[datetime | None]
    scheduled_until: Mapped[datetime | None]
    auto_transition: Mapped[bool] = mapped_column(default=True)
    cancelled_at: Mapped[datetime | None]
    created_by_id: Mapped[str | None] = mapped_column(String(24), ForeignKey("user_account.id", ondelete="SET NULL"))

    updates: Mapped[list[IncidentUpdate]] = relationship(
        back_populates="incident", lazy="raise", order_by="IncidentUpdate.created_at.desc()"
    )
    components: Mapped[list[IncidentComponent]] = relationship(lazy="raise")
    roles: Mapped[list[RoleAssignment]] = relationship(lazy="raise")

    @property
    def is_open(self) -> bool:
        return self.status not in (IncidentStatus.resolved, IncidentStatus.postmortem, MaintenanceStatus.completed)


class IncidentComponent(Base):
    """A component the incident affects, and the status the incident last set on it."""

    __tablename__ = "incident_component"

    incident_id: Mapped[str] = mapped_column(
        String(24), ForeignKey("incident.id", ondelete="CASCADE"), primary_key=True
    )
    component_id: Mapped[str] = mapped_column(
        String(24), ForeignKey("component.id", ondelete="CASCADE"), primary_key=True
    )
    status: Mapped[ComponentStatus] = mapped_column(String(30))
    added_at: Mapped[datetime] = mapped_column(default=utcnow)


class IncidentUpdate(Base):
    __tablename__ = "incident_update"
    __table_args__ = (Index("ix_incident_update_incident_created", "incident_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(24), primary_key=True, default=new_id)
    incident_id: Mapped[str] = mapped_column(String(24), ForeignKey("incident.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(20))
    body: Mapped[str] = mapped_column(Text)
    body_html: Mapped[str] = mapped_column(Text)
    visibility: Mapped[Visibility] = mapped_column(String(10), default=Visibility.public)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    display_at: Mapped[datetime] = mapped_column(default=utcnow)
    deliver_notifications: Mapped[bool] = mapped_column(default=True)
    next_update_at: Mapped[datetime | None]
    author_id: Mapped[str | None] = mapped_column(String(24), ForeignKey("user_account.id", ondelete="SET NULL"))
    # Set when the update was written from a pre-approved template (comms owns the template).
    template_id: Mapped[str | None] = mapped_column(String(24))
    approved_by_id: Mapped[str | None] = mapped_column(String(24), ForeignKey("user_account.id", ondelete="SET NULL"))

    incident: Mapped[Incident] = relationship(back_populates="updates", lazy="raise")
    affected: Mapped[list[UpdateComponentChange]] = relationship(lazy="raise")


class UpdateComponentChange(Base):
    __tablename__ = "update_component_change"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    update_id: Mapped[str] = mapped_column(String(24), ForeignKey("incident_update.id", ondelete="CASCADE"), index=True)
    component_id: Mapped[str] = mapped_column(String(24), ForeignKey("component.id", ondelete="CASCADE"))
    old_status: Mapped[ComponentStatus] = mapped_column(String(30))
    new_status: Mapped[ComponentStatus] = mapped_column(String(30))


class RoleAssignment(Base):
    """Who held a role and when; the open row (``ended_at`` empty) is the current holder."""

    __tablename__ = "role_assignment"
    __table_args__ = (Index("ix_role_assignment_incident_role", "incident_id", "role"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    incident_id: Mapped[str] = mapped_column(String(24), ForeignKey("incident.id", ondelete="CASCADE"))
    role: Mapped[IncidentRole] = mapped_column(String(40))
    user_id: Mapped[str] = mapped_column(String(24), ForeignKey("user_account.id", ondelete="CASCADE"))
    assigned_by_id: Mapped[str | None] = mapped_column(String(24), ForeignKey("user_account.id", ondelete="SET NULL"))
    assigned_at: Mapped[datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[datetime | None]


class TimelineEvent(Base):
    """An immutable record of something that happened on an incident."""

    __tablename__ = "timeline_event"
    __table_args__ = (Index("ix_timeline_event_incident_at", "incident_id", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    incident_id: Mapped[str] = mapped_column(String(24), ForeignKey("incident.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    kind: Mapped[str] = mapped_column(String(40))
    actor_id: Mapped[str | None] = mapped_column(String(24), ForeignKey("user_account.id", ondelete="SET NULL"))
    summary: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class UpdatePromise(Base):
    """A public update's promise of the next one, and whether it was kept.

    Closed by the next public update (or the resolution); ``overdue_seconds`` feeds the review
    metrics. Reminders and alarms are timers that comms runs.
    """

    __tablename__ = "update_promise"
    __table_args__ = (Index("ix_update_promise_incident_kept", "incident_id", "kept_at"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    incident_id: Mapped[str] = mapped_column(String(24), ForeignKey("incident.id", ondelete="CASCADE"))
    update_id: Mapped[str] = mapped_column(String(24), ForeignKey("incident_update.id", ondelete="CASCADE"))
    due_at: Mapped[datetime]
    kept_at: Mapped[datetime | None]
    kept_by_update_id: Mapped[str | None] = mapped_column(
        String(24), ForeignKey("incident_update.id", ondelete="SET NULL")
    )
    overdue_seconds: Mapped[int | None]
    reminded_at: Mapped[datetime | None]
    alarmed_at: Mapped[datetime | None]


class IncidentCounter(Base):
    """Hands out incident numbers (INC-1, INC-2 …) without a race."""

    __tablename__ = "incident_counter"
    __table_args__ = (UniqueConstraint("name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(20))
    value: Mapped[int] = mapped_column(default=0)


class Workaround(Base):
    """One version of an incident's workaround; the newest is current, an empty body withdraws it.

    ``published`` puts it on the public page and into templates and macros; the agent brief
    always sees it, marked when it is not public.
    """

    __tablename__ = "incident_workaround"
    __table_args__ = (Index("ix_incident_workaround_incident_at", "incident_id", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    incident_id: Mapped[str] = mapped_column(String(24), ForeignKey("incident.id", ondelete="CASCADE"))
    body: Mapped[str] = mapped_column(Text, default="")
    body_html: Mapped[str] = mapped_column(Text, default="")
    published: Mapped[bool] = mapped_column(default=False)
    author_id: Mapped[str | None] = mapped_column(String(24), ForeignKey("user_account.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class EtaEstimate(Base):
    """One estimate of when the incident will be fixed; the newest is current.

    ``eta_at`` None means "no estimate" (withdrawn, or unknown); ``note`` says why it moved.
    """

    __tablename__ = "incident_eta"
    __table_args__ = (Index("ix_incident_eta_incident_at", "incident_id", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    incident_id: Mapped[str] = mapped_column(String(24), ForeignKey("incident.id", ondelete="CASCADE"))
    eta_at: Mapped[datetime | None]
    note: Mapped[str] = mapped_column(Text, default="")
    published: Mapped[bool] = mapped_column(default=False)
    author_id: Mapped[str | None] = mapped_column(String(24), ForeignKey("user_account.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
