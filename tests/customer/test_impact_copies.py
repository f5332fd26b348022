"""The links' copies of each account's tier, ARR and regions, and the kept total ARR, that impact
reads: every write path keeps them right, a change shows in impact at once, the migration fills
them, and the short walks down each tier's ARR order rank exactly as a plain sort would."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import func, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from crisisdesk.catalog import service as catalog
from crisisdesk.customer import accounts, demo, impact, importing
from crisisdesk.customer.models import (
    REGION_CODES_MAX,
    Account,
    AccountComponent,
    AccountTotal,
    region_codes,
)
from crisisdesk.kit import migrate
from crisisdesk.kit.db import Database
from tests.fixtures.databases import BACKENDS, POSTGRES_URL, reset_schema
from tests.fixtures.impact import World, make_world
from tests.fixtures.incident import make_incident


async def _declare(db: Database, world: World, statuses: dict[str, str]) -> str:
    async with db.session() as s:
        incident = await make_incident(
            s, world.admin, components={world.components[n]: st for n, st in statuses.items()}
        )
    return incident.id


async def _summary(db: Database, incident_id: str) -> impact.ImpactSummary:
    async with db.sessionmaker() as s:
        return await impact.summarize(s, incident_id)


async def _assert_copies_right(db: Database) -> None:
    """Every link holds its account's tier, ARR and regions; the total is the sum of every ARR."""
    async with db.sessionmaker() as s:
        owners = {a.id: a for a in await s.scalars(select(Account))}
        links = (await s.execute(select(AccountComponent))).scalars().all()
        total = await s.scalar(select(AccountTotal.arr_cents).where(AccountTotal.id == 1))
        summed = await s.scalar(select(func.coalesce(func.sum(Account.arr_cents), 0)))
    assert links
    for link in links:
        owner = owners[link.account_id]
        assert (link.tier, link.arr_cents, link.region_codes) == (
            owner.tier,
            owner.arr_cents,
            region_codes(owner.regions),
        ), link.account_id
    assert total == summed


async def _change(db: Database, account_id: str, **values: object) -> None:
    async with db.session() as s:
        account = await accounts.get(s, account_id)
        data = accounts.data_of(account)
        for name, value in values.items():
            setattr(data, name, value)
        await accounts.replace(s, account, data)


# ------------------------------------------------------------------------------ write paths


async def test_a_changed_arr_or_tier_shows_in_impact_at_once(db: Database) -> None:
    world = await make_world(db)
    incident_id = await _declare(db, world, {"Identity": "major_outage"})
    before = await _summary(db, incident_id)
    assert [(t.tier, t.account_count, t.arr_cents) for t in before.by_tier] == [
        ("Enterprise", 2, 62_900_000),
        ("Business", 1, 5_000_000),
    ]
    # Umbrella grows past Globex and becomes Enterprise; Wayne shrinks and moves to Starter.
    await _change(db, world.accounts["umbrella"], arr_cents=80_000_000, tier="Enterprise")
    await _change(db, world.accounts["wayne"], arr_cents=100, tier="Starter")
    after = await _summary(db, incident_id)
    assert [(t.tier, t.account_count, t.arr_cents) for t in after.by_tier] == [
        ("Enterprise", 2, 130_000_000),
        ("Starter", 1, 100),
    ]
    assert [a.name for a in after.top] == ["Umbrella", "Globex", "Wayne"]
    assert after.total_arr_cents == 100_000_000 + 75_000_000 - 12_899_900
    assert after.arr_cents == 130_000_100
    async with db.sessionmaker() as s:
        assert [a.name for a in await impact.affected_accounts(s, incident_id, limit=1, tier="Starter")] == ["Wayne"]
        assert await impact.affected_count(s, incident_id, tier="Business") == 0
    await _assert_copies_right(db)


async def test_components_and_regions_changed_or_accounts_deleted_show_at_once(db: Database) -> None:
    world = await make_world(db)
    storage = await _declare(db, world, {"Storage EU": "major_outage"})
    assert [a.name for a in (await _summary(db, storage)).top] == ["Umbrella", "Hooli"]
    # Initech moves to eu-west; Hooli now lists a region elsewhere; Stark starts using Storage EU
    # and lists no region.
    await _change(db, world.accounts["initech"], regions=["eu-west"])
    await _change(db, world.accounts["hooli"], regions=["ap-south"])
    await _change(
        db,
        world.accounts["stark"],
        regions=[],
        component_ids=[world.components["Billing"], world.components["Storage EU"]],
    )
    assert [a.name for a in (await _summary(db, storage)).top] == ["Initech", "Umbrella", "Stark"]
    async with db.session() as s:
        await accounts.delete(s, world.accounts["initech"])
    summary = await _summary(db, storage)
    assert [a.name for a in summary.top] == ["Umbrella", "Stark"]
    assert summary.total_arr_cents == 100_000_000 - 30_000_000
    await _assert_copies_right(db)


