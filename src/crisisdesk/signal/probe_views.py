"""Console pages for synthetic checks (by component, with percentiles) and vendor watch."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from crisisdesk.auth.deps import ConsoleAdmin, ConsoleReader, Tx
from crisisdesk.catalog import service as catalog
from crisisdesk.catalog.models import Component
from crisisdesk.kit.console import Failure, as_list, discard, failure_of, form_values, render, see_other, text
from crisisdesk.kit.errors import DomainError, InvalidInput
from crisisdesk.kit.runtime import runtime_of
from crisisdesk.signal import checks, vendors
from crisisdesk.signal.checks import RECORD_TYPES, CheckStats
from crisisdesk.signal.models import Check, CheckKind, CheckResult, VendorKind

router = APIRouter(include_in_schema=False)


@dataclass
class CheckSection:
    """The checks of one component (``component`` is None for checks that name none)."""

    component: Component | None
    checks: list[Check] = field(default_factory=list)


def _number(values: dict[str, Any], key: str, *, optional: bool = False, real: bool = False) -> Any:
    raw = text(values, key).strip()
    if not raw:
        if optional:
            return None
        raise InvalidInput("this field is required", field=key)
    try:
        return float(raw) if real else int(raw)
    except ValueError:
        raise InvalidInput(f"{raw!r} is not a {'number' if real else 'whole number'}", field=key) from None


def _check_fields(values: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": text(values, "name"),
        "kind": text(values, "kind"),
        "target": text(values, "target"),
        "record_type": text(values, "record_type") or None,
        "interval_seconds": _number(values, "interval_seconds"),
        "timeout_seconds": _number(values, "timeout_seconds", real=True),
        "expected_status": _number(values, "expected_status", optional=True),
        "keyword": text(values, "keyword") or None,
        "latency_threshold_ms": _number(values, "latency_threshold_ms", optional=True),
        "failures_to_alert": _number(values, "failures_to_alert"),
        "component_id": text(values, "component_id") or None,
    }


def _check_values(check: Check) -> dict[str, Any]:
    return {
        name: "" if getattr(check, name) is None else str(getattr(check, name))
        for name in (
            "name",
            "kind",
            "target",
            "record_type",
            "interval_seconds",
            "expected_status",
            "keyword",
            "latency_threshold_ms",
            "failures_to_alert",
            "component_id",
        )
    } | {"timeout_seconds": f"{check.timeout_seconds:g}"}


async def _checks_page(request: Request, actor: object, session: Tx, *, failure: Failure | None = None) -> HTMLResponse:
    rows = await checks.list_checks(session)
    components = [c for c in await catalog.list_components(session) if not c.is_group]
    by_id = {c.id: CheckSection(c) for c in components}
    loose = CheckSection(None)
    for check in rows:
        by_id.get(check.component_id or "", loose).checks.append(check)
    sections = [s for s in by_id.values() if s.checks] + ([loose] if loose.checks else [])
    latest: dict[str, CheckResult | None] = {}
    for check in rows:
        newest = await checks.recent_results(session, check.id, limit=1)
        latest[check.id] = newest[0] if newest else None
    return render(
        request,
        "signal/checks.html",
        actor=actor,
        sections=sections,
        stats=await checks.stats(session, [c.id for c in rows]),
        latest=latest,
        components=components,
        kinds=list(CheckKind),
        record_types=RECORD_TYPES,
        failure=failure,
        values=failure.values
        if failure
        else {"interval_seconds": "60", "timeout_seconds": "10", "failures_to_alert": "3"},
        status_code=int(failure.values.get("_status", 422)) if failure else 200,
    )


@router.get("/console/checks", response_class=HTMLResponse)
async def checks_page(request: Request, actor: ConsoleReader, session: Tx) -> HTMLResponse:
    """Every check by component: state, p50/p95/p99, uptime and the last result."""
    return await _checks_page(request, actor, session)


@router.post("/console/checks", response_class=HTMLResponse)
async def add_check(request: Request, actor: ConsoleAdmin, session: Tx) -> Response:
    """Add a check (admins); it runs at once."""
    values = await form_values(request)
    try:
        check = await checks.create_check(session, **_check_fields(values))
    except DomainError as exc:
        await discard(session)
        return await _checks_page(request, actor, session, failure=failure_of(exc, "check", values))
    return see_other(f"/console/checks/{check.id}")


async def _check_page(
    request: Request, actor: object, session: Tx, check: Check, *, failure: Failure | None = None
) -> HTMLResponse:
    stats: CheckStats = (await checks.stats(session, [check.id]))[check.id]
    component = await session.get(Component, check.component_id) if check.component_id else None
    return render(
        request,
        "signal/checks_detail.html",
        actor=actor,
        check=check,
        component=component,
        stats=stats,
        results=await checks.recent_results(session, check.id, limit=50),
        components=[c for c in await catalog.list_components(session) if not c.is_group],
        kinds=list(CheckKind),
        record_types=RECORD_TYPES,
        failure=failure,
        values=failure.values if failure else _check_values(check),
        status_code=int(failure.values.get("_status", 422)) if failure else 200,
    )


@router.get("/console/checks/{check_id}", response_class=HTMLResponse)
async def check_page(request: Request, check_id: str, actor: ConsoleReader, session: Tx) -> HTMLResponse:
    """One check: its stats and its newest results; the edit form for admins."""
    return await _check_page(request, actor, session, await checks.get_check(session, check_id))


@router.post("/console/checks/{check_id}", response_class=HTMLResponse)
async def edit_check(request: Request, check_id: str, actor: ConsoleAdmin, session: Tx) -> Response:
    """Change a check (admins)."""
    check = await checks.get_check(session, check_id)
    values = await form_values(request)
    try:
        await checks.update_check(session, check, runtime_of(request).settings, **_check_fields(values))
    except DomainError as exc:
        await discard(session)
        check = await checks.get_check(session, check_id)
        return await _check_page(request, actor, session, check, failure=failure_of(exc, "check", values))
    return see_other(f"/console/checks/{check_id}")


@router.post("/console/checks/{check_id}/enabled", response_class=HTMLResponse)
async def toggle_check(request: Request, check_id: str, actor: ConsoleAdmin, session: Tx) -> Response:
    """Disable an enabled check (its alert resolves), or enable a disabled one (it runs now)."""
    check = await checks.get_check(session, check_id)
    await checks.update_check(session, check, runtime_of(request).settings, enabled=not check.enabled)
    return see_other(f"/console/checks/{check_id}")


@router.post("/console/checks/{check_id}/delete", response_class=HTMLResponse)
async def delete_check(request: Request, check_id: str, actor: ConsoleAdmin, session: Tx) -> Response:
    """Delete a check and its results (admins)."""
    await checks.delete_check(session, await checks.get_check(session, check_id), runtime_of(request).settings)
    return see_other("/console/checks")


# --- Vendors -------------------------------------------------------------------------------


def _vendor_fields(values: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": text(values, "name"),
        "kind": text(values, "kind"),
        "url": text(values, "url"),
        "interval_seconds": _number(values, "interval_seconds"),
    }


async def _vendors_page(
    request: Request, actor: object, session: Tx, *, failure: Failure | None = None
) -> HTMLResponse:
    rows = await vendors.list_vendors(session)
    parts = {v.id: await vendors.components_of(session, v.id) for v in rows}
    links = await vendors.dependents(session, [c.id for cs in parts.values() for c in cs])
    names = {c.id: c.name for c in await catalog.list_components(session)}
    return render(
        request,
        "signal/vendors.html",
        actor=actor,
        vendors=rows,
        parts=parts,
        links=links,
        names=names,
        kinds=list(VendorKind),
        failure=failure,
        values=failure.values if failure else {"interval_seconds": "120", "kind": "statuspage"},
        status_code=int(failure.values.get("_status", 422)) if failure else 200,
    )


@router.get("/console/vendors", response_class=HTMLResponse)
async def vendors_page(request: Request, actor: ConsoleReader, session: Tx) -> HTMLResponse:
    """Every watched vendor with its components' status and our dependent components."""
    return await _vendors_page(request, actor, session)


