"""Console pages for alerts: alert groups, declaring from a group, integrations, grouping and routing rules.

Matchers are typed one a line, ``label=value`` for an exact value or ``label=~pattern`` for a
regular expression; a generic integration's mapping is typed ``field=dotted.path``, with
``resolved_values=resolved,ok``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from crisisdesk.auth.deps import ConsoleAdmin, ConsoleReader, ConsoleWriter, Tx
from crisisdesk.auth.models import Scope
from crisisdesk.auth.service import Actor
from crisisdesk.catalog import service as catalog
from crisisdesk.catalog.models import ComponentStatus
from crisisdesk.incident.models import Severity
from crisisdesk.incident.views import declare_fields, declare_form_context
from crisisdesk.kit.console import (
    Failure,
    as_list,
    discard,
    failure_of,
    form_values,
    render,
    see_other,
    text,
)
from crisisdesk.kit.errors import DomainError, InvalidInput
from crisisdesk.kit.runtime import runtime_of
from crisisdesk.signal import service
from crisisdesk.signal.models import AlertGroup, GroupingRule, Integration, RoutingRule, RuleAction

router = APIRouter(include_in_schema=False)

# A field the service names inside a structure ("matchers.team.regex") is shown by its form field.
_FORM_FIELDS = ("matchers", "by", "mapping", "component_ids")


def _failure(exc: DomainError, form: str, values: dict[str, Any]) -> Failure:
    failure = failure_of(exc, form, values)
    for name in _FORM_FIELDS:
        if failure.field and failure.field.startswith(name + "."):
            failure.field = name
    return failure


def _status_of(failure: Failure | None) -> int:
    return 200 if failure is None else int(failure.values.get("_status", 422))


# --- form text ↔ structures -----------------------------------------------------------------


def parse_matchers(raw: str) -> dict[str, Any]:
    """``label=value`` or ``label=~pattern``, one a line."""
    matchers: dict[str, Any] = {}
    for number, line in enumerate(raw.splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        if "=" not in line:
            raise InvalidInput(
                f"line {number}: write label=value, or label=~pattern for a regular expression", field="matchers"
            )
        key, value = line.split("=", 1)
        key = key.strip()
        if value.startswith("~"):
            matchers[key] = {"regex": value[1:].strip()}
        else:
            matchers[key] = value.strip()
    return matchers


def matchers_text(matchers: dict[str, Any]) -> str:
    lines = []
    for key, value in (matchers or {}).items():
        lines.append(f"{key}=~{value['regex']}" if isinstance(value, dict) else f"{key}={value}")
    return "\n".join(lines)


def parse_by(raw: str) -> list[str]:
    return [part.strip() for part in raw.replace("\n", ",").split(",") if part.strip()]


def parse_mapping(raw: str) -> dict[str, Any]:
    """``field=dotted.path`` one a line; ``resolved_values=a,b``."""
    mapping: dict[str, Any] = {}
    for number, line in enumerate(raw.splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        if "=" not in line:
            raise InvalidInput(f"line {number}: write field=dotted.path, such as dedup_key=data.id", field="mapping")
        key, value = (part.strip() for part in line.split("=", 1))
        mapping[key] = [v.strip() for v in value.split(",") if v.strip()] if key in service.MAPPING_LISTS else value
    return mapping


def mapping_text(mapping: dict[str, Any]) -> str:
    return "\n".join(
        f"{key}={','.join(value) if isinstance(value, list) else value}" for key, value in (mapping or {}).items()
    )


def parse_int(raw: str, *, field: str, default: int | None = None) -> int | None:
    raw = raw.strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise InvalidInput(f"{raw!r} is not a whole number", field=field) from None


def _int(raw: str, *, field: str, default: int) -> int:
    value = parse_int(raw, field=field, default=default)
    return default if value is None else value


# --- alert groups ---------------------------------------------------------------------------


@router.get("/console/alerts", response_class=HTMLResponse)
async def alerts_page(request: Request, actor: ConsoleReader, session: Tx) -> HTMLResponse:
    """Alert groups: open ones first, then the latest resolved."""
    open_groups = await service.list_groups(session, state="open", limit=200)
    resolved = await service.list_groups(session, state="resolved", limit=50)
    groups = open_groups + resolved
    component_ids = sorted({c for g in groups for c in g.component_ids or []})
    return render(
        request,
        "signal/alerts.html",
        actor=actor,
        open_groups=open_groups,
        resolved_groups=resolved,
        integrations={i.id: i for i in await service.list_integrations(session)},
        components=await service.components_by_id(session, component_ids),
        incidents=await service.incidents_by_id(session, [g.incident_id for g in groups]),
    )


@router.get("/console/alerts/groups/{group_id}", response_class=HTMLResponse)
async def group_page(request: Request, group_id: str, actor: ConsoleReader, session: Tx) -> HTMLResponse:
    """One alert group: its routing, its incident, and its alerts with labels and annotations."""
    group = await service.get_group(session, group_id)
    return render(
        request,
        "signal/group.html",
        actor=actor,
        group=group,
        alerts=await service.alerts_of(session, group.id),
        integrations={i.id: i for i in await service.list_integrations(session)},
        components=await service.components_by_id(session, group.component_ids or []),
        incident=(await service.incidents_by_id(session, [group.incident_id])).get(group.incident_id or ""),
        routing_rule=await session.get(RoutingRule, group.routing_rule_id) if group.routing_rule_id else None,
        grouping_rule=await session.get(GroupingRule, group.grouping_rule_id) if group.grouping_rule_id else None,
    )


async def _declare_page(
    request: Request, actor: Actor, session: AsyncSession, group: AlertGroup, *, failure: Failure | None = None
) -> HTMLResponse:
    if failure is None:
        # The form starts filled in from the group, as if sent back with these values.
        defaults = await service.declare_defaults(session, group)
        values: dict[str, Any] = {"name": defaults.name, "severity": defaults.severity, "body": defaults.body}
        values.update({f"component:{cid}": status for cid, status in defaults.components.items()})
        shown = Failure(form="declare", message="", values=values)
    else:
        shown = failure
    return render(
        request,
        "console/incident_new.html",
        actor=actor,
        failure=shown,
        status_code=_status_of(failure),
        **await declare_form_context(session),
        alert_group=group,
        declare_action=f"/console/alerts/groups/{group.id}/declare",
    )


@router.get("/console/alerts/groups/{group_id}/declare", response_class=HTMLResponse)
async def declare_form(request: Request, group_id: str, actor: ConsoleWriter, session: Tx) -> HTMLResponse:
    """The declare form, filled in from the group: title, suggested severity, components."""
    group = await service.get_group(session, group_id)
    return await _declare_page(request, actor, session, group)


@router.post("/console/alerts/groups/{group_id}/declare", response_class=HTMLResponse)
async def declare(request: Request, group_id: str, actor: ConsoleWriter, session: Tx) -> Response:
    """Declare the incident, link the group to it and open the incident's page."""
    group = await service.get_group(session, group_id)
    values = await form_values(request)
    try:
        incident = await service.declare_from_group(session, actor, group, **declare_fields(values))
    except DomainError as exc:
        await discard(session)
        group = await service.get_group(session, group_id)
        return await _declare_page(request, actor, session, group, failure=failure_of(exc, "declare", values))
    return see_other(f"/console/incidents/{incident.id}")


