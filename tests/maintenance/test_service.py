"""Maintenance windows start and complete by themselves, on time, through the job runner."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from crisisdesk.catalog.models import Component
from crisisdesk.config import Settings
from crisisdesk.incident import service as incidents
from crisisdesk.incident.models import Incident
from crisisdesk.kit.db import Database
from crisisdesk.kit.errors import Conflict, InvalidInput
from crisisdesk.kit.jobs import Job, JobRunner
from crisisdesk.kit.runtime import Runtime
from crisisdesk.kit.time import utcnow
from crisisdesk.kit.watch import ChangeWatcher
from crisisdesk.maintenance import service as maintenance
from crisisdesk.worker import register_tasks
from tests.fixtures.auth import make_actor
from tests.fixtures.incident import make_component, make_incident, make_maintenance

MAINTENANCE_JOBS = (maintenance.START, maintenance.COMPLETE)


def runner_for(db: Database) -> JobRunner:
    """A runner with every handler a worker has, so the updates' fan-out jobs run too."""
    runtime = Runtime(Settings(demo=True, database_url=db.url), db, ChangeWatcher(db, interval=1), JobRunner(db))
    register_tasks(runtime)
    return runtime.runner


async def finished(db: Database, kind: str) -> bool:
    """No job of this kind is left to run (completing a window removes its own job)."""
    async with db.session() as s:
        return await s.scalar(select(Job).where(Job.kind == kind, Job.finished_at.is_(None))) is None


async def make_due(db: Database, what: str) -> None:
    async with db.session() as s:
        await s.execute(update(Job).where(Job.kind == what).values(due_at=utcnow() - timedelta(seconds=1)))


async def test_window_starts_and_completes_by_itself(db: Database) -> None:
    _, actor = await make_actor(db)
    async with db.session() as s:
        web = await make_component(s)
        m = await make_maintenance(s, actor, [web.id])
    runner = runner_for(db)
    await runner.run_due()
    assert not await finished(db, maintenance.START)  # not due yet
    await make_due(db, maintenance.START)
    await runner.run_due()
    assert await finished(db, maintenance.START)
    async with db.session() as s:
        assert (await s.get(Incident, m.id)).status == "in_progress"
        assert (await s.get(Component, web.id)).status == "under_maintenance"
    await make_due(db, maintenance.COMPLETE)
    await runner.run_due()
    assert await finished(db, maintenance.COMPLETE)
    async with db.session() as s:
        loaded = await incidents.get_incident(s, m.id)
        assert loaded.status == "completed" and loaded.resolved_at is not None
        assert [u.status for u in loaded.updates] == ["completed", "in_progress", "scheduled"]
        assert (await s.get(Component, web.id)).status == "operational"


async def test_completion_keeps_a_component_held_by_an_open_incident(db: Database) -> None:
    _, actor = await make_actor(db)
    async with db.session() as s:
        web = await make_component(s)
        await make_maintenance(s, actor, [web.id], starts=utcnow() - timedelta(minutes=1))
    runner = runner_for(db)
    await runner.run_due()
    async with db.session() as s:
        await make_incident(s, actor, components={web.id: "partial_outage"})
    await make_due(db, maintenance.COMPLETE)
    await runner.run_due()
    async with db.session() as s:
        assert (await s.get(Component, web.id)).status == "partial_outage"


async def test_edit_moves_the_jobs_and_cancel_removes_them(db: Database) -> None:
    _, actor = await make_actor(db)
    async with db.session() as s:
        web = await make_component(s)
        m = await make_maintenance(s, actor, [web.id])
    later = utcnow() + timedelta(days=2)
    async with db.session() as s:
        await maintenance.edit(
            s,
            actor,
            await incidents.get_incident(s, m.id),
            scheduled_for=later,
            scheduled_until=later + timedelta(hours=1),
        )
    async with db.session() as s:
        start_job = await s.scalar(select(Job).where(Job.kind == maintenance.START))
        assert abs(start_job.due_at - later) < timedelta(seconds=1)
    async with db.session() as s:
        await maintenance.cancel(s, actor, await incidents.get_incident(s, m.id), reason="Vendor postponed.")
    async with db.session() as s:
        loaded = await incidents.get_incident(s, m.id)
        assert loaded.status == "completed" and loaded.cancelled_at is not None
        assert "cancelled" in loaded.updates[0].body
        pending = select(Job).where(Job.finished_at.is_(None), Job.kind.in_(MAINTENANCE_JOBS))
        assert list(await s.scalars(pending)) == []
    with pytest.raises(Conflict):
        async with db.session() as s:
            await maintenance.cancel(s, actor, await incidents.get_incident(s, m.id))


@pytest.mark.parametrize(
    ("start_hours", "end_hours", "field"),
    [(2, 1, "scheduled_until"), (-3, -1, "scheduled_until"), (1, 24 * 15, "scheduled_until")],
)
async def test_bad_windows_are_refused(db: Database, start_hours: int, end_hours: int, field: str) -> None:
    _, actor = await make_actor(db)
    now = utcnow()
    with pytest.raises(InvalidInput) as caught:
        async with db.session() as s:
            await maintenance.schedule(
                s,
                actor,
                name="x",
                body="y",
                scheduled_for=now + timedelta(hours=start_hours),
                scheduled_until=now + timedelta(hours=end_hours),
                components=[],
            )
    assert caught.value.field == field
    async with db.session() as s:
        assert list(await s.scalars(select(Incident))) == []
