"""Jobs with a due time: claimed once, retried with backoff, reclaimed after a dead worker's lease."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import select, update

from crisisdesk.kit import jobs
from crisisdesk.kit.db import Database
from crisisdesk.kit.jobs import Job, JobRunner
from crisisdesk.kit.time import utcnow


async def test_concurrent_claims_never_share_a_job(db: Database) -> None:
    async with db.session() as s:
        for n in range(60):
            await jobs.schedule(s, "test.noop", utcnow() - timedelta(seconds=1), payload={"n": n})
    batches = await asyncio.gather(*(jobs.claim(db, limit=7) for _ in range(12)))
    claimed = [job.id for batch in batches for job in batch]
    assert len(claimed) == len(set(claimed)) == 60


async def test_future_jobs_wait_and_keyed_jobs_move(db: Database) -> None:
    async with db.session() as s:
        await jobs.schedule(s, "test.noop", utcnow() + timedelta(hours=1), key="k1")
    assert await jobs.claim(db) == []
    async with db.session() as s:
        await jobs.schedule(s, "test.noop", utcnow() - timedelta(seconds=1), key="k1")
    async with db.session() as s:
        assert len(list(await s.scalars(select(Job)))) == 1
    assert len(await jobs.claim(db)) == 1


async def test_failed_job_records_error_and_backs_off_then_succeeds(db: Database) -> None:
    runner = JobRunner(db)
    calls: list[int] = []

    async def flaky(session: object, payload: dict) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("receiver said no")

    runner.register("test.flaky", flaky)
    async with db.session() as s:
        await jobs.schedule(s, "test.flaky", utcnow() - timedelta(seconds=1))
    assert await runner.run_due() == 1
    async with db.session() as s:
        job = await s.scalar(select(Job))
        assert job.finished_at is None and "receiver said no" in job.last_error
        assert job.lease_until > utcnow()  # backing off
        await s.execute(update(Job).values(lease_until=utcnow() - timedelta(seconds=1)))
    assert await runner.run_due() == 1
    async with db.session() as s:
        assert (await s.scalar(select(Job))).finished_at is not None
    assert len(calls) == 2


async def test_expired_lease_is_claimed_again(db: Database) -> None:
    async with db.session() as s:
        await jobs.schedule(s, "test.noop", utcnow() - timedelta(seconds=1))
    [first] = await jobs.claim(db, lease=timedelta(seconds=30))
    assert await jobs.claim(db) == []  # leased to the first worker
    async with db.session() as s:
        await s.execute(update(Job).values(lease_until=utcnow() - timedelta(seconds=1)))  # that worker died
    [second] = await jobs.claim(db)
    assert second.id == first.id and second.attempts == 2
