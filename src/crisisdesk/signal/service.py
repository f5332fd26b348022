"""Managing alert sources and rules, reading alert groups and alerts, declaring from a group.

Admins add, change, rotate and delete integrations and rules; every signed-in user reads them
(responders without the secret token). Every function writes rows and never commits.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from crisisdesk.auth.models import Scope
from crisisdesk.auth.service import Actor
from crisisdesk.catalog.models import Component, ComponentStatus
from crisisdesk.incident import service as incidents
from crisisdesk.incident.models import Incident, IncidentStatus, Severity
from crisisdesk.kit.errors import Conflict, InvalidInput, NotFound
from crisisdesk.oncall.models import EscalationPolicy
from crisisdesk.signal.models import (
    Alert,
    AlertGroup,
    AlertStatus,
    GroupingRule,
    Integration,
    RoutingRule,
    RuleAction,
    SourceKind,
)
from crisisdesk.signal.sources import MAPPING_LISTS as MAPPING_LISTS  # the mapping keys generic JSON reads
from crisisdesk.signal.sources import MAPPING_PATHS as MAPPING_PATHS

# check and vendor are crisisdesk's own sources, made by the checks and the vendor watch.
CREATABLE_KINDS = (SourceKind.alertmanager, SourceKind.grafana, SourceKind.events_v2, SourceKind.generic)
OPEN_STATUSES = (AlertStatus.firing, AlertStatus.acknowledged)
MAX_NAME = 200
MAX_RATE_LIMIT = 1_000_000
MAX_MATCHERS = 50
MAX_BY = 20
MAX_KEY = 200
MAX_PATTERN = 1000
TOKEN_BYTES = 24  # secrets.token_urlsafe(24): 32 characters

_PATH = re.compile(r"[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*")


def _check_id(value: str, *, what: str, field: str) -> None:
    if "\x00" in value or len(value) > 64:
        raise NotFound(f"no {what} with that id", field=field)


def check_name(name: str, *, field: str = "name") -> str:
    """A trimmed name of 1 to 200 characters, without NUL."""
    name = (name or "").strip()
    if not name:
        raise InvalidInput("the name must not be empty", field=field)
    if "\x00" in name:
        raise InvalidInput("the name must not contain a NUL character", field=field)
    if len(name) > MAX_NAME:
        raise InvalidInput(f"the name must be at most {MAX_NAME} characters", field=field)
    return name


def parse_kind(value: str) -> SourceKind:
    """One of the kinds an admin may create."""
    if value not in {k.value for k in CREATABLE_KINDS}:
        allowed = ", ".join(k.value for k in CREATABLE_KINDS)
        raise InvalidInput(f"{value!r} is not a kind of integration you can add; use one of: {allowed}", field="kind")
    return SourceKind(value)


def check_rate_limit(value: int) -> int:
    """Requests a minute, 0 for no limit."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_RATE_LIMIT:
        raise InvalidInput(
            f"the rate limit must be a whole number of requests a minute from 0 (no limit) to {MAX_RATE_LIMIT}",
            field="rate_limit_per_minute",
        )
    return value


def _check_path(value: Any, *, field: str) -> str:
    if not isinstance(value, str):
        raise InvalidInput("a mapping path must be a string such as 'data.id'", field=field)
    path = value.strip()
    path = path[2:] if path.startswith("$.") else path
    if len(path) > MAX_KEY or not _PATH.fullmatch(path):
        raise InvalidInput(
            f"{value!r} is not a dotted path; write the keys joined by dots, such as 'data.id'", field=field
        )
    return path


def check_mapping(mapping: Mapping[str, Any] | None) -> dict[str, Any]:
    """A generic integration's field mapping: known keys, dotted paths, a list of resolved values."""
    if mapping is None:
        return {}
    if not isinstance(mapping, Mapping):
        raise InvalidInput("the mapping must be an object of field → dotted path", field="mapping")
    checked: dict[str, Any] = {}
    for key, value in mapping.items():
        field = f"mapping.{key}"
        if key in MAPPING_PATHS:
            checked[key] = _check_path(value, field=field)
        elif key in MAPPING_LISTS:
            if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
                raise InvalidInput(
                    f"{key} must be a list of non-empty strings, such as ['resolved', 'ok']", field=field
                )
            checked[key] = [v.strip() for v in value]
        else:
            allowed = ", ".join((*MAPPING_PATHS, *MAPPING_LISTS))
            raise InvalidInput(f"{key!r} is not a mapping field; use one of: {allowed}", field=field)
    return checked