# --- integrations ---------------------------------------------------------------------------


async def _integrations_page(
    request: Request, actor: Actor, session: AsyncSession, *, failure: Failure | None = None
) -> HTMLResponse:
    return render(
        request,
        "signal/integrations.html",
        actor=actor,
        failure=failure,
        status_code=_status_of(failure),
        integrations=await service.list_integrations(session),
        counts=await service.open_alert_counts(session),
        kinds=service.CREATABLE_KINDS,
    )


@router.get("/console/alerts/integrations", response_class=HTMLResponse)
async def integrations_page(request: Request, actor: ConsoleReader, session: Tx) -> HTMLResponse:
    """Every alert source with its last alert and open alert count; admins add new ones."""
    return await _integrations_page(request, actor, session)


@router.post("/console/alerts/integrations", response_class=HTMLResponse)
async def create_integration(request: Request, actor: ConsoleAdmin, session: Tx) -> Response:
    """Add an alert source and open its page (with its URL and configuration)."""
    values = await form_values(request)
    try:
        integration = await service.create_integration(
            session,
            actor,
            name=text(values, "name"),
            kind=text(values, "kind"),
            mapping=parse_mapping(text(values, "mapping")),
            rate_limit_per_minute=_int(
                text(values, "rate_limit_per_minute"), field="rate_limit_per_minute", default=600
            ),
            enabled=True,
        )
    except DomainError as exc:
        await discard(session)
        return await _integrations_page(request, actor, session, failure=_failure(exc, "integration", values))
    return see_other(f"/console/alerts/integrations/{integration.id}")


async def _integration_page(
    request: Request, actor: Actor, session: AsyncSession, integration_id: str, *, failure: Failure | None = None
) -> HTMLResponse:
    integration = await service.get_integration(session, integration_id)
    base_url = runtime_of(request).settings.base_url
    admin = actor.can(Scope.admin)
    return render(
        request,
        "signal/integration.html",
        actor=actor,
        failure=failure,
        status_code=_status_of(failure),
        integration=integration,
        editable=integration.kind in {k.value for k in service.CREATABLE_KINDS},
        url=service.receiving_url(base_url, integration) if admin else None,
        snippet=service.config_snippet(base_url, integration) if admin else None,
        open_alerts=(await service.open_alert_counts(session)).get(integration.id, 0),
        mapping=mapping_text(integration.mapping),
        alerts=await service.list_alerts(session, integration_id=integration.id, limit=20),
    )


