"""Customer impact: which accounts an incident hurts, how much ARR, and the severity it suggests.

Everything over accounts is SQL over the links: each ``account_component`` row carries a copy of
its account's tier, ARR and regions, and the index ``ix_account_component_impact`` (component,
tier, ARR, account, regions) holds them all. An outage's count and ARR by tier is one range scan
of its components' index entries, its largest accounts a few short walks down each tier's ARR
order; ``account`` is read only for the rows a page shows, and the ARR of every account comes
from ``account_total``. Python only shapes the handful of rows a page shows.

An incident affects the components listed on it and, through ``component_dependency``, every
component that depends on one of them, transitively (a recursive CTE). A component reached
through a dependency carries the status the incident gives the component it depends on.
An account is affected when it uses an affected component; when that component runs in a
region, only if the account lists the region, or lists no region at all (then it is taken to
run everywhere). Maintenance windows are assessed the same way as incidents.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    SQLColumnExpression,
    String,
    Text,
    and_,
    case,
    cast,
    exists,
    false,
    func,
    literal_column,
    null,
    or_,
    select,
    text,
    union,
    union_all,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlalchemy.sql.selectable import CTE, Subquery

from crisisdesk.catalog.models import SEVERITY_ORDER, Component, ComponentDependency, ComponentStatus, Region
from crisisdesk.customer import rules
from crisisdesk.customer.models import TOTAL_ID, Account, AccountComponent, AccountTotal, ImpactRule
from crisisdesk.incident.models import Incident, IncidentComponent, Kind
from crisisdesk.kit import csvcells
from crisisdesk.kit.errors import NotFound
from crisisdesk.kit.time import iso

_Rows = Select[*tuple[Any, ...]]


@dataclass(frozen=True)
class AffectedComponent:
    """A component the incident affects, directly or through a dependency."""

    component_id: str
    name: str
    status: str
    via_id: str | None  # the incident's own component it is reached through; None when listed on it
    region_code: str | None
    since: datetime


@dataclass(frozen=True)
class AccountImpact:
    account_id: str
    external_id: str
    name: str
    tier: str | None
    arr_cents: int
    regions: list[str]
    csm_owner: str | None
    components: list[AffectedComponent]
    window_start: datetime
    window_end: datetime | None


@dataclass(frozen=True)
class TierImpact:
    tier: str | None
    account_count: int
    arr_cents: int


@dataclass(frozen=True)
class Suggestion:
    severity: str
    rule_id: str
    rule_name: str
    reason: str


@dataclass(frozen=True)
class ImpactSummary:
    incident_id: str
    account_count: int
    arr_cents: int
    total_arr_cents: int
    arr_percent: float
    by_tier: list[TierImpact]
    top: list[AccountImpact]
    components: list[AffectedComponent]
    window_start: datetime | None
    window_end: datetime | None
    suggestion: Suggestion | None


# ------------------------------------------------------------------------------ components


def _affected_cte(where: ColumnElement[bool]) -> CTE:
    """(incident_id, component_id, via_id, status, since) for the incidents ``where`` selects."""
    # A component listed when the incident was declared was hurt from the incident's start,
    # which may be earlier than the declaration; one added later, from when it was added.
    since = case(
        (
            or_(Incident.kind == Kind.maintenance, IncidentComponent.added_at <= Incident.created_at),
            Incident.started_at,
        ),
        else_=IncidentComponent.added_at,
    )
    seed = (
        select(
            IncidentComponent.incident_id.label("incident_id"),
            IncidentComponent.component_id.label("component_id"),
            cast(null(), String(24)).label("via_id"),
            IncidentComponent.status.label("status"),
            since.label("since"),
        )
        .join(Incident, Incident.id == IncidentComponent.incident_id)
        .where(where)
        .cte("affected", recursive=True)
    )
    step = select(
        seed.c.incident_id,
        ComponentDependency.component_id,
        cast(func.coalesce(seed.c.via_id, seed.c.component_id), String(24)),
        seed.c.status,
        seed.c.since,
    ).join(seed, ComponentDependency.depends_on_id == seed.c.component_id)
    # UNION, not UNION ALL: a row met twice stops there, so even a cycle slipped past the
    # catalog's check would end.
    return seed.union(step)


def _rank(status: str) -> int:
    try:
        return SEVERITY_ORDER.index(ComponentStatus(status))
    except ValueError:
        return len(SEVERITY_ORDER)


def _collapse(rows: Sequence[Any]) -> list[AffectedComponent]:
    """One entry per component: listed on the incident wins, else the worst path; earliest since."""
    best: dict[str, Any] = {}
    since: dict[str, datetime] = {}
    for row in rows:
        since[row.component_id] = min(since.get(row.component_id, row.since), row.since)
        held = best.get(row.component_id)
        if held is None or (row.via_id is None, -_rank(row.status)) > (held.via_id is None, -_rank(held.status)):
            best[row.component_id] = row
    found = [
        AffectedComponent(
            component_id=row.component_id,
            name=row.name,
            status=str(row.status),
            via_id=row.via_id,
            region_code=row.region_code,
            since=since[row.component_id],
        )
        for row in best.values()
    ]
    found.sort(key=lambda c: (c.via_id is not None, _rank(c.status), c.name.lower(), c.component_id))
    return found


async def _incident(session: AsyncSession, incident_id: str) -> Incident:
    incident = await session.get(Incident, incident_id)
    if incident is None:
        raise NotFound(f"no incident with id {incident_id!r}", field="incident_id")
    return incident


async def _components_of(session: AsyncSession, incident_id: str) -> list[AffectedComponent]:
    affected = _affected_cte(IncidentComponent.incident_id == incident_id)
    statement = (
        select(
            affected.c.component_id,
            affected.c.via_id,
            affected.c.status,
            affected.c.since,
            Component.name,
            Region.code.label("region_code"),
        )
        .join(Component, Component.id == affected.c.component_id)
        .outerjoin(Region, Region.id == Component.region_id)
        .where(Component.is_group.is_(False))
    )
    return _collapse((await session.execute(statement)).all())


async def affected_components(session: AsyncSession, incident_id: str) -> list[AffectedComponent]:
    """The components the incident affects, its own first, then those that depend on them."""
    await _incident(session, incident_id)
    return await _components_of(session, incident_id)


def window_end_of(incident: Incident) -> datetime | None:
    """When the impact ended: the resolution (a maintenance not yet completed: its planned end)."""
    if incident.resolved_at is None and incident.kind == Kind.maintenance:
        return incident.scheduled_until
    return incident.resolved_at


# ------------------------------------------------------------------------------ accounts


def _in_region(session: AsyncSession, code: str, account: Any = Account) -> ColumnElement[bool]:
    """The account lists the region, or no region at all (read from its own JSON list).

    Region codes hold no quote or escape, so the JSON text of a list that holds one contains it in
    quotes: that substring test skips the JSON parser for most accounts of other regions.
    """
    raw = cast(account.regions, Text)
    if session.get_bind().dialect.name == "postgresql":
        listed: ColumnElement[bool] = cast(account.regions, JSONB).op("?")(code)
    else:
        entries = func.json_each(account.regions).table_valued("value")
        listed = exists(select(literal_column("1")).select_from(entries).where(entries.c.value == code))
    # The length test lets the JSON parser see only short lists when looking for an empty one.
    empty = and_(func.length(raw) < 8, func.json_array_length(account.regions) == 0)
    return or_(empty, and_(_contains(session, raw, f'"{code}"'), listed))


def _contains(session: AsyncSession, haystack: SQLColumnExpression[Any], needle: str) -> ColumnElement[bool]:
    if session.get_bind().dialect.name == "postgresql":
        return func.strpos(haystack, needle) > 0
    return func.instr(haystack, needle) > 0


def _reach(session: AsyncSession, code: str) -> ColumnElement[bool]:
    """The condition on ``account_component`` that the link's account lists the region or none:
    read from the link's copy of its regions, or from the account when the link holds no copy."""
    owner = aliased(Account)
    # A scalar subquery, not EXISTS: PostgreSQL would prepare a hashed scan of every account for
    # the EXISTS, costing tens of milliseconds per use even when no link needs it.
    listed = select(_in_region(session, code, owner)).where(owner.id == AccountComponent.account_id).scalar_subquery()
    if "|" in code:  # the copy cannot tell such a code apart
        return listed
    codes = AccountComponent.region_codes
    return or_(codes == "", _contains(session, codes, f"|{code}|"), and_(codes.is_(None), listed))


