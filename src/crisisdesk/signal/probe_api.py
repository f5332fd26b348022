"""REST API: synthetic checks (with results and stats) and vendor watch (components, dependencies)."""

from __future__ import annotations

from enum import Enum

from fastapi import APIRouter, Query, Request, status

from crisisdesk.auth.deps import ApiAdmin, ApiReader, Tx
from crisisdesk.auth.schemas import errors
from crisisdesk.kit.runtime import runtime_of
from crisisdesk.signal import checks, vendors
from crisisdesk.signal.models import Check, CheckResult, Vendor, VendorComponent
from crisisdesk.signal.probe_schemas import (
    CheckCreate,
    CheckPatch,
    CheckRead,
    CheckResultRead,
    CheckStatsRead,
    DependentsPut,
    VendorComponentRead,
    VendorCreate,
    VendorPatch,
    VendorRead,
)

router = APIRouter()
CHECKS: list[str | Enum] = ["checks"]
VENDORS: list[str | Enum] = ["vendors"]


async def _check_reads(session: Tx, rows: list[Check]) -> list[CheckRead]:
    stats = await checks.stats(session, [c.id for c in rows])
    return [
        CheckRead.model_validate(
            {
                **{name: getattr(c, name) for name in CheckRead.model_fields if name != "stats"},
                "stats": CheckStatsRead.model_validate(stats[c.id]),
            }
        )
        for c in rows
    ]


@router.get("/checks", tags=CHECKS, summary="List checks", response_model=list[CheckRead], responses=errors(401, 403))
async def list_checks(session: Tx, actor: ApiReader) -> list[CheckRead]:
    """Every synthetic check with its state, uptime and latency percentiles over the last 24 hours."""
    return await _check_reads(session, await checks.list_checks(session))


@router.post(
    "/checks",
    tags=CHECKS,
    summary="Add a check",
    status_code=status.HTTP_201_CREATED,
    response_model=CheckRead,
    responses=errors(401, 403, 404, 422),
)
async def create_check(data: CheckCreate, session: Tx, actor: ApiAdmin) -> CheckRead:
    """Add an HTTP(S), TCP or DNS check (admins); an enabled one runs at once, then every interval."""
    check = await checks.create_check(session, **data.model_dump())
    return (await _check_reads(session, [check]))[0]


@router.get(
    "/checks/{check_id}", tags=CHECKS, summary="Get a check", response_model=CheckRead, responses=errors(401, 403, 404)
)
async def get_check(check_id: str, session: Tx, actor: ApiReader) -> CheckRead:
    """One check with its state and its last 24 hours."""
    return (await _check_reads(session, [await checks.get_check(session, check_id)]))[0]


@router.patch(
    "/checks/{check_id}",
    tags=CHECKS,
    summary="Edit a check",
    response_model=CheckRead,
    responses=errors(401, 403, 404, 422),
)
async def edit_check(check_id: str, data: CheckPatch, request: Request, session: Tx, actor: ApiAdmin) -> CheckRead:
    """Change the fields sent; a changed probe starts afresh and runs now, disabling resolves its alert."""
    check = await checks.get_check(session, check_id)
    await checks.update_check(session, check, runtime_of(request).settings, **data.model_dump(exclude_unset=True))
    return (await _check_reads(session, [check]))[0]


@router.delete(
    "/checks/{check_id}",
    tags=CHECKS,
    summary="Delete a check",
    response_model=CheckRead,
    responses=errors(401, 403, 404),
)
async def delete_check(check_id: str, request: Request, session: Tx, actor: ApiAdmin) -> CheckRead:
    """Delete a check with its results (admins) and answer with what was removed; its alert is resolved."""
    check = await checks.get_check(session, check_id)
    read = (await _check_reads(session, [check]))[0]
    await checks.delete_check(session, check, runtime_of(request).settings)
    return read


@router.get(
    "/checks/{check_id}/results",
    tags=CHECKS,
    summary="A check's results",
    response_model=list[CheckResultRead],
    responses=errors(401, 403, 404, 422),
)
async def check_results(
    check_id: str,
    session: Tx,
    actor: ApiReader,
    limit: int = Query(default=100, ge=1, le=1000, description="At most this many, newest first."),
) -> list[CheckResult]:
    """The newest results first; results are kept for 7 days."""
    check = await checks.get_check(session, check_id)
    return await checks.recent_results(session, check.id, limit=limit)


@router.get(
    "/checks/{check_id}/stats",
    tags=CHECKS,
    summary="A check's stats",
    response_model=CheckStatsRead,
    responses=errors(401, 403, 404),
)
async def check_stats(check_id: str, session: Tx, actor: ApiReader) -> CheckStatsRead:
    """Uptime and p50/p95/p99 latency over the last 24 hours."""
    check = await checks.get_check(session, check_id)
    return CheckStatsRead.model_validate((await checks.stats(session, [check.id]))[check.id])