def new_token() -> str:
    """A fresh secret for an integration's URL or routing key (32 URL-safe characters)."""
    return secrets.token_urlsafe(TOKEN_BYTES)


# --- integrations ---------------------------------------------------------------------------


async def list_integrations(session: AsyncSession, *, include_builtin: bool = True) -> list[Integration]:
    """Every integration, by name."""
    query = select(Integration).order_by(Integration.name, Integration.id)
    if not include_builtin:
        query = query.where(Integration.kind.in_([k.value for k in CREATABLE_KINDS]))
    return list(await session.scalars(query))


async def get_integration(session: AsyncSession, integration_id: str, *, field: str = "integration_id") -> Integration:
    """One integration, or 404."""
    _check_id(integration_id, what="integration", field=field)
    integration = await session.get(Integration, integration_id)
    if integration is None:
        raise NotFound(f"no integration with id {integration_id!r}", field=field)
    return integration


async def create_integration(
    session: AsyncSession,
    actor: Actor,
    *,
    name: str,
    kind: str,
    mapping: Mapping[str, Any] | None = None,
    rate_limit_per_minute: int = 600,
    enabled: bool = True,
) -> Integration:
    """Add an alert source with a new secret token (admins only)."""
    actor.require(Scope.admin)
    parsed_kind = parse_kind(str(kind))
    checked_mapping = check_mapping(mapping)
    if parsed_kind is not SourceKind.generic and checked_mapping:
        raise InvalidInput("only a generic integration has a field mapping", field="mapping")
    integration = Integration(
        name=check_name(name),
        kind=parsed_kind,
        token=new_token(),
        mapping=checked_mapping,
        rate_limit_per_minute=check_rate_limit(rate_limit_per_minute),
        enabled=bool(enabled),
    )
    session.add(integration)
    await session.flush()
    return integration


async def update_integration(
    session: AsyncSession,
    actor: Actor,
    integration: Integration,
    *,
    name: str | None = None,
    mapping: Mapping[str, Any] | None = None,
    rate_limit_per_minute: int | None = None,
    enabled: bool | None = None,
) -> Integration:
    """Change an integration's name, mapping, rate limit or whether it is enabled (admins only)."""
    actor.require(Scope.admin)
    _check_editable(integration)
    if name is not None:
        integration.name = check_name(name)
    if mapping is not None:
        checked = check_mapping(mapping)
        if integration.kind != SourceKind.generic and checked:
            raise InvalidInput("only a generic integration has a field mapping", field="mapping")
        integration.mapping = checked
    if rate_limit_per_minute is not None:
        integration.rate_limit_per_minute = check_rate_limit(rate_limit_per_minute)
    if enabled is not None:
        integration.enabled = bool(enabled)
    await session.flush()
    return integration


def _check_editable(integration: Integration) -> None:
    if integration.kind not in {k.value for k in CREATABLE_KINDS}:
        raise Conflict(
            f"the {integration.kind} integration is built in; change its checks or vendors instead", field="kind"
        )


async def rotate_token(session: AsyncSession, actor: Actor, integration: Integration) -> Integration:
    """Give the integration a new token: its old URL or routing key stops working (admins only)."""
    actor.require(Scope.admin)
    _check_editable(integration)
    integration.token = new_token()
    await session.flush()
    return integration


async def delete_integration(session: AsyncSession, actor: Actor, integration: Integration) -> None:
    """Delete an integration with its alerts and its own rules; its groups stay (admins only)."""
    actor.require(Scope.admin)
    _check_editable(integration)
    await session.delete(integration)
    await session.flush()


def receiving_url(base_url: str, integration: Integration) -> str:
    """Where the source posts: the secret hook URL, or the Events v2 endpoint (the token is the routing key)."""
    base = base_url.rstrip("/")
    if integration.kind == SourceKind.events_v2:
        return f"{base}/v2/enqueue"
    return f"{base}/hooks/{integration.token}"


