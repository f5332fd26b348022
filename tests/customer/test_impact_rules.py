"""Impact rules: the first enabled rule that holds suggests a severity, with a reason naming the facts;
CRUD through the API with bad input refused by field."""

from __future__ import annotations

import httpx
import pytest

from crisisdesk.auth.models import Role
from crisisdesk.customer import impact, rules
from crisisdesk.customer.models import ImpactRule
from crisisdesk.kit.db import Database
from crisisdesk.kit.errors import Forbidden, InvalidInput
from tests.fixtures.api import count_rows, error_locs
from tests.fixtures.auth import api_key_headers, make_actor
from tests.fixtures.impact import World, make_world
from tests.fixtures.incident import make_incident

API = "/api/v1"


async def _declare(db: Database, world: World, statuses: dict[str, str]) -> str:
    async with db.session() as s:
        incident = await make_incident(
            s, world.admin, components={world.components[n]: st for n, st in statuses.items()}
        )
    return incident.id


async def _demo_rules(db: Database, world: World) -> dict[str, str]:
    async with db.session() as s:
        enterprise = await rules.create_rule(
            s,
            world.admin,
            name="Any Enterprise account on a major outage",
            severity="SEV1",
            tiers=["Enterprise"],
            min_status="major_outage",
        )
        ten = await rules.create_rule(s, world.admin, name="More than 10% of ARR", severity="SEV1", arr_percent=10)
        two = await rules.create_rule(s, world.admin, name="More than 2% of ARR", severity="SEV2", arr_percent=2)
    return {"enterprise": enterprise.id, "ten": ten.id, "two": two.id}


async def _suggestion(db: Database, incident_id: str) -> impact.Suggestion | None:
    async with db.sessionmaker() as s:
        return (await impact.summarize(s, incident_id)).suggestion


async def test_enterprise_accounts_on_a_major_outage_suggest_sev1(db: Database) -> None:
    world = await make_world(db)
    ids = await _demo_rules(db, world)
    incident_id = await _declare(db, world, {"Identity": "major_outage"})
    suggestion = await _suggestion(db, incident_id)
    assert suggestion is not None
    assert (suggestion.severity, suggestion.rule_id) == ("SEV1", ids["enterprise"])
    assert suggestion.rule_name == "Any Enterprise account on a major outage"
    assert (
        suggestion.reason == "2 Enterprise accounts (Globex and Wayne) on a major outage of Identity, API and Dashboard"
    )


async def test_share_of_arr_when_no_enterprise_account_is_down(db: Database) -> None:
    world = await make_world(db)
    ids = await _demo_rules(db, world)
    # Storage EU: Umbrella (50,000) and Hooli (1,000) of 1,000,000 → 5.1%, below 10%, above 2%.
    storage = await _declare(db, world, {"Storage EU": "major_outage"})
    suggestion = await _suggestion(db, storage)
    assert suggestion is not None and (suggestion.severity, suggestion.rule_id) == ("SEV2", ids["two"])
    assert suggestion.reason == "5.1% of ARR affected (≥ 2%)"
    # Dashboard only partly down: the Enterprise rule needs a major outage, but 62.9% of ARR is hit.
    partial = await _declare(db, world, {"Dashboard": "partial_outage"})
    suggestion = await _suggestion(db, partial)
    assert suggestion is not None and suggestion.rule_id == ids["ten"]
    assert suggestion.reason == "62.9% of ARR affected (≥ 10%)"
    # Billing: Stark alone, 2% exactly (the threshold is inclusive).
    billing = await _declare(db, world, {"Billing": "degraded_performance"})
    suggestion = await _suggestion(db, billing)
    assert suggestion is not None and suggestion.rule_id == ids["two"] and suggestion.reason.startswith("2% of ARR")
    # Reporting: nobody uses it, nothing suggested.
    assert await _suggestion(db, await _declare(db, world, {"Reporting": "major_outage"})) is None