def _links(session: AsyncSession, components: Sequence[AffectedComponent]) -> ColumnElement[bool]:
    """The condition on ``account_component`` that the link puts its account in the outage."""
    plain = sorted({c.component_id for c in components if c.region_code is None})
    regional: dict[str, set[str]] = {}
    for c in components:
        if c.region_code is not None:
            regional.setdefault(c.region_code, set()).add(c.component_id)
    parts: list[ColumnElement[bool]] = [AccountComponent.component_id.in_(plain)] if plain else []
    for code, ids in sorted(regional.items()):
        parts.append(and_(AccountComponent.component_id.in_(sorted(ids)), _reach(session, code)))
    if len(parts) == 1:
        return parts[0]
    # Every id up front keeps the whole condition on the index's range scans.
    every = sorted({c.component_id for c in components})
    return and_(AccountComponent.component_id.in_(every), or_(*parts))


def _affected(session: AsyncSession, components: Sequence[AffectedComponent]) -> ColumnElement[bool]:
    """The condition on ``account`` that it is affected by one of the components."""
    return Account.id.in_(select(AccountComponent.account_id).where(_links(session, components)))


def _tier_in(tiers: Sequence[str | None]) -> ColumnElement[bool]:
    named = sorted({t for t in tiers if t is not None})
    parts = (
        [AccountComponent.tier == named[0] if len(named) == 1 else AccountComponent.tier.in_(named)] if named else []
    )
    if None in tiers:
        parts.append(AccountComponent.tier.is_(None))
    return or_(*parts) if parts else false()