@router.get("/console/alerts/integrations/{integration_id}", response_class=HTMLResponse)
async def integration_page(request: Request, integration_id: str, actor: ConsoleReader, session: Tx) -> HTMLResponse:
    """One alert source: its URL and a configuration to copy (admins), its latest alerts."""
    return await _integration_page(request, actor, session, integration_id)


async def _on_integration(
    request: Request,
    actor: Actor,
    session: AsyncSession,
    integration_id: str,
    form: str,
    action: Callable[[Integration, dict[str, Any]], Awaitable[str | None]],
) -> Response:
    integration = await service.get_integration(session, integration_id)
    values = await form_values(request)
    try:
        done = await action(integration, values)
    except DomainError as exc:
        await discard(session)
        return await _integration_page(request, actor, session, integration_id, failure=_failure(exc, form, values))
    return see_other(done or f"/console/alerts/integrations/{integration_id}")


@router.post("/console/alerts/integrations/{integration_id}", response_class=HTMLResponse)
async def update_integration(request: Request, integration_id: str, actor: ConsoleAdmin, session: Tx) -> Response:
    """Change the name, mapping, rate limit or whether it is enabled."""

    async def action(integration: Integration, values: dict[str, Any]) -> None:
        await service.update_integration(
            session,
            actor,
            integration,
            name=text(values, "name"),
            mapping=parse_mapping(text(values, "mapping")),
            rate_limit_per_minute=parse_int(text(values, "rate_limit_per_minute"), field="rate_limit_per_minute"),
            enabled=bool(values.get("enabled")),
        )

    return await _on_integration(request, actor, session, integration_id, "integration", action)


@router.post("/console/alerts/integrations/{integration_id}/rotate", response_class=HTMLResponse)
async def rotate_token(request: Request, integration_id: str, actor: ConsoleAdmin, session: Tx) -> Response:
    """A new secret token: the old URL or routing key stops working."""

    async def action(integration: Integration, values: dict[str, Any]) -> None:
        await service.rotate_token(session, actor, integration)

    return await _on_integration(request, actor, session, integration_id, "rotate", action)


@router.post("/console/alerts/integrations/{integration_id}/delete", response_class=HTMLResponse)
async def delete_integration(request: Request, integration_id: str, actor: ConsoleAdmin, session: Tx) -> Response:
    """Delete the integration with its alerts."""

    async def action(integration: Integration, values: dict[str, Any]) -> str:
        await service.delete_integration(session, actor, integration)
        return "/console/alerts/integrations"

    return await _on_integration(request, actor, session, integration_id, "delete", action)


# --- grouping and routing rules -------------------------------------------------------------


async def _rule_choices(session: AsyncSession) -> dict[str, Any]:
    return {
        "integrations": await service.list_integrations(session),
        "components": await catalog.list_components(session),
        "policies": await service.list_escalation_policies(session),
        "statuses": list(ComponentStatus),
        "severities": list(Severity),
        "actions": list(RuleAction),
        "matchers_text": matchers_text,
    }


async def _rules_page(
    request: Request, actor: Actor, session: AsyncSession, *, failure: Failure | None = None
) -> HTMLResponse:
    return render(
        request,
        "signal/rules.html",
        actor=actor,
        failure=failure,
        status_code=_status_of(failure),
        grouping_rules=await service.list_grouping_rules(session),
        routing_rules=await service.list_routing_rules(session),
        **await _rule_choices(session),
    )


@router.get("/console/alerts/rules", response_class=HTMLResponse)
async def rules_page(request: Request, actor: ConsoleReader, session: Tx) -> HTMLResponse:
    """Grouping and routing rules in the order they are tried; admins add and change them."""
    return await _rules_page(request, actor, session)


def _grouping_fields(values: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": text(values, "name"),
        "by": parse_by(text(values, "by")),
        "matchers": parse_matchers(text(values, "matchers")),
        "window_minutes": _int(text(values, "window_minutes"), field="window_minutes", default=60),
        "integration_id": text(values, "integration_id") or None,
        "position": parse_int(text(values, "position"), field="position"),
    }


def _routing_fields(values: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": text(values, "name"),
        "matchers": parse_matchers(text(values, "matchers")),
        "component_ids": as_list(values.get("component_ids")),
        "component_status": text(values, "component_status") or ComponentStatus.major_outage.value,
        "severity": text(values, "severity") or None,
        "escalation_policy_id": text(values, "escalation_policy_id") or None,
        "action": text(values, "action") or RuleAction.none.value,
        "integration_id": text(values, "integration_id") or None,
        "enabled": bool(values.get("enabled")),
        "position": parse_int(text(values, "position"), field="position"),
    }


