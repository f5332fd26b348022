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


async def test_a_handler_that_reschedules_its_own_key_leaves_the_job_due(db: Database) -> None:
    runner = JobRunner(db)
    runs: list[int] = []

    async def recurring(session: object, payload: dict) -> None:
        runs.append(payload["n"])
        await jobs.schedule(session, "test.recurring", utcnow() + timedelta(minutes=1), key="every", payload={"n": 2})

    runner.register("test.recurring", recurring)
    async with db.session() as s:
        await jobs.schedule(s, "test.recurring", utcnow() - timedelta(seconds=1), key="every", payload={"n": 1})
    assert await runner.run_due() == 1
    async with db.session() as s:
        job = await s.scalar(select(Job).where(Job.key == "every"))
        assert job.finished_at is None and job.payload == {"n": 2} and job.due_at > utcnow()
    assert await runner.run_due() == 0
    assert runs == [1]


async def test_lanes_claim_only_their_kinds_and_run_side_by_side(db: Database) -> None:
    runner = JobRunner(db)
    running = 0
    peak = 0

    async def slow(session: object, payload: dict) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.05)
        running -= 1

    runner.register("test.slow", slow)
    runner.register("test.fast", slow)
    async with db.session() as s:
        for n in range(4):
            await jobs.schedule(s, "test.slow", utcnow() - timedelta(seconds=1), payload={"n": n})
        await jobs.schedule(s, "test.fast", utcnow() - timedelta(seconds=1))
    assert await runner.run_due(kinds={"test.slow"}, concurrency=4) == 4
    assert peak == 4
    assert await runner.run_due(exclude={"test.fast"}) == 0
    assert await runner.run_due(exclude={"test.slow"}) == 1