@router.post("/console/vendors", response_class=HTMLResponse)
async def add_vendor(request: Request, actor: ConsoleAdmin, session: Tx) -> Response:
    """Watch a vendor's status page (admins); it is polled at once."""
    values = await form_values(request)
    try:
        vendor = await vendors.create_vendor(session, **_vendor_fields(values))
    except DomainError as exc:
        await discard(session)
        return await _vendors_page(request, actor, session, failure=failure_of(exc, "vendor", values))
    return see_other(f"/console/vendors/{vendor.id}")


async def _vendor_page(
    request: Request, actor: object, session: Tx, vendor_id: str, *, failure: Failure | None = None
) -> HTMLResponse:
    vendor = await vendors.get_vendor(session, vendor_id)
    parts = await vendors.components_of(session, vendor.id)
    return render(
        request,
        "signal/vendors_detail.html",
        actor=actor,
        vendor=vendor,
        page_url=vendors.vendor_page(vendor),
        parts=parts,
        links=await vendors.dependents(session, [c.id for c in parts]),
        components=[c for c in await catalog.list_components(session) if not c.is_group],
        kinds=list(VendorKind),
        failure=failure,
        values=failure.values
        if failure
        else {
            "name": vendor.name,
            "kind": vendor.kind,
            "url": vendor.url,
            "interval_seconds": str(vendor.interval_seconds),
        },
        status_code=int(failure.values.get("_status", 422)) if failure else 200,
    )


