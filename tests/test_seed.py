"""The demo workspace: believable, complete, and seeded once."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from crisisdesk.auth import service as auth
from crisisdesk.auth.models import User
from crisisdesk.catalog.models import Component, ComponentStatusChange
from crisisdesk.config import Settings
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
