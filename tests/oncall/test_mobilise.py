"""Mobilise on declare: the severity's policies are paged and empty roles filled from who is on call."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from crisisdesk.auth.models import Role
from crisisdesk.config import Settings
from crisisdesk.incident.models import Incident, TimelineEvent
from crisisdesk.kit.db import Database
from crisisdesk.oncall import paging
from crisisdesk.oncall.models import Page, SeverityPaging
from tests.fixtures.auth import make_actor, make_user
from tests.fixtures.incident import make_incident
from tests.fixtures.notify import run_jobs
from tests.fixtures.paging import level, make_policy, make_schedule


async def test_declaring_a_sev1_pages_its_policies_and_fills_the_empty_roles(db: Database, settings: Settings) -> None:
    declarer, actor = await make_actor(db, Role.admin, name="Ada Admin")
    async with db.session() as s:
        commander = await make_user(s, name="Ivo Commander")
        support = await make_user(s, name="Sue Support")
        ic_schedule = await make_schedule(s, commander, name="Incident commanders")
        ic = await make_policy(s, level(("schedule", ic_schedule.id)), name="IC rota")
        sl = await make_policy(s, level(("user", support.id)), name="Support leads")
        held = await make_policy(s, level(("user", support.id)), name="Comms leads")
        sev2 = await make_policy(s, level(("user", support.id)), name="SEV2 only")
        s.add_all(
            [
                SeverityPaging(severity="SEV1", escalation_policy_id=ic.id, role="incident_commander"),
                SeverityPaging(severity="SEV1", escalation_policy_id=sl.id, role="support_lead"),
                SeverityPaging(severity="SEV1", escalation_policy_id=held.id, role="communications_lead"),
                SeverityPaging(severity="SEV2", escalation_policy_id=sev2.id, role=None),
            ]
        )
    async with db.session() as s:
        incident = await make_incident(
            s, actor, severity="SEV1", name="Azure AD sign-ins failing", roles={"communications_lead": declarer.id}
        )
    await run_jobs(db, settings)
    await run_jobs(db, settings)  # a second pass changes nothing: each policy is paged once

    async with db.sessionmaker() as s:
        pages = list(await s.scalars(select(Page).where(Page.incident_id == incident.id).order_by(Page.started_at)))
        assert sorted(p.policy["name"] for p in pages) == ["Comms leads", "IC rota", "Support leads"]
        assert {p.role for p in pages} == {"incident_commander", "support_lead", "communications_lead"}
        assert all(p.title.startswith(f"INC-{incident.number} SEV1") for p in pages)
        loaded = await s.scalar(
            select(Incident).where(Incident.id == incident.id).options(selectinload(Incident.roles))
        )
        assert loaded is not None
        holders = {r.role: r.user_id for r in loaded.roles if r.ended_at is None}
        assert holders == {
            "incident_commander": commander.id,
            "support_lead": support.id,
            "communications_lead": declarer.id,  # already held: left alone
        }
        timeline = [
            e.summary for e in await s.scalars(select(TimelineEvent).where(TimelineEvent.incident_id == incident.id))
        ]
    assert "Paged IC rota: Ivo Commander via email" in timeline
    assert any(t.startswith("Ivo Commander is Incident Commander from on-call") for t in timeline)
    assert "Sue Support is Support Lead" in timeline

    # The commander acknowledges: that lands on the timeline too.
    ic_page = next(p for p in pages if p.policy["name"] == "IC rota")
    async with db.session() as s:
        await paging.acknowledge(s, await paging.get_page(s, ic_page.id), user_id=commander.id, via="link")
    async with db.sessionmaker() as s:
        kinds = [
            e.summary for e in await s.scalars(select(TimelineEvent).where(TimelineEvent.incident_id == incident.id))
        ]
    assert "Ivo Commander acknowledged the page “" + ic_page.title + "”" in kinds


async def test_a_severity_without_paging_rows_pages_nobody(db: Database, settings: Settings) -> None:
    _, actor = await make_actor(db, Role.admin)
    async with db.session() as s:
        incident = await make_incident(s, actor, severity="SEV3")
    await run_jobs(db, settings)
    async with db.sessionmaker() as s:
        assert list(await s.scalars(select(Page).where(Page.incident_id == incident.id))) == []
