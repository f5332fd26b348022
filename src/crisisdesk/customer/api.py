"""REST API: customer accounts, and their CSV import and export."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from crisisdesk.auth.deps import ApiAdmin, ApiReader, Tx
from crisisdesk.auth.schemas import errors
from crisisdesk.customer import accounts, importing
from crisisdesk.customer.schemas import (
    AccountCreate,
    AccountDeletedRead,
    AccountImportRead,
    AccountPageRead,
    AccountPatch,
    AccountRead,
    ContactCreate,
    SlaCreate,
)
from crisisdesk.kit.db import MAX_OFFSET
from crisisdesk.kit.errors import InvalidInput

router = APIRouter(tags=["accounts"])
MAX_IMPORT_BYTES = 50 * 1024 * 1024


def _contacts(values: list[ContactCreate]) -> list[accounts.Contact]:
    return accounts.contacts([accounts.contact(c.name, c.email, c.role) for c in values])


def _sla(value: SlaCreate | None) -> accounts.Sla | None:
    if value is None:
        return None
    return accounts.Sla(
        uptime_target=value.uptime_target,
        downtime_rule=accounts.text(value.downtime_rule, "sla.downtime_rule", max_length=2000),
        credit_bands=accounts.credit_bands([(b.below, b.credit_percent) for b in value.credit_bands]),
        cap_percent=value.cap_percent,
        claim_window_days=value.claim_window_days,
    )


@router.get("/accounts", summary="List accounts", response_model=AccountPageRead, responses=errors(401, 403, 422))
async def list_accounts(
    session: Tx,
    actor: ApiReader,
    tier: str | None = Query(default=None, description="Only accounts of this tier."),
    component: str | None = Query(default=None, description="Only accounts that use this component id."),
    limit: int = Query(default=50, ge=1, le=500, description="At most this many, by name."),
    offset: int = Query(default=0, ge=0, le=MAX_OFFSET, description="Skip this many (for paging)."),
) -> AccountPageRead:
    """Accounts by name, filtered by tier and by a component they use."""
    items = await accounts.list_accounts(session, tier=tier, component_id=component, limit=limit, offset=offset)
    total = await accounts.count(session, tier=tier, component_id=component)
    return AccountPageRead(total=total, items=[AccountRead.of(a) for a in items])


@router.get(
    "/accounts/export",
    summary="Export accounts as CSV",
    response_class=Response,
    responses={**errors(401, 403), 200: {"content": {"text/csv": {}}, "description": "Every account, as CSV."}},
)
async def export_accounts(session: Tx, actor: ApiAdmin) -> Response:
    """Every account as CSV with the import's header; importing it back changes nothing."""
    return Response(
        await importing.export_csv(session),
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": 'attachment; filename="accounts.csv"'},
    )


@router.post(
    "/accounts/import",
    summary="Import accounts from CSV",
    response_model=AccountImportRead,
    responses={
        **errors(401, 403, 413),
        422: {"model": AccountImportRead, "description": "all_or_nothing was set and some rows are bad."},
    },
    openapi_extra={"requestBody": {"required": True, "content": {"text/csv": {"schema": {"type": "string"}}}}},
)
async def import_accounts(
    request: Request,
    session: Tx,
    actor: ApiAdmin,
    all_or_nothing: bool = Query(default=False, description="Store nothing when any row is bad."),
) -> AccountImportRead | JSONResponse:
    """Upsert accounts by external id from a CSV body (header external_id,name,tier,arr,regions,components,
    contacts,csm_owner,helpdesk_org_id,uptime_target,credit_bands,cap_percent,claim_window_days, and optionally
    domains). Bad cells are reported by line and column."""
    body = await request.body()
    if len(body) > MAX_IMPORT_BYTES:
        raise InvalidInput("the file is larger than 50 MB; split it", field="file")
    try:
        content = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidInput("the file is not UTF-8 text", field="file") from None
    report = await importing.import_text(session, content, all_or_nothing=all_or_nothing)
    answer = AccountImportRead.model_validate(report, from_attributes=True)
    if not report.stored:
        return JSONResponse(answer.model_dump(mode="json"), status_code=422)
    return answer


