"""Console: the impact panel shows the suggestion with its reason and raises the severity in one click;
the affected accounts page with its CSV; the impact rules page."""

from __future__ import annotations

import csv
import io
from html import unescape

import httpx

from crisisdesk.auth.models import Role
from crisisdesk.customer import rules
from crisisdesk.customer.models import ImpactRule
from crisisdesk.incident import service as incidents
from crisisdesk.incident.models import Incident
from crisisdesk.kit.db import Database
from tests.fixtures.api import count_rows
from tests.fixtures.console import HTML, field_error, sign_in
from tests.fixtures.impact import World, make_world
from tests.fixtures.incident import make_incident


async def _incident(db: Database, world: World) -> Incident:
    async with db.session() as s:
        await rules.create_rule(
            s,
            world.admin,
            name="Any Enterprise account on a major outage",
            severity="SEV1",
            tiers=["Enterprise"],
            min_status="major_outage",
        )
        return await make_incident(
            s, world.admin, severity="SEV3", components={world.components["Identity"]: "major_outage"}
        )


async def test_panel_shows_the_suggestion_and_raises_the_severity(client: httpx.AsyncClient, db: Database) -> None:
    world = await make_world(db)
    incident = await _incident(db, world)
    _, csrf = await sign_in(client, db)
    page = await client.get(f"/console/incidents/{incident.id}")
    assert f'data-fragment="/console/incidents/{incident.id}/impact"' in page.text
    panel = await client.get(f"/console/incidents/{incident.id}/impact")
    assert panel.status_code == 200
    assert 'data-suggested="SEV1"' in panel.text and "Impact suggests" in panel.text
    assert "2 Enterprise accounts (Globex and Wayne) on a major outage of Identity, API and Dashboard" in panel.text
    assert "Raise to SEV1" in panel.text and 'name="severity" value="SEV1"' in panel.text
    assert 'id="impact-count">3<' in panel.text and "679,000" in panel.text and "67.9%" in panel.text
    assert "Globex" in panel.text and f"/console/incidents/{incident.id}/impact.csv" in panel.text
    reason = panel.text.split('name="reason" value="', 1)[1].split('"', 1)[0]
    raised = await client.post(
        f"/console/incidents/{incident.id}/severity",
        headers=HTML,
        data={"csrf_token": csrf, "severity": "SEV1", "reason": unescape(reason)},
    )
    assert raised.status_code == 303
    async with db.sessionmaker() as s:
        assert (await s.get(Incident, incident.id)).severity == "SEV1"  # type: ignore[union-attr]
        changed = [e for e in await incidents.timeline_of(s, incident.id) if e.kind == "severity_changed"]
    assert changed[0].data["reason"] == (
        "Customer impact (Any Enterprise account on a major outage): 2 Enterprise accounts (Globex and Wayne) "
        "on a major outage of Identity, API and Dashboard"
    )
    after = await client.get(f"/console/incidents/{incident.id}/impact")
    assert 'data-suggested="SEV1"' in after.text and "Raise to" not in after.text


async def test_viewers_read_impact_without_the_raise_button(client: httpx.AsyncClient, db: Database) -> None:
    world = await make_world(db)
    incident = await _incident(db, world)
    await sign_in(client, db, role=Role.viewer)
    panel = await client.get(f"/console/incidents/{incident.id}/impact")
    assert panel.status_code == 200 and "Impact suggests" in panel.text and "Raise to" not in panel.text
    accounts = await client.get(f"/console/incidents/{incident.id}/impact/accounts")
    assert accounts.status_code == 200
    assert next(line for line in accounts.text.splitlines() if "data-account-id" in line).count("Globex") == 0
    assert accounts.text.index("Globex") < accounts.text.index("Wayne") < accounts.text.index("Umbrella")
    only = await client.get(f"/console/incidents/{incident.id}/impact/accounts?tier=Business")
    assert "Umbrella" in only.text and "Globex" not in only.text
    exported = await client.get(f"/console/incidents/{incident.id}/impact.csv")
    assert exported.status_code == 200
    assert [r["name"] for r in csv.DictReader(io.StringIO(exported.text))] == ["Globex", "Wayne", "Umbrella"]
    assert (await client.get("/console/incidents/nope/impact")).status_code == 404


async def test_rules_page(client: httpx.AsyncClient, db: Database) -> None:
    _, csrf = await sign_in(client, db, role=Role.admin)
    empty = await client.get("/console/impact-rules")
    assert empty.status_code == 200 and "No rules" in empty.text
    bad = await client.post(
        "/console/impact-rules",
        headers=HTML,
        data={"csrf_token": csrf, "name": "Share", "severity": "SEV2", "arr_percent": "lots", "enabled": "on"},
    )
    assert bad.status_code == 422 and unescape(field_error(bad.text, "arr_percent") or "") == "'lots' is not a number"
    none = await client.post(
        "/console/impact-rules", headers=HTML, data={"csrf_token": csrf, "name": "Nothing", "severity": "SEV2"}
    )
    assert none.status_code == 422 and "at least one condition" in (field_error(none.text, "tiers") or "")
    assert await count_rows(db, ImpactRule) == 0
    for name, data in (
        ("Enterprise", {"tiers": "Enterprise, Strategic", "min_status": "major_outage", "severity": "SEV1"}),
        ("Share", {"arr_percent": "2.5", "severity": "SEV2"}),
    ):
        made = await client.post(
            "/console/impact-rules", headers=HTML, data={"csrf_token": csrf, "name": name, "enabled": "on", **data}
        )
        assert made.status_code == 303
    async with db.sessionmaker() as s:
        made_rules = await rules.list_rules(s)
    assert [(r.name, r.tiers, r.arr_percent) for r in made_rules] == [
        ("Enterprise", ["Enterprise", "Strategic"], None),
        ("Share", [], 2.5),
    ]
    share = made_rules[1]
    moved = await client.post(
        f"/console/impact-rules/{share.id}", headers=HTML, data={"csrf_token": csrf, "move": "up"}
    )
    assert moved.status_code == 303
    edited = await client.post(
        f"/console/impact-rules/{share.id}",
        headers=HTML,
        data={"csrf_token": csrf, "name": "Share", "severity": "SEV3", "arr_percent": "5"},
    )
    assert edited.status_code == 303
    page = await client.get("/console/impact-rules")
    assert page.text.index("Share") < page.text.index("Enterprise or Strategic")
    async with db.sessionmaker() as s:
        changed = await rules.get_rule(s, share.id)
        assert (changed.severity, changed.arr_percent, changed.enabled, changed.position) == ("SEV3", 5.0, False, 0)
    deleted = await client.post(f"/console/impact-rules/{share.id}/delete", headers=HTML, data={"csrf_token": csrf})
    assert deleted.status_code == 303 and await count_rows(db, ImpactRule) == 1

    viewer = httpx.AsyncClient(transport=client._transport, base_url="http://status.test")  # type: ignore[attr-defined]
    async with viewer:
        _, viewer_csrf = await sign_in(viewer, db, role=Role.viewer)
        listing = await viewer.get("/console/impact-rules")
        assert "Enterprise or Strategic" in listing.text and "Add a rule" not in listing.text
        refused = await viewer.post(
            "/console/impact-rules",
            headers=HTML,
            data={"csrf_token": viewer_csrf, "name": "x", "severity": "SEV1", "arr_percent": "1"},
        )
        assert refused.status_code == 403
    assert await count_rows(db, ImpactRule) == 1
