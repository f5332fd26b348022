"""The approval rule: a responder's free text on SEV1 waits as a draft for the Communications Lead or an admin."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from crisisdesk.auth.models import Role
from crisisdesk.comms import drafts
from crisisdesk.comms.models import UpdateDraft
from crisisdesk.incident import policy as policies
from crisisdesk.incident import service as incidents
from crisisdesk.incident.models import IncidentUpdate, Severity, TimelineEvent
from crisisdesk.kit.db import Database
from crisisdesk.kit.errors import Conflict, DomainError, Forbidden, InvalidInput
from crisisdesk.kit.time import utcnow
from tests.fixtures.auth import make_actor
from tests.fixtures.incident import make_component, make_incident


async def _kinds(db: Database, incident_id: str) -> list[str]:
    async with db.session() as s:
        return [e.kind for e in await incidents.timeline_of(s, incident_id)]


async def _updates(db: Database, incident_id: str) -> int:
    async with db.session() as s:
        return int(
            await s.scalar(
                select(func.count()).select_from(IncidentUpdate).where(IncidentUpdate.incident_id == incident_id)
            )
            or 0
        )


async def test_refused_free_text_becomes_a_draft_the_communications_lead_approves(db: Database) -> None:
    lead_user, lead = await make_actor(db, name="Carla Lead")
    author_user, author = await make_actor(db, name="Rui Responder")
    async with db.session() as s:
        web = await make_component(s, "Web app")
        incident = await make_incident(s, lead, severity="SEV1", components={web.id: "major_outage"})
        assert await drafts.needs_approval(s, author, incident)
        assert not await drafts.needs_approval(s, lead, incident)
    with pytest.raises(Forbidden) as refused:
        async with db.session() as s:
            loaded = await incidents.get_incident(s, incident.id)
            await incidents.post_update(s, author, loaded, status="identified", body="A bad deploy; rolling back.")
    assert refused.value.field == "body" and "draft" in refused.value.message
    promised = utcnow() + timedelta(minutes=25)
    async with db.session() as s:
        loaded = await incidents.get_incident(s, incident.id)
        draft = await drafts.submit_draft(
            s,
            author,
            loaded,
            status="identified",
            body="A bad deploy; rolling back.",
            components={web.id: "partial_outage"},
            next_update_at=promised,
        )
    assert await _updates(db, incident.id) == 1  # nothing published yet
    assert "draft_submitted" in await _kinds(db, incident.id)

    # Another responder (not the lead) cannot approve it, nor can a viewer.
    _, other = await make_actor(db)
    _, viewer = await make_actor(db, Role.viewer)
    for who in (other, viewer):
        with pytest.raises(Forbidden):
            async with db.session() as s:
                await drafts.approve(s, who, await drafts.get_draft(s, draft.id))
    async with db.session() as s:
        row = await drafts.approve(s, lead, await drafts.get_draft(s, draft.id))
        update_id = row.id
    async with db.session() as s:
        update = await s.get(IncidentUpdate, update_id)
        assert update.body == "A bad deploy; rolling back." and update.status == "identified"
        assert update.author_id == author_user.id and update.approved_by_id == lead_user.id
        assert update.next_update_at == promised
        decided = await s.get(UpdateDraft, draft.id)
        assert decided.state == "published" and decided.update_id == update_id
        loaded = await incidents.get_incident(s, incident.id)
        assert loaded.status == "identified"
        assert {c.component_id: c.status for c in loaded.components} == {web.id: "partial_outage"}
    assert "draft_approved" in await _kinds(db, incident.id)
    with pytest.raises(Conflict):
        async with db.session() as s:
            await drafts.approve(s, lead, await drafts.get_draft(s, draft.id))


async def test_two_approvers_at_once_publish_the_draft_once(db: Database) -> None:
    _, admin = await make_actor(db, Role.admin)
    _, other_admin = await make_actor(db, Role.admin)
    _, author = await make_actor(db)
    async with db.session() as s:
        incident = await make_incident(s, admin, severity="SEV1")
    async with db.session() as s:
        draft = await drafts.submit_draft(
            s, author, await incidents.get_incident(s, incident.id), status="identified", body="Rolling back."
        )
    # The second approver loaded the draft (still pending) before the first one's approval committed.
    with pytest.raises(Conflict) as caught:
        async with db.session() as late:
            stale = await drafts.get_draft(late, draft.id)
            async with db.session() as first:
                await drafts.approve(first, admin, await drafts.get_draft(first, draft.id))
            await drafts.approve(late, other_admin, stale)
    assert caught.value.field == "draft_id" and "published" in caught.value.message
    assert await _updates(db, incident.id) == 2  # the declaration's update and the draft, once
    assert (await _kinds(db, incident.id)).count("draft_approved") == 1


async def test_rejecting_needs_a_reason_and_publishes_nothing(db: Database) -> None:
    _, admin = await make_actor(db, Role.admin)
    _, author = await make_actor(db)
    async with db.session() as s:
        incident = await make_incident(s, admin, severity="SEV2")
    async with db.session() as s:
        draft = await drafts.submit_draft(
            s, author, await incidents.get_incident(s, incident.id), status="monitoring", body="Should be fine now?"
        )
    with pytest.raises(InvalidInput) as caught:
        async with db.session() as s:
            await drafts.reject(s, admin, await drafts.get_draft(s, draft.id), reason="   ")
    assert caught.value.field == "reason"
    async with db.session() as s:
        assert (await s.get(UpdateDraft, draft.id)).state == "pending"
        await drafts.reject(
            s, admin, await drafts.get_draft(s, draft.id), reason="Not confirmed yet; wait for metrics."
        )
    async with db.session() as s:
        rejected = await s.get(UpdateDraft, draft.id)
        assert rejected.state == "rejected" and rejected.reason == "Not confirmed yet; wait for metrics."
        event = await s.scalar(select(TimelineEvent).where(TimelineEvent.kind == "draft_rejected"))
        assert event.data["reason"] == "Not confirmed yet; wait for metrics."
    assert await _updates(db, incident.id) == 1


async def test_only_the_author_withdraws_and_bad_drafts_are_refused(db: Database) -> None:
    _, admin = await make_actor(db, Role.admin)
    _, author = await make_actor(db)
    async with db.session() as s:
        incident = await make_incident(s, admin, severity="SEV1")
    for kwargs, field in (
        ({"status": "fixed", "body": "x"}, "status"),
        ({"status": "identified", "body": " "}, "body"),
        ({"status": "identified", "body": "x", "components": {"nope": "major_outage"}}, "components.nope"),
        ({"status": "identified", "body": "x", "next_update_at": utcnow() - timedelta(minutes=1)}, "next_update_at"),
    ):
        with pytest.raises(DomainError) as caught:
            async with db.session() as s:
                await drafts.submit_draft(s, author, await incidents.get_incident(s, incident.id), **kwargs)
        assert getattr(caught.value, "field", None) == field, kwargs
    async with db.session() as s:
        assert await s.scalar(select(func.count()).select_from(UpdateDraft)) == 0
        draft = await drafts.submit_draft(
            s, author, await incidents.get_incident(s, incident.id), status="identified", body="Cause found."
        )
    with pytest.raises(Forbidden):
        async with db.session() as s:
            await drafts.withdraw(s, admin, await drafts.get_draft(s, draft.id))
    async with db.session() as s:
        await drafts.withdraw(s, author, await drafts.get_draft(s, draft.id))
    assert "draft_withdrawn" in await _kinds(db, incident.id)


async def test_a_policy_without_approval_lets_any_responder_publish(db: Database) -> None:
    _, admin = await make_actor(db, Role.admin)
    _, responder = await make_actor(db)
    async with db.session() as s:
        await policies.update_policy(s, admin, Severity.SEV1, free_text_approval=False)
        incident = await make_incident(s, admin, severity="SEV1")
    async with db.session() as s:
        loaded = await incidents.get_incident(s, incident.id)
        assert not await drafts.needs_approval(s, responder, loaded)
        await incidents.post_update(s, responder, loaded, status="identified", body="Free text is fine here.")
    with pytest.raises(Forbidden):
        async with db.session() as s:
            await policies.update_policy(s, responder, Severity.SEV2, free_text_approval=False)