def _hit(
    session: AsyncSession, components: Sequence[AffectedComponent], tiers: Sequence[str | None] | None = None
) -> Subquery:
    """(account_id, tier, arr_cents) of each affected account (of these tiers; None: all), once."""
    statement = select(AccountComponent.account_id, AccountComponent.tier, AccountComponent.arr_cents).where(
        _links(session, components)
    )
    if tiers is not None:
        statement = statement.where(_tier_in(tiers))
    if len(components) > 1:
        statement = statement.distinct()  # an account using two of the components counts once
    return statement.subquery("hit")


# Past this many (component, tier) pairs, or this deep into the list, the largest accounts come
# from a pass over every affected link instead of short walks down each pair's ARR order.
MAX_PAIRS = 64
MAX_DEPTH = 1000
_LOWEST = -(2**63)


async def _without_jit(session: AsyncSession) -> None:
    """No JIT compilation on PostgreSQL for the rest of the transaction.

    These statements are many short index walks; the planner's estimate for a region test that
    may read the account (never run when every link holds its regions) passes ``jit_above_cost``,
    and compiling the statement then takes 50-150 ms, several times the statement itself.
    """
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(text("SET LOCAL jit = off"))


def _union(parts: Sequence[_Rows], *, distinct: bool) -> Any:
    if len(parts) == 1:
        return parts[0]
    return union(*parts) if distinct else union_all(*parts)


def _walkable(components: Sequence[AffectedComponent], tiers: Sequence[str | None], wanted: int) -> bool:
    return len(components) * len(tiers) <= MAX_PAIRS and wanted <= MAX_DEPTH


