"""The incident lifecycle through the service layer, on a real database."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from crisisdesk.auth.models import Role
from crisisdesk.catalog.models import Component, ComponentStatusChange
from crisisdesk.incident import service as incidents
from crisisdesk.incident.models import Incident, IncidentUpdate, TimelineEvent
from crisisdesk.kit.db import Database
from crisisdesk.kit.errors import Conflict, Forbidden, InvalidInput, NotFound
from crisisdesk.kit.time import utcnow
from tests.fixtures.auth import make_actor
from tests.fixtures.incident import make_component, make_incident


async def test_declare_sets_components_promise_and_timeline(db: Database) -> None:
    _, actor = await make_actor(db)
    async with db.session() as s:
        web = await make_component(s, "Web app")
        sso = await make_component(s, "Sign-in (SSO)")
    async with db.session() as s:
        incident = await make_incident(
            s, actor, severity="SEV1", components={web.id: "degraded_performance", sso.id: "major_outage"}
        )
    async with db.session() as s:
        loaded = await incidents.get_incident(s, incident.id)
        assert loaded.status == "investigating"
        assert loaded.severity == "SEV1" and loaded.impact == "critical"
        assert len(loaded.updates) == 1
        # SEV1's default cadence is 15 minutes
        promise = loaded.next_update_at - loaded.last_public_update_at
        assert timedelta(minutes=14) < promise <= timedelta(minutes=15)
        assert {c.component_id: c.status for c in loaded.components} == {
            web.id: "degraded_performance",
            sso.id: "major_outage",
        }
        assert (await s.get(Component, sso.id)).status == "major_outage"
        kinds = [e.kind for e in await incidents.timeline_of(s, incident.id)]
        assert "declared" in kinds and "update_posted" in kinds


async def test_lifecycle_to_resolved_restores_components(db: Database) -> None:
    _, actor = await make_actor(db)
    async with db.session() as s:
        web = await make_component(s)
        incident = await make_incident(s, actor, components={web.id: "partial_outage"})
    for status in ("identified", "monitoring", "resolved"):
        async with db.session() as s:
            loaded = await incidents.get_incident(s, incident.id)
            await incidents.post_update(s, actor, loaded, status=status, body=f"Now {status}.")
    async with db.session() as s:
        loaded = await incidents.get_incident(s, incident.id)
        assert loaded.status == "resolved"
        assert loaded.identified_at and loaded.monitoring_at and loaded.resolved_at
        assert loaded.next_update_at is None
        assert [u.status for u in loaded.updates] == ["resolved", "monitoring", "identified", "investigating"]
        assert (await s.get(Component, web.id)).status == "operational"
        history = list(
            await s.scalars(
                select(ComponentStatusChange.new_status)
                .where(ComponentStatusChange.component_id == web.id)
                .order_by(ComponentStatusChange.id)
            )
        )
        assert history == ["operational", "partial_outage", "operational"]


async def test_resolving_twice_is_a_conflict_and_writes_nothing(db: Database) -> None:
    _, actor = await make_actor(db)
    async with db.session() as s:
        incident = await make_incident(s, actor)
    async with db.session() as s:
        await incidents.post_update(
            s, actor, await incidents.get_incident(s, incident.id), status="resolved", body="Fixed."
        )
    with pytest.raises(Conflict) as caught:
        async with db.session() as s:
            await incidents.post_update(
                s, actor, await incidents.get_incident(s, incident.id), status="resolved", body="Again."
            )
    assert caught.value.field == "status"
    async with db.session() as s:
        assert await s.scalar(select(func.count()).select_from(IncidentUpdate)) == 2


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"status": "exploded"}, "status"),
        ({"body": "   "}, "body"),
        ({"body": "x" * 20_001}, "body"),
        ({"next_update_at": utcnow() - timedelta(minutes=1)}, "next_update_at"),
        ({"components": {"nope": "major_outage"}}, "components.nope"),
    ],
)
async def test_bad_update_input_names_the_field_and_stores_nothing(db: Database, kwargs: dict, field: str) -> None:
    _, actor = await make_actor(db)
    async with db.session() as s:
        incident = await make_incident(s, actor)
    params = {"status": "identified", "body": "Found it."} | kwargs
    with pytest.raises((InvalidInput, NotFound)) as caught:
        async with db.session() as s:
            await incidents.post_update(s, actor, await incidents.get_incident(s, incident.id), **params)
    assert caught.value.field == field
    async with db.session() as s:
        assert await s.scalar(select(func.count()).select_from(IncidentUpdate)) == 1
        assert (await s.get(Incident, incident.id)).status == "investigating"


async def test_bad_component_status_rolls_back_every_change(db: Database) -> None:
    _, actor = await make_actor(db)
    async with db.session() as s:
        web = await make_component(s, "Web app")
        api = await make_component(s, "Public API")
        incident = await make_incident(s, actor)
    with pytest.raises(InvalidInput):
        async with db.session() as s:
            await incidents.post_update(
                s,
                actor,
                await incidents.get_incident(s, incident.id),
                status="identified",
                body="x",
                components={web.id: "major_outage", api.id: "on_fire"},
            )
    async with db.session() as s:
        assert (await s.get(Component, web.id)).status == "operational"


async def test_internal_note_is_not_public(db: Database) -> None:
    _, actor = await make_actor(db)
    async with db.session() as s:
        incident = await make_incident(s, actor)
        before = incident.last_public_update_at
    async with db.session() as s:
        await incidents.add_note(s, actor, await incidents.get_incident(s, incident.id), body="DB failover at 10:02")
    async with db.session() as s:
        loaded = await incidents.get_incident(s, incident.id)
        assert [u.visibility for u in loaded.updates] == ["internal", "public"]
        assert loaded.last_public_update_at == before


async def test_roles_hand_over_with_history(db: Database) -> None:
    _, actor = await make_actor(db)
    alice, _ = await make_actor(db, name="Alice")
    bob, _ = await make_actor(db, name="Bob")
    async with db.session() as s:
        incident = await make_incident(s, actor)
    for user in (alice, bob):
        async with db.session() as s:
            await incidents.assign_role(
                s, actor, await incidents.get_incident(s, incident.id), role="incident_commander", user_id=user.id
            )
    async with db.session() as s:
        loaded = await incidents.get_incident(s, incident.id)
        rows = sorted((r for r in loaded.roles if r.role == "incident_commander"), key=lambda r: r.assigned_at)
        assert [r.user_id for r in rows] == [alice.id, bob.id]
        assert rows[0].ended_at is not None and rows[1].ended_at is None
        summaries = [e.summary for e in await incidents.timeline_of(s, incident.id)]
        assert "Incident Commander handed over from Alice to Bob" in summaries
    with pytest.raises(InvalidInput):
        async with db.session() as s:
            await incidents.assign_role(
                s, actor, await incidents.get_incident(s, incident.id), role="boss", user_id=bob.id
            )


async def test_severity_change_needs_reason_and_is_on_timeline(db: Database) -> None:
    _, actor = await make_actor(db)
    async with db.session() as s:
        incident = await make_incident(s, actor, severity="SEV3")
    with pytest.raises(InvalidInput) as caught:
        async with db.session() as s:
            await incidents.change_severity(
                s, actor, await incidents.get_incident(s, incident.id), severity="SEV1", reason=""
            )
    assert caught.value.field == "reason"
    async with db.session() as s:
        await incidents.change_severity(
            s, actor, await incidents.get_incident(s, incident.id), severity="SEV1", reason="All EU customers affected"
        )
    async with db.session() as s:
        loaded = await s.get(Incident, incident.id)
        assert loaded.severity == "SEV1" and loaded.impact == "critical"
        event = await s.scalar(select(TimelineEvent).where(TimelineEvent.kind == "severity_changed"))
        assert event.data["reason"] == "All EU customers affected"


async def test_viewer_cannot_declare(db: Database) -> None:
    _, viewer = await make_actor(db, role=Role.viewer)
    with pytest.raises(Forbidden):
        async with db.session() as s:
            await make_incident(s, viewer)


async def test_overview_reports_missing_roles_and_overdue_promise(db: Database) -> None:
    _, actor = await make_actor(db)
    async with db.session() as s:
        incident = await make_incident(s, actor, severity="SEV1")
    async with db.session() as s:
        row = await s.get(Incident, incident.id)
        row.next_update_at = utcnow() - timedelta(minutes=5)
    async with db.session() as s:
        [overview] = await incidents.overview(s)
        assert overview.overdue_by is not None and overview.overdue_by >= timedelta(minutes=5)
        assert "incident_commander" in overview.missing_roles


async def test_find_incident_by_number_id_or_inc_reference(db: Database) -> None:
    """What people type for an incident; odd digits and huge numbers are no incident, not a crash."""
    _, actor = await make_actor(db)
    async with db.session() as s:
        incident = await make_incident(s, actor)
    async with db.sessionmaker() as s:
        for ref in (incident.id, str(incident.number), f"INC-{incident.number}", f" inc-{incident.number} "):
            assert (await incidents.find_incident(s, ref)).id == incident.id
        for ref in ("\u00b2", "INC-\u00b2", f"INC-{incident.number}\u00b2", "INC-" + "9" * 30, "9" * 5000):
            with pytest.raises(NotFound) as refused:
                await incidents.find_incident(s, ref)
            assert refused.value.field == "incident_id"
