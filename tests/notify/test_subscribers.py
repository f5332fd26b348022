"""The subscriber service: admin changes, listing and counts, quarantine purge and its hourly job."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi import FastAPI
from sqlalchemy import select, update

from crisisdesk.config import Settings
from crisisdesk.kit.db import Database
from crisisdesk.kit.errors import Conflict, InvalidInput, NotFound
from crisisdesk.kit.jobs import Job
from crisisdesk.kit.runtime import Runtime
from crisisdesk.kit.time import utcnow
from crisisdesk.notify import subscribers
from crisisdesk.notify.models import Subscriber, SubscriberComponent, SubscriberState, SubscriptionScope
from crisisdesk.worker import tick
from tests.fixtures.api import count_rows
from tests.fixtures.incident import make_component
from tests.fixtures.notify import make_subscriber


async def test_admin_add_is_active_at_once_and_refuses_a_duplicate(db: Database, settings: Settings) -> None:
    async with db.session() as session:
        web = await make_component(session, "Web app")
        added = await subscribers.add(
            session, settings, channel="email", address="Admin.Added@Example.com", components=[web.id]
        )
    assert added.subscriber.state == SubscriberState.active and added.subscriber.source == "admin"
    assert added.subscriber.address == "admin.added@example.com" and added.secret is None
    async with db.session() as session:
        with pytest.raises(Conflict) as refused:
            await subscribers.add(session, settings, channel="email", address="admin.added@example.com")
    assert refused.value.field == "address"
    settings.allow_private_webhooks = True
    async with db.session() as session:
        hook = await subscribers.add(session, settings, channel="webhook", address="http://127.0.0.1:18310/h")
    assert hook.secret and hook.secret.startswith("whsec_") and hook.subscriber.secret == hook.secret
    async with db.sessionmaker() as session:
        links = list(await session.scalars(select(SubscriberComponent.component_id)))
    assert links == [web.id]


async def test_remove_and_reactivate(db: Database) -> None:
    async with db.session() as session:
        gone = await make_subscriber(session)
        sick = await make_subscriber(
            session,
            state=SubscriberState.quarantined,
            quarantined_at=utcnow(),
            purge_at=utcnow() + timedelta(days=30),
            last_error="550 mailbox unavailable",
        )
    async with db.session() as session:
        await subscribers.remove(session, gone.id)
        back = await subscribers.reactivate(session, sick.id)
    assert back.state == SubscriberState.active and back.purge_at is None and back.last_error is None
    async with db.session() as session:
        with pytest.raises(NotFound):
            await subscribers.remove(session, gone.id)
        with pytest.raises(Conflict):
            await subscribers.reactivate(session, sick.id)  # already active
    assert await count_rows(db, Subscriber) == 1


async def test_counts_and_list(db: Database) -> None:
    async with db.session() as session:
        for n in range(3):
            await make_subscriber(session, address=f"list{n}@example.com")
        await make_subscriber(session, address="waiting@example.com", state=SubscriberState.pending)
        await make_subscriber(session, channel="sms", address="+14155550100")
        await make_subscriber(session, channel="webhook", state=SubscriberState.quarantined)
    async with db.sessionmaker() as session:
        counts = await subscribers.counts_by_channel(session)
        assert counts["email"] == {"pending": 1, "active": 3, "quarantined": 0}
        assert counts["sms"]["active"] == 1 and counts["webhook"]["quarantined"] == 1 and counts["teams"]["active"] == 0
        page = await subscribers.list_subscribers(session, search="LIST", limit=2)
        assert page.total == 3 and len(page.items) == 2
        rest = await subscribers.list_subscribers(session, search="list", limit=2, offset=2)
        assert len(rest.items) == 1 and {s.address for s in page.items + rest.items} == {
            f"list{n}@example.com" for n in range(3)
        }
        only = await subscribers.list_subscribers(session, channel="email", state="pending")
        assert [s.address for s in only.items] == ["waiting@example.com"]
        # LIKE wildcards typed in the search match themselves only.
        assert (await subscribers.list_subscribers(session, search="%")).total == 0
        with pytest.raises(InvalidInput) as bad:
            await subscribers.list_subscribers(session, state="asleep")
        assert bad.value.field == "state"


async def test_update_subscription_and_scope_rules(db: Database, settings: Settings) -> None:
    async with db.session() as session:
        web = await make_component(session, "Web app")
        api = await make_component(session, "Public API")
        subscriber = await make_subscriber(session, address="scope@example.com")
    async with db.session() as session:
        changed = await subscribers.update_subscription(session, subscriber.token, components=[web.id, api.id, web.id])
        assert changed.scope == SubscriptionScope.components
        assert sorted(subscribers.component_ids(changed)) == sorted([web.id, api.id])
    async with db.session() as session:
        everything = await subscribers.update_subscription(session, subscriber.token, components=None)
        assert everything.scope == SubscriptionScope.all and everything.components == []
    async with db.session() as session:
        with pytest.raises(InvalidInput) as both:
            await subscribers.subscribe(
                session, settings, channel="email", address="x@example.com", components=[web.id], incident_id="abc"
            )
        assert both.value.field == "components"
        with pytest.raises(InvalidInput) as missing:
            await subscribers.subscribe(session, settings, channel="email", address="x@example.com", incident_id="abc")
        assert missing.value.field == "incident"


async def test_purge_deletes_only_quarantined_subscribers_past_their_time(db: Database) -> None:
    now = utcnow()
    async with db.session() as session:
        due = await make_subscriber(session, state=SubscriberState.quarantined, purge_at=now - timedelta(minutes=1))
        later = await make_subscriber(session, state=SubscriberState.quarantined, purge_at=now + timedelta(days=1))
        active = await make_subscriber(session, purge_at=now - timedelta(days=1))  # reactivated, stale purge_at
    async with db.session() as session:
        assert await subscribers.purge_quarantined(session, now) == 1
    async with db.sessionmaker() as session:
        left = set(await session.scalars(select(Subscriber.id)))
    assert left == {later.id, active.id} and due.id not in left


async def test_the_worker_schedules_the_hourly_purge_and_it_reschedules_itself(app: FastAPI, db: Database) -> None:
    """The first worker pass makes sure a purge job exists; running it purges and books the next hour."""
    runtime: Runtime = app.state.runtime
    await tick(runtime, None, {})
    await tick(runtime, None, {})  # a second process (or pass) adds no second job
    async with db.sessionmaker() as session:
        jobs = list(await session.scalars(select(Job).where(Job.kind == subscribers.PURGE)))
    assert len(jobs) == 1 and jobs[0].finished_at is None
    first = jobs[0]
    assert first.due_at > utcnow() and first.key == subscribers.purge_key(first.due_at)

    async with db.session() as session:
        doomed = await make_subscriber(
            session, state=SubscriberState.quarantined, purge_at=utcnow() - timedelta(hours=1)
        )
        # Make the booked run the one for the start of this hour, as if that hour had come.
        this_hour = subscribers.next_purge_at(utcnow()) - timedelta(hours=1)
        await session.execute(
            update(Job).where(Job.id == first.id).values(due_at=this_hour, key=subscribers.purge_key(this_hour))
        )
    assert await runtime.runner.run_due() >= 1
    async with db.sessionmaker() as session:
        assert await session.get(Subscriber, doomed.id) is None
        jobs = list(await session.scalars(select(Job).where(Job.kind == subscribers.PURGE).order_by(Job.id)))
    done = [j for j in jobs if j.finished_at is not None]
    waiting = [j for j in jobs if j.finished_at is None]
    assert [j.id for j in done] == [first.id] and len(waiting) == 1
    assert waiting[0].due_at > utcnow() and waiting[0].key == subscribers.purge_key(waiting[0].due_at) != done[0].key


async def test_a_sign_up_racing_another_for_the_same_address_is_a_409_not_a_500(
    db: Database, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with db.session() as s:
        await subscribers.subscribe(s, settings, channel="email", address="race@example.com")
    # The other request committed between this one's lookup and its insert: the lookup saw nothing.
    real_get = subscribers._get

    async def lookup_before_the_other_commit(session: object, **where: str) -> Subscriber | None:
        return None if where.get("address") == "race@example.com" else await real_get(session, **where)  # type: ignore[arg-type]

    monkeypatch.setattr(subscribers, "_get", lookup_before_the_other_commit)
    with pytest.raises(Conflict) as caught:
        async with db.session() as s:
            await subscribers.subscribe(s, settings, channel="email", address="race@example.com")
    assert caught.value.field == "address" and "same moment" in caught.value.message
    assert await count_rows(db, Subscriber) == 1