def _ranked(
    session: AsyncSession,
    components: Sequence[AffectedComponent],
    tiers: Sequence[str | None],
    *,
    limit: int,
    offset: int = 0,
    name: str = "floor",
) -> _Rows:
    """(account_id, name, arr_cents) of the affected accounts of ``tiers`` ranked offset …
    offset+limit-1: largest ARR first, then by name and id.

    The index keeps each (component, tier)'s links in ARR order. The ``offset+limit`` largest of
    every pair hold the ARR of the last account wanted (the floor; an account met through two
    components counts once), and the accounts at or above it are the only candidates: the
    ``account`` rows read are theirs, for the names that order equal ARRs. ``name`` names the
    floor's CTE, unique within a statement.
    """
    wanted = offset + limit
    link = AccountComponent
    several = len(components) > 1
    if _walkable(components, tiers, wanted):
        pairs = [
            [
                link.component_id == c.component_id,
                _tier_in([t]),
                *([_reach(session, c.region_code)] if c.region_code else []),
            ]
            for c in components
            for t in tiers
        ]
        tops = [
            select(link.account_id, link.arr_cents).where(*w).order_by(link.arr_cents.desc()).limit(wanted).subquery()
            for w in pairs
        ]
        pool = _union([select(*top.c) for top in tops], distinct=several).subquery("pool")
        floor = select(pool.c.arr_cents).order_by(pool.c.arr_cents.desc()).offset(wanted - 1).limit(1).cte(name)
        lowest = func.coalesce(select(floor.c.arr_cents).scalar_subquery(), _LOWEST)
        candidates = _union(
            [select(link.account_id, link.arr_cents).where(*w, link.arr_cents >= lowest) for w in pairs],
            distinct=several,
        ).subquery("candidates")
    else:
        hit = _hit(session, components, tiers)
        floor = select(hit.c.arr_cents).order_by(hit.c.arr_cents.desc()).offset(wanted - 1).limit(1).cte(name)
        lowest = func.coalesce(select(floor.c.arr_cents).scalar_subquery(), _LOWEST)
        candidates = select(hit.c.account_id, hit.c.arr_cents).where(hit.c.arr_cents >= lowest).subquery("candidates")
    account_name = select(Account.name).where(Account.id == candidates.c.account_id).scalar_subquery()
    return (
        select(candidates.c.account_id, account_name.label("name"), candidates.c.arr_cents)
        .order_by(candidates.c.arr_cents.desc(), account_name, candidates.c.account_id)
        .offset(offset)
        .limit(limit)
    )


def _reaches(component: AffectedComponent, regions: Sequence[str]) -> bool:
    return component.region_code is None or not regions or component.region_code in regions


_ACCOUNT_COLUMNS = (
    Account.id,
    Account.external_id,
    Account.name,
    Account.tier,
    Account.arr_cents,
    Account.regions,
    Account.csm_owner,
)


async def _impacts(
    session: AsyncSession, components: Sequence[AffectedComponent], rows: Sequence[Any], window_end: datetime | None
) -> list[AccountImpact]:
    """Each account row with the affected components it uses (one query for the whole page)."""
    if not rows:
        return []
    by_id = {c.component_id: c for c in components}
    links = await session.execute(
        select(AccountComponent.account_id, AccountComponent.component_id).where(
            AccountComponent.account_id.in_([r.id for r in rows]), AccountComponent.component_id.in_(list(by_id))
        )
    )
    used: dict[str, list[AffectedComponent]] = {}
    for account_id, component_id in links:
        used.setdefault(account_id, []).append(by_id[component_id])
    order = {c.component_id: i for i, c in enumerate(components)}
    found = []
    for r in rows:
        regions = list(r.regions or [])
        mine = sorted((c for c in used.get(r.id, []) if _reaches(c, regions)), key=lambda c: order[c.component_id])
        found.append(
            AccountImpact(
                account_id=r.id,
                external_id=r.external_id,
                name=r.name,
                tier=r.tier,
                arr_cents=int(r.arr_cents),
                regions=regions,
                csm_owner=r.csm_owner,
                components=mine,
                window_start=min(c.since for c in mine),
                window_end=window_end,
            )
        )
    return found


def _accounts_statement(
    session: AsyncSession, components: Sequence[AffectedComponent], *, tier: str | None = None
) -> _Rows:
    statement: _Rows = select(*_ACCOUNT_COLUMNS).where(_affected(session, components))
    if tier is not None:
        statement = statement.where(Account.tier == tier)
    return statement.order_by(Account.arr_cents.desc(), Account.name, Account.id)


async def _accounts_by_id(session: AsyncSession, ids: Sequence[str]) -> list[Any]:
    """The accounts' rows, in the order of ``ids``."""
    if not ids:
        return []
    found = (await session.execute(select(*_ACCOUNT_COLUMNS).where(Account.id.in_(list(ids))))).all()
    place = {account_id: i for i, account_id in enumerate(ids)}
    return sorted(found, key=lambda r: place[r.id])


