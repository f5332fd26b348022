"""REST API: an incident's customer impact (summary, accounts, CSV) and the impact rules."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Response

from crisisdesk.auth.deps import ApiAdmin, ApiReader, Tx
from crisisdesk.auth.schemas import errors
from crisisdesk.customer import impact, rules
from crisisdesk.customer.impact_schemas import (
    AccountImpactPageRead,
    AccountImpactRead,
    ImpactRead,
    ImpactRuleCreate,
    ImpactRuleDeletedRead,
    ImpactRulePatch,
    ImpactRuleRead,
)
from crisisdesk.incident import service as incidents
from crisisdesk.kit.db import MAX_OFFSET
from crisisdesk.kit.errors import NotFound

router = APIRouter(tags=["impact"])


@router.get(
    "/incidents/{incident_id}/impact",
    summary="An incident's customer impact",
    response_model=ImpactRead,
    responses=errors(401, 403, 404, 422),
)
async def get_impact(
    incident_id: str,
    session: Tx,
    actor: ApiReader,
    top: int = Query(default=10, ge=0, le=100, description="How many of the largest accounts to list."),
) -> ImpactRead:
    """Affected accounts (by component and region, following component dependencies): their count and
    ARR by tier, share of all ARR, the largest accounts, the affected components, the impact window,
    and the severity the impact rules suggest with the reason."""
    incident = await incidents.incident_row(session, incident_id)
    return ImpactRead.of(await impact.summarize(session, incident_id, top=top), incident.severity)


@router.get(
    "/incidents/{incident_id}/impact/accounts",
    summary="An incident's affected accounts",
    response_model=AccountImpactPageRead,
    responses=errors(401, 403, 404, 422),
)
async def list_affected_accounts(
    incident_id: str,
    session: Tx,
    actor: ApiReader,
    limit: int = Query(default=50, ge=1, le=500, description="At most this many, largest ARR first."),
    offset: int = Query(default=0, ge=0, le=MAX_OFFSET, description="Skip this many (for paging)."),
    tier: str | None = Query(default=None, max_length=100, description="Only accounts of this tier."),
) -> AccountImpactPageRead:
    """Every affected account with its affected components and impact window, largest ARR first."""
    await incidents.incident_row(session, incident_id)
    items = await impact.affected_accounts(session, incident_id, limit=limit, offset=offset, tier=tier)
    total = await impact.affected_count(session, incident_id, tier=tier)
    return AccountImpactPageRead(total=total, items=[AccountImpactRead.of(a) for a in items])


@router.get(
    "/incidents/{incident_id}/impact/accounts/{account_id}",
    summary="How an incident affects one account",
    response_model=AccountImpactRead,
    responses=errors(401, 403, 404),
)
async def get_account_impact(incident_id: str, account_id: str, session: Tx, actor: ApiReader) -> AccountImpactRead:
    """The account's affected components and impact window; 404 when the incident does not affect it."""
    await incidents.incident_row(session, incident_id)
    found = await impact.account_impact(session, incident_id, account_id)
    if found is None:
        raise NotFound("the incident does not affect this account", field="account_id")
    return AccountImpactRead.of(found)


@router.get(
    "/incidents/{incident_id}/impact.csv",
    summary="Export an incident's affected accounts as CSV",
    response_class=Response,
    responses={**errors(401, 403, 404), 200: {"content": {"text/csv": {}}, "description": "Affected accounts."}},
)
async def export_impact(incident_id: str, session: Tx, actor: ApiReader) -> Response:
    """Every affected account: external_id, name, tier, arr, regions, components, window_start,
    window_end, csm_owner; largest ARR first."""
    incident = await incidents.incident_row(session, incident_id)
    body = await impact.export_csv(session, incident_id)
    return Response(
        body,
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": f'attachment; filename="INC-{incident.number}-impact.csv"'},
    )


# ------------------------------------------------------------------------------ rules


@router.get(
    "/impact-rules", summary="List impact rules", response_model=list[ImpactRuleRead], responses=errors(401, 403)
)
async def list_impact_rules(session: Tx, actor: ApiReader) -> list[ImpactRuleRead]:
    """Every rule in the order they are tried; the first enabled rule that holds suggests the severity."""
    return [ImpactRuleRead.of(r) for r in await rules.list_rules(session)]


@router.post(
    "/impact-rules",
    summary="Add an impact rule",
    status_code=201,
    response_model=ImpactRuleRead,
    responses=errors(401, 403, 422),
)
async def create_impact_rule(data: ImpactRuleCreate, session: Tx, actor: ApiAdmin) -> ImpactRuleRead:
    """Add a rule (admins only), e.g. tiers ["Enterprise"] and min_status major_outage → SEV1."""
    rule = await rules.create_rule(session, actor, **data.model_dump())
    return ImpactRuleRead.of(rule)


@router.get(
    "/impact-rules/{rule_id}",
    summary="Get an impact rule",
    response_model=ImpactRuleRead,
    responses=errors(401, 403, 404),
)
async def get_impact_rule(rule_id: str, session: Tx, actor: ApiReader) -> ImpactRuleRead:
    """One rule."""
    return ImpactRuleRead.of(await rules.get_rule(session, rule_id))


@router.patch(
    "/impact-rules/{rule_id}",
    summary="Change an impact rule",
    response_model=ImpactRuleRead,
    responses=errors(401, 403, 404, 422),
)
async def patch_impact_rule(rule_id: str, data: ImpactRulePatch, session: Tx, actor: ApiAdmin) -> ImpactRuleRead:
    """Change the fields given (admins only); null clears min_status, arr_percent or account_count."""
    rule = await rules.get_rule(session, rule_id)
    changes: dict[str, Any] = {k: getattr(data, k) for k in data.model_fields_set}
    await rules.update_rule(session, actor, rule, **changes)
    return ImpactRuleRead.of(rule)


@router.delete(
    "/impact-rules/{rule_id}",
    summary="Delete an impact rule",
    response_model=ImpactRuleDeletedRead,
    responses=errors(401, 403, 404),
)
async def delete_impact_rule(rule_id: str, session: Tx, actor: ApiAdmin) -> ImpactRuleDeletedRead:
    """Delete a rule (admins only)."""
    await rules.delete_rule(session, actor, await rules.get_rule(session, rule_id))
    return ImpactRuleDeletedRead(id=rule_id)
