"""REST API: integrations, grouping and routing rules, alert groups (and declaring from one), alerts."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query, Request, Response, status

from crisisdesk.auth.deps import ApiAdmin, ApiReader, ApiWriter, Tx
from crisisdesk.auth.models import Scope
from crisisdesk.auth.schemas import errors
from crisisdesk.auth.service import Actor
from crisisdesk.incident import service as incidents
from crisisdesk.incident.models import Incident, Kind
from crisisdesk.incident.schemas import IncidentRead
from crisisdesk.kit.runtime import runtime_of
from crisisdesk.signal import service
from crisisdesk.signal.models import Alert, GroupingRule, Integration, RoutingRule
from crisisdesk.signal.schemas import (
    AlertGroupDeclare,
    AlertGroupDetailRead,
    AlertGroupRead,
    AlertRead,
    GroupingRuleCreate,
    GroupingRulePatch,
    GroupingRuleRead,
    IntegrationCreate,
    IntegrationPatch,
    IntegrationRead,
    RoutingRuleCreate,
    RoutingRulePatch,
    RoutingRuleRead,
)

router = APIRouter()


def _integration_read(request: Request, actor: Actor, integration: Integration, open_alerts: int) -> IntegrationRead:
    admin = actor.can(Scope.admin)
    return IntegrationRead(
        id=integration.id,
        name=integration.name,
        kind=integration.kind,
        token=integration.token if admin else None,
        url=service.receiving_url(runtime_of(request).settings.base_url, integration) if admin else None,
        mapping=integration.mapping or {},
        rate_limit_per_minute=integration.rate_limit_per_minute,
        enabled=integration.enabled,
        created_at=integration.created_at,
        last_received_at=integration.last_received_at,
        open_alerts=open_alerts,
    )


async def _one(request: Request, session: Tx, actor: Actor, integration: Integration) -> IntegrationRead:
    counts = await service.open_alert_counts(session)
    return _integration_read(request, actor, integration, counts.get(integration.id, 0))


@router.get(
    "/integrations",
    summary="List integrations",
    tags=["alert sources"],
    response_model=list[IntegrationRead],
    responses=errors(401, 403),
)
async def list_integrations(request: Request, session: Tx, actor: ApiReader) -> list[IntegrationRead]:
    """Every alert source with its open alert count; tokens and URLs for admins only."""
    counts = await service.open_alert_counts(session)
    return [_integration_read(request, actor, i, counts.get(i.id, 0)) for i in await service.list_integrations(session)]


@router.post(
    "/integrations",
    summary="Add an integration",
    tags=["alert sources"],
    status_code=status.HTTP_201_CREATED,
    response_model=IntegrationRead,
    responses=errors(401, 403, 422),
)
async def create_integration(
    data: IntegrationCreate, request: Request, session: Tx, actor: ApiAdmin
) -> IntegrationRead:
    """Add an alert source (admins only); the answer carries its secret URL or routing key."""
    integration = await service.create_integration(
        session,
        actor,
        name=data.name,
        kind=data.kind,
        mapping=data.mapping,
        rate_limit_per_minute=data.rate_limit_per_minute,
        enabled=data.enabled,
    )
    return _integration_read(request, actor, integration, 0)


@router.get(
    "/integrations/{integration_id}",
    summary="Get an integration",
    tags=["alert sources"],
    response_model=IntegrationRead,
    responses=errors(401, 403, 404),
)
async def get_integration(integration_id: str, request: Request, session: Tx, actor: ApiReader) -> IntegrationRead:
    """One alert source; its token and URL for admins only."""
    return await _one(request, session, actor, await service.get_integration(session, integration_id))


@router.patch(
    "/integrations/{integration_id}",
    summary="Change an integration",
    tags=["alert sources"],
    response_model=IntegrationRead,
    responses=errors(401, 403, 404, 409, 422),
)
async def update_integration(
    integration_id: str, data: IntegrationPatch, request: Request, session: Tx, actor: ApiAdmin
) -> IntegrationRead:
    """Change the name, mapping, rate limit or enabled flag (admins only)."""
    integration = await service.get_integration(session, integration_id)
    await service.update_integration(
        session,
        actor,
        integration,
        name=data.name,
        mapping=data.mapping,
        rate_limit_per_minute=data.rate_limit_per_minute,
        enabled=data.enabled,
    )
    return await _one(request, session, actor, integration)


@router.post(
    "/integrations/{integration_id}/rotate",
    summary="Rotate an integration's token",
    tags=["alert sources"],
    response_model=IntegrationRead,
    responses=errors(401, 403, 404, 409),
)
async def rotate_token(integration_id: str, request: Request, session: Tx, actor: ApiAdmin) -> IntegrationRead:
    """Give it a new secret: the old URL or routing key stops working at once (admins only)."""
    integration = await service.get_integration(session, integration_id)
    await service.rotate_token(session, actor, integration)
    return await _one(request, session, actor, integration)


@router.delete(
    "/integrations/{integration_id}",
    summary="Delete an integration",
    tags=["alert sources"],
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses={204: {"description": "Deleted, with its alerts.", "content": {}}, **errors(401, 403, 404, 409)},
)
async def delete_integration(integration_id: str, session: Tx, actor: ApiAdmin) -> Response:
    """Delete an alert source with its alerts and its own rules (admins only)."""
    await service.delete_integration(session, actor, await service.get_integration(session, integration_id))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/grouping-rules",
    summary="List grouping rules",
    tags=["alert rules"],
    response_model=list[GroupingRuleRead],
    responses=errors(401, 403),
)
async def list_grouping_rules(session: Tx, actor: ApiReader) -> list[GroupingRule]:
    """Grouping rules in the order they are tried."""
    return await service.list_grouping_rules(session)


@router.post(
    "/grouping-rules",
    summary="Add a grouping rule",
    tags=["alert rules"],
    status_code=status.HTTP_201_CREATED,
    response_model=GroupingRuleRead,
    responses=errors(401, 403, 422),
)
async def create_grouping_rule(data: GroupingRuleCreate, session: Tx, actor: ApiAdmin) -> GroupingRule:
    """Add a grouping rule (admins only); without a position it is tried last."""
    return await service.create_grouping_rule(
        session,
        actor,
        name=data.name,
        by=data.by,
        matchers=data.matchers,
        window_minutes=data.window_minutes,
        integration_id=data.integration_id,
        position=data.position,
    )


@router.get(
    "/grouping-rules/{rule_id}",
    summary="Get a grouping rule",
    tags=["alert rules"],
    response_model=GroupingRuleRead,
    responses=errors(401, 403, 404),
)
async def get_grouping_rule(rule_id: str, session: Tx, actor: ApiReader) -> GroupingRule:
    """One grouping rule."""
    return await service.get_grouping_rule(session, rule_id)


def _given(data: Any) -> dict[str, Any]:
    return {key: getattr(data, key) for key in data.model_fields_set}


@router.patch(
    "/grouping-rules/{rule_id}",
    summary="Change a grouping rule",
    tags=["alert rules"],
    response_model=GroupingRuleRead,
    responses=errors(401, 403, 404, 422),
)
async def update_grouping_rule(rule_id: str, data: GroupingRulePatch, session: Tx, actor: ApiAdmin) -> GroupingRule:
    """Change a grouping rule (admins only); omitted fields stay."""
    rule = await service.get_grouping_rule(session, rule_id)
    return await service.update_grouping_rule(session, actor, rule, **_given(data))


@router.delete(
    "/grouping-rules/{rule_id}",
    summary="Delete a grouping rule",
    tags=["alert rules"],
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses={204: {"description": "Deleted.", "content": {}}, **errors(401, 403, 404)},
)
async def delete_grouping_rule(rule_id: str, session: Tx, actor: ApiAdmin) -> Response:
    """Delete a grouping rule (admins only); the groups it made stay."""
    await service.delete_grouping_rule(session, actor, await service.get_grouping_rule(session, rule_id))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/routing-rules",
    summary="List routing rules",
    tags=["alert rules"],
    response_model=list[RoutingRuleRead],
    responses=errors(401, 403),
)
async def list_routing_rules(session: Tx, actor: ApiReader) -> list[RoutingRule]:
    """Routing rules in the order they are tried; the first that matches routes a group."""
    return await service.list_routing_rules(session)


@router.post(
    "/routing-rules",
    summary="Add a routing rule",
    tags=["alert rules"],
    status_code=status.HTTP_201_CREATED,
    response_model=RoutingRuleRead,
    responses=errors(401, 403, 422),
)
async def create_routing_rule(data: RoutingRuleCreate, session: Tx, actor: ApiAdmin) -> RoutingRule:
    """Add a routing rule (admins only); without a position it is tried last."""
    return await service.create_routing_rule(
        session,
        actor,
        name=data.name,
        matchers=data.matchers,
        component_ids=data.component_ids,
        component_status=data.component_status,
        severity=data.severity,
        escalation_policy_id=data.escalation_policy_id,
        action=data.action,
        integration_id=data.integration_id,
        enabled=data.enabled,
        position=data.position,
    )


@router.get(
    "/routing-rules/{rule_id}",
    summary="Get a routing rule",
    tags=["alert rules"],
    response_model=RoutingRuleRead,
    responses=errors(401, 403, 404),
)
async def get_routing_rule(rule_id: str, session: Tx, actor: ApiReader) -> RoutingRule:
    """One routing rule."""
    return await service.get_routing_rule(session, rule_id)


@router.patch(
    "/routing-rules/{rule_id}",
    summary="Change a routing rule",
    tags=["alert rules"],
    response_model=RoutingRuleRead,
    responses=errors(401, 403, 404, 422),
)
async def update_routing_rule(rule_id: str, data: RoutingRulePatch, session: Tx, actor: ApiAdmin) -> RoutingRule:
    """Change a routing rule (admins only); omitted fields stay, null clears the optional ones."""
    rule = await service.get_routing_rule(session, rule_id)
    return await service.update_routing_rule(session, actor, rule, **_given(data))


@router.delete(
    "/routing-rules/{rule_id}",
    summary="Delete a routing rule",
    tags=["alert rules"],
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses={204: {"description": "Deleted.", "content": {}}, **errors(401, 403, 404)},
)
async def delete_routing_rule(rule_id: str, session: Tx, actor: ApiAdmin) -> Response:
    """Delete a routing rule (admins only); the groups it routed keep their routing."""
    await service.delete_routing_rule(session, actor, await service.get_routing_rule(session, rule_id))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/alert-groups",
    summary="List alert groups",
    tags=["alerts"],
    response_model=list[AlertGroupRead],
    responses=errors(401, 403, 422),
)
async def list_groups(
    session: Tx,
    actor: ApiReader,
    state: Literal["open", "resolved"] | None = Query(
        default=None, alias="status", description="open (firing or acknowledged) or resolved; both if omitted."
    ),
    limit: int = Query(default=50, ge=1, le=200, description="At most this many."),
    offset: int = Query(default=0, ge=0, le=100_000, description="Skip this many (for paging)."),
) -> list[Any]:
    """Alert groups: open ones first (latest alert first), then resolved ones."""
    return await service.list_groups(session, state=state, limit=limit, offset=offset)


@router.get(
    "/alert-groups/{group_id}",
    summary="Get an alert group",
    tags=["alerts"],
    response_model=AlertGroupDetailRead,
    responses=errors(401, 403, 404),
)
async def get_group(group_id: str, session: Tx, actor: ApiReader) -> AlertGroupDetailRead:
    """One alert group with its alerts, open first."""
    group = await service.get_group(session, group_id)
    alerts = await service.alerts_of(session, group.id)
    return AlertGroupDetailRead.model_validate(
        {
            **AlertGroupRead.model_validate(group).model_dump(),
            "alerts": [AlertRead.model_validate(a) for a in alerts],
        }
    )


@router.post(
    "/alert-groups/{group_id}/declare",
    summary="Declare an incident from an alert group",
    tags=["alerts"],
    status_code=status.HTTP_201_CREATED,
    response_model=IncidentRead,
    responses=errors(401, 403, 404, 409, 422),
)
async def declare_from_group(group_id: str, data: AlertGroupDeclare, session: Tx, actor: ApiWriter) -> Incident:
    """Declare with the group's title, suggested severity and components unless given; the group is linked."""
    group = await service.get_group(session, group_id)
    incident = await service.declare_from_group(
        session,
        actor,
        group,
        name=data.name,
        severity=data.severity,
        body=data.body,
        status=data.status,
        components=data.components,
        next_update_at=data.next_update_at,
        roles={role.value: user_id for role, user_id in data.roles.items()},
        deliver_notifications=data.deliver_notifications,
    )
    return await incidents.get_incident(session, incident.id, kind=Kind.incident)


@router.get(
    "/alerts",
    summary="List alerts",
    tags=["alerts"],
    response_model=list[AlertRead],
    responses=errors(401, 403, 404, 422),
)
async def list_alerts(
    session: Tx,
    actor: ApiReader,
    state: Literal["open", "firing", "acknowledged", "resolved"] | None = Query(
        default=None, alias="status", description="open (firing or acknowledged), firing, acknowledged or resolved."
    ),
    integration_id: str | None = Query(default=None, description="Only this integration's alerts."),
    group_id: str | None = Query(default=None, description="Only this alert group's alerts."),
    limit: int = Query(default=50, ge=1, le=500, description="At most this many, latest seen first."),
    offset: int = Query(default=0, ge=0, le=100_000, description="Skip this many (for paging)."),
) -> list[Alert]:
    """Alerts, latest seen first, filtered by status, integration or group."""
    return await service.list_alerts(
        session, status=state, integration_id=integration_id, group_id=group_id, limit=limit, offset=offset
    )