async def test_disabled_and_reordered_rules(db: Database) -> None:
    world = await make_world(db)
    ids = await _demo_rules(db, world)
    incident_id = await _declare(db, world, {"Identity": "major_outage"})
    async with db.session() as s:
        await rules.update_rule(s, world.admin, await rules.get_rule(s, ids["enterprise"]), enabled=False)
    suggestion = await _suggestion(db, incident_id)
    assert suggestion is not None and suggestion.rule_id == ids["ten"]
    async with db.session() as s:
        await rules.move_rule(s, world.admin, await rules.get_rule(s, ids["two"]), up=True)
        await rules.move_rule(s, world.admin, await rules.get_rule(s, ids["two"]), up=True)
    async with db.sessionmaker() as s:
        assert [r.id for r in await rules.list_rules(s)] == [ids["two"], ids["enterprise"], ids["ten"]]
    suggestion = await _suggestion(db, incident_id)
    assert suggestion is not None and (suggestion.severity, suggestion.rule_id) == ("SEV2", ids["two"])


async def test_combined_conditions_and_the_reason_for_many_accounts(db: Database) -> None:
    world = await make_world(db)
    async with db.session() as s:
        many = await rules.create_rule(
            s,
            world.admin,
            name="Three accounts on a partial outage or worse",
            severity="SEV2",
            min_status="partial_outage",
            account_count=3,
        )
        enterprise_share = await rules.create_rule(
            s, world.admin, name="Enterprise ARR", severity="SEV1", tiers=["enterprise"], arr_percent=60, position=0
        )
    # Identity major, Storage EU degraded: Storage EU is below partial_outage, so Hooli does not count.
    incident_id = await _declare(db, world, {"Identity": "major_outage", "Storage EU": "degraded_performance"})
    suggestion = await _suggestion(db, incident_id)
    assert suggestion is not None and suggestion.rule_id == enterprise_share.id
    assert suggestion.reason == "2 enterprise accounts (Globex and Wayne) affected; they hold 62.9% of ARR (≥ 60%)"
    async with db.session() as s:
        await rules.update_rule(s, world.admin, await rules.get_rule(s, enterprise_share.id), arr_percent=70)
    suggestion = await _suggestion(db, incident_id)
    assert suggestion is not None and suggestion.rule_id == many.id
    assert suggestion.reason == (
        "3 accounts (Globex, Wayne and Umbrella) on a major outage of Identity, API and Dashboard (≥ 3)"
    )


def test_reason_sentences() -> None:
    rule = ImpactRule(name="r", severity="SEV1", tiers=["Enterprise"], min_status="partial_outage")
    facts = rules.Facts(
        account_count=5,
        arr_cents=10,
        total_arr_cents=1000,
        names=["Globex", "Initech", "Umbrella"],
        component_names=["API", "Identity", "Storage", "Billing"],
        statuses=["major_outage", "partial_outage"],
    )
    assert rules.holds(rule, facts) == (
        "5 Enterprise accounts (Globex, Initech, Umbrella, …) on a partial outage or worse of API, Identity and 2 more"
    )
    one = rules.Facts(1, 10, 1000, ["Globex"], ["API"], ["major_outage"])
    assert rules.holds(rule, one) == "1 Enterprise account (Globex) on a major outage of API"
    share = ImpactRule(name="r", severity="SEV1", tiers=[], arr_percent=10.0)
    assert rules.holds(share, rules.Facts(40, 1420, 10000, [], ["API"], ["major_outage"])) == (
        "14.2% of ARR affected (≥ 10%)"
    )
    assert rules.holds(share, rules.Facts(40, 999, 10000, [], ["API"], ["major_outage"])) is None
    count = ImpactRule(name="r", severity="SEV3", tiers=[], account_count=100)
    assert rules.holds(count, rules.Facts(99, 1, 10, [], ["API"], ["major_outage"])) is None
    assert rules.holds(count, rules.Facts(120, 1, 10, ["A"], ["API"], ["major_outage"])) == (
        "120 accounts (A, …) affected (≥ 100)"
    )


