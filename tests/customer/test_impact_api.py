"""The impact API: summary, accounts page, one account, CSV; viewers may read it."""

from __future__ import annotations

import csv
import io

import httpx

from crisisdesk.auth.models import Role
from crisisdesk.customer import rules
from crisisdesk.kit.db import Database
from tests.fixtures.auth import api_key_headers
from tests.fixtures.impact import make_world
from tests.fixtures.incident import make_incident

API = "/api/v1"


async def test_summary_accounts_and_csv(client: httpx.AsyncClient, db: Database) -> None:
    world = await make_world(db)
    async with db.session() as s:
        await rules.create_rule(
            s, world.admin, name="Enterprise down", severity="SEV1", tiers=["Enterprise"], min_status="major_outage"
        )
        incident = await make_incident(
            s,
            world.admin,
            severity="SEV3",
            components={world.components["Identity"]: "major_outage", world.components["Storage EU"]: "partial_outage"},
        )
    viewer = await api_key_headers(db, Role.viewer)
    summary = await client.get(f"{API}/incidents/{incident.id}/impact?top=2", headers=viewer)
    assert summary.status_code == 200
    body = summary.json()
    assert (body["account_count"], body["arr"], body["total_arr"]) == (4, "680000.00", "1000000.00")
    assert body["arr_percent"] == 68.0 and body["severity"] == "SEV3"
    assert [(t["tier"], t["account_count"], t["arr"]) for t in body["by_tier"]] == [
        ("Enterprise", 2, "629000.00"),
        ("Business", 1, "50000.00"),
        ("Starter", 1, "1000.00"),
    ]
    assert [a["name"] for a in body["top"]] == ["Globex", "Wayne"]
    assert body["top"][0]["components"][0]["name"] == "Dashboard"
    assert body["top"][0]["components"][0]["via_id"] == world.components["Identity"]
    assert {c["name"]: c["region_code"] for c in body["components"]}["Storage EU"] == "eu-west"
    assert body["suggestion"]["severity"] == "SEV1" and body["suggestion"]["higher_than_current"] is True
    assert body["suggestion"]["reason"].startswith("2 Enterprise accounts (Globex and Wayne) on a major outage of")
    assert body["window_end"] is None and body["window_start"]

    page = await client.get(f"{API}/incidents/{incident.id}/impact/accounts?limit=2&offset=2", headers=viewer)
    assert page.status_code == 200
    assert page.json()["total"] == 4 and [a["external_id"] for a in page.json()["items"]] == ["umbrella", "hooli"]
    tier = await client.get(f"{API}/incidents/{incident.id}/impact/accounts?tier=Enterprise", headers=viewer)
    assert tier.json()["total"] == 2 and [a["name"] for a in tier.json()["items"]] == ["Globex", "Wayne"]
    one = await client.get(f"{API}/incidents/{incident.id}/impact/accounts/{world.accounts['hooli']}", headers=viewer)
    assert one.status_code == 200 and one.json()["arr_cents"] == 100_000
    spared = await client.get(
        f"{API}/incidents/{incident.id}/impact/accounts/{world.accounts['initech']}", headers=viewer
    )
    assert spared.status_code == 404

    exported = await client.get(f"{API}/incidents/{incident.id}/impact.csv", headers=viewer)
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    assert f"INC-{incident.number}-impact.csv" in exported.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert [r["external_id"] for r in rows] == ["globex", "wayne", "umbrella", "hooli"]
    assert rows[1]["components"] == "Identity;Dashboard" and rows[1]["csm_owner"] == "ann@csm.example"


async def test_bad_requests(client: httpx.AsyncClient, db: Database) -> None:
    viewer = await api_key_headers(db, Role.viewer)
    assert (await client.get(f"{API}/incidents/nope/impact", headers=viewer)).status_code == 404
    assert (await client.get(f"{API}/incidents/nope/impact/accounts", headers=viewer)).status_code == 404
    assert (await client.get(f"{API}/incidents/nope/impact.csv", headers=viewer)).status_code == 404
    assert (await client.get(f"{API}/incidents/nope/impact")).status_code == 401
    world = await make_world(db)
    async with db.session() as s:
        incident = await make_incident(s, world.admin)
    too_many = await client.get(f"{API}/incidents/{incident.id}/impact/accounts?limit=501", headers=viewer)
    assert too_many.status_code == 422
    empty = await client.get(f"{API}/incidents/{incident.id}/impact", headers=viewer)
    assert empty.json()["account_count"] == 0 and empty.json()["suggestion"] is None
    header_only = await client.get(f"{API}/incidents/{incident.id}/impact.csv", headers=viewer)
    assert header_only.text.strip().split(",")[0] == "external_id" and header_only.text.count("\n") == 1