async def test_import_demo_and_links_added_on_their_own_keep_the_copies(db: Database) -> None:
    world = await make_world(db)
    api = world.components["API"]
    content = ",".join(importing.COLUMNS) + "\n"
    content += f"globex,Globex,Business,1234.56,us-east,{api},,,,,,,\n"  # an update
    content += f"newco,New Co,Enterprise,99.99,,{api},,,,,,,\n"  # a new account
    async with db.session() as s:
        report = await importing.import_text(s, content)
    assert (report.created, report.updated, report.error_count) == (1, 1, 0)
    async with db.session() as s:
        s.add(AccountComponent(account_id=world.accounts["hooli"], component_id=world.components["Billing"]))
    async with db.session() as s:
        names = list(demo.HOSTING.values()) + list(demo._FEATURES)
        ids = {n: (await catalog.create_component(s, name=n)).id for n in names}
        batch = demo.make_accounts(ids, count=40)
        for data in batch:
            data.component_ids.append(world.components["Billing"])
        await accounts.upsert_many(s, batch)
    await _assert_copies_right(db)
    billing = await _declare(db, world, {"Billing": "partial_outage"})
    summary = await _summary(db, billing)
    assert summary.account_count == 2 + 40  # Stark, Hooli and the demo's accounts
    assert "Hooli" in [a.name for a in await _all(db, billing)]
    assert summary.total_arr_cents == 100_000_000 - 50_000_000 + 123_456 + 9_999 + sum(d.arr_cents for d in batch)


async def _all(db: Database, incident_id: str) -> list[impact.AccountImpact]:
    async with db.sessionmaker() as s:
        return await impact.affected_accounts(s, incident_id)


async def test_writers_at_the_same_time_lose_no_arr(db: Database) -> None:
    """Two transactions move the total at once: the second waits for the first's row lock, then adds
    to what the first left (SQLite has one writer at a time)."""
    if db.is_sqlite:
        pytest.skip("SQLite runs one writer at a time")
    world = await make_world(db)
    first_flushed = asyncio.Event()

    async def grow(external_id: str, cents: int, *, first: bool) -> None:
        if not first:
            await first_flushed.wait()
        async with db.session() as s:
            account = await accounts.get(s, world.accounts[external_id])
            account.arr_cents += cents
            await s.flush()
            if first:
                first_flushed.set()
                await asyncio.sleep(0.3)

    await asyncio.gather(grow("globex", 1_000, first=True), grow("stark", 20, first=False))
    await _assert_copies_right(db)
    async with db.sessionmaker() as s:
        assert await s.scalar(select(AccountTotal.arr_cents)) == 100_000_000 + 1_020


async def test_a_long_region_list_is_read_from_the_account(db: Database) -> None:
    """Regions too long to copy onto a link (an index entry has a size limit) still count."""
    world = await make_world(db)
    many = [f"zz-{n:02d}-{'x' * 30}" for n in range(40)]
    assert region_codes(many) is None and len("|".join(many)) > REGION_CODES_MAX
    assert region_codes(["eu-west", "us-east"]) == "|eu-west|us-east|" and region_codes([]) == ""
    await _change(db, world.accounts["initech"], regions=[*many, "eu-west"])
    await _change(db, world.accounts["stark"], regions=many, component_ids=[world.components["Storage EU"]])
    async with db.sessionmaker() as s:
        codes = dict((await s.execute(select(AccountComponent.account_id, AccountComponent.region_codes))).all())
    assert codes[world.accounts["initech"]] is None
    storage = await _declare(db, world, {"Storage EU": "major_outage"})
    assert [a.name for a in (await _summary(db, storage)).top] == ["Initech", "Umbrella", "Hooli"]
    async with db.sessionmaker() as s:
        assert await impact.affected_count(s, storage) == 3
        assert await impact.account_impact(s, storage, world.accounts["stark"]) is None


# ------------------------------------------------------------------------------ ranking


async def _crowd(db: Database, world: World) -> None:
    """Forty more accounts on API and Billing, many with equal ARR, some in no tier."""
    c = world.components
    batch = [
        accounts.AccountData(
            external_id=f"crowd-{n:02d}",
            name=f"Crowd {(n * 7) % 40:02d}",
            tier=(None, "Starter", "Business", "Enterprise")[n % 4],
            arr_cents=(n % 5) * 1_000_000,
            regions=[["eu-west"], ["us-east"], []][n % 3],
            component_ids=[c["API"]] + ([c["Storage EU"]] if n % 2 else []),
        )
        for n in range(40)
    ]
    async with db.session() as s:
        await accounts.upsert_many(s, batch)


