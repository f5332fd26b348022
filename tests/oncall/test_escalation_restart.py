"""An escalation survives its worker's death: a real ``crisisdesk worker`` killed with SIGKILL before
the step is due, two new ones started; the next level is paged once, and on time (± 2 s)."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from crisisdesk.kit.db import Database
from crisisdesk.kit.jobs import Job
from crisisdesk.kit.time import utcnow
from crisisdesk.oncall import paging
from crisisdesk.oncall.models import Page, PageEvent
from tests.fixtures.auth import make_user
from tests.fixtures.paging import level, make_policy
from tests.fixtures.peers import SmtpSink
from tests.fixtures.server import free_port
from tests.fixtures.workers import WorkerPool, wait_until

pytestmark = pytest.mark.slow

DUE_IN = timedelta(seconds=10)


async def _escalations(db: Database, page_id: str) -> list[PageEvent]:
    async with db.sessionmaker() as s:
        rows = await s.scalars(
            select(PageEvent).where(PageEvent.page_id == page_id, PageEvent.kind == "escalated").order_by(PageEvent.id)
        )
        return list(rows)


async def test_escalation_fires_once_and_on_time_after_its_worker_is_killed(
    db: Database, database_url: str, tmp_path: Path
) -> None:
    async with db.session() as s:
        first = await make_user(s, email="first@example.com")
        second = await make_user(s, email="second@example.com")
        policy = await make_policy(s, level(("user", first.id), timeout=1), level(("user", second.id), timeout=30))
    async with db.session() as s:
        page = await paging.start_page(s, escalation_policy_id=policy.id, title="Sign-in failing everywhere")
    # The first level's minute, shortened: the step is due ten seconds from now.
    due = utcnow() + DUE_IN
    async with db.session() as s:
        await s.execute(update(Job).where(Job.key == paging.escalate_key(page.id)).values(due_at=due))
        await s.execute(update(Page).where(Page.id == page.id).values(next_escalation_at=due))

    async with SmtpSink(free_port()) as sink:
        with WorkerPool(tmp_path, database_url, smtp_port=sink.port) as pool:
            doomed = pool.start()
            await sink.wait_for(1, timeout=15)  # it runs: the first level's email went out
            assert utcnow() < due, "the first worker started too slowly to be killed before the step"
            doomed.kill()
            pool.start(wait=False)
            pool.start(wait=False)
            await wait_until(
                lambda: _has_escalated(db, page.id),
                30,
                "the escalation to level two",
                describe=pool.outputs,
            )
            await sink.wait_for(2, timeout=15)
            # Both survivors keep running past the step: nothing fires twice.
            await wait_until(lambda: _later(due, seconds=3), 10, "three seconds past the step")
    events = await _escalations(db, page.id)
    assert len(events) == 1, [e.summary for e in events]
    late = (events[0].at - due).total_seconds()
    assert -0.5 <= late <= 2.0, f"escalated {late:+.2f} s from its due time"
    recipients = sorted(r for m in sink.messages() for r in m.rcpt_tos)
    assert recipients == ["first@example.com", "second@example.com"]
    async with db.sessionmaker() as s:
        stored = await s.get(Page, page.id)
        assert stored is not None and stored.level == 1


async def _has_escalated(db: Database, page_id: str) -> bool:
    return bool(await _escalations(db, page_id))


def _later(due: datetime, *, seconds: float) -> bool:
    return utcnow() > due + timedelta(seconds=seconds)
