"""Console: the incident page's customer impact panel, the affected accounts, and the impact rules."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from crisisdesk.auth.deps import ConsoleAdmin, ConsoleReader, Tx
from crisisdesk.auth.service import Actor
from crisisdesk.catalog.models import ComponentStatus
from crisisdesk.customer import impact, rules
from crisisdesk.incident import service as incidents
from crisisdesk.incident.models import Kind, Severity
from crisisdesk.kit.console import Failure, discard, failure_of, form_values, render, see_other, text
from crisisdesk.kit.errors import DomainError, InvalidInput

router = APIRouter(include_in_schema=False)
PAGE_SIZE = 50


def money(cents: int) -> str:
    """Currency units with thousands separators, no decimals (ARR is a large, round figure)."""
    return f"{(cents + 50) // 100:,}"


def percent(value: float) -> str:
    return rules.format_percent(value)


@router.get("/console/incidents/{incident_id}/impact", response_class=HTMLResponse)
async def impact_panel(request: Request, incident_id: str, actor: ConsoleReader, session: Tx) -> HTMLResponse:
    """The incident page's customer impact panel (a fragment it loads and refreshes live)."""
    incident = await incidents.incident_row(session, incident_id)
    summary = await impact.summarize(session, incident_id, top=5)
    suggestion = summary.suggestion
    raise_to = None
    if (
        suggestion is not None
        and incident.kind == Kind.incident
        and incident.is_open
        and (incident.severity is None or suggestion.severity < incident.severity)
    ):
        raise_to = suggestion.severity
    return render(
        request,
        "customer/_impact.html",
        actor=actor,
        incident=incident,
        summary=summary,
        raise_to=raise_to,
        money=money,
        percent=percent,
    )


@router.get("/console/incidents/{incident_id}/impact/accounts", response_class=HTMLResponse)
async def impact_accounts(
    request: Request,
    incident_id: str,
    actor: ConsoleReader,
    session: Tx,
    tier: str | None = Query(default=None, max_length=100),
    page: int = Query(default=1, ge=1, le=100_000),
) -> HTMLResponse:
    """Every affected account, largest ARR first, with a CSV export."""
    incident = await incidents.incident_row(session, incident_id)
    summary = await impact.summarize(session, incident_id, top=0)
    chosen = tier or None
    total = (
        summary.account_count
        if chosen is None
        else next((t.account_count for t in summary.by_tier if t.tier == chosen), 0)
    )
    items = await impact.affected_accounts(
        session, incident_id, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE, tier=chosen
    )
    return render(
        request,
        "customer/impact_accounts.html",
        actor=actor,
        section="incidents",
        incident=incident,
        summary=summary,
        items=items,
        tier=chosen,
        total=total,
        page=page,
        pages=max(1, -(-total // PAGE_SIZE)),
        money=money,
        percent=percent,
    )


@router.get("/console/incidents/{incident_id}/impact.csv")
async def impact_csv(incident_id: str, actor: ConsoleReader, session: Tx) -> Response:
    """The affected accounts as CSV (the same file as the API's)."""
    incident = await incidents.incident_row(session, incident_id)
    return Response(
        await impact.export_csv(session, incident_id),
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": f'attachment; filename="INC-{incident.number}-impact.csv"'},
    )


# ------------------------------------------------------------------------------ rules


def _number(values: dict[str, Any], key: str, kind: type[int] | type[float]) -> Any:
    raw = text(values, key).strip()
    if not raw:
        return None
    try:
        return kind(raw)
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise InvalidInput(f"{raw!r} is not {what}", field=key) from None


def _rule_values(values: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": text(values, "name"),
        "severity": text(values, "severity"),
        "tiers": [t for t in text(values, "tiers").split(",")],
        "min_status": text(values, "min_status") or None,
        "arr_percent": _number(values, "arr_percent", float),
        "account_count": _number(values, "account_count", int),
        "enabled": text(values, "enabled") == "on",
    }


async def _rules_page(request: Request, actor: Actor, session: Tx, *, failure: Failure | None = None) -> HTMLResponse:
    return render(
        request,
        "customer/impact_rules.html",
        actor=actor,
        section="severity",
        rules=await rules.list_rules(session),
        severities=list(Severity),
        statuses=[s for s in ComponentStatus if s != ComponentStatus.operational],
        failure=failure,
        status_code=200 if failure is None else int(failure.values.get("_status", 422)),
    )


@router.get("/console/impact-rules", response_class=HTMLResponse)
async def rules_page(request: Request, actor: ConsoleReader, session: Tx) -> HTMLResponse:
    """The impact rules in the order they are tried; admins add, change and delete them."""
    return await _rules_page(request, actor, session)


@router.post("/console/impact-rules", response_class=HTMLResponse)
async def create_rule(request: Request, actor: ConsoleAdmin, session: Tx) -> Response:
    """Add a rule, tried last."""
    values = await form_values(request)
    try:
        rule = await rules.create_rule(session, actor, **_rule_values(values))
    except DomainError as exc:
        await discard(session)
        return await _rules_page(request, actor, session, failure=failure_of(exc, "rule-new", values))
    return see_other(f"/console/impact-rules#rule-{rule.id}")


@router.post("/console/impact-rules/{rule_id}", response_class=HTMLResponse)
async def update_rule(request: Request, rule_id: str, actor: ConsoleAdmin, session: Tx) -> Response:
    """Change a rule; moving it up or down swaps it with its neighbour."""
    values = await form_values(request)
    rule = await rules.get_rule(session, rule_id)
    try:
        move = text(values, "move")
        if move in ("up", "down"):
            await rules.move_rule(session, actor, rule, up=move == "up")
        else:
            await rules.update_rule(session, actor, rule, **_rule_values(values))
    except DomainError as exc:
        await discard(session)
        return await _rules_page(request, actor, session, failure=failure_of(exc, f"rule-{rule_id}", values))
    return see_other(f"/console/impact-rules#rule-{rule_id}")


@router.post("/console/impact-rules/{rule_id}/delete", response_class=HTMLResponse)
async def delete_rule(request: Request, rule_id: str, actor: ConsoleAdmin, session: Tx) -> Response:
    """Delete a rule."""
    await rules.delete_rule(session, actor, await rules.get_rule(session, rule_id))
    return see_other("/console/impact-rules")