@router.post("/console/alerts/grouping-rules", response_class=HTMLResponse)
async def create_grouping_rule(request: Request, actor: ConsoleAdmin, session: Tx) -> Response:
    """Add a grouping rule."""
    values = await form_values(request)
    try:
        await service.create_grouping_rule(session, actor, **_grouping_fields(values))
    except DomainError as exc:
        await discard(session)
        return await _rules_page(request, actor, session, failure=_failure(exc, "grouping", values))
    return see_other("/console/alerts/rules#grouping")


@router.post("/console/alerts/routing-rules", response_class=HTMLResponse)
async def create_routing_rule(request: Request, actor: ConsoleAdmin, session: Tx) -> Response:
    """Add a routing rule."""
    values = await form_values(request)
    try:
        await service.create_routing_rule(session, actor, **_routing_fields(values))
    except DomainError as exc:
        await discard(session)
        return await _rules_page(request, actor, session, failure=_failure(exc, "routing", values))
    return see_other("/console/alerts/rules#routing")


async def _rule_page(
    request: Request,
    actor: Actor,
    session: AsyncSession,
    kind: str,
    rule_id: str,
    *,
    failure: Failure | None = None,
) -> HTMLResponse:
    rule: GroupingRule | RoutingRule
    if kind == "grouping":
        rule = await service.get_grouping_rule(session, rule_id)
    else:
        rule = await service.get_routing_rule(session, rule_id)
    return render(
        request,
        "signal/rule.html",
        actor=actor,
        failure=failure,
        status_code=_status_of(failure),
        kind=kind,
        rule=rule,
        **await _rule_choices(session),
    )


@router.get("/console/alerts/grouping-rules/{rule_id}", response_class=HTMLResponse)
async def grouping_rule_page(request: Request, rule_id: str, actor: ConsoleReader, session: Tx) -> HTMLResponse:
    """One grouping rule; admins change or delete it."""
    return await _rule_page(request, actor, session, "grouping", rule_id)


@router.get("/console/alerts/routing-rules/{rule_id}", response_class=HTMLResponse)
async def routing_rule_page(request: Request, rule_id: str, actor: ConsoleReader, session: Tx) -> HTMLResponse:
    """One routing rule; admins change or delete it."""
    return await _rule_page(request, actor, session, "routing", rule_id)


async def _on_rule(
    request: Request, actor: Actor, session: AsyncSession, kind: str, rule_id: str, *, delete: bool
) -> Response:
    values = await form_values(request)
    rule: GroupingRule | RoutingRule
    try:
        if kind == "grouping":
            rule = await service.get_grouping_rule(session, rule_id)
            if delete:
                await service.delete_grouping_rule(session, actor, rule)
            else:
                await service.update_grouping_rule(session, actor, rule, **_grouping_fields(values))
        else:
            rule = await service.get_routing_rule(session, rule_id)
            if delete:
                await service.delete_routing_rule(session, actor, rule)
            else:
                await service.update_routing_rule(session, actor, rule, **_routing_fields(values))
    except DomainError as exc:
        if exc.field == "rule_id":
            raise
        await discard(session)
        return await _rule_page(request, actor, session, kind, rule_id, failure=_failure(exc, kind, values))
    return see_other(f"/console/alerts/rules#{kind}")


@router.post("/console/alerts/grouping-rules/{rule_id}", response_class=HTMLResponse)
async def update_grouping_rule(request: Request, rule_id: str, actor: ConsoleAdmin, session: Tx) -> Response:
    """Change a grouping rule."""
    return await _on_rule(request, actor, session, "grouping", rule_id, delete=False)


@router.post("/console/alerts/grouping-rules/{rule_id}/delete", response_class=HTMLResponse)
async def delete_grouping_rule(request: Request, rule_id: str, actor: ConsoleAdmin, session: Tx) -> Response:
    """Delete a grouping rule."""
    return await _on_rule(request, actor, session, "grouping", rule_id, delete=True)


@router.post("/console/alerts/routing-rules/{rule_id}", response_class=HTMLResponse)
async def update_routing_rule(request: Request, rule_id: str, actor: ConsoleAdmin, session: Tx) -> Response:
    """Change a routing rule."""
    return await _on_rule(request, actor, session, "routing", rule_id, delete=False)


@router.post("/console/alerts/routing-rules/{rule_id}/delete", response_class=HTMLResponse)
async def delete_routing_rule(request: Request, rule_id: str, actor: ConsoleAdmin, session: Tx) -> Response:
    """Delete a routing rule."""
    return await _on_rule(request, actor, session, "routing", rule_id, delete=True)