async def test_pages_from_the_index_walks_match_a_plain_sort(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every page, by tier or not, is the slice of the whole sorted list, through equal ARRs and
    accounts met through two components; and the same when pages past the first few are sorted
    over every affected account instead."""
    world = await make_world(db)
    await _crowd(db, world)
    incident_id = await _declare(db, world, {"Identity": "partial_outage", "Storage EU": "major_outage"})

    cases = [(1, 0), (3, 0), (5, 2), (7, 10), (50, 0), (4, 45), (10, 60)]
    tiers = (None, "Enterprise", "Starter")

    async def pages() -> dict[tuple[str | None, int, int], list[str]]:
        found = {}
        async with db.sessionmaker() as s:
            for tier in tiers:
                for limit, offset in cases:
                    page = await impact.affected_accounts(s, incident_id, limit=limit, offset=offset, tier=tier)
                    found[(tier, limit, offset)] = [a.account_id for a in page]
        return found

    whole = {tier: [a.account_id for a in await _tiered(db, incident_id, tier)] for tier in tiers}
    assert len(whole[None]) == 4 + 40 and len(set(whole[None])) == len(whole[None])
    expected = {(t, limit, offset): whole[t][offset : offset + limit] for t in tiers for limit, offset in cases}
    assert await pages() == expected
    monkeypatch.setattr(impact, "MAX_DEPTH", 4)
    assert await pages() == expected


async def _tiered(db: Database, incident_id: str, tier: str | None) -> list[impact.AccountImpact]:
    async with db.sessionmaker() as s:
        return await impact.affected_accounts(s, incident_id, tier=tier)


async def test_the_summary_ranks_like_a_plain_sort(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    world = await make_world(db)
    await _crowd(db, world)
    incident_id = await _declare(db, world, {"API": "major_outage", "Storage EU": "degraded_performance"})
    whole = await _tiered(db, incident_id, None)
    for top in (0, 1, 2, 3, 12, 100):
        async with db.sessionmaker() as s:
            walked = await impact.summarize(s, incident_id, top=top)
        monkeypatch.setattr(impact, "MAX_PAIRS", 0)
        async with db.sessionmaker() as s:
            passed = await impact.summarize(s, incident_id, top=top)
        monkeypatch.setattr(impact, "MAX_PAIRS", 64)
        assert [a.account_id for a in walked.top] == [a.account_id for a in whole[:top]]
        assert walked == passed
        assert walked.account_count == len(whole) and walked.arr_cents == sum(a.arr_cents for a in whole)
        counts = {t.tier: t.account_count for t in walked.by_tier}
        assert counts == {tier: sum(a.tier == tier for a in whole) for tier in {a.tier for a in whole}}


# ------------------------------------------------------------------------------ migration


@pytest.fixture(params=BACKENDS)
async def at_0006(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A database of this test's own, migrated to the revision before the copies."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'm7.db'}"
    else:
        assert POSTGRES_URL
        parsed = make_url(POSTGRES_URL)
        url = parsed.set(database=f"{parsed.database}_m7").render_as_string(hide_password=False)
        await reset_schema(url)
    await asyncio.to_thread(migrate.upgrade, url, "0006")
    yield url


async def test_the_migration_fills_the_copies_and_the_total(at_0006: str) -> None:
    engine = create_async_engine(at_0006)
    long = [f"r{n:02d}-{'y' * 36}" for n in range(30)]
    rows = [("a1", "Enterprise", 500, []), ("a2", None, 7, ["eu-west", "us-east"]), ("a3", "Starter", 3, long)]
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO component (id, name, status, position, showcase, only_show_if_degraded, is_group, "
                "created_at, updated_at) VALUES ('c1', 'C1', 'operational', 1, true, false, false, "
                "'2026-01-01', '2026-01-01')"
            )
        )
        for account_id, tier, arr, regions in rows:
            await conn.execute(
                text(
                    "INSERT INTO account (id, external_id, name, tier, arr_cents, regions, created_at, updated_at) "
                    "VALUES (:id, :id, :id, :tier, :arr, :regions, '2026-01-01', '2026-01-01')"
                ),
                {"id": account_id, "tier": tier, "arr": arr, "regions": json.dumps(regions)},
            )
            await conn.execute(
                text("INSERT INTO account_component (account_id, component_id) VALUES (:id, 'c1')"), {"id": account_id}
            )
    await engine.dispose()
    await asyncio.to_thread(migrate.upgrade, at_0006)
    await asyncio.to_thread(migrate.check, at_0006)
    engine = create_async_engine(at_0006)
    async with engine.begin() as conn:
        links = (
            await conn.execute(
                select(
                    AccountComponent.account_id,
                    AccountComponent.tier,
                    AccountComponent.arr_cents,
                    AccountComponent.region_codes,
                ).order_by(AccountComponent.account_id)
            )
        ).all()
        total = await conn.scalar(select(AccountTotal.arr_cents))
        # An ARR past the 32-bit integer's range now fits.
        await conn.execute(update(Account).where(Account.id == "a1").values(arr_cents=3_000_000_000_00))
    await engine.dispose()
    assert [tuple(r) for r in links] == [
        ("a1", "Enterprise", 500, ""),
        ("a2", None, 7, "|eu-west|us-east|"),
        ("a3", "Starter", 3, None),
    ]
    assert total == 510