@router.get("/console/vendors/{vendor_id}", response_class=HTMLResponse)
async def vendor_page(request: Request, vendor_id: str, actor: ConsoleReader, session: Tx) -> HTMLResponse:
    """One vendor: its components with status and words, and the dependency mapping."""
    return await _vendor_page(request, actor, session, vendor_id)


@router.post("/console/vendors/{vendor_id}", response_class=HTMLResponse)
async def edit_vendor(request: Request, vendor_id: str, actor: ConsoleAdmin, session: Tx) -> Response:
    """Change a vendor (admins)."""
    vendor = await vendors.get_vendor(session, vendor_id)
    values = await form_values(request)
    try:
        await vendors.update_vendor(session, vendor, **_vendor_fields(values), enabled="enabled" in values)
    except DomainError as exc:
        await discard(session)
        return await _vendor_page(request, actor, session, vendor_id, failure=failure_of(exc, "vendor", values))
    return see_other(f"/console/vendors/{vendor_id}")


@router.post("/console/vendors/{vendor_id}/poll", response_class=HTMLResponse)
async def poll_vendor(request: Request, vendor_id: str, actor: ConsoleAdmin, session: Tx) -> Response:
    """Poll an enabled vendor now."""
    vendor = await vendors.get_vendor(session, vendor_id)
    if vendor.enabled:
        await vendors.poll_soon(session, vendor)
    return see_other(f"/console/vendors/{vendor_id}")


@router.post("/console/vendors/{vendor_id}/delete", response_class=HTMLResponse)
async def delete_vendor(request: Request, vendor_id: str, actor: ConsoleAdmin, session: Tx) -> Response:
    """Stop watching a vendor (admins)."""
    vendor = await vendors.get_vendor(session, vendor_id)
    await vendors.delete_vendor(session, vendor, runtime_of(request).settings)
    return see_other("/console/vendors")


@router.post("/console/vendors/{vendor_id}/components/{vendor_component_id}/dependents", response_class=HTMLResponse)
async def set_dependents(
    request: Request, vendor_id: str, vendor_component_id: str, actor: ConsoleAdmin, session: Tx
) -> Response:
    """Set which of our components depend on this vendor component."""
    vendor = await vendors.get_vendor(session, vendor_id)
    row = await vendors.get_vendor_component(session, vendor, vendor_component_id)
    values = await form_values(request)
    try:
        await vendors.set_dependents(
            session, vendor, row, as_list(values.get("component_ids")), runtime_of(request).settings
        )
    except DomainError as exc:
        await discard(session)
        form = f"dependents-{vendor_component_id}"
        return await _vendor_page(request, actor, session, vendor_id, failure=failure_of(exc, form, values))
    return see_other(f"/console/vendors/{vendor_id}#vc-{vendor_component_id}")
