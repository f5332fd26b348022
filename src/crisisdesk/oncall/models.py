"""Contact methods, notification rules, schedules, escalation policies, pages and the pager's heartbeat.

A page copies its escalation policy's levels into ``Page.policy`` when it starts: later edits to
the policy do not change a running escalation. Escalation steps and delayed notifications are
job rows (``kit.jobs``), so they fire once however many workers run, and survive restarts.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from crisisdesk.kit.db import Base
from crisisdesk.kit.ids import new_id
from crisisdesk.kit.time import utcnow


class ContactKind(StrEnum):
    email = "email"
    sms = "sms"
    slack_dm = "slack_dm"  # a Slack member id; sent with the bot token (chat.postMessage)
    push = "push"  # a push webhook: a signed JSON POST to the user's device gateway


class Urgency(StrEnum):
    high = "high"  # notify by the rules and escalate on time
    low = "low"  # notify, never escalate


class ContactMethod(Base):
    __tablename__ = "contact_method"
    __table_args__ = (UniqueConstraint("user_id", "kind", "address", name="uq_contact_method_user_kind_address"),)

    id: Mapped[str] = mapped_column(String(24), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"), index=True)
    kind: Mapped[ContactKind] = mapped_column(String(12))
    label: Mapped[str] = mapped_column(String(100), default="")
    # An email address, an E.164 number, a Slack member id (U…), or an https URL.
    address: Mapped[str] = mapped_column(String(2048))
    # Standard Webhooks secret ("whsec_…") for push webhooks.
    secret: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class NotificationRule(Base):
    """ "When I am paged at high urgency, push at once, SMS after 2 minutes, email after 5"."""

    __tablename__ = "notification_rule"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"), index=True)
    urgency: Mapped[Urgency] = mapped_column(String(6), default=Urgency.high)
    contact_method_id: Mapped[str] = mapped_column(ForeignKey("contact_method.id", ondelete="CASCADE"))
    delay_minutes: Mapped[int] = mapped_column(default=0)


class OnCallSchedule(Base):
    __tablename__ = "oncall_schedule"

    id: Mapped[str] = mapped_column(String(24), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    # The zone the console shows its shifts in; each layer has its own hand-off zone.
    time_zone: Mapped[str] = mapped_column(String(64), default="Etc/UTC")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ScheduleLayer(Base):
    """One rotation (``oncall.rotation.Layer``); higher ``position`` wins where layers overlap."""

    __tablename__ = "schedule_layer"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    schedule_id: Mapped[str] = mapped_column(ForeignKey("oncall_schedule.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    position: Mapped[int] = mapped_column(default=0)
    user_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    start: Mapped[datetime]  # the first hand-off; its wall time in time_zone is the hand-off time
    time_zone: Mapped[str] = mapped_column(String(64))
    rotation: Mapped[str] = mapped_column(String(10))  # daily, weekly, custom
    length_hours: Mapped[int | None]  # custom rotations only


class ScheduleOverride(Base):
    __tablename__ = "schedule_override"
    __table_args__ = (Index("ix_schedule_override_schedule_start", "schedule_id", "start"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    schedule_id: Mapped[str] = mapped_column(ForeignKey("oncall_schedule.id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"))
    start: Mapped[datetime]
    end: Mapped[datetime]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class EscalationPolicy(Base):
    """Ordered levels; each notifies users and/or whoever is on call on schedules, then escalates.

    ``levels``: ``[{"timeout_minutes": 5, "targets": [{"type": "schedule", "id": "…"},
    {"type": "user", "id": "…"}]}, …]``. After the last level the policy starts again from the
    first, ``repeats`` more times.
    """

    __tablename__ = "escalation_policy"

    id: Mapped[str] = mapped_column(String(24), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    levels: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    repeats: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class SeverityPaging(Base):
    """Mobilise: on declaring an incident of ``severity``, page ``escalation_policy_id`` and give
    ``role`` (when set) to whoever its first level reaches first."""

    __tablename__ = "severity_paging"
    __table_args__ = (UniqueConstraint("severity", "escalation_policy_id", name="uq_severity_paging_severity_policy"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    severity: Mapped[str] = mapped_column(String(8), index=True)
    escalation_policy_id: Mapped[str] = mapped_column(ForeignKey("escalation_policy.id", ondelete="CASCADE"))
    role: Mapped[str | None] = mapped_column(String(40))


class PageStatus(StrEnum):
    triggered = "triggered"
    acknowledged = "acknowledged"
    resolved = "resolved"


class Page(Base):
    __tablename__ = "page"
    __table_args__ = (Index("ix_page_status_started", "status", "started_at"),)

    id: Mapped[str] = mapped_column(String(24), primary_key=True, default=new_id)
    title: Mapped[str] = mapped_column(String(1024))
    urgency: Mapped[Urgency] = mapped_column(String(6), default=Urgency.high)
    status: Mapped[PageStatus] = mapped_column(String(14), default=PageStatus.triggered)
    escalation_policy_id: Mapped[str | None] = mapped_column(ForeignKey("escalation_policy.id", ondelete="SET NULL"))
    # The policy as it was when the page started: {"name", "levels", "repeats"}.
    policy: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    level: Mapped[int] = mapped_column(default=0)  # index into policy levels
    cycle: Mapped[int] = mapped_column(default=0)  # how many times the policy has repeated
    next_escalation_at: Mapped[datetime | None]
    incident_id: Mapped[str | None] = mapped_column(ForeignKey("incident.id", ondelete="CASCADE"), index=True)
    # signal.AlertGroup id (not a foreign key: signal is a sibling package).
    alert_group_id: Mapped[str | None] = mapped_column(String(24), index=True)
    role: Mapped[str | None] = mapped_column(String(40))  # the incident role this page fills
    # The secret in the acknowledge link sent with every notification.
    ack_token: Mapped[str] = mapped_column(String(64), unique=True)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    acknowledged_at: Mapped[datetime | None]
    acknowledged_by_id: Mapped[str | None] = mapped_column(ForeignKey("user_account.id", ondelete="SET NULL"))
    resolved_at: Mapped[datetime | None]


class PageEvent(Base):
    """What happened on a page: each level reached, each user notified, the acknowledgement."""

    __tablename__ = "page_event"
    __table_args__ = (Index("ix_page_event_page_at", "page_id", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    page_id: Mapped[str] = mapped_column(ForeignKey("page.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    kind: Mapped[str] = mapped_column(String(30))  # triggered, escalated, notified, acknowledged, resolved, exhausted
    user_id: Mapped[str | None] = mapped_column(ForeignKey("user_account.id", ondelete="SET NULL"))
    summary: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class WorkerBeat(Base):
    """Each worker process writes its beat every pass; the heartbeat endpoint reads them."""

    __tablename__ = "worker_beat"

    name: Mapped[str] = mapped_column(String(120), primary_key=True)
    seen_at: Mapped[datetime] = mapped_column(default=utcnow)
