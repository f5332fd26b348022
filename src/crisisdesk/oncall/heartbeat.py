"""The pager's own heartbeat: every worker pass writes a beat; an outside monitor reads the freshest."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select, update

from crisisdesk.kit.db import Database, dialect_insert
from crisisdesk.kit.jobs import worker_name
from crisisdesk.kit.time import utcnow
from crisisdesk.oncall.models import WorkerBeat


async def beat(db: Database) -> None:
    """Record that this worker process is alive and running its passes."""
    now = utcnow()
    async with db.session() as session:
        done = await session.execute(update(WorkerBeat).where(WorkerBeat.name == worker_name()).values(seen_at=now))
        if not done.rowcount:  # type: ignore[attr-defined]
            insert = dialect_insert(session)
            await session.execute(insert(WorkerBeat).values(name=worker_name(), seen_at=now).on_conflict_do_nothing())


async def last_beat(db: Database) -> datetime | None:
    async with db.sessionmaker() as session:
        return await session.scalar(select(func.max(WorkerBeat.seen_at)))
