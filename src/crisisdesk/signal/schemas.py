"""API shapes for integrations, grouping and routing rules, alert groups and alerts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from crisisdesk.catalog.models import ComponentStatus
from crisisdesk.incident.models import IncidentRole, Severity
from crisisdesk.incident.schemas import COMPONENTS_HELP, NEXT_UPDATE_HELP, OpenStatus
from crisisdesk.signal.models import AlertSeverity, AlertStatus, RuleAction, SourceKind

MATCHERS_HELP = (
    'Label (or summary/source/severity/integration) → exact value, or {"regex": "…"} matched against the whole '
    'value, e.g. {"team": "identity", "alertname": {"regex": "SignIn.*"}}. All must hold; empty matches every alert.'
)
MAPPING_HELP = (
    "Generic integrations only: field → dotted path in the posted JSON, e.g. "
    '{"alerts": "events", "dedup_key": "id", "summary": "title", "status": "state", "resolved_values": ["ok"]}. '
    "Fields: alerts, dedup_key, summary, severity, status, action, source, link, labels, annotations, details, "
    "component, timestamp (paths) and resolved_values (a list)."
)


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IntegrationCreate(_Input):
    """Add an alert source; crisisdesk makes its secret token."""

    name: str = Field(min_length=1, max_length=200, description="What it is, e.g. 'Production Alertmanager'.")
    kind: SourceKind = Field(description="alertmanager, grafana, events_v2 or generic (check and vendor are built in).")
    mapping: dict[str, Any] = Field(default_factory=dict, description=MAPPING_HELP)
    rate_limit_per_minute: int = Field(default=600, description="Requests a minute before 429s; 0 for no limit.")
    enabled: bool = Field(default=True, description="Whether its alerts are accepted.")


class IntegrationPatch(_Input):
    """Change an integration; omitted fields stay. The kind cannot change."""

    name: str | None = Field(default=None, min_length=1, max_length=200, description="The new name.")
    mapping: dict[str, Any] | None = Field(default=None, description=MAPPING_HELP)
    rate_limit_per_minute: int | None = Field(default=None, description="Requests a minute; 0 for no limit.")
    enabled: bool | None = Field(default=None, description="Whether its alerts are accepted.")


class IntegrationRead(BaseModel):
    """An alert source. Its token and URL are shown to admins only."""

    id: str = Field(description="Integration id.")
    name: str = Field(description="Its name.")
    kind: SourceKind = Field(description="The format it receives.")
    token: str | None = Field(description="The secret in its URL, or its Events v2 routing key (admins only).")
    url: str | None = Field(description="Where the source posts (admins only; the token is part of it).")
    mapping: dict[str, Any] = Field(description="Generic integrations: where each field is found.")
    rate_limit_per_minute: int = Field(description="Requests a minute before 429s; 0 for no limit.")
    enabled: bool = Field(description="Whether its alerts are accepted.")
    created_at: datetime = Field(description="When it was added.")
    last_received_at: datetime | None = Field(description="When it last sent something.")
    open_alerts: int = Field(description="How many of its alerts are open (firing or acknowledged).")


class GroupingRuleCreate(_Input):
    """Gather alerts with the same values of some labels into one group, within a time window."""

    name: str = Field(min_length=1, max_length=200, description="What it groups, e.g. 'By alert and cluster'.")
    by: list[Any] = Field(description='Label names (or source/component/summary), e.g. ["alertname", "cluster"].')
    matchers: dict[str, Any] = Field(default_factory=dict, description=MATCHERS_HELP)
    window_minutes: int = Field(default=60, description="An alert joins an open group seen within this many minutes.")
    integration_id: str | None = Field(default=None, description="Only alerts of this integration; all if empty.")
    position: int | None = Field(default=None, description="Order in which rules are tried (lowest first); last.")


class GroupingRulePatch(_Input):
    """Change a grouping rule; omitted fields stay."""

    name: str | None = Field(default=None, min_length=1, max_length=200, description="The new name.")
    by: list[Any] | None = Field(default=None, description="Label names to group by.")
    matchers: dict[str, Any] | None = Field(default=None, description=MATCHERS_HELP)
    window_minutes: int | None = Field(default=None, description="The grouping window, 1 to 1440 minutes.")
    integration_id: str | None = Field(default=None, description="Only this integration's alerts; null for all.")
    position: int | None = Field(default=None, description="Order in which rules are tried (lowest first).")


class GroupingRuleRead(BaseModel):
    """A grouping rule."""

    model_config = ConfigDict(from_attributes=True)

    id: str = Field(description="Rule id.")
    name: str = Field(description="Its name.")
    position: int = Field(description="Order in which rules are tried (lowest first).")
    integration_id: str | None = Field(description="Only this integration's alerts; all if empty.")
    matchers: dict[str, Any] = Field(description=MATCHERS_HELP)
    by: list[str] = Field(description="Label names whose values make a group.")
    window_minutes: int = Field(description="The grouping window in minutes.")


class RoutingRuleCreate(_Input):
    """Route matching alert groups to components, a suggested severity and an escalation policy."""

    name: str = Field(min_length=1, max_length=200, description="What it routes, e.g. 'Identity alerts'.")
    matchers: dict[str, Any] = Field(default_factory=dict, description=MATCHERS_HELP)
    component_ids: list[Any] = Field(default_factory=list, description="Components the alerts affect.")
    component_status: str = Field(
        default="major_outage", description="The status a declared incident sets on those components."
    )
    severity: str | None = Field(default=None, description="The suggested severity, SEV1 to SEV4.")
    escalation_policy_id: str | None = Field(default=None, description="The escalation policy to page.")
    action: RuleAction = Field(
        default=RuleAction.none,
        description="none (route only), propose (offer 'declare from this alert') or declare (declare at once).",
    )
    integration_id: str | None = Field(default=None, description="Only alerts of this integration; all if empty.")
    enabled: bool = Field(default=True, description="Whether the rule is tried.")
    position: int | None = Field(default=None, description="Order in which rules are tried (lowest first); last.")


class RoutingRulePatch(_Input):
    """Change a routing rule; omitted fields stay, null clears severity, policy and integration."""

    name: str | None = Field(default=None, min_length=1, max_length=200, description="The new name.")
    matchers: dict[str, Any] | None = Field(default=None, description=MATCHERS_HELP)
    component_ids: list[Any] | None = Field(default=None, description="Components the alerts affect.")
    component_status: str | None = Field(default=None, description="The status a declared incident sets.")
    severity: str | None = Field(default=None, description="The suggested severity, SEV1 to SEV4; null clears it.")
    escalation_policy_id: str | None = Field(default=None, description="The escalation policy; null clears it.")
    action: RuleAction | None = Field(default=None, description="none, propose or declare.")
    integration_id: str | None = Field(default=None, description="Only this integration's alerts; null for all.")
    enabled: bool | None = Field(default=None, description="Whether the rule is tried.")
    position: int | None = Field(default=None, description="Order in which rules are tried (lowest first).")


class RoutingRuleRead(BaseModel):
    """A routing rule."""

    model_config = ConfigDict(from_attributes=True)

    id: str = Field(description="Rule id.")
    name: str = Field(description="Its name.")
    position: int = Field(description="Order in which rules are tried (lowest first).")
    integration_id: str | None = Field(description="Only this integration's alerts; all if empty.")
    matchers: dict[str, Any] = Field(description=MATCHERS_HELP)
    component_ids: list[str] = Field(description="Components the alerts affect.")
    component_status: ComponentStatus = Field(description="The status a declared incident sets on them.")
    severity: Severity | None = Field(description="The suggested severity.")
    escalation_policy_id: str | None = Field(description="The escalation policy paged.")
    action: RuleAction = Field(description="none, propose or declare.")
    enabled: bool = Field(description="Whether the rule is tried.")


class AlertRead(BaseModel):
    """One alert, as its source last described it."""

    model_config = ConfigDict(from_attributes=True)

    id: int = Field(description="Alert id.")
    integration_id: str = Field(description="The source it came from.")
    group_id: str | None = Field(description="The alert group it belongs to.")
    dedup_key: str = Field(description="The source's key (Alertmanager fingerprint, Events v2 dedup_key).")
    status: AlertStatus = Field(description="firing, acknowledged or resolved.")
    summary: str = Field(description="One line about it.")
    severity: AlertSeverity = Field(description="critical, error, warning or info.")
    source: str | None = Field(description="Where it happened, as the source says.")
    labels: dict[str, Any] = Field(description="Its labels.")
    annotations: dict[str, Any] = Field(description="Its annotations.")
    details: dict[str, Any] = Field(description="Further details the source sent.")
    link: str | None = Field(description="A link back to the source.")
    starts_at: datetime = Field(description="When it started, as the source says.")
    ends_at: datetime | None = Field(description="When it ended, as the source says.")
    first_seen_at: datetime = Field(description="When crisisdesk first received it.")
    last_seen_at: datetime = Field(description="When crisisdesk last received it.")
    acknowledged_at: datetime | None = Field(description="When it was acknowledged.")
    resolved_at: datetime | None = Field(description="When it resolved.")
    received: int = Field(description="How many times the source sent it.")


class AlertGroupRead(BaseModel):
    """Alerts gathered by a grouping rule, with their routing."""

    model_config = ConfigDict(from_attributes=True)

    id: str = Field(description="Group id.")
    title: str = Field(description="The group's title (its first alert's summary).")
    status: AlertStatus = Field(description="firing or acknowledged while any alert is open, else resolved.")
    integration_id: str | None = Field(description="The source of its first alert.")
    grouping_rule_id: str | None = Field(description="The rule that made it.")
    routing_rule_id: str | None = Field(description="The rule that routed it.")
    component_ids: list[str] = Field(description="Components it affects.")
    suggested_severity: Severity | None = Field(description="The severity its routing suggests.")
    escalation_policy_id: str | None = Field(description="The escalation policy it pages.")
    proposed: bool = Field(description="An incident is proposed and nobody has declared it yet.")
    incident_id: str | None = Field(description="The incident declared from it.")
    alert_count: int = Field(description="How many alerts it has gathered.")
    open_count: int = Field(description="How many of them are open.")
    opened_at: datetime = Field(description="When it opened.")
    last_alert_at: datetime = Field(description="When an alert last arrived.")
    resolved_at: datetime | None = Field(description="When its last alert resolved.")


class AlertGroupDetailRead(AlertGroupRead):
    """An alert group with its alerts (open first)."""

    alerts: list[AlertRead] = Field(description="Its alerts, open first, then the latest seen.")


class AlertGroupDeclare(_Input):
    """Declare an incident from an alert group; omitted fields come from the group."""

    name: str | None = Field(default=None, min_length=1, max_length=300, description="The title; the group's title.")
    severity: Severity | None = Field(default=None, description="The severity; the group's suggestion, else SEV3.")
    body: str | None = Field(default=None, min_length=1, description="The first public update (Markdown).")
    status: OpenStatus = Field(default="investigating", description="The starting status.")
    components: dict[str, ComponentStatus] | None = Field(
        default=None, description=COMPONENTS_HELP + " The group's components if omitted."
    )
    next_update_at: AwareDatetime | None = Field(default=None, description=NEXT_UPDATE_HELP)
    roles: dict[IncidentRole, str] = Field(default_factory=dict, description="Role → user id to assign at once.")
    deliver_notifications: bool = Field(default=True, description="Notify subscribers of the first update.")