# --- Vendors -------------------------------------------------------------------------------


def _component_read(row: VendorComponent, component_ids: list[str]) -> VendorComponentRead:
    return VendorComponentRead(
        id=row.id,
        external_id=row.external_id,
        name=row.name,
        status=row.status,
        message=row.message,
        updated_at=row.updated_at,
        component_ids=sorted(component_ids),
    )


async def _components(session: Tx, vendor: Vendor) -> list[VendorComponentRead]:
    rows = await vendors.components_of(session, vendor.id)
    links = await vendors.dependents(session, [r.id for r in rows])
    return [_component_read(r, links[r.id]) for r in rows]


async def _vendor_read(session: Tx, vendor: Vendor) -> VendorRead:
    fields = {name: getattr(vendor, name) for name in VendorRead.model_fields if name != "components"}
    return VendorRead.model_validate({**fields, "components": await _components(session, vendor)})


@router.get(
    "/vendors", tags=VENDORS, summary="List vendors", response_model=list[VendorRead], responses=errors(401, 403)
)
async def list_vendors(session: Tx, actor: ApiReader) -> list[VendorRead]:
    """Every watched vendor page with its components, their status and the vendor's words."""
    return [await _vendor_read(session, v) for v in await vendors.list_vendors(session)]


@router.post(
    "/vendors",
    tags=VENDORS,
    summary="Watch a vendor",
    status_code=status.HTTP_201_CREATED,
    response_model=VendorRead,
    responses=errors(401, 403, 422),
)
async def create_vendor(data: VendorCreate, session: Tx, actor: ApiAdmin) -> VendorRead:
    """Register a Statuspage summary.json or an RSS/Atom feed (admins); it is polled at once."""
    return await _vendor_read(session, await vendors.create_vendor(session, **data.model_dump()))


@router.get(
    "/vendors/{vendor_id}",
    tags=VENDORS,
    summary="Get a vendor",
    response_model=VendorRead,
    responses=errors(401, 403, 404),
)
async def get_vendor(vendor_id: str, session: Tx, actor: ApiReader) -> VendorRead:
    """One vendor with its components and their dependents."""
    return await _vendor_read(session, await vendors.get_vendor(session, vendor_id))


@router.patch(
    "/vendors/{vendor_id}",
    tags=VENDORS,
    summary="Edit a vendor",
    response_model=VendorRead,
    responses=errors(401, 403, 404, 422),
)
async def edit_vendor(vendor_id: str, data: VendorPatch, session: Tx, actor: ApiAdmin) -> VendorRead:
    """Change the fields sent; an enabled vendor is polled again now."""
    vendor = await vendors.get_vendor(session, vendor_id)
    await vendors.update_vendor(session, vendor, **data.model_dump(exclude_unset=True))
    return await _vendor_read(session, vendor)


@router.delete(
    "/vendors/{vendor_id}",
    tags=VENDORS,
    summary="Stop watching a vendor",
    response_model=VendorRead,
    responses=errors(401, 403, 404),
)
async def delete_vendor(vendor_id: str, request: Request, session: Tx, actor: ApiAdmin) -> VendorRead:
    """Remove a vendor with its components and dependencies; alerts it raised are resolved."""
    vendor = await vendors.get_vendor(session, vendor_id)
    read = await _vendor_read(session, vendor)
    await vendors.delete_vendor(session, vendor, runtime_of(request).settings)
    return read


@router.get(
    "/vendors/{vendor_id}/components",
    tags=VENDORS,
    summary="A vendor's components",
    response_model=list[VendorComponentRead],
    responses=errors(401, 403, 404),
)
async def vendor_components(vendor_id: str, session: Tx, actor: ApiReader) -> list[VendorComponentRead]:
    """The vendor's components as last polled, with the vendor's words and our dependent components."""
    return await _components(session, await vendors.get_vendor(session, vendor_id))


@router.put(
    "/vendors/{vendor_id}/components/{vendor_component_id}/dependents",
    tags=VENDORS,
    summary="Map dependencies",
    response_model=VendorComponentRead,
    responses=errors(401, 403, 404, 422),
)
async def put_dependents(
    vendor_id: str, vendor_component_id: str, data: DependentsPut, request: Request, session: Tx, actor: ApiAdmin
) -> VendorComponentRead:
    """Set which of our components depend on this vendor component ("Sign-in depends on the IdP").

    A component added while the vendor component is down is alerted at once; one removed has its
    alert resolved.
    """
    vendor = await vendors.get_vendor(session, vendor_id)
    row = await vendors.get_vendor_component(session, vendor, vendor_component_id)
    ids = await vendors.set_dependents(session, vendor, row, data.component_ids, runtime_of(request).settings)
    return _component_read(row, ids)
