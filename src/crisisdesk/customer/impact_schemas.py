"""API shapes for customer impact and impact rules."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from crisisdesk.customer.impact import AccountImpact, AffectedComponent, ImpactSummary, Suggestion
from crisisdesk.customer.models import ImpactRule


def _units(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


class AffectedComponentRead(BaseModel):
    """A component the incident affects, directly or through a dependency."""

    component_id: str = Field(description="Component id.")
    name: str = Field(description="Component name.")
    status: str = Field(
        description="The status the incident gives it; a component reached through a dependency carries the "
        "status of the component it depends on."
    )
    via_id: str | None = Field(
        description="The incident's own component it is affected through (null when listed on the incident)."
    )
    region_code: str | None = Field(description="Its region: only accounts in that region (or in none) count.")
    since: datetime = Field(description="When the impact on it began.")

    @classmethod
    def of(cls, c: AffectedComponent) -> AffectedComponentRead:
        return cls(
            component_id=c.component_id,
            name=c.name,
            status=c.status,
            via_id=c.via_id,
            region_code=c.region_code,
            since=c.since,
        )


class AccountImpactRead(BaseModel):
    """An affected account, its affected components and impact window."""

    account_id: str = Field(description="Account id.")
    external_id: str = Field(description="The account's id in your CRM.")
    name: str = Field(description="Account name.")
    tier: str | None = Field(description="Tier or plan.")
    arr: str = Field(description="Annual recurring revenue in currency units, as a decimal string.")
    arr_cents: int = Field(description="Annual recurring revenue in cents.")
    regions: list[str] = Field(description="Region codes the account runs in.")
    csm_owner: str | None = Field(description="CSM owner.")
    components: list[AffectedComponentRead] = Field(description="The affected components it uses.")
    window_start: datetime = Field(description="When the impact on this account began.")
    window_end: datetime | None = Field(description="When it ended (the resolution); null while ongoing.")

    @classmethod
    def of(cls, a: AccountImpact) -> AccountImpactRead:
        return cls(
            account_id=a.account_id,
            external_id=a.external_id,
            name=a.name,
            tier=a.tier,
            arr=_units(a.arr_cents),
            arr_cents=a.arr_cents,
            regions=a.regions,
            csm_owner=a.csm_owner,
            components=[AffectedComponentRead.of(c) for c in a.components],
            window_start=a.window_start,
            window_end=a.window_end,
        )


class TierImpactRead(BaseModel):
    """Affected accounts of one tier."""

    tier: str | None = Field(description="Tier (null: accounts without one).")
    account_count: int = Field(description="Affected accounts of this tier.")
    arr: str = Field(description="Their ARR in currency units.")
    arr_cents: int = Field(description="Their ARR in cents.")


class SuggestionRead(BaseModel):
    """The severity the impact suggests, from the first impact rule that holds."""

    severity: str = Field(description="Suggested severity.")
    rule_id: str = Field(description="The impact rule that holds.")
    rule_name: str = Field(description="Its name.")
    reason: str = Field(description="Why, naming the facts.")
    higher_than_current: bool = Field(description="True when the suggestion is more severe than the incident's.")

    @classmethod
    def of(cls, s: Suggestion, current: str | None) -> SuggestionRead:
        return cls(
            severity=s.severity,
            rule_id=s.rule_id,
            rule_name=s.rule_name,
            reason=s.reason,
            higher_than_current=current is None or s.severity < current,
        )


class ImpactRead(BaseModel):
    """An incident's customer impact."""

    incident_id: str = Field(description="Incident id.")
    severity: str | None = Field(description="The incident's current severity.")
    account_count: int = Field(description="Affected accounts.")
    arr: str = Field(description="Their ARR in currency units.")
    arr_cents: int = Field(description="Their ARR in cents.")
    total_arr: str = Field(description="ARR of every account, in currency units.")
    total_arr_cents: int = Field(description="ARR of every account, in cents.")
    arr_percent: float = Field(description="Affected share of all ARR, in percent.")
    by_tier: list[TierImpactRead] = Field(description="Count and ARR by tier, largest ARR first.")
    top: list[AccountImpactRead] = Field(description="The largest affected accounts by ARR.")
    components: list[AffectedComponentRead] = Field(description="The affected components.")
    window_start: datetime | None = Field(description="When the impact began (null when nothing is affected).")
    window_end: datetime | None = Field(description="When it ended; null while ongoing.")
    suggestion: SuggestionRead | None = Field(description="The severity the impact rules suggest, if any.")

    @classmethod
    def of(cls, s: ImpactSummary, severity: str | None) -> ImpactRead:
        return cls(
            incident_id=s.incident_id,
            severity=severity,
            account_count=s.account_count,
            arr=_units(s.arr_cents),
            arr_cents=s.arr_cents,
            total_arr=_units(s.total_arr_cents),
            total_arr_cents=s.total_arr_cents,
            arr_percent=s.arr_percent,
            by_tier=[
                TierImpactRead(
                    tier=t.tier, account_count=t.account_count, arr=_units(t.arr_cents), arr_cents=t.arr_cents
                )
                for t in s.by_tier
            ],
            top=[AccountImpactRead.of(a) for a in s.top],
            components=[AffectedComponentRead.of(c) for c in s.components],
            window_start=s.window_start,
            window_end=s.window_end,
            suggestion=SuggestionRead.of(s.suggestion, severity) if s.suggestion else None,
        )


