"""The pager's heartbeat: 200 while a worker beats and escalations run on time, 503 with the reason otherwise."""

from __future__ import annotations

from datetime import timedelta

import httpx
from sqlalchemy import update

from crisisdesk.kit.db import Database
from crisisdesk.kit.jobs import Job
from crisisdesk.kit.time import utcnow
from crisisdesk.oncall import heartbeat, paging
from crisisdesk.oncall.models import WorkerBeat
from tests.fixtures.auth import make_user
from tests.fixtures.paging import level, make_policy


async def test_heartbeat_is_ok_while_beats_are_fresh_and_fails_when_they_go_stale(
    client: httpx.AsyncClient, db: Database
) -> None:
    never = await client.get("/heartbeat")
    assert never.status_code == 503
    assert never.json()["status"] == "failing" and "ever beaten" in never.json()["reason"]

    await heartbeat.beat(db)
    ok = await client.get("/heartbeat")
    assert ok.status_code == 200, ok.text
    body = ok.json()
    assert body["status"] == "ok" and body["overdue_timers"] == 0 and body["last_beat"]
    assert ok.headers["cache-control"] == "no-store"
    assert set(body) == {"status", "last_beat", "overdue_timers"}  # nothing about the installation

    # Every worker went quiet two minutes ago (the stale limit is 60 s).
    async with db.session() as s:
        await s.execute(update(WorkerBeat).values(seen_at=utcnow() - timedelta(minutes=2)))
    stale = await client.get("/heartbeat")
    assert stale.status_code == 503
    assert "no worker has beaten for" in stale.json()["reason"]


async def test_heartbeat_fails_when_an_escalation_is_overdue_although_workers_beat(
    client: httpx.AsyncClient, db: Database
) -> None:
    async with db.session() as s:
        user = await make_user(s)
        policy = await make_policy(s, level(("user", user.id)), level(("user", user.id)))
    async with db.session() as s:
        page = await paging.start_page(s, escalation_policy_id=policy.id, title="Nobody runs the timers")
    await heartbeat.beat(db)
    assert (await client.get("/heartbeat")).status_code == 200  # due in five minutes: not overdue
    async with db.session() as s:
        await s.execute(
            update(Job).where(Job.key == paging.escalate_key(page.id)).values(due_at=utcnow() - timedelta(minutes=3))
        )
    overdue = await client.get("/heartbeat")
    assert overdue.status_code == 503
    assert overdue.json()["overdue_timers"] == 1 and "escalation timer" in overdue.json()["reason"]
