"""Time is data: jobs are rows with a due time, claimed with a lease by any worker.

On PostgreSQL a claim is ``SELECT … FOR UPDATE SKIP LOCKED`` so any number of workers on any
number of machines share the queue. On SQLite the single writer lock makes the claiming
``UPDATE`` atomic. A job whose lease runs out (its worker died) is claimed again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import JSON, Index, String, Text, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from crisisdesk.kit.db import Base, Database
from crisisdesk.kit.time import utcnow

log = logging.getLogger(__name__)


class Job(Base):
    __tablename__ = "job"
    __table_args__ = (Index("ix_job_due", "finished_at", "due_at"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(80))
    key: Mapped[str | None] = mapped_column(String(200), unique=True)
    due_at: Mapped[datetime]
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    attempts: Mapped[int] = mapped_column(default=0)
    claimed_by: Mapped[str | None] = mapped_column(String(120))
    lease_until: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]


async def schedule(
    session: AsyncSession,
    kind: str,
    due_at: datetime,
    *,
    key: str | None = None,
    payload: dict[str, Any] | None = None,
) -> Job:
    """Add a job, or move the unfinished job with the same key to the new due time."""
    if key is not None:
        job = await session.scalar(select(Job).where(Job.key == key))
        if job is not None:
            job.kind, job.due_at, job.payload = kind, due_at, payload or {}
            job.finished_at, job.claimed_by, job.lease_until = None, None, None
            job.attempts, job.last_error = 0, None
            return job
    job = Job(kind=kind, key=key, due_at=due_at, payload=payload or {})
    session.add(job)
    return job


async def cancel(session: AsyncSession, key: str) -> None:
    """Drop a pending job by key (a cancelled maintenance, say)."""
    await session.execute(delete(Job).where(Job.key == key, Job.finished_at.is_(None)))


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class Claimed:
    id: int
    kind: str
    payload: dict[str, Any]
    attempts: int


async def claim(
    db: Database,
    *,
    limit: int = 10,
    lease: timedelta = timedelta(minutes=2),
    kinds: Collection[str] | None = None,
    exclude: Collection[str] | None = None,
) -> list[Claimed]:
    """Claim up to ``limit`` due jobs for this worker in one statement (so no two workers share one).

    ``kinds`` keeps to those kinds and ``exclude`` leaves those out: a lane of slow jobs (checks,
    vendor polls) then cannot hold up the escalation timers in another.
    """
    now = utcnow()
    due = (
        select(Job.id)
        .where(Job.finished_at.is_(None), Job.due_at <= now)
        .where((Job.lease_until.is_(None)) | (Job.lease_until < now))
        .order_by(Job.due_at)
        .limit(limit)
    )
    if kinds is not None:
        due = due.where(Job.kind.in_(list(kinds)))
    if exclude:
        due = due.where(Job.kind.not_in(list(exclude)))
    if not db.is_sqlite:
        due = due.with_for_update(skip_locked=True)
    statement = (
        update(Job)
        .where(Job.id.in_(due.scalar_subquery()))
        .values(claimed_by=worker_name(), lease_until=now + lease, attempts=Job.attempts + 1)
        .returning(Job.id, Job.kind, Job.payload, Job.attempts)
    )
    async with db.sessionmaker() as session:
        rows = (await session.execute(statement)).all()
        await session.commit()
    return [Claimed(r.id, r.kind, r.payload, r.attempts) for r in rows]


Handler = Callable[[AsyncSession, dict[str, Any]], Awaitable[None]]


class JobRunner:
    """Runs claimed jobs through registered handlers; a handler's session is its transaction.

    A handler may schedule its own key again (a check's next run): the job is then left due at
    its new time instead of being marked finished.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self.handlers: dict[str, Handler] = {}

    def register(self, kind: str, handler: Handler) -> None:
        self.handlers[kind] = handler

    async def run_due(
        self,
        *,
        kinds: Collection[str] | None = None,
        exclude: Collection[str] | None = None,
        concurrency: int = 1,
        limit: int | None = None,
    ) -> int:
        """Claim up to ``limit`` due jobs and run them (``concurrency`` at a time); return how many ran.

        A lane of slow jobs passes ``limit=concurrency``: a claimed job waiting for a slot could
        outlive its lease and be claimed and run again by another worker.
        """
        claimed = await claim(
            self.db, limit=limit if limit is not None else max(10, concurrency), kinds=kinds, exclude=exclude
        )
        if concurrency <= 1:
            for job in claimed:
                await self._run(job)
        else:
            slots = asyncio.Semaphore(concurrency)

            async def run(job: Claimed) -> None:
                async with slots:
                    await self._run(job)

            await asyncio.gather(*(run(job) for job in claimed))
        return len(claimed)

    async def _run(self, job: Claimed) -> None:
        handler = self.handlers.get(job.kind)
        try:
            if handler is None:
                raise LookupError(f"no handler for job kind {job.kind!r}")
            async with self.db.session() as session:
                await handler(session, job.payload)
                # A job its handler rescheduled has lost its claim (``schedule`` clears it): leave it due.
                await session.execute(
                    update(Job)
                    .where(Job.id == job.id, Job.claimed_by.is_not(None))
                    .values(finished_at=utcnow(), lease_until=None)
                )
        except Exception as exc:
            log.exception("job %s (%s) failed, attempt %s", job.id, job.kind, job.attempts)
            backoff = timedelta(seconds=min(600, 5 * 2 ** min(job.attempts, 7)))
            async with self.db.session() as session:
                await session.execute(
                    update(Job)
                    .where(Job.id == job.id)
                    .values(last_error=f"{type(exc).__name__}: {exc}"[:2000], lease_until=utcnow() + backoff)
                )