def config_snippet(base_url: str, integration: Integration) -> str:
    """Copy-paste configuration for the source's side."""
    url = receiving_url(base_url, integration)
    if integration.kind == SourceKind.alertmanager:
        return (
            "# alertmanager.yml\n"
            "route:\n"
            "  receiver: crisisdesk\n"
            "receivers:\n"
            "  - name: crisisdesk\n"
            "    webhook_configs:\n"
            f"      - url: {url}\n"
            "        send_resolved: true\n"
        )
    if integration.kind == SourceKind.grafana:
        return (
            "Grafana → Alerting → Contact points → New contact point\n"
            "  Integration: Webhook\n"
            f"  URL: {url}\n"
            "  HTTP Method: POST\n"
        )
    if integration.kind == SourceKind.events_v2:
        return (
            "PagerDuty Events API v2 sender\n"
            f"  Events API URL: {url}\n"
            f"  Routing key (integration key): {integration.token}\n\n"
            f"curl -X POST {url} -H 'Content-Type: application/json' -d '"
            f'{{"routing_key": "{integration.token}", "event_action": "trigger", '
            '"payload": {"summary": "Sign-in errors above 5%", "source": "idp-probe", "severity": "critical"}}'
            "'\n"
        )
    example = {key: value for key, value in integration.mapping.items()} or {"dedup_key": "id", "summary": "title"}
    lines = "\n".join(f"  {k}: {v}" for k, v in example.items())
    return f"POST {url}\nContent-Type: application/json\n\nField mapping:\n{lines}\n"


async def open_alert_counts(session: AsyncSession) -> dict[str, int]:
    """Integration id → how many of its alerts are open (firing or acknowledged)."""
    rows = await session.execute(
        select(Alert.integration_id, func.count())
        .where(Alert.status.in_([s.value for s in OPEN_STATUSES]))
        .group_by(Alert.integration_id)
    )
    return {integration_id: int(count) for integration_id, count in rows.all()}


# --- rules: shared validation ---------------------------------------------------------------


def check_matchers(matchers: Mapping[str, Any] | None) -> dict[str, Any]:
    """Label (or field) → exact string, or {"regex": pattern} that compiles."""
    if matchers is None:
        return {}
    if not isinstance(matchers, Mapping):
        raise InvalidInput('matchers must be an object such as {"team": "identity"}', field="matchers")
    if len(matchers) > MAX_MATCHERS:
        raise InvalidInput(f"at most {MAX_MATCHERS} matchers", field="matchers")
    checked: dict[str, Any] = {}
    for key, value in matchers.items():
        field = f"matchers.{key}"
        if not isinstance(key, str) or not key.strip() or len(key) > MAX_KEY or "\x00" in key:
            raise InvalidInput(f"a matcher's label must be 1 to {MAX_KEY} characters", field="matchers")
        if isinstance(value, str):
            if "\x00" in value or len(value) > MAX_PATTERN:
                raise InvalidInput(f"a matcher's value must be at most {MAX_PATTERN} characters", field=field)
            checked[key] = value
        elif isinstance(value, Mapping) and set(value) == {"regex"} and isinstance(value["regex"], str):
            pattern = value["regex"]
            if "\x00" in pattern or len(pattern) > MAX_PATTERN:
                raise InvalidInput(f"the regex must be at most {MAX_PATTERN} characters", field=f"{field}.regex")
            try:
                re.compile(pattern)
            except re.error as exc:
                raise InvalidInput(f"{pattern!r} is not a regular expression: {exc}", field=f"{field}.regex") from None
            checked[key] = {"regex": pattern}
        else:
            raise InvalidInput('a matcher is a string, or {"regex": "pattern"}', field=field)
    return checked


def check_by(by: Sequence[Any] | None) -> list[str]:
    """The label names (or source/component/summary) whose values make a group."""
    if by is None:
        return []
    if isinstance(by, str) or not isinstance(by, Sequence):
        raise InvalidInput('by must be a list of label names, such as ["alertname", "cluster"]', field="by")
    if len(by) > MAX_BY:
        raise InvalidInput(f"by may name at most {MAX_BY} labels", field="by")
    checked: list[str] = []
    for index, item in enumerate(by):
        if not isinstance(item, str) or not item.strip():
            raise InvalidInput("each entry of by must be a non-empty label name", field=f"by.{index}")
        if len(item) > MAX_KEY or "\x00" in item:
            raise InvalidInput(f"a label name must be at most {MAX_KEY} characters", field=f"by.{index}")
        if item.strip() not in checked:
            checked.append(item.strip())
    return checked