async def affected_accounts(
    session: AsyncSession, incident_id: str, *, limit: int | None = None, offset: int = 0, tier: str | None = None
) -> list[AccountImpact]:
    """The affected accounts, largest ARR first, then by name."""
    incident = await _incident(session, incident_id)
    components = await _components_of(session, incident_id)
    if not components or (limit is not None and limit <= 0):
        return []
    end = window_end_of(incident)
    if limit is not None:
        tiers = [tier] if tier is not None else [*await _tiers_in_use(session), None]
        if _walkable(components, tiers, offset + limit):
            statement = _ranked(session, components, tiers, limit=limit, offset=offset)
            await _without_jit(session)
            ids = [r.account_id for r in await session.execute(statement)]
            return await _impacts(session, components, await _accounts_by_id(session, ids), end)
    statement = _accounts_statement(session, components, tier=tier).offset(offset)
    if limit is not None:
        statement = statement.limit(limit)
    rows = (await session.execute(statement)).all()
    return await _impacts(session, components, rows, end)


async def affected_count(session: AsyncSession, incident_id: str, *, tier: str | None = None) -> int:
    """How many accounts the incident affects (of one tier, when given)."""
    await _incident(session, incident_id)
    components = await _components_of(session, incident_id)
    if not components:
        return 0
    hit = _hit(session, components, None if tier is None else [tier])
    await _without_jit(session)
    return int(await session.scalar(select(func.count()).select_from(hit)) or 0)


CSV_COLUMNS = (
    "external_id",
    "name",
    "tier",
    "arr",
    "regions",
    "components",
    "window_start",
    "window_end",
    "csm_owner",
)


async def export_csv(session: AsyncSession, incident_id: str, *, batch: int = 1000) -> str:
    """Every affected account as CSV, largest ARR first; components by name, separated by ";"."""
    incident = await _incident(session, incident_id)
    components = await _components_of(session, incident_id)
    out = io.StringIO()
    writer = csvcells.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    if not components:
        return out.getvalue()
    end = window_end_of(incident)
    result = await session.stream(_accounts_statement(session, components).execution_options(yield_per=batch))
    async for rows in result.partitions(batch):
        for a in await _impacts(session, components, rows, end):
            writer.writerow(
                (
                    a.external_id,
                    a.name,
                    a.tier or "",
                    f"{a.arr_cents // 100}.{a.arr_cents % 100:02d}",
                    ";".join(a.regions),
                    ";".join(c.name for c in a.components),
                    iso(a.window_start),
                    iso(a.window_end) or "",
                    a.csm_owner or "",
                )
            )
    return out.getvalue()


async def account_impact(session: AsyncSession, incident_id: str, account_id: str) -> AccountImpact | None:
    """How the incident affects one account, or None when it does not."""
    incident = await _incident(session, incident_id)
    components = await _components_of(session, incident_id)
    if not components:
        return None
    statement = select(*_ACCOUNT_COLUMNS).where(Account.id == account_id, _affected(session, components))
    rows = (await session.execute(statement)).all()
    found = await _impacts(session, components, rows, window_end_of(incident))
    return found[0] if found else None


async def incidents_affecting(
    session: AsyncSession, account_id: str, *, resolved_since: datetime | None = None
) -> list[str]:
    """Ids of the open incidents (and those resolved at or after ``resolved_since``) that affect
    the account, newest first."""
    regions = await session.scalar(select(Account.regions).where(Account.id == account_id))
    if regions is None:
        return []
    still: ColumnElement[bool] = Incident.resolved_at.is_(None)
    if resolved_since is not None:
        still = or_(still, Incident.resolved_at >= resolved_since)
    affected = _affected_cte(and_(Incident.kind == Kind.incident, Incident.cancelled_at.is_(None), still))
    statement = (
        select(affected.c.incident_id, Region.code)
        .join(
            AccountComponent,
            and_(AccountComponent.component_id == affected.c.component_id, AccountComponent.account_id == account_id),
        )
        .join(Component, Component.id == affected.c.component_id)
        .outerjoin(Region, Region.id == Component.region_id)
    )
    hit = {
        incident_id
        for incident_id, code in (await session.execute(statement)).all()
        if code is None or not regions or code in regions
    }
    if not hit:
        return []
    ordered = await session.scalars(
        select(Incident.id).where(Incident.id.in_(hit)).order_by(Incident.started_at.desc(), Incident.id.desc())
    )
    return list(ordered)


# ------------------------------------------------------------------------------ summary


