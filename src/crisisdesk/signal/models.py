"""Alert sources, alerts, alert groups, grouping and routing rules, synthetic checks, vendor watch.

An alert is unique among the *open* alerts of its integration on its source's key (Alertmanager's
``fingerprint``, an Events v2 ``dedup_key``): ``open_key`` holds the key while the alert is open
and is emptied when it resolves, so a later trigger with the same key opens a new alert, as
Events v2 specifies, while a repeat of an open one joins it.
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


class SourceKind(StrEnum):
    alertmanager = "alertmanager"  # Prometheus Alertmanager webhook_config, version "4"
    grafana = "grafana"  # Grafana alerting webhook, version "1"
    events_v2 = "events_v2"  # PagerDuty Events API v2 compatible (POST /v2/enqueue)
    generic = "generic"  # any JSON, read through the integration's field mapping
    check = "check"  # crisisdesk's own synthetic checks
    vendor = "vendor"  # crisisdesk's vendor watch


class AlertStatus(StrEnum):
    firing = "firing"
    acknowledged = "acknowledged"  # Events v2 acknowledge: still open, notifications silenced
    resolved = "resolved"


class AlertSeverity(StrEnum):
    # The Events v2 severities (case-sensitive there); other sources are mapped onto them.
    critical = "critical"
    error = "error"
    warning = "warning"
    info = "info"


class RuleAction(StrEnum):
    none = "none"  # only route: components, suggested severity, escalation
    propose = "propose"  # offer "declare from this alert" (one click, prefilled)
    declare = "declare"  # declare an incident at once and set the components' status


class Integration(Base):
    """One alert source an admin added; its secret ``token`` is in its URL or is its routing key."""

    __tablename__ = "integration"

    id: Mapped[str] = mapped_column(String(24), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[SourceKind] = mapped_column(String(20))
    token: Mapped[str] = mapped_column(String(64), unique=True)
    # Generic JSON: where each field is found ({"dedup_key": "$.id", "summary": "$.title", ...}).
    mapping: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Requests a minute this integration may send before it gets 429s (0: no limit).
    rate_limit_per_minute: Mapped[int] = mapped_column(default=600)
    enabled: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_received_at: Mapped[datetime | None]


class GroupingRule(Base):
    """Alerts with the same values of ``by`` (label names, or ``source``/``component``/``summary``)
    join one open group while alerts keep arriving within ``window_minutes``."""

    __tablename__ = "grouping_rule"

    id: Mapped[str] = mapped_column(String(24), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    position: Mapped[int] = mapped_column(default=0)
    # The integration it applies to; empty: every integration.
    integration_id: Mapped[str | None] = mapped_column(ForeignKey("integration.id", ondelete="CASCADE"))
    # Label matchers that select the alerts this rule groups ({"team": "identity"}; "=~" regexes).
    matchers: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    by: Mapped[list[str]] = mapped_column(JSON, default=list)
    window_minutes: Mapped[int] = mapped_column(default=60)


class RoutingRule(Base):
    """The first rule (by ``position``) whose matchers all hold routes an alert's group."""

    __tablename__ = "routing_rule"

    id: Mapped[str] = mapped_column(String(24), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    position: Mapped[int] = mapped_column(default=0)
    integration_id: Mapped[str | None] = mapped_column(ForeignKey("integration.id", ondelete="CASCADE"))
    # {"label or field": "exact value"} or {"label": {"regex": "..."}}; all must hold.
    matchers: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    component_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    component_status: Mapped[str] = mapped_column(String(30), default="major_outage")
    severity: Mapped[str | None] = mapped_column(String(8))  # the suggested SEV1-SEV4
    # A policy a rule pages cannot be deleted (the rule would page nobody, silently).
    escalation_policy_id: Mapped[str | None] = mapped_column(ForeignKey("escalation_policy.id", ondelete="RESTRICT"))
    action: Mapped[RuleAction] = mapped_column(String(10), default=RuleAction.none)
    enabled: Mapped[bool] = mapped_column(default=True)


class AlertGroup(Base):
    __tablename__ = "alert_group"
    __table_args__ = (
        Index("ix_alert_group_key_status", "group_key", "status"),
        Index("ix_alert_group_status_last", "status", "last_alert_at"),
    )

    id: Mapped[str] = mapped_column(String(24), primary_key=True, default=new_id)
    # grouping rule id + the grouped values, hashed to a fixed length
    group_key: Mapped[str] = mapped_column(String(80))
    title: Mapped[str] = mapped_column(String(1024))
    status: Mapped[AlertStatus] = mapped_column(String(14), default=AlertStatus.firing)
    integration_id: Mapped[str | None] = mapped_column(ForeignKey("integration.id", ondelete="SET NULL"))
    grouping_rule_id: Mapped[str | None] = mapped_column(ForeignKey("grouping_rule.id", ondelete="SET NULL"))
    routing_rule_id: Mapped[str | None] = mapped_column(ForeignKey("routing_rule.id", ondelete="SET NULL"))
    component_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    suggested_severity: Mapped[str | None] = mapped_column(String(8))
    escalation_policy_id: Mapped[str | None] = mapped_column(String(24))
    # Set when the group's rule proposes an incident and nobody has acted on it yet.
    proposed: Mapped[bool] = mapped_column(default=False)
    incident_id: Mapped[str | None] = mapped_column(ForeignKey("incident.id", ondelete="SET NULL"), index=True)
    alert_count: Mapped[int] = mapped_column(default=0)
    open_count: Mapped[int] = mapped_column(default=0)
    opened_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_alert_at: Mapped[datetime] = mapped_column(default=utcnow)
    resolved_at: Mapped[datetime | None]


class Alert(Base):
    __tablename__ = "alert"
    __table_args__ = (
        UniqueConstraint("integration_id", "open_key", name="uq_alert_integration_open_key"),
        Index("ix_alert_integration_key", "integration_id", "dedup_key"),
        Index("ix_alert_group_status", "group_id", "status"),
        # Not on last_seen_at: every repeat rewrites it, and an indexed column would cost an index
        # entry per repeat (and keep PostgreSQL from updating the row in place).
        Index("ix_alert_status_id", "status", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    integration_id: Mapped[str] = mapped_column(ForeignKey("integration.id", ondelete="CASCADE"))
    dedup_key: Mapped[str] = mapped_column(String(255))
    open_key: Mapped[str | None] = mapped_column(String(255))  # dedup_key while open, else empty
    status: Mapped[AlertStatus] = mapped_column(String(14), default=AlertStatus.firing)
    summary: Mapped[str] = mapped_column(String(1024))
    severity: Mapped[AlertSeverity] = mapped_column(String(10), default=AlertSeverity.error)
    source: Mapped[str | None] = mapped_column(String(255))
    labels: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    annotations: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    link: Mapped[str | None] = mapped_column(String(2048))
    group_id: Mapped[str | None] = mapped_column(ForeignKey("alert_group.id", ondelete="SET NULL"))
    starts_at: Mapped[datetime] = mapped_column(default=utcnow)
    ends_at: Mapped[datetime | None]
    first_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    acknowledged_at: Mapped[datetime | None]
    resolved_at: Mapped[datetime | None]
    # How many times the source sent it (repeats included).
    received: Mapped[int] = mapped_column(default=1)


class CheckKind(StrEnum):
    http = "http"
    tcp = "tcp"
    dns = "dns"


class CheckState(StrEnum):
    unknown = "unknown"
    up = "up"
    down = "down"


class Check(Base):
    """A synthetic check run every ``interval_seconds`` by a worker (a job row per check)."""

    __tablename__ = "synthetic_check"

    id: Mapped[str] = mapped_column(String(24), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[CheckKind] = mapped_column(String(10))
    # http(s): a URL; tcp: host:port; dns: a host name (``record_type`` says which record).
    target: Mapped[str] = mapped_column(String(2048))
    record_type: Mapped[str | None] = mapped_column(String(10))
    interval_seconds: Mapped[int] = mapped_column(default=60)
    timeout_seconds: Mapped[float] = mapped_column(default=10)
    expected_status: Mapped[int | None]
    keyword: Mapped[str | None] = mapped_column(String(500))
    latency_threshold_ms: Mapped[int | None]
    failures_to_alert: Mapped[int] = mapped_column(default=3)
    component_id: Mapped[str | None] = mapped_column(ForeignKey("component.id", ondelete="SET NULL"), index=True)
    enabled: Mapped[bool] = mapped_column(default=True)
    state: Mapped[CheckState] = mapped_column(String(10), default=CheckState.unknown)
    consecutive_failures: Mapped[int] = mapped_column(default=0)
    last_run_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class CheckResult(Base):
    __tablename__ = "check_result"
    __table_args__ = (Index("ix_check_result_check_at", "check_id", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    check_id: Mapped[str] = mapped_column(ForeignKey("synthetic_check.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    ok: Mapped[bool]
    latency_ms: Mapped[float | None]
    detail: Mapped[str] = mapped_column(Text, default="")


class VendorKind(StrEnum):
    statuspage = "statuspage"  # a Statuspage v2 summary.json
    feed = "feed"  # an RSS or Atom incident feed


class Vendor(Base):
    """A third-party status page crisisdesk polls (a job row per vendor)."""

    __tablename__ = "vendor"

    id: Mapped[str] = mapped_column(String(24), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[VendorKind] = mapped_column(String(12))
    url: Mapped[str] = mapped_column(String(2048))
    interval_seconds: Mapped[int] = mapped_column(default=120)
    enabled: Mapped[bool] = mapped_column(default=True)
    # Conditional requests: the validators of the last 200 answer.
    etag: Mapped[str | None] = mapped_column(String(500))
    last_modified: Mapped[str | None] = mapped_column(String(100))
    # The vendor's overall indicator (none/minor/major/critical) and description, as last seen.
    indicator: Mapped[str] = mapped_column(String(20), default="none")
    description: Mapped[str | None] = mapped_column(Text)
    last_polled_at: Mapped[datetime | None]
    last_changed_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class VendorComponent(Base):
    """A component of a vendor's page (for a feed: one row standing for the whole vendor)."""

    __tablename__ = "vendor_component"
    __table_args__ = (UniqueConstraint("vendor_id", "external_id", name="uq_vendor_component_vendor_external"),)

    id: Mapped[str] = mapped_column(String(24), primary_key=True, default=new_id)
    vendor_id: Mapped[str] = mapped_column(ForeignKey("vendor.id", ondelete="CASCADE"))
    external_id: Mapped[str] = mapped_column(String(200))
    name: Mapped[str] = mapped_column(String(300))
    status: Mapped[str] = mapped_column(String(30), default="operational")
    # The vendor's own words about it (the latest unresolved incident update that names it).
    message: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class VendorDependency(Base):
    """ "Sign-in depends on the identity provider": our component depends on a vendor's component."""

    __tablename__ = "vendor_dependency"

    component_id: Mapped[str] = mapped_column(ForeignKey("component.id", ondelete="CASCADE"), primary_key=True)
    vendor_component_id: Mapped[str] = mapped_column(
        ForeignKey("vendor_component.id", ondelete="CASCADE"), primary_key=True, index=True
    )