def check_window(minutes: int) -> int:
    if isinstance(minutes, bool) or not isinstance(minutes, int) or not 1 <= minutes <= 1440:
        raise InvalidInput("the window must be 1 to 1440 minutes", field="window_minutes")
    return minutes


def check_position(position: int) -> int:
    if isinstance(position, bool) or not isinstance(position, int) or not 0 <= position <= 1_000_000:
        raise InvalidInput("the position must be a whole number from 0 to 1000000", field="position")
    return position


async def _check_integration_ref(session: AsyncSession, integration_id: str | None) -> str | None:
    if not integration_id:
        return None
    if "\x00" in integration_id or len(integration_id) > 64 or await session.get(Integration, integration_id) is None:
        raise InvalidInput(f"no integration with id {integration_id!r}", field="integration_id")
    return integration_id


async def _make_room(
    session: AsyncSession, model: type[GroupingRule] | type[RoutingRule], position: int, rule_id: str | None
) -> int:
    """Rules at ``position`` and after move one down, so a rule put there is tried before them."""
    query = update(model).where(model.position >= position).values(position=model.position + 1)
    if rule_id is not None:
        query = query.where(model.id != rule_id)
    await session.execute(query)
    return position


async def _next_position(session: AsyncSession, model: type[GroupingRule] | type[RoutingRule]) -> int:
    highest = await session.scalar(select(func.max(model.position)))
    return 0 if highest is None else int(highest) + 1


# --- grouping rules -------------------------------------------------------------------------


async def list_grouping_rules(session: AsyncSession) -> list[GroupingRule]:
    """Grouping rules in the order they are tried."""
    return list(await session.scalars(select(GroupingRule).order_by(GroupingRule.position, GroupingRule.id)))


async def get_grouping_rule(session: AsyncSession, rule_id: str) -> GroupingRule:
    _check_id(rule_id, what="grouping rule", field="rule_id")
    rule = await session.get(GroupingRule, rule_id)
    if rule is None:
        raise NotFound(f"no grouping rule with id {rule_id!r}", field="rule_id")
    return rule


async def create_grouping_rule(
    session: AsyncSession,
    actor: Actor,
    *,
    name: str,
    by: Sequence[str],
    matchers: Mapping[str, Any] | None = None,
    window_minutes: int = 60,
    integration_id: str | None = None,
    position: int | None = None,
) -> GroupingRule:
    """Add a grouping rule; without a position it is tried last (admins only)."""
    actor.require(Scope.admin)
    checked_by = check_by(by)
    if not checked_by:
        raise InvalidInput("name at least one label to group by", field="by")
    rule = GroupingRule(
        name=check_name(name),
        by=checked_by,
        matchers=check_matchers(matchers),
        window_minutes=check_window(window_minutes),
        integration_id=await _check_integration_ref(session, integration_id),
        position=(
            await _make_room(session, GroupingRule, check_position(position), None)
            if position is not None
            else await _next_position(session, GroupingRule)
        ),
    )
    session.add(rule)
    await session.flush()
    return rule


_UNSET: Any = object()


async def update_grouping_rule(
    session: AsyncSession,
    actor: Actor,
    rule: GroupingRule,
    *,
    name: str | None = None,
    by: Sequence[str] | None = None,
    matchers: Mapping[str, Any] | None = None,
    window_minutes: int | None = None,
    integration_id: str | None = _UNSET,
    position: int | None = None,
) -> GroupingRule:
    """Change a grouping rule; omitted fields stay (admins only)."""
    actor.require(Scope.admin)
    if name is not None:
        rule.name = check_name(name)
    if by is not None:
        checked_by = check_by(by)
        if not checked_by:
            raise InvalidInput("name at least one label to group by", field="by")
        rule.by = checked_by
    if matchers is not None:
        rule.matchers = check_matchers(matchers)
    if window_minutes is not None:
        rule.window_minutes = check_window(window_minutes)
    if integration_id is not _UNSET:
        rule.integration_id = await _check_integration_ref(session, integration_id)
    if position is not None:
        rule.position = await _make_room(session, GroupingRule, check_position(position), rule.id)
    await session.flush()
    return rule