@dataclass
class _Overview:
    """What one statement finds about the affected accounts (and every account's ARR)."""

    total_arr_cents: int
    by_tier: list[TierImpact]
    top_ids: list[str]
    names: dict[frozenset[str], list[str]]  # tiers (empty: all) → the three largest names


def _total_arr() -> ColumnElement[Any]:
    """The ARR of every account: the kept total (summed afresh only if its row is missing)."""
    kept = select(AccountTotal.arr_cents).where(AccountTotal.id == TOTAL_ID).scalar_subquery()
    return func.coalesce(kept, select(func.coalesce(func.sum(Account.arr_cents), 0)).scalar_subquery())


async def _overview(
    session: AsyncSession,
    components: Sequence[AffectedComponent],
    *,
    top: int,
    tier_sets: Sequence[frozenset[str]],
    in_use: Sequence[str],
) -> _Overview:
    """Count and ARR by tier, the ``top`` largest ids and the three largest names of each tier set,
    and the ARR of every account: one statement, over the links' index and a few account rows."""
    hit = _hit(session, components)
    none = null()
    everyone: list[str | None] = [*in_use, None]

    def ranked(part: int, limit: int, tiers: frozenset[str]) -> _Rows:
        chosen = [t for t in everyone if t in tiers] if tiers else everyone
        sub = _ranked(session, components, chosen, limit=limit, name=f"floor{part}").subquery()
        return select(
            literal_column(str(part)).label("part"),
            cast(none, String(100)),
            literal_column("0"),
            sub.c.arr_cents,
            sub.c.account_id,
            sub.c.name,
        )

    parts: list[_Rows] = [
        select(
            literal_column("0").label("part"),
            hit.c.tier,
            func.count().label("n"),
            func.coalesce(func.sum(hit.c.arr_cents), 0).label("arr"),
            cast(none, String(24)).label("id"),
            cast(none, String(300)).label("name"),
        ).group_by(hit.c.tier),
        select(
            literal_column("1"),
            cast(none, String(100)),
            literal_column("0"),
            _total_arr(),
            cast(none, String(24)),
            cast(none, String(300)),
        ),
    ]
    if top > 0:
        parts.append(ranked(2, top, frozenset()))
    wanted = [t for t in dict.fromkeys(tier_sets) if t or top < 3]
    for k, tiers in enumerate(wanted):
        parts.append(ranked(3 + k, 3, tiers))
    await _without_jit(session)
    rows = (await session.execute(union_all(*parts))).all()
    total = 0
    by_tier: list[TierImpact] = []
    top_ids: list[str] = []
    names: dict[frozenset[str], list[str]] = {t: [] for t in wanted}
    ordered: dict[int, list[tuple[int, str, str]]] = {}
    for part, tier, n, arr, account_id, name in rows:
        if part == 0:
            by_tier.append(TierImpact(tier, int(n), int(arr)))
        elif part == 1:
            total = int(arr)
        else:
            ordered.setdefault(int(part), []).append((int(arr), name, account_id))
    # A compound SELECT keeps no order: each ranked part is sorted again here (a few rows each).
    for part, found in ordered.items():
        found.sort(key=lambda r: (-r[0], r[1], r[2]))
        if part == 2:
            top_ids = [account_id for _, _, account_id in found]
        else:
            names[wanted[part - 3]] = [name for _, name, _ in found]
    by_tier.sort(key=lambda t: (-t.arr_cents, t.tier is None, (t.tier or "").lower()))
    return _Overview(total, by_tier, top_ids, names)


def _percent(part: int, whole: int) -> float:
    return round(100.0 * part / whole, 4) if whole else 0.0


async def _scope(
    session: AsyncSession,
    components: Sequence[AffectedComponent],
    tiers: frozenset[str] | None,
    in_use: Sequence[str],
) -> tuple[int, int, list[str]]:
    """Count, ARR and the three largest names of the affected accounts of the given tiers (None: all)."""
    if tiers is not None and not tiers:
        return 0, 0, []
    scope = tiers or frozenset()
    overview = await _overview(session, components, top=0, tier_sets=[scope], in_use=in_use)
    chosen = [t for t in overview.by_tier if tiers is None or t.tier in tiers]
    return sum(t.account_count for t in chosen), sum(t.arr_cents for t in chosen), overview.names[scope]


