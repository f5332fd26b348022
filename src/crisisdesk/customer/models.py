"""Accounts, the components they use, their contacts and their SLA contract.

ARR is kept in integer cents (``arr_cents``); the CSV and the API speak in currency units.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Numeric, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from crisisdesk.kit.db import Base
from crisisdesk.kit.ids import new_id
from crisisdesk.kit.time import utcnow


class Account(Base):
    __tablename__ = "account"

    id: Mapped[str] = mapped_column(String(24), primary_key=True, default=new_id)
    external_id: Mapped[str] = mapped_column(String(200), unique=True)
    name: Mapped[str] = mapped_column(String(300))
    tier: Mapped[str | None] = mapped_column(String(100), index=True)
    arr_cents: Mapped[int] = mapped_column(default=0)
    regions: Mapped[list[str]] = mapped_column(JSON, default=list)
    csm_owner: Mapped[str | None] = mapped_column(String(320))
    helpdesk_org_id: Mapped[str | None] = mapped_column(String(200), index=True)  # a ticket finds its account
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    components: Mapped[list[AccountComponent]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", order_by="AccountComponent.component_id"
    )
    contacts: Mapped[list[AccountContact]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", order_by="AccountContact.position"
    )
    sla: Mapped[SlaContract | None] = relationship(cascade="all, delete-orphan", lazy="selectin")
    domains: Mapped[list[AccountDomain]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", order_by="AccountDomain.domain"
    )


class AccountComponent(Base):
    __tablename__ = "account_component"
    __table_args__ = (Index("ix_account_component_component", "component_id", "account_id"),)

    account_id: Mapped[str] = mapped_column(ForeignKey("account.id", ondelete="CASCADE"), primary_key=True)
    component_id: Mapped[str] = mapped_column(ForeignKey("component.id", ondelete="CASCADE"), primary_key=True)


class AccountContact(Base):
    __tablename__ = "account_contact"
    __table_args__ = (UniqueConstraint("account_id", "email"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("account.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(default=0)
    name: Mapped[str] = mapped_column(String(300))
    email: Mapped[str] = mapped_column(String(320), index=True)  # a ticket or a sign-in finds its account
    role: Mapped[str | None] = mapped_column(String(100))


class SlaContract(Base):
    __tablename__ = "sla_contract"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("account.id", ondelete="CASCADE"), unique=True)
    uptime_target: Mapped[float] = mapped_column(Numeric(7, 4, asdecimal=False))
    downtime_rule: Mapped[str | None] = mapped_column(Text)
    # [{"below": 99.9, "credit_percent": 10}, ...], highest threshold first.
    credit_bands: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    cap_percent: Mapped[float | None] = mapped_column(Numeric(7, 4, asdecimal=False))
    claim_window_days: Mapped[int | None]


class AccountDomain(Base):
    """An email domain whose people may sign in to the account's private page by magic link."""

    __tablename__ = "account_domain"

    domain: Mapped[str] = mapped_column(String(253), primary_key=True)  # lower-case, no "@"
    account_id: Mapped[str] = mapped_column(ForeignKey("account.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PortalLogin(Base):
    """A magic link sent to an allow-listed address; only its SHA-256 is kept, and it works once."""

    __tablename__ = "portal_login"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("account.id", ondelete="CASCADE"), index=True)
    email: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


class PortalSession(Base):
    """A signed-in customer on the account's private page (by magic link or a trusted SSO header)."""

    __tablename__ = "portal_session"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("account.id", ondelete="CASCADE"), index=True)
    email: Mapped[str] = mapped_column(String(320))
    via: Mapped[str] = mapped_column(String(10))  # "link" or "sso"
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]


class AccountNote(Base):
    """A note written for one account, shown on its private page (and only there)."""

    __tablename__ = "account_note"
    __table_args__ = (Index("ix_account_note_account_at", "account_id", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("account.id", ondelete="CASCADE"))
    incident_id: Mapped[str | None] = mapped_column(ForeignKey("incident.id", ondelete="CASCADE"), index=True)
    body: Mapped[str] = mapped_column(Text)
    body_html: Mapped[str] = mapped_column(Text)
    author_id: Mapped[str | None] = mapped_column(ForeignKey("user_account.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ImpactRule(Base):
    """A severity suggestion from impact; the first enabled rule (by position) that holds wins.

    A rule holds when every condition it sets holds: an affected account in one of ``tiers`` on a
    component at ``min_status`` or worse, affected ARR at least ``arr_percent`` of the total, at
    least ``account_count`` affected accounts.
    """

    __tablename__ = "impact_rule"

    id: Mapped[str] = mapped_column(String(24), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    position: Mapped[int] = mapped_column(default=0)
    severity: Mapped[str] = mapped_column(String(8))
    tiers: Mapped[list[str]] = mapped_column(JSON, default=list)
    min_status: Mapped[str | None] = mapped_column(String(30))
    arr_percent: Mapped[float | None] = mapped_column(Numeric(7, 4, asdecimal=False))
    account_count: Mapped[int | None]
    enabled: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Outreach(Base):
    """One proactive send of an approved template to the contacts of an incident's affected accounts."""

    __tablename__ = "outreach"

    id: Mapped[str] = mapped_column(String(24), primary_key=True, default=new_id)
    incident_id: Mapped[str] = mapped_column(ForeignKey("incident.id", ondelete="CASCADE"), index=True)
    template_id: Mapped[str | None] = mapped_column(ForeignKey("message_template.id", ondelete="SET NULL"))
    actor_id: Mapped[str | None] = mapped_column(ForeignKey("user_account.id", ondelete="SET NULL"))
    subject: Mapped[str] = mapped_column(Text, default="")
    account_count: Mapped[int] = mapped_column(default=0)
    delivery_count: Mapped[int] = mapped_column(default=0)
    task_count: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class OutreachAccount(Base):
    """What one outreach did for one account: the impact it told, the messages, the CSM task."""

    __tablename__ = "outreach_account"
    __table_args__ = (Index("ix_outreach_account_account", "account_id", "outreach_id"),)

    outreach_id: Mapped[str] = mapped_column(ForeignKey("outreach.id", ondelete="CASCADE"), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("account.id", ondelete="CASCADE"), primary_key=True)
    impact: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    contacts: Mapped[list[str]] = mapped_column(JSON, default=list)  # the addresses written to
    delivery_count: Mapped[int] = mapped_column(default=0)
    task_id: Mapped[int | None] = mapped_column(ForeignKey("csm_task.id", ondelete="SET NULL"))


class TaskStatus(StrEnum):
    open = "open"
    done = "done"


class CsmTask(Base):
    """A follow-up for an account's customer success manager, e.g. to call a top-tier account."""

    __tablename__ = "csm_task"
    __table_args__ = (Index("ix_csm_task_assignee_status", "assignee", "status"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("account.id", ondelete="CASCADE"), index=True)
    incident_id: Mapped[str | None] = mapped_column(ForeignKey("incident.id", ondelete="CASCADE"), index=True)
    assignee: Mapped[str | None] = mapped_column(String(320))  # the account's csm_owner
    title: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[TaskStatus] = mapped_column(String(10), default=TaskStatus.open)
    due_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    done_at: Mapped[datetime | None]
