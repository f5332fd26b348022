from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from crisisdesk.kit.db import Base
from crisisdesk.kit.ids import new_id
from crisisdesk.kit.time import utcnow


class ComponentStatus(StrEnum):
    operational = "operational"
    degraded_performance = "degraded_performance"
    partial_outage = "partial_outage"
    major_outage = "major_outage"
    under_maintenance = "under_maintenance"


# Worst first: used to pick a group's status and the page indicator.
SEVERITY_ORDER = [
    ComponentStatus.major_outage,
    ComponentStatus.partial_outage,
    ComponentStatus.degraded_performance,
    ComponentStatus.under_maintenance,
    ComponentStatus.operational,
]


class Region(Base):
    __tablename__ = "region"

    id: Mapped[str] = mapped_column(String(24), primary_key=True, default=new_id)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(200))


class Component(Base):
    """A component, or a group of components when ``is_group`` (two levels at most)."""

    __tablename__ = "component"

    id: Mapped[str] = mapped_column(String(24), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    status: Mapped[ComponentStatus] = mapped_column(String(30), default=ComponentStatus.operational)
    position: Mapped[int] = mapped_column(default=0)
    showcase: Mapped[bool] = mapped_column(default=True)
    only_show_if_degraded: Mapped[bool] = mapped_column(default=False)
    is_group: Mapped[bool] = mapped_column(default=False)
    group_id: Mapped[str | None] = mapped_column(
        String(24), ForeignKey("component.id", ondelete="SET NULL"), index=True
    )
    region_id: Mapped[str | None] = mapped_column(String(24), ForeignKey("region.id", ondelete="SET NULL"))
    start_date: Mapped[date | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class ComponentStatusChange(Base):
    """Every status a component has held, from which uptime is computed."""

    __tablename__ = "component_status_change"
    __table_args__ = (Index("ix_component_status_change_component_at", "component_id", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    component_id: Mapped[str] = mapped_column(String(24), ForeignKey("component.id", ondelete="CASCADE"))
    old_status: Mapped[ComponentStatus | None] = mapped_column(String(30))
    new_status: Mapped[ComponentStatus] = mapped_column(String(30))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    # The incident or maintenance that caused it, if any (not a foreign key: the incident
    # package sits above the catalog).
    cause_id: Mapped[str | None] = mapped_column(String(24))


class ComponentDependency(Base):
    """``component_id`` depends on ``depends_on_id``: trouble on the second reaches the first."""

    __tablename__ = "component_dependency"
    __table_args__ = (Index("ix_component_dependency_depends_on", "depends_on_id", "component_id"),)

    component_id: Mapped[str] = mapped_column(
        String(24), ForeignKey("component.id", ondelete="CASCADE"), primary_key=True
    )
    depends_on_id: Mapped[str] = mapped_column(
        String(24), ForeignKey("component.id", ondelete="CASCADE"), primary_key=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
