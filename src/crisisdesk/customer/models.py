"""Accounts, the components they use, their contacts and their SLA contract.

ARR is kept in integer cents (``arr_cents``); the CSV and the API speak in currency units.
"""

from __future__ import annotations

from datetime import datetime
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
    helpdesk_org_id: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    components: Mapped[list[AccountComponent]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", order_by="AccountComponent.component_id"
    )
    contacts: Mapped[list[AccountContact]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", order_by="AccountContact.position"
    )
    sla: Mapped[SlaContract | None] = relationship(cascade="all, delete-orphan", lazy="selectin")


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
    email: Mapped[str] = mapped_column(String(320))
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