async def _tiers_in_use(session: AsyncSession) -> list[str]:
    """Every tier an account has: a loose scan of the tier index (one probe per tier, not per account)."""
    walk = text(
        "WITH RECURSIVE t(tier) AS (SELECT min(tier) FROM account UNION ALL "
        "SELECT (SELECT min(tier) FROM account WHERE tier > t.tier) FROM t WHERE t.tier IS NOT NULL) "
        "SELECT tier FROM t WHERE tier IS NOT NULL"
    )
    return list(await session.scalars(walk))


def _tier_set(rule: ImpactRule, in_use: Sequence[str]) -> frozenset[str]:
    """The tiers accounts actually have that the rule names (rules match tiers ignoring case)."""
    named = {t.lower() for t in rule.tiers}
    return frozenset(t for t in in_use if t.lower() in named)


async def _suggest(
    session: AsyncSession,
    components: Sequence[AffectedComponent],
    enabled: Sequence[ImpactRule],
    overview: _Overview,
    top_names: list[str],
    in_use: Sequence[str],
) -> Suggestion | None:
    """The first enabled rule, by position, that the impact satisfies."""
    count = sum(t.account_count for t in overview.by_tier)
    if not count:
        return None
    for rule in enabled:
        scoped = list(components)
        if rule.min_status:
            limit = _rank(rule.min_status)
            scoped = [c for c in components if _rank(c.status) <= limit]
            if not scoped:
                continue
        tiers = _tier_set(rule, in_use)
        if len(scoped) < len(components):
            # Only some components count: their accounts need a query of their own (rare).
            n, arr, names = await _scope(session, scoped, tiers if rule.tiers else None, in_use)
        else:
            chosen = [t for t in overview.by_tier if not rule.tiers or t.tier in tiers]
            n = sum(t.account_count for t in chosen)
            arr = sum(t.arr_cents for t in chosen)
            names = overview.names.get(tiers, []) if rule.tiers else overview.names.get(tiers) or top_names[:3]
        facts = rules.Facts(
            account_count=n,
            arr_cents=arr,
            total_arr_cents=overview.total_arr_cents,
            names=names if (rule.tiers or rule.min_status or rule.account_count) else [],
            component_names=[c.name for c in scoped],
            statuses=[c.status for c in scoped],
        )
        reason = rules.holds(rule, facts)
        if reason is not None:
            return Suggestion(severity=rule.severity, rule_id=rule.id, rule_name=rule.name, reason=reason)
    return None


async def summarize(session: AsyncSession, incident_id: str, *, top: int = 10) -> ImpactSummary:
    """Count and ARR of the affected accounts by tier, their share of all ARR, the largest accounts,
    the affected components, the impact window and the severity the impact rules suggest."""
    incident = await _incident(session, incident_id)
    components = await _components_of(session, incident_id)
    end = window_end_of(incident)
    if not components:
        total = int(await session.scalar(select(_total_arr())) or 0)
        return ImpactSummary(incident.id, 0, 0, total, 0.0, [], [], [], None, end, None)
    enabled = await rules.enabled_rules(session)
    in_use = await _tiers_in_use(session)
    tier_sets = [t for t in (_tier_set(r, in_use) for r in enabled if r.tiers) if t]
    if top < 3 and any(not r.tiers and (r.min_status or r.account_count) for r in enabled):
        tier_sets.append(frozenset())  # the names such a rule's reason gives, when the top list is too short
    overview = await _overview(session, components, top=max(top, 0), tier_sets=tier_sets, in_use=in_use)
    count = sum(t.account_count for t in overview.by_tier)
    arr = sum(t.arr_cents for t in overview.by_tier)
    rows = await _accounts_by_id(session, overview.top_ids)
    top_accounts = await _impacts(session, components, rows, end)
    suggestion = await _suggest(session, components, enabled, overview, [a.name for a in top_accounts], in_use)
    return ImpactSummary(
        incident_id=incident.id,
        account_count=count,
        arr_cents=arr,
        total_arr_cents=overview.total_arr_cents,
        arr_percent=_percent(arr, overview.total_arr_cents),
        by_tier=overview.by_tier,
        top=top_accounts,
        components=components,
        window_start=min(c.since for c in components),
        window_end=end,
        suggestion=suggestion,
    )
