"""The template library and publishing from it, through the service layer on a real database."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from crisisdesk.auth.models import Role
from crisisdesk.comms import service
from crisisdesk.config import Settings
from crisisdesk.incident import service as incidents
from crisisdesk.incident.models import IncidentUpdate
from crisisdesk.kit.db import Database
from crisisdesk.kit.errors import Conflict, Forbidden, InvalidInput
from crisisdesk.kit.time import utcnow
from crisisdesk.notify.models import UpdateMessage
from tests.fixtures.auth import make_actor
from tests.fixtures.comms import make_template, template_fields
from tests.fixtures.incident import make_component, make_incident


async def _count(db: Database, model: type) -> int:
    async with db.session() as s:
        return int(await s.scalar(select(func.count()).select_from(model)) or 0)


async def test_a_responder_drafts_an_admin_approves_and_a_responders_edit_needs_approval_again(db: Database) -> None:
    _, responder = await make_actor(db)
    _, admin = await make_actor(db, Role.admin)
    async with db.session() as s:
        template = await make_template(s, responder, approve=False)
        assert template.approved_at is None and template.created_by_id == responder.user_id
    with pytest.raises(Forbidden):
        async with db.session() as s:
            await service.approve_template(s, responder, await service.get_template(s, template.id))
    async with db.session() as s:
        await service.approve_template(s, admin, await service.get_template(s, template.id))
    async with db.session() as s:
        loaded = await service.get_template(s, template.id)
        assert loaded.approved_at is not None and loaded.approved_by_id == admin.user_id
        await service.update_template(s, admin, loaded, sms="Sign-in failing. Next update {{ next_update_at|time }}.")
        assert loaded.approved_at is not None  # an admin's edit stays approved
    async with db.session() as s:
        loaded = await service.get_template(s, template.id)
        await service.update_template(s, responder, loaded, social="Investigating sign-in failures. {{ incident_url }}")
    async with db.session() as s:
        loaded = await service.get_template(s, template.id)
        assert loaded.approved_at is None and loaded.approved_by_id is None
        assert loaded.social == "Investigating sign-in failures. {{ incident_url }}"


async def test_a_refused_edit_changes_nothing(db: Database) -> None:
    _, admin = await make_actor(db, Role.admin)
    async with db.session() as s:
        template = await make_template(s, admin)
    with pytest.raises(InvalidInput) as caught:
        async with db.session() as s:
            await service.update_template(s, admin, await service.get_template(s, template.id), sms="{{ secret }}")
    assert caught.value.field == "sms" and "'secret'" in caught.value.message
    async with db.session() as s:
        assert (await service.get_template(s, template.id)).sms == template_fields()["sms"]


async def test_one_template_per_scenario_and_phase_and_archiving(db: Database) -> None:
    _, responder = await make_actor(db)
    _, admin = await make_actor(db, Role.admin)
    async with db.session() as s:
        template = await make_template(s, admin)
    with pytest.raises(Conflict) as caught:
        async with db.session() as s:
            await make_template(s, admin)
    assert caught.value.field == "phase"
    with pytest.raises(InvalidInput) as bad_phase:
        async with db.session() as s:
            await make_template(s, admin, phase="panicking")
    assert bad_phase.value.field == "phase"
    with pytest.raises(Forbidden):
        async with db.session() as s:
            await service.archive_template(s, responder, await service.get_template(s, template.id))
    async with db.session() as s:
        await service.archive_template(s, admin, await service.get_template(s, template.id))
    async with db.session() as s:
        assert await service.list_templates(s) == []
        assert len(await service.list_templates(s, include_archived=True)) == 1


async def test_publishing_from_an_approved_template_needs_no_approval_and_stores_every_channel(
    db: Database, settings: Settings
) -> None:
    _, lead = await make_actor(db)
    _, admin = await make_actor(db, Role.admin)
    _, responder = await make_actor(db)  # neither admin nor Communications Lead
    async with db.session() as s:
        sso = await make_component(s, "Sign-in (SSO)")
        template = await make_template(s, admin, phase="identified")
        incident = await make_incident(s, lead, severity="SEV1", components={sso.id: "major_outage"})
    # Free text from this responder is refused on SEV1 ...
    with pytest.raises(Forbidden):
        async with db.session() as s:
            loaded = await incidents.get_incident(s, incident.id)
            await incidents.post_update(s, responder, loaded, status="identified", body="Free text.")
    # ... the approved words are not.
    promise = (utcnow() + timedelta(minutes=40)).replace(second=0, microsecond=0)
    async with db.session() as s:
        loaded = await incidents.get_incident(s, incident.id)
        published = await service.publish_from_template(
            s,
            responder,
            settings,
            loaded,
            template_id=template.id,
            values={"workaround": "Use a password & <your> SSO backup code"},
            next_update_at=promise,
        )
        update_id = published.update.id
    async with db.session() as s:
        update = await s.get(IncidentUpdate, update_id)
        assert update.template_id == template.id and update.status == "identified"
        assert update.author_id == responder.user_id and update.approved_by_id is None
        assert "Sign-in (SSO)" in update.body and f"{promise:%H:%M} UTC" in update.body
        assert update.next_update_at == promise
        messages = {
            m.channel: m for m in await s.scalars(select(UpdateMessage).where(UpdateMessage.update_id == update_id))
        }
        assert set(messages) == {"email", "sms", "slack", "teams", "social"}
        email = messages["email"]
        assert email.subject == "Investigating: sign-in failures (Sign-in (SSO))"
        assert "Use a password &amp; &lt;your&gt; SSO backup code" in (email.html or "")
        assert "Use a password & <your> SSO backup code" in email.text
        assert f"/incidents/{incident.id}" in messages["slack"].text
        assert f"Next update {promise:%H:%M} UTC" in messages["sms"].text


async def test_an_unapproved_template_or_an_overlong_post_publishes_nothing(db: Database, settings: Settings) -> None:
    _, admin = await make_actor(db, Role.admin)
    async with db.session() as s:
        waiting = await make_template(s, admin, approve=False)
        long_post = await make_template(s, admin, phase="monitoring", social="{{ workaround }}")
        web = await make_component(s, "Web app")
        incident = await make_incident(s, admin, severity="SEV2", components={web.id: "partial_outage"})
    before = await _count(db, IncidentUpdate), await _count(db, UpdateMessage)
    with pytest.raises(Conflict) as caught:
        async with db.session() as s:
            await service.publish_from_template(
                s, admin, settings, await incidents.get_incident(s, incident.id), template_id=waiting.id, values={}
            )
    assert caught.value.field == "template_id" and "approval" in caught.value.message
    with pytest.raises(InvalidInput) as overlong:
        async with db.session() as s:
            await service.publish_from_template(
                s,
                admin,
                settings,
                await incidents.get_incident(s, incident.id),
                template_id=long_post.id,
                values={"workaround": "w" * 300},
            )
    assert overlong.value.field == "social" and "280" in overlong.value.message
    with pytest.raises(InvalidInput) as bad_value:
        async with db.session() as s:
            await service.publish_from_template(
                s,
                admin,
                settings,
                await incidents.get_incident(s, incident.id),
                template_id=long_post.id,
                values={"incident_url": "javascript:alert(1)"},
            )
    assert bad_value.value.field == "values.incident_url"
    assert (await _count(db, IncidentUpdate), await _count(db, UpdateMessage)) == before


async def test_a_responder_declares_a_sev1_from_a_template(db: Database, settings: Settings) -> None:
    _, admin = await make_actor(db, Role.admin)
    _, responder = await make_actor(db)
    async with db.session() as s:
        sso = await make_component(s, "Sign-in (SSO)")
        template = await make_template(s, admin)
    async with db.session() as s:
        declared = await service.declare_from_template(
            s,
            responder,
            settings,
            template_id=template.id,
            severity="SEV1",
            values={},
            components={sso.id: "major_outage"},
        )
        incident_id, update_id = declared.incident.id, declared.first_update.id
    async with db.session() as s:
        incident = await incidents.get_incident(s, incident_id)
        assert incident.name == "Sign-in failures for Sign-in (SSO)" and incident.severity == "SEV1"
        update = incident.updates[0]
        assert update.template_id == template.id
        messages = {
            m.channel: m for m in await s.scalars(select(UpdateMessage).where(UpdateMessage.update_id == update_id))
        }
        # The incident's own link, known only once it existed, is in every channel.
        assert f"http://status.test/incidents/{incident_id}" in messages["email"].html  # type: ignore[operator]
        assert f"http://status.test/incidents/{incident_id}" in messages["social"].text
        assert f"{incident.next_update_at:%H:%M} UTC" in update.body