async def delete_grouping_rule(session: AsyncSession, actor: Actor, rule: GroupingRule) -> None:
    """Delete a grouping rule; groups it made stay as they are (admins only)."""
    actor.require(Scope.admin)
    await session.delete(rule)
    await session.flush()


# --- routing rules --------------------------------------------------------------------------


def parse_severity(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    if value not in {s.value for s in Severity}:
        allowed = ", ".join(s.value for s in Severity)
        raise InvalidInput(f"{value!r} is not a severity; use one of: {allowed}", field="severity")
    return value


def parse_component_status(value: str) -> str:
    if value not in {s.value for s in ComponentStatus}:
        allowed = ", ".join(s.value for s in ComponentStatus)
        raise InvalidInput(f"{value!r} is not a component status; use one of: {allowed}", field="component_status")
    return value


def parse_action(value: str) -> RuleAction:
    if value not in {a.value for a in RuleAction}:
        allowed = ", ".join(a.value for a in RuleAction)
        raise InvalidInput(f"{value!r} is not an action; use one of: {allowed}", field="action")
    return RuleAction(value)


async def check_component_ids(session: AsyncSession, component_ids: Sequence[Any] | None) -> list[str]:
    """Component ids that exist (groups of components included), without repeats."""
    if component_ids is None:
        return []
    if isinstance(component_ids, str) or not isinstance(component_ids, Sequence):
        raise InvalidInput("component_ids must be a list of component ids", field="component_ids")
    wanted: list[str] = []
    for index, value in enumerate(component_ids):
        if not isinstance(value, str) or not value or "\x00" in value or len(value) > 64:
            raise InvalidInput(f"{value!r} is not a component id", field=f"component_ids.{index}")
        if value not in wanted:
            wanted.append(value)
    if wanted:
        found = set(await session.scalars(select(Component.id).where(Component.id.in_(wanted))))
        for index, value in enumerate(wanted):
            if value not in found:
                raise InvalidInput(f"no component with id {value!r}", field=f"component_ids.{index}")
    return wanted


async def check_escalation_policy(session: AsyncSession, policy_id: str | None) -> str | None:
    if not policy_id:
        return None
    if "\x00" in policy_id or len(policy_id) > 64 or await session.get(EscalationPolicy, policy_id) is None:
        raise InvalidInput(f"no escalation policy with id {policy_id!r}", field="escalation_policy_id")
    return policy_id


async def list_escalation_policies(session: AsyncSession) -> list[EscalationPolicy]:
    """The escalation policies a routing rule may page, by name."""
    return list(await session.scalars(select(EscalationPolicy).order_by(EscalationPolicy.name)))


async def list_routing_rules(session: AsyncSession) -> list[RoutingRule]:
    """Routing rules in the order they are tried (the first that matches routes the group)."""
    return list(await session.scalars(select(RoutingRule).order_by(RoutingRule.position, RoutingRule.id)))


async def get_routing_rule(session: AsyncSession, rule_id: str) -> RoutingRule:
    _check_id(rule_id, what="routing rule", field="rule_id")
    rule = await session.get(RoutingRule, rule_id)
    if rule is None:
        raise NotFound(f"no routing rule with id {rule_id!r}", field="rule_id")
    return rule


async def create_routing_rule(
    session: AsyncSession,
    actor: Actor,
    *,
    name: str,
    matchers: Mapping[str, Any] | None = None,
    component_ids: Sequence[str] | None = None,
    component_status: str = ComponentStatus.major_outage,
    severity: str | None = None,
    escalation_policy_id: str | None = None,
    action: str = RuleAction.none,
    integration_id: str | None = None,
    enabled: bool = True,
    position: int | None = None,
) -> RoutingRule:
    """Add a routing rule; without a position it is tried last (admins only)."""
    actor.require(Scope.admin)
    rule = RoutingRule(
        name=check_name(name),
        matchers=check_matchers(matchers),
        component_ids=await check_component_ids(session, component_ids),
        component_status=parse_component_status(str(component_status)),
        severity=parse_severity(severity),
        escalation_policy_id=await check_escalation_policy(session, escalation_policy_id),
        action=parse_action(str(action)),
        integration_id=await _check_integration_ref(session, integration_id),
        enabled=bool(enabled),
        position=(
            await _make_room(session, RoutingRule, check_position(position), None)
            if position is not None
            else await _next_position(session, RoutingRule)
        ),
    )
    _check_declarable(rule)
    session.add(rule)
    await session.flush()
    return rule


def _check_declarable(rule: RoutingRule) -> None:
    if rule.action == RuleAction.declare and not rule.component_ids and not rule.severity:
        # A declared incident needs something to say: the components it affects or how bad it is.
        raise InvalidInput("a rule that declares names its components or a severity", field="action")


async def update_routing_rule(
    session: AsyncSession,
    actor: Actor,
    rule: RoutingRule,
    *,
    name: str | None = None,
    matchers: Mapping[str, Any] | None = None,
    component_ids: Sequence[str] | None = None,
    component_status: str | None = None,
    severity: str | None = _UNSET,
    escalation_policy_id: str | None = _UNSET,
    action: str | None = None,
    integration_id: str | None = _UNSET,
    enabled: bool | None = None,
    position: int | None = None,
) -> RoutingRule:
    """Change a routing rule; omitted fields stay, null clears the optional ones (admins only)."""
    actor.require(Scope.admin)
    if name is not None:
        rule.name = check_name(name)
    if matchers is not None:
        rule.matchers = check_matchers(matchers)
    if component_ids is not None:
        rule.component_ids = await check_component_ids(session, component_ids)
    if component_status is not None:
        rule.component_status = parse_component_status(str(component_status))
    if severity is not _UNSET:
        rule.severity = parse_severity(severity)
    if escalation_policy_id is not _UNSET:
        rule.escalation_policy_id = await check_escalation_policy(session, escalation_policy_id)
    if action is not None:
        rule.action = parse_action(str(action))
    if integration_id is not _UNSET:
        rule.integration_id = await _check_integration_ref(session, integration_id)
    if enabled is not None:
        rule.enabled = bool(enabled)
    _check_declarable(rule)
    if position is not None:
        rule.position = await _make_room(session, RoutingRule, check_position(position), rule.id)
    await session.flush()
    return rule


async def delete_routing_rule(session: AsyncSession, actor: Actor, rule: RoutingRule) -> None:
    """Delete a routing rule; groups it routed keep their routing (admins only)."""
    actor.require(Scope.admin)
    await session.delete(rule)
    await session.flush()


# --- alert groups and alerts ----------------------------------------------------------------


def parse_alert_status(value: str | None, *, field: str = "status") -> AlertStatus | None:
    if value is None or value == "":
        return None
    if value not in {s.value for s in AlertStatus}:
        allowed = ", ".join(s.value for s in AlertStatus)
        raise InvalidInput(f"{value!r} is not an alert status; use one of: {allowed}", field=field)
    return AlertStatus(value)


async def list_groups(
    session: AsyncSession, *, state: str | None = None, limit: int = 50, offset: int = 0
) -> list[AlertGroup]:
    """Alert groups: open ones first (latest alert first), then resolved ones (latest resolved first).

    ``state`` is "open", "resolved" or None for both.
    """
    open_values = [s.value for s in OPEN_STATUSES]
    is_open = AlertGroup.status.in_(open_values)
    query = select(AlertGroup)
    if state == "open":
        query = query.where(is_open)
    elif state == "resolved":
        query = query.where(AlertGroup.status == AlertStatus.resolved.value)
    elif state is not None:
        raise InvalidInput(f"{state!r} is not a state; use open or resolved", field="status")
    # Open first; within each part the latest first (resolved by when they resolved).
    rank = func.coalesce(AlertGroup.resolved_at, AlertGroup.last_alert_at)
    query = query.order_by(is_open.desc(), rank.desc(), AlertGroup.id.desc()).limit(limit).offset(offset)
    return list(await session.scalars(query))


async def get_group(session: AsyncSession, group_id: str) -> AlertGroup:
    """One alert group, or 404."""
    _check_id(group_id, what="alert group", field="group_id")
    group = await session.get(AlertGroup, group_id)
    if group is None:
        raise NotFound(f"no alert group with id {group_id!r}", field="group_id")
    return group


async def alerts_of(session: AsyncSession, group_id: str, *, limit: int = 500) -> list[Alert]:
    """A group's alerts: open ones first, then the latest seen."""
    is_open = Alert.status.in_([s.value for s in OPEN_STATUSES])
    return list(
        await session.scalars(
            select(Alert)
            .where(Alert.group_id == group_id)
            .order_by(is_open.desc(), Alert.last_seen_at.desc(), Alert.id.desc())
            .limit(limit)
        )
    )


async def list_alerts(
    session: AsyncSession,
    *,
    status: str | None = None,
    integration_id: str | None = None,
    group_id: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[Alert]:
    """Alerts, latest seen first, filtered by status ("open" means firing or acknowledged) and source."""
    query = select(Alert)
    if status == "open":
        query = query.where(Alert.status.in_([s.value for s in OPEN_STATUSES]))
    elif status:
        parsed = parse_alert_status(status)
        query = query.where(Alert.status == parsed)
    if integration_id:
        await get_integration(session, integration_id)
        query = query.where(Alert.integration_id == integration_id)
    if group_id:
        await get_group(session, group_id)
        query = query.where(Alert.group_id == group_id)
    query = query.order_by(Alert.last_seen_at.desc(), Alert.id.desc()).limit(limit).offset(offset)
    return list(await session.scalars(query))


async def components_by_id(session: AsyncSession, ids: Sequence[str]) -> dict[str, Component]:
    if not ids:
        return {}
    return {c.id: c for c in await session.scalars(select(Component).where(Component.id.in_(list(ids))))}


async def incidents_by_id(session: AsyncSession, ids: Sequence[str | None]) -> dict[str, Incident]:
    wanted = [i for i in ids if i]
    if not wanted:
        return {}
    return {i.id: i for i in await session.scalars(select(Incident).where(Incident.id.in_(wanted)))}


# --- declaring from a group -----------------------------------------------------------------


@dataclass
class DeclareDefaults:
    """What the declare form starts with when declaring from an alert group."""

    name: str
    severity: str
    body: str
    components: dict[str, str]


async def declare_defaults(session: AsyncSession, group: AlertGroup) -> DeclareDefaults:
    """The group's title, suggested severity and components (with the status its rule sets)."""
    status = ComponentStatus.major_outage.value
    if group.routing_rule_id:
        rule = await session.get(RoutingRule, group.routing_rule_id)
        if rule is not None:
            status = rule.component_status
    components = await components_by_id(session, group.component_ids or [])
    names = [components[c].name for c in group.component_ids or [] if c in components]
    affecting = f" affecting {', '.join(names)}" if names else ""
    return DeclareDefaults(
        name=group.title[: incidents.MAX_NAME],
        severity=group.suggested_severity or Severity.SEV3.value,
        body=f"We are investigating an issue{affecting}.",
        components={c: status for c in group.component_ids or [] if c in components},
    )


def _check_unlinked(group: AlertGroup) -> None:
    if group.incident_id:
        raise Conflict("this alert group already has an incident", field="group_id")


async def link_incident(session: AsyncSession, actor: Actor | None, group: AlertGroup, incident: Incident) -> None:
    """Link a group to the incident declared from it: no longer proposed, and noted on the timeline."""
    _check_unlinked(group)
    group.incident_id = incident.id
    group.proposed = False
    await incidents.timeline(
        session,
        incident,
        actor,
        "alert_group_linked",
        f"declared from alert group “{group.title}” ({group.open_count} open of {group.alert_count} alerts)",
        alert_group_id=group.id,
    )
    await session.flush()


async def declare_from_group(
    session: AsyncSession,
    actor: Actor,
    group: AlertGroup,
    *,
    name: str | None = None,
    severity: str | None = None,
    body: str | None = None,
    status: str = IncidentStatus.investigating,
    components: Mapping[str, str] | None = None,
    next_update_at: datetime | None = None,
    roles: Mapping[str, str] | None = None,
    deliver_notifications: bool = True,
    template_id: str | None = None,
) -> Incident:
    """Declare an incident from an alert group (the group's values where none are given) and link it."""
    actor.require(Scope.write)
    _check_unlinked(group)
    defaults = await declare_defaults(session, group)
    roles = dict(roles or {})
    declared = await incidents.declare(
        session,
        actor,
        name=defaults.name if name is None else name,
        severity=defaults.severity if severity is None else severity,
        body=defaults.body if body is None else body,
        status=status,
        components=defaults.components if components is None else components,
        next_update_at=next_update_at,
        roles=roles,
        deliver_notifications=deliver_notifications,
        template_id=template_id,
    )
    await link_incident(session, actor, group, declared.incident)
    return declared.incident
