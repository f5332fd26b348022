"""API shapes for customer accounts, their contacts, SLA contract and CSV import."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field

from crisisdesk.customer.models import Account


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ContactCreate(_Input):
    """A person to reach at the account."""

    name: str = Field(min_length=1, max_length=300, description="Their name (no < > ; ( ) characters).")
    email: str = Field(max_length=320, description="Their email address.", examples=["ops@example.com"])
    role: str | None = Field(default=None, max_length=100, description="Their role, e.g. admin or billing.")


class CreditBandCreate(_Input):
    """A service credit owed when monthly uptime falls below a threshold."""

    below: float = Field(gt=0, le=100, description="Uptime percentage under which the band applies.")
    credit_percent: float = Field(gt=0, le=100, description="Credit, in percent of the monthly fee.")


class SlaCreate(_Input):
    """The account's SLA contract."""

    uptime_target: float = Field(gt=0, le=100, description="Monthly uptime promised, in percent (e.g. 99.9).")
    downtime_rule: str | None = Field(
        default=None, max_length=2000, description="What counts as downtime, in the contract's words."
    )
    credit_bands: list[CreditBandCreate] = Field(default_factory=list, description="Credit bands.")
    cap_percent: float | None = Field(
        default=None, ge=0, le=100, description="Most credit owed in a month, in percent of the fee."
    )
    claim_window_days: int | None = Field(
        default=None, ge=0, le=3650, description="Days after the month within which credit must be claimed."
    )


class AccountCreate(_Input):
    """A customer account."""

    external_id: str = Field(min_length=1, max_length=200, description="The account's id in your CRM; unique.")
    name: str = Field(min_length=1, max_length=300, description="Account name.")
    tier: str | None = Field(default=None, max_length=100, description="Tier or plan, e.g. Enterprise.")
    arr: Decimal = Field(
        default=Decimal(0), ge=0, decimal_places=2, description="Annual recurring revenue, in currency units."
    )
    regions: list[str] = Field(default_factory=list, description="Region codes the account runs in.")
    components: list[str] = Field(default_factory=list, description="Ids of the components the account uses.")
    contacts: list[ContactCreate] = Field(default_factory=list, description="People to reach.")
    csm_owner: str | None = Field(default=None, max_length=320, description="CSM owner (user id or email).")
    helpdesk_org_id: str | None = Field(default=None, max_length=200, description="Organisation id in the helpdesk.")
    sla: SlaCreate | None = Field(default=None, description="SLA contract; none if omitted.")
    domains: list[str] = Field(
        default_factory=list,
        description="Email domains whose people may sign in to the account's private status page by magic link "
        "(e.g. acme.com); a domain belongs to one account at most.",
    )


class AccountPatch(_Input):
    """Fields to change; the others stay as they are. Lists and the SLA are replaced whole."""

    external_id: str | None = Field(default=None, min_length=1, max_length=200, description="New external id.")
    name: str | None = Field(default=None, min_length=1, max_length=300, description="New name.")
    tier: str | None = Field(default=None, max_length=100, description="New tier (null clears it).")
    arr: Decimal | None = Field(default=None, ge=0, decimal_places=2, description="New ARR, in currency units.")
    regions: list[str] | None = Field(default=None, description="New region codes.")
    components: list[str] | None = Field(default=None, description="New component ids.")
    contacts: list[ContactCreate] | None = Field(default=None, description="New contacts.")
    csm_owner: str | None = Field(default=None, max_length=320, description="New CSM owner (null clears it).")
    helpdesk_org_id: str | None = Field(default=None, max_length=200, description="New helpdesk id (null clears).")
    sla: SlaCreate | None = Field(default=None, description="New SLA contract (null removes it).")
    domains: list[str] | None = Field(default=None, description="New private-page email domains.")


class ContactRead(BaseModel):
    """A person to reach at the account."""

    model_config = ConfigDict(from_attributes=True)

    name: str = Field(description="Their name.")
    email: str = Field(description="Their email address (lower case).")
    role: str | None = Field(description="Their role.")


class CreditBandRead(BaseModel):
    """A service credit band."""

    below: float = Field(description="Uptime percentage under which the band applies.")
    credit_percent: float = Field(description="Credit, in percent of the monthly fee.")


class SlaRead(BaseModel):
    """The account's SLA contract."""

    model_config = ConfigDict(from_attributes=True)

    uptime_target: float = Field(description="Monthly uptime promised, in percent.")
    downtime_rule: str | None = Field(description="What counts as downtime.")
    credit_bands: list[CreditBandRead] = Field(description="Credit bands, highest threshold first.")
    cap_percent: float | None = Field(description="Most credit owed in a month, in percent of the fee.")
    claim_window_days: int | None = Field(description="Days within which credit must be claimed.")


class AccountRead(BaseModel):
    """A customer account."""

    id: str = Field(description="Account id.")
    external_id: str = Field(description="The account's id in your CRM.")
    name: str = Field(description="Account name.")
    tier: str | None = Field(description="Tier or plan.")
    arr: str = Field(description="Annual recurring revenue in currency units, as a decimal string.")
    arr_cents: int = Field(description="Annual recurring revenue in cents.")
    regions: list[str] = Field(description="Region codes.")
    components: list[str] = Field(description="Ids of the components the account uses.")
    contacts: list[ContactRead] = Field(description="People to reach.")
    csm_owner: str | None = Field(description="CSM owner.")
    helpdesk_org_id: str | None = Field(description="Organisation id in the helpdesk.")
    sla: SlaRead | None = Field(description="SLA contract.")
    domains: list[str] = Field(description="Email domains allowed on the account's private status page.")
    created_at: datetime = Field(description="When it was created.")
    updated_at: datetime = Field(description="When it last changed.")

    @classmethod
    def of(cls, account: Account) -> AccountRead:
        return cls(
            id=account.id,
            external_id=account.external_id,
            name=account.name,
            tier=account.tier,
            arr=f"{account.arr_cents // 100}.{account.arr_cents % 100:02d}",
            arr_cents=account.arr_cents,
            regions=list(account.regions),
            components=[link.component_id for link in account.components],
            contacts=[ContactRead.model_validate(c) for c in account.contacts],
            csm_owner=account.csm_owner,
            helpdesk_org_id=account.helpdesk_org_id,
            sla=SlaRead.model_validate(account.sla) if account.sla else None,
            domains=[row.domain for row in account.domains],
            created_at=account.created_at,
            updated_at=account.updated_at,
        )


class AccountPageRead(BaseModel):
    """One page of accounts."""

    total: int = Field(description="How many accounts match the filter.")
    items: list[AccountRead] = Field(description="The accounts of this page, by name.")


class AccountDeletedRead(BaseModel):
    """The account that was deleted."""

    id: str = Field(description="The deleted account's id.")


class CellErrorRead(BaseModel):
    """A bad cell of the CSV."""

    line: int = Field(description="Line number in the file (the header is line 1).")
    column: str = Field(description="Column name ('*' when the row has the wrong number of cells).")
    message: str = Field(description="The rule the cell breaks.")


class AccountImportRead(BaseModel):
    """What an import did."""

    rows: int = Field(description="Data rows read.")
    created: int = Field(description="Accounts created.")
    updated: int = Field(description="Accounts replaced (same external id).")
    refused_rows: int = Field(description="Rows refused.")
    error_count: int = Field(description="Bad cells found (all of them; errors lists the first thousand).")
    stored: bool = Field(description="False when all_or_nothing refused to store anything.")
    errors: list[CellErrorRead] = Field(description="Bad cells by line and column.")