class AccountImpactPageRead(BaseModel):
    """One page of affected accounts."""

    total: int = Field(description="How many affected accounts match the filter.")
    items: list[AccountImpactRead] = Field(description="This page, largest ARR first, then by name.")


class ImpactRuleRead(BaseModel):
    """A rule that suggests a severity from customer impact."""

    model_config = ConfigDict(from_attributes=True)

    id: str = Field(description="Rule id.")
    name: str = Field(description="Name, e.g. 'Any Enterprise account on a major outage'.")
    position: int = Field(description="Order in which rules are tried, smallest first; the first that holds wins.")
    severity: str = Field(description="The severity it suggests.")
    tiers: list[str] = Field(description="Only accounts of these tiers count (all tiers when empty).")
    min_status: str | None = Field(description="Only components at this status or worse count.")
    arr_percent: float | None = Field(description="Holds only when the counted accounts hold this share of ARR.")
    account_count: int | None = Field(description="Holds only with at least this many counted accounts (else 1).")
    enabled: bool = Field(description="Disabled rules are skipped.")
    created_at: datetime = Field(description="When it was created.")

    @classmethod
    def of(cls, rule: ImpactRule) -> ImpactRuleRead:
        return cls.model_validate(rule)


class ImpactRuleCreate(BaseModel):
    """A new impact rule (admins only); at least one condition."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, description="Name.")
    severity: str = Field(description="The severity it suggests: SEV1 to SEV4.", examples=["SEV1"])
    tiers: list[str] = Field(default_factory=list, max_length=50, description="Tiers that count (empty: all).")
    min_status: str | None = Field(
        default=None, description="Component status or worse that counts, e.g. major_outage (null: any)."
    )
    arr_percent: float | None = Field(default=None, description="Share of all ARR needed, above 0 and at most 100.")
    account_count: int | None = Field(default=None, description="Accounts needed, at least 1.")
    enabled: bool = Field(default=True, description="Whether the rule is tried.")
    position: int | None = Field(default=None, description="Where to put it; last when omitted.")


class ImpactRulePatch(BaseModel):
    """Fields to change; the others stay."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200, description="New name.")
    severity: str | None = Field(default=None, description="New severity.")
    tiers: list[str] | None = Field(default=None, max_length=50, description="New tiers (empty: all).")
    min_status: str | None = Field(default=None, description="New minimum status (null: any).")
    arr_percent: float | None = Field(default=None, description="New share of ARR (null: no condition).")
    account_count: int | None = Field(default=None, description="New number of accounts (null: no condition).")
    enabled: bool | None = Field(default=None, description="Enable or disable it.")
    position: int | None = Field(default=None, description="New position.")


class ImpactRuleDeletedRead(BaseModel):
    """The rule that was deleted."""

    id: str = Field(description="The deleted rule's id.")