async def test_service_checks_name_the_field(db: Database) -> None:
    _, admin = await make_actor(db, Role.admin)
    _, responder = await make_actor(db)
    cases = [
        ({"name": "", "severity": "SEV1", "arr_percent": 5}, "name"),
        ({"name": "x", "severity": "SEV9", "arr_percent": 5}, "severity"),
        ({"name": "x", "severity": "SEV1"}, "tiers"),
        ({"name": "x", "severity": "SEV1", "min_status": "melting"}, "min_status"),
        ({"name": "x", "severity": "SEV1", "arr_percent": 0}, "arr_percent"),
        ({"name": "x", "severity": "SEV1", "arr_percent": 101}, "arr_percent"),
        ({"name": "x", "severity": "SEV1", "account_count": 0}, "account_count"),
        ({"name": "x", "severity": "SEV1", "arr_percent": 5, "position": -1}, "position"),
    ]
    async with db.sessionmaker() as s:
        for kwargs, field in cases:
            with pytest.raises(InvalidInput) as refused:
                await rules.create_rule(s, admin, **kwargs)  # type: ignore[arg-type]
            assert refused.value.field == field, kwargs
        with pytest.raises(Forbidden):
            await rules.create_rule(s, responder, name="x", severity="SEV1", arr_percent=5)
        rule = await rules.create_rule(s, admin, name="x", severity="sev2", arr_percent=5)
        assert rule.severity == "SEV2"
        with pytest.raises(InvalidInput) as emptied:
            await rules.update_rule(s, admin, rule, arr_percent=None)
        assert emptied.value.field == "tiers"
        await s.rollback()
    assert await count_rows(db, ImpactRule) == 0


async def test_api_crud(client: httpx.AsyncClient, db: Database) -> None:
    admin = await api_key_headers(db, Role.admin)
    viewer = await api_key_headers(db, Role.viewer)
    created = await client.post(
        f"{API}/impact-rules",
        headers=admin,
        json={"name": "Enterprise down", "severity": "SEV1", "tiers": ["Enterprise"], "min_status": "major_outage"},
    )
    assert created.status_code == 201
    rule = created.json()
    assert (rule["position"], rule["enabled"], rule["arr_percent"]) == (0, True, None)
    second = await client.post(
        f"{API}/impact-rules", headers=admin, json={"name": "Share", "severity": "SEV2", "arr_percent": 2.5}
    )
    assert second.json()["position"] == 1
    listed = await client.get(f"{API}/impact-rules", headers=viewer)
    assert [r["name"] for r in listed.json()] == ["Enterprise down", "Share"]
    patched = await client.patch(
        f"{API}/impact-rules/{rule['id']}", headers=admin, json={"min_status": None, "account_count": 3}
    )
    assert patched.status_code == 200
    assert (patched.json()["min_status"], patched.json()["account_count"]) == (None, 3)
    assert patched.json()["tiers"] == ["Enterprise"]
    one = await client.get(f"{API}/impact-rules/{rule['id']}", headers=viewer)
    assert one.json()["account_count"] == 3
    refused = await client.post(f"{API}/impact-rules", headers=viewer, json={"name": "x", "severity": "SEV1"})
    assert refused.status_code == 403
    bad = await client.post(
        f"{API}/impact-rules", headers=admin, json={"name": "x", "severity": "SEV1", "min_status": "melting"}
    )
    assert bad.status_code == 422 and ["body", "min_status"] in error_locs(bad)
    no_condition = await client.post(f"{API}/impact-rules", headers=admin, json={"name": "x", "severity": "SEV1"})
    assert no_condition.status_code == 422 and ["body", "tiers"] in error_locs(no_condition)
    extra = await client.post(
        f"{API}/impact-rules", headers=admin, json={"name": "x", "severity": "SEV1", "arr_percent": 1, "what": 1}
    )
    assert extra.status_code == 422
    assert (await client.get(f"{API}/impact-rules/nope", headers=viewer)).status_code == 404
    deleted = await client.delete(f"{API}/impact-rules/{rule['id']}", headers=admin)
    assert deleted.status_code == 200 and deleted.json() == {"id": rule["id"]}
    assert await count_rows(db, ImpactRule) == 1


async def test_reason_names_accounts_without_a_top_list(db: Database) -> None:
    world = await make_world(db)
    async with db.session() as s:
        await rules.create_rule(
            s, world.admin, name="Two down", severity="SEV2", min_status="major_outage", account_count=2
        )
    incident_id = await _declare(db, world, {"Identity": "major_outage"})
    async with db.sessionmaker() as s:
        summary = await impact.summarize(s, incident_id, top=0)
    assert summary.top == [] and summary.suggestion is not None
    assert summary.suggestion.reason == (
        "3 accounts (Globex, Wayne and Umbrella) on a major outage of Identity, API and Dashboard (≥ 2)"
    )
