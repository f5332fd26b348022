"""The demo workspace: believable, complete, and seeded once."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from crisisdesk.auth import service as auth
from crisisdesk.auth.models import User
from crisisdesk.catalog.models import Component, ComponentDependency, ComponentStatusChange
from crisisdesk.config import Settings
from crisisdesk.customer import demo as customers
from crisisdesk.customer import impact
from crisisdesk.customer import rules as impact_rules
from crisisdesk.customer.models import Account, AccountComponent, AccountContact, SlaContract
from crisisdesk.incident import service as incidents
from crisisdesk.incident.models import Incident, IncidentUpdate
from crisisdesk.kit.db import Database
from crisisdesk.kit.time import utcnow
from crisisdesk.seed import ADMIN_EMAIL, DEMO_PASSWORD, seed_demo


async def test_seed_builds_the_demo_workspace_once(db: Database, settings: Settings) -> None:
    result = await seed_demo(db, settings)
    assert result["seeded"] is True
    again = await seed_demo(db, settings)
    assert again["seeded"] is False
    async with db.session() as s:
        assert await auth.authenticate(s, email=ADMIN_EMAIL, password=DEMO_PASSWORD) is not None
        assert await s.scalar(select(func.count()).select_from(User)) == 7
        components = list(await s.scalars(select(Component)))
        leaves = [c for c in components if not c.is_group]
        assert 10 <= len(leaves) <= 14 and any(c.is_group for c in components)
        assert all(c.status == "operational" for c in leaves)
        assert {c.region_id for c in leaves if c.region_id} and len({c.region_id for c in leaves if c.region_id}) == 2
        # 90 days of history: status changes spread across the window
        oldest = await s.scalar(
            select(func.min(ComponentStatusChange.at)).where(ComponentStatusChange.new_status != "operational")
        )
        assert oldest < utcnow() - timedelta(days=75)
        resolved = await s.scalar(
            select(Incident).where(Incident.kind == "incident", Incident.resolved_at.is_not(None)).limit(1)
        )
        assert resolved is not None
        updates = await s.scalar(
            select(func.count()).select_from(IncidentUpdate).where(IncidentUpdate.incident_id == resolved.id)
        )
        assert updates >= 3
        scheduled = await s.scalar(
            select(Incident).where(Incident.kind == "maintenance", Incident.status == "scheduled")
        )
        assert scheduled is not None and scheduled.scheduled_for > utcnow()


async def test_seed_has_customers_dependencies_and_impact_rules(db: Database, settings: Settings) -> None:
    result = await seed_demo(db, settings)
    assert result["accounts"] == 500
    async with db.session() as s:
        count = select(func.count())
        assert await s.scalar(count.select_from(Account)) == 500
        tiers = dict((await s.execute(select(Account.tier, func.count()).group_by(Account.tier))).all())
        assert set(tiers) == {"Enterprise", "Business", "Starter"}
        assert 25 <= tiers["Enterprise"] <= 60 and tiers["Starter"] > tiers["Business"] > tiers["Enterprise"]
        per_account = select(AccountComponent.account_id, func.count().label("n")).group_by(AccountComponent.account_id)
        sizes = [n for _, n in await s.execute(per_account)]
        assert len(sizes) == 500 and min(sizes) >= 1 and max(sizes) <= 5
        contacts = [
            n
            for _, n in await s.execute(
                select(AccountContact.account_id, func.count()).group_by(AccountContact.account_id)
            )
        ]
        assert len(contacts) == 500 and min(contacts) >= 1 and max(contacts) <= 3
        enterprise = list(await s.scalars(select(Account).where(Account.tier == "Enterprise")))
        assert all(a.csm_owner and a.sla and a.sla.uptime_target == 99.95 for a in enterprise)
        assert all(a.arr_cents >= 100_000_00 for a in enterprise)
        assert await s.scalar(count.select_from(SlaContract)) == tiers["Enterprise"] + tiers["Business"]
        assert await s.scalar(count.select_from(ComponentDependency)) == sum(
            len(v) for v in customers.DEPENDENCIES.values()
        )
        assert [r.name for r in await impact_rules.list_rules(s)] == [r["name"] for r in customers.RULES]
        api = await s.scalar(select(Component).where(Component.name == "Public API"))
        user = await s.scalar(select(User).where(User.email == ADMIN_EMAIL))
        assert api is not None and user is not None
        admin = auth.actor_for(user)
        declared = await incidents.declare(
            s, admin, name="API errors", severity="SEV3", body="Investigating.", components={api.id: "major_outage"}
        )
    async with db.sessionmaker() as s:
        summary = await impact.summarize(s, declared.incident.id)
    # The API's outage reaches the webhooks and mobile apps that depend on it.
    assert {c.name for c in summary.components} == {"Public API", "Webhooks", "Mobile apps"}
    assert summary.account_count > 50 and summary.suggestion is not None
    assert summary.suggestion.severity == "SEV1" and "Enterprise" in summary.suggestion.reason
