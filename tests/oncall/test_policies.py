"""Escalation policies and severity paging: every level checked by field, admin only, schedules in use kept."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import func, select

from crisisdesk.auth.models import Role, User
from crisisdesk.kit.db import Database
from crisisdesk.kit.errors import Conflict, Forbidden, InvalidInput
from crisisdesk.oncall import policies, schedules
from crisisdesk.oncall.models import EscalationPolicy
from crisisdesk.oncall.policies import PagingEntry
from crisisdesk.oncall.schedules import LayerInput
from tests.fixtures.auth import make_actor


async def _setup(db: Database) -> tuple[User, str, Any]:
    user, _ = await make_actor(db)
    _, admin = await make_actor(db, Role.admin)
    async with db.session() as session:
        layer = LayerInput("primary", [user.id], datetime(2025, 3, 24, 9), "Europe/Berlin", "weekly")
        schedule = await schedules.create_schedule(session, admin, name="IC", layers=[layer])
    return user, schedule.id, admin


async def test_policy_crud_and_a_paged_schedule_cannot_be_deleted(db: Database) -> None:
    user, schedule_id, admin = await _setup(db)
    levels = [
        {"timeout_minutes": 5, "targets": [{"type": "schedule", "id": schedule_id}]},
        {"timeout_minutes": 10, "targets": [{"type": "user", "id": user.id}, {"type": "schedule", "id": schedule_id}]},
    ]
    async with db.session() as session:
        policy = await policies.create_policy(session, admin, name="IC escalation", levels=levels, repeats=2)
    async with db.session() as session:
        stored = await policies.get_policy(session, policy.id)
        assert stored.levels == levels and stored.repeats == 2
        with pytest.raises(Conflict) as caught:
            await schedules.delete_schedule(session, admin, schedule_id)
        assert "IC escalation" in caught.value.message
        with pytest.raises(Conflict):
            await policies.create_policy(session, admin, name="ic ESCALATION", levels=levels)
    async with db.session() as session:
        await policies.update_policy(session, admin, policy.id, levels=levels[1:], repeats=0, description="Pages Ana")
    async with db.session() as session:
        stored = await policies.get_policy(session, policy.id)
        assert stored.levels == levels[1:] and stored.repeats == 0 and stored.description == "Pages Ana"
        await policies.delete_policy(session, admin, policy.id)
    async with db.session() as session:
        await schedules.delete_schedule(session, admin, schedule_id)


BAD_LEVELS: list[tuple[object, str]] = [
    ([], "levels"),
    ([{"timeout_minutes": 0, "targets": [{"type": "user", "id": "U"}]}], "levels.0.timeout_minutes"),
    ([{"timeout_minutes": 1441, "targets": [{"type": "user", "id": "U"}]}], "levels.0.timeout_minutes"),
    ([{"timeout_minutes": "5", "targets": [{"type": "user", "id": "U"}]}], "levels.0.timeout_minutes"),
    (
        [{"timeout_minutes": 5, "targets": [{"type": "user", "id": "U"}]}, {"timeout_minutes": 5, "targets": []}],
        "levels.1.targets",
    ),
    ([{"timeout_minutes": 5, "targets": [{"type": "team", "id": "U"}]}], "levels.0.targets.0.type"),
    (
        [{"timeout_minutes": 5, "targets": [{"type": "user", "id": "U"}, {"type": "user", "id": "ghost"}]}],
        "levels.0.targets.1.id",
    ),
    ([{"timeout_minutes": 5, "targets": [{"type": "schedule", "id": "ghost"}]}], "levels.0.targets.0.id"),
    (
        [{"timeout_minutes": 5, "targets": [{"type": "user", "id": "U"}, {"type": "user", "id": "U"}]}],
        "levels.0.targets.1.id",
    ),
]


@pytest.mark.parametrize(("levels", "field"), BAD_LEVELS)
async def test_bad_levels_are_refused_by_field_and_nothing_is_stored(db: Database, levels: Any, field: str) -> None:
    user, _, admin = await _setup(db)
    levels = [
        {**lv, "targets": [{**t, "id": user.id if t["id"] == "U" else t["id"]} for t in lv["targets"]]} for lv in levels
    ]
    async with db.session() as session:
        with pytest.raises(InvalidInput) as caught:
            await policies.create_policy(session, admin, name="P", levels=levels)
    assert caught.value.field == field
    async with db.session() as session:
        assert await session.scalar(select(func.count()).select_from(EscalationPolicy)) == 0


async def test_policy_fields_and_permissions(db: Database) -> None:
    user, _, admin = await _setup(db)
    _, responder = await make_actor(db)
    levels = [{"timeout_minutes": 5, "targets": [{"type": "user", "id": user.id}]}]
    async with db.session() as session:
        with pytest.raises(Forbidden):
            await policies.create_policy(session, responder, name="P", levels=levels)
        for kw, field in [({"repeats": 10}, "repeats"), ({"repeats": -1}, "repeats"), ({"name": " "}, "name")]:
            fields: dict[str, Any] = {"name": "P", "levels": levels, **kw}
            with pytest.raises(InvalidInput) as caught:
                await policies.create_policy(session, admin, **fields)
            assert caught.value.field == field
    async with db.session() as session:
        (await session.get(User, user.id)).is_active = False  # type: ignore[union-attr]
    async with db.session() as session:
        with pytest.raises(InvalidInput, match="deactivated") as caught:
            await policies.create_policy(session, admin, name="P", levels=levels)
        assert caught.value.field == "levels.0.targets.0.id"


async def test_severity_paging_replaces_the_config_and_checks_each_entry(db: Database) -> None:
    _user, schedule_id, admin = await _setup(db)
    _, responder = await make_actor(db)
    levels = [{"timeout_minutes": 5, "targets": [{"type": "schedule", "id": schedule_id}]}]
    async with db.session() as session:
        ic = await policies.create_policy(session, admin, name="IC", levels=levels)
        support = await policies.create_policy(session, admin, name="Support", levels=levels)
    entries = [
        PagingEntry("SEV1", ic.id, "incident_commander"),
        PagingEntry("SEV1", support.id, "support_lead"),
        PagingEntry("SEV2", ic.id, "incident_commander"),
    ]
    async with db.session() as session:
        with pytest.raises(Forbidden):
            await policies.set_severity_paging(session, responder, entries)
        await policies.set_severity_paging(session, admin, entries)
    async with db.session() as session:
        assert [(p.name, role) for p, role in await policies.paging_for(session, "SEV1")] == [
            ("IC", "incident_commander"),
            ("Support", "support_lead"),
        ]
        assert [(p.name, role) for p, role in await policies.paging_for(session, "SEV3")] == []
    bad = [
        ([PagingEntry("SEV9", ic.id)], "entries.0.severity"),
        ([PagingEntry("SEV1", "ghost")], "entries.0.policy_id"),
        ([PagingEntry("SEV1", ic.id), PagingEntry("SEV1", ic.id)], "entries.1.policy_id"),
        ([PagingEntry("SEV1", ic.id, "captain")], "entries.0.role"),
        ([PagingEntry("SEV1", ic.id, "scribe"), PagingEntry("SEV1", support.id, "scribe")], "entries.1.role"),
    ]
    for attempt, field in bad:
        async with db.session() as session:
            with pytest.raises(InvalidInput) as caught:
                await policies.set_severity_paging(session, admin, attempt)
        assert caught.value.field == field
    async with db.session() as session:
        assert len(await policies.severity_paging(session)) == 3  # the failed attempts left it as it was
        await policies.delete_policy(session, admin, support.id)
    async with db.session() as session:
        assert [p.name for p, _ in await policies.paging_for(session, "SEV1")] == ["IC"]


async def test_demo_seed_pages_both_schedules_on_sev1_and_the_commander_on_sev2(db: Database) -> None:
    from crisisdesk.config import Settings
    from crisisdesk.seed import seed_demo

    await seed_demo(db, Settings(demo=True, database_url="sqlite://", base_url="http://status.test"))
    async with db.session() as session:
        sev1 = [(p.name, role) for p, role in await policies.paging_for(session, "SEV1")]
        assert sev1 == [("Incident commander", "incident_commander"), ("Support lead", "support_lead")]
        assert [p.name for p, _ in await policies.paging_for(session, "SEV2")] == ["Incident commander"]
        for schedule in await schedules.list_schedules(session):
            assert await schedules.on_call(session, schedule.id) is not None, schedule.name


async def test_a_policy_an_alert_routing_rule_pages_cannot_be_deleted(db: Database) -> None:
    from crisisdesk.signal.models import RoutingRule

    user, _schedule_id, admin = await _setup(db)
    levels = [{"timeout_minutes": 5, "targets": [{"type": "user", "id": user.id}]}]
    async with db.session() as session:
        policy = await policies.create_policy(session, admin, name="Identity on-call", levels=levels)
        session.add(RoutingRule(name="Identity alerts", escalation_policy_id=policy.id))
    # Tried: deleting it while the rule pages it — refused, and both are still there.
    with pytest.raises(Conflict) as caught:
        async with db.session() as session:
            await policies.delete_policy(session, admin, policy.id)
    assert caught.value.field == "escalation_policy_id" and "Identity on-call" in caught.value.message
    async with db.session() as session:
        assert await session.get(EscalationPolicy, policy.id) is not None
        rule = await session.scalar(select(RoutingRule))
        assert rule is not None and rule.escalation_policy_id == policy.id
        rule.escalation_policy_id = None
    async with db.session() as session:
        await policies.delete_policy(session, admin, policy.id)
    async with db.session() as session:
        assert await session.get(EscalationPolicy, policy.id) is None