@router.get(
    "/accounts/{account_id}", summary="Get an account", response_model=AccountRead, responses=errors(401, 403, 404)
)
async def get_account(account_id: str, session: Tx, actor: ApiReader) -> AccountRead:
    """One account with its components, contacts and SLA contract."""
    return AccountRead.of(await accounts.get(session, account_id))


@router.post(
    "/accounts",
    summary="Create an account",
    status_code=201,
    response_model=AccountRead,
    responses=errors(401, 403, 409, 422),
)
async def create_account(data: AccountCreate, session: Tx, actor: ApiAdmin) -> AccountRead:
    """Create an account; its external id must be new."""
    values = accounts.AccountData(
        external_id=accounts.text(data.external_id, "external_id", required=True) or "",
        name=accounts.text(data.name, "name", required=True, max_length=300) or "",
        tier=accounts.text(data.tier, "tier", max_length=100),
        arr_cents=accounts.arr_cents(data.arr),
        regions=accounts.regions(data.regions),
        component_ids=await accounts.check_components(session, data.components),
        contacts=_contacts(data.contacts),
        csm_owner=accounts.text(data.csm_owner, "csm_owner", max_length=320),
        helpdesk_org_id=accounts.text(data.helpdesk_org_id, "helpdesk_org_id"),
        sla=_sla(data.sla),
        domains=await accounts.check_domains(session, accounts.domains(data.domains), account_id=None),
    )
    account = await accounts.create(session, values)
    await session.refresh(account)
    return AccountRead.of(account)


@router.patch(
    "/accounts/{account_id}",
    summary="Change an account",
    response_model=AccountRead,
    responses=errors(401, 403, 404, 409, 422),
)
async def patch_account(account_id: str, data: AccountPatch, session: Tx, actor: ApiAdmin) -> AccountRead:
    """Change the fields given; lists and the SLA contract are replaced whole."""
    account = await accounts.get(session, account_id)
    values = accounts.data_of(account)
    given = data.model_fields_set
    if "external_id" in given:
        values.external_id = accounts.text(data.external_id, "external_id", required=True) or ""
    if "name" in given:
        values.name = accounts.text(data.name, "name", required=True, max_length=300) or ""
    if "tier" in given:
        values.tier = accounts.text(data.tier, "tier", max_length=100)
    if "arr" in given:
        if data.arr is None:
            raise InvalidInput("must be a non-negative number", field="arr")
        values.arr_cents = accounts.arr_cents(data.arr)
    if "regions" in given:
        values.regions = accounts.regions(data.regions or [])
    if "components" in given:
        values.component_ids = await accounts.check_components(session, data.components or [])
    if "contacts" in given:
        values.contacts = _contacts(data.contacts or [])
    if "csm_owner" in given:
        values.csm_owner = accounts.text(data.csm_owner, "csm_owner", max_length=320)
    if "helpdesk_org_id" in given:
        values.helpdesk_org_id = accounts.text(data.helpdesk_org_id, "helpdesk_org_id")
    if "sla" in given:
        values.sla = _sla(data.sla)
    if "domains" in given:
        values.domains = await accounts.check_domains(
            session, accounts.domains(data.domains or []), account_id=account.id
        )
    await accounts.replace(session, account, values)
    await session.refresh(account)
    return AccountRead.of(account)


@router.delete(
    "/accounts/{account_id}",
    summary="Delete an account",
    response_model=AccountDeletedRead,
    responses=errors(401, 403, 404),
)
async def delete_account(account_id: str, session: Tx, actor: ApiAdmin) -> AccountDeletedRead:
    """Delete the account with its contacts, component links and SLA contract."""
    await accounts.delete(session, account_id)
    return AccountDeletedRead(id=account_id)
