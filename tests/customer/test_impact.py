"""Customer impact: affected accounts through dependencies and regions, sums by tier, windows, CSV."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest

from crisisdesk.customer import accounts, impact
from crisisdesk.incident import service as incidents
from crisisdesk.kit.db import Database
from crisisdesk.kit.errors import NotFound
from crisisdesk.kit.time import utcnow
from tests.fixtures.impact import World, make_world
from tests.fixtures.incident import make_incident, make_maintenance


async def _declare(db: Database, world: World, statuses: dict[str, str], **kw: object) -> str:
    async with db.session() as s:
        incident = await make_incident(
            s, world.admin, components={world.components[n]: st for n, st in statuses.items()}, **kw
        )
    return incident.id


async def test_an_outage_reaches_accounts_through_dependencies(db: Database) -> None:
    world = await make_world(db)
    incident_id = await _declare(db, world, {"Identity": "major_outage"})
    async with db.sessionmaker() as s:
        summary = await impact.summarize(s, incident_id)
    # Globex uses Dashboard (→ API → Identity), Umbrella uses API, Wayne uses Identity and Dashboard
    # (counted once); Initech, Hooli and Stark use none of them.
    assert [a.name for a in summary.top] == ["Globex", "Wayne", "Umbrella"]
    assert summary.account_count == 3
    assert summary.arr_cents == 67_900_000 and summary.total_arr_cents == 100_000_000
    assert summary.arr_percent == pytest.approx(67.9)
    assert [(t.tier, t.account_count, t.arr_cents) for t in summary.by_tier] == [
        ("Enterprise", 2, 62_900_000),
        ("Business", 1, 5_000_000),
    ]
    assert [(c.name, c.via_id is None) for c in summary.components] == [
        ("Identity", True),
        ("API", False),
        ("Dashboard", False),
    ]
    wayne = next(a for a in summary.top if a.name == "Wayne")
    assert [c.name for c in wayne.components] == ["Identity", "Dashboard"]
    assert wayne.csm_owner == "ann@csm.example" and wayne.regions == ["us-east"]


async def test_a_regional_component_affects_accounts_in_its_region_or_in_none(db: Database) -> None:
    world = await make_world(db)
    incident_id = await _declare(db, world, {"Storage EU": "partial_outage"})
    async with db.sessionmaker() as s:
        found = await impact.affected_accounts(s, incident_id)
        initech = await impact.account_impact(s, incident_id, world.accounts["initech"])
        hooli = await impact.account_impact(s, incident_id, world.accounts["hooli"])
    # Initech uses Storage EU but runs in us-east only; Hooli lists no region, so it counts.
    assert [a.name for a in found] == ["Umbrella", "Hooli"]
    assert initech is None
    assert hooli is not None and [c.region_code for c in hooli.components] == ["eu-west"]


async def test_regional_and_global_components_together(db: Database) -> None:
    """Two affected components, one regional: each account counted once, the region rule per component."""
    world = await make_world(db)
    incident_id = await _declare(db, world, {"Storage EU": "major_outage", "API": "partial_outage"})
    async with db.sessionmaker() as s:
        summary = await impact.summarize(s, incident_id)
        page = await impact.affected_accounts(s, incident_id, limit=2, offset=1)
        enterprise = await impact.affected_accounts(s, incident_id, tier="Enterprise")
        count = await impact.affected_count(s, incident_id, tier="Business")
    names = [a.name for a in await _all(db, incident_id)]
    assert names == ["Globex", "Wayne", "Umbrella", "Hooli"]
    assert summary.account_count == 4 and summary.arr_cents == 68_000_000
    umbrella = next(a for a in summary.top if a.name == "Umbrella")
    assert sorted(c.name for c in umbrella.components) == ["API", "Storage EU"]
    assert [a.name for a in page] == ["Wayne", "Umbrella"]
    assert [a.name for a in enterprise] == ["Globex", "Wayne"]
    assert count == 1


async def _all(db: Database, incident_id: str) -> list[impact.AccountImpact]:
    async with db.sessionmaker() as s:
        return await impact.affected_accounts(s, incident_id)


async def test_windows_start_when_each_component_was_hurt_and_end_at_resolution(db: Database) -> None:
    world = await make_world(db)
    started = utcnow() - timedelta(minutes=45)
    incident_id = await _declare(db, world, {"Dashboard": "degraded_performance"}, started_at=started)
    async with db.session() as s:
        incident = await incidents.get_incident(s, incident_id)
        await incidents.post_update(
            s,
            world.admin,
            incident,
            status="identified",
            body="Billing is affected too.",
            components={world.components["Billing"]: "major_outage"},
        )
    async with db.sessionmaker() as s:
        summary = await impact.summarize(s, incident_id)
        stark = await impact.account_impact(s, incident_id, world.accounts["stark"])
        globex = await impact.account_impact(s, incident_id, world.accounts["globex"])
    assert summary.window_start == started and summary.window_end is None
    assert globex is not None and globex.window_start == started  # listed at declaration: from the start
    assert stark is not None and stark.window_start > started + timedelta(minutes=40)
    async with db.session() as s:
        incident = await incidents.get_incident(s, incident_id)
        await incidents.post_update(s, world.admin, incident, status="resolved", body="Fixed.")
    async with db.sessionmaker() as s:
        resolved = await impact.summarize(s, incident_id)
        after = await impact.account_impact(s, incident_id, world.accounts["stark"])
    assert resolved.window_end is not None and resolved.window_end > started
    assert after is not None and after.window_end == resolved.window_end
    assert resolved.account_count == summary.account_count  # a resolved incident keeps its impact


async def test_nothing_affected_and_unknown_incident(db: Database) -> None:
    world = await make_world(db)
    quiet = await _declare(db, world, {})
    unused = await _declare(db, world, {"Reporting": "major_outage"})
    async with db.sessionmaker() as s:
        none = await impact.summarize(s, quiet)
        nobody = await impact.summarize(s, unused)
        assert await impact.account_impact(s, quiet, world.accounts["globex"]) is None
        with pytest.raises(NotFound) as missing:
            await impact.summarize(s, "nope")
        assert missing.value.field == "incident_id"
    assert (none.account_count, none.components, none.window_start, none.suggestion) == (0, [], None, None)
    assert none.total_arr_cents == 100_000_000
    assert nobody.account_count == 0 and [c.name for c in nobody.components] == ["Reporting"]


async def test_incidents_affecting_an_account(db: Database) -> None:
    world = await make_world(db)
    first = await _declare(db, world, {"Identity": "major_outage"}, name="Sign-in outage")
    second = await _declare(db, world, {"Storage EU": "partial_outage"}, name="Storage errors")
    other = await _declare(db, world, {"Billing": "partial_outage"}, name="Billing delays")
    async with db.sessionmaker() as s:
        umbrella = await impact.incidents_affecting(s, world.accounts["umbrella"])
        initech = await impact.incidents_affecting(s, world.accounts["initech"])
        assert await impact.incidents_affecting(s, "nope") == []
    assert umbrella == [second, first]  # newest first
    assert initech == []  # Storage EU is in eu-west; Initech runs in us-east
    async with db.session() as s:
        incident = await incidents.get_incident(s, first)
        await incidents.post_update(s, world.admin, incident, status="resolved", body="Fixed.")
    async with db.sessionmaker() as s:
        assert await impact.incidents_affecting(s, world.accounts["umbrella"]) == [second]
        since = utcnow() - timedelta(hours=1)
        assert await impact.incidents_affecting(s, world.accounts["umbrella"], resolved_since=since) == [second, first]
        assert await impact.incidents_affecting(s, world.accounts["stark"]) == [other]


async def test_maintenance_is_assessed_like_an_incident(db: Database) -> None:
    world = await make_world(db)
    async with db.session() as s:
        m = await make_maintenance(s, world.admin, [world.components["API"]])
    async with db.sessionmaker() as s:
        summary = await impact.summarize(s, m.id)
    assert [a.name for a in summary.top] == ["Globex", "Wayne", "Umbrella"]
    assert summary.window_start == m.scheduled_for and summary.window_end == m.scheduled_until


async def test_csv_lists_every_affected_account(db: Database) -> None:
    world = await make_world(db)
    incident_id = await _declare(db, world, {"Identity": "major_outage", "Storage EU": "partial_outage"})
    async with db.session() as s:
        # A name that needs quoting, and a batch smaller than the result.
        globex = await accounts.get(s, world.accounts["globex"])
        data = accounts.data_of(globex)
        data.name = 'Globex, "the" Corp'
        await accounts.replace(s, globex, data)
    async with db.sessionmaker() as s:
        text = await impact.export_csv(s, incident_id, batch=2)
        summary = await impact.summarize(s, incident_id)
    rows = list(csv.DictReader(io.StringIO(text)))  # components: the worst status first
    assert list(rows[0]) == list(impact.CSV_COLUMNS)
    assert [r["external_id"] for r in rows] == ["globex", "wayne", "umbrella", "hooli"]
    first = rows[0]
    assert first["name"] == 'Globex, "the" Corp' and first["tier"] == "Enterprise" and first["arr"] == "500000.00"
    assert first["regions"] == "eu-west" and first["components"] == "Dashboard"
    assert first["csm_owner"] == "ann@csm.example" and first["window_end"] == ""
    assert first["window_start"].startswith(summary.window_start.strftime("%Y-%m-%dT%H:%M"))  # type: ignore[union-attr]
    umbrella = next(r for r in rows if r["external_id"] == "umbrella")
    assert umbrella["components"] == "Storage EU;API" and umbrella["regions"] == "eu-west;us-east"
    assert next(r for r in rows if r["external_id"] == "hooli")["arr"] == "1000.00"


async def test_csv_defuses_cells_a_spreadsheet_would_run(db: Database) -> None:
    world = await make_world(db)
    incident_id = await _declare(db, world, {"Identity": "major_outage", "Storage EU": "partial_outage"})
    async with db.session() as s:
        globex = await accounts.get(s, world.accounts["globex"])
        data = accounts.data_of(globex)
        data.name = '=HYPERLINK("http://evil.example","Globex")'
        await accounts.replace(s, globex, data)
    async with db.sessionmaker() as s:
        text = await impact.export_csv(s, incident_id)
    rows = list(csv.DictReader(io.StringIO(text)))
    # Opened in a spreadsheet, a cell starting with "=" would run; behind an apostrophe it is text.
    assert rows[0]["external_id"] == "globex" and rows[0]["name"] == '\'=HYPERLINK("http://evil.example","Globex")'
