"""Fan-out: which subscribers get a delivery for an update or a component change, in batches, once."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest
from sqlalchemy import func, select

from crisisdesk.auth.models import Role
from crisisdesk.catalog import service as catalog
from crisisdesk.catalog.models import ComponentStatus
from crisisdesk.config import Settings
from crisisdesk.incident import service as incidents
from crisisdesk.incident.models import Incident, IncidentUpdate, Kind
from crisisdesk.kit.db import Database
from crisisdesk.kit.jobs import Job, JobRunner
from crisisdesk.kit.runtime import Runtime
from crisisdesk.kit.watch import ChangeWatcher
from crisisdesk.maintenance import service as maintenance
from crisisdesk.notify import fanout
from crisisdesk.notify import tasks as notify_tasks
from crisisdesk.notify.models import Channel, Delivery, DeliveryState, Purpose, SubscriberState
from tests.fixtures.auth import make_actor
from tests.fixtures.incident import make_component, make_incident, make_maintenance
from tests.fixtures.notify import deliveries_of, make_subscriber, make_subscribers, run_jobs
from tests.fixtures.peers import HttpReceiver, SmtpSink
from tests.fixtures.ports import worker_port


async def _latest_update(db: Database, incident_id: str) -> IncidentUpdate:
    async with db.sessionmaker() as session:
        update = await session.scalar(
            select(IncidentUpdate)
            .where(IncidentUpdate.incident_id == incident_id)
            .order_by(IncidentUpdate.created_at.desc(), IncidentUpdate.id.desc())
            .limit(1)
        )
        assert update is not None
        return update


async def _post(db: Database, incident_id: str, status: str, body: str = "More news.") -> IncidentUpdate:
    _, admin = await make_actor(db, Role.admin)
    async with db.session() as session:
        incident = await incidents.get_incident(session, incident_id)
        return await incidents.post_update(session, admin, incident, status=status, body=body)


async def test_scope_rules_and_the_sms_rule(db: Database, settings: Settings) -> None:
    _, admin = await make_actor(db, Role.admin)
    async with db.session() as session:
        hit = await make_component(session, "API")
        other = await make_component(session, "Billing")
        other_incident = await make_incident(session, admin, name="Older trouble")
        expected = {
            "all": await make_subscriber(session, channel=Channel.email),
            "follows-api": await make_subscriber(session, scope="components", components=[hit.id]),
            "webhook": await make_subscriber(session, channel=Channel.webhook),
            "slack": await make_subscriber(session, channel=Channel.slack),
            "teams": await make_subscriber(session, channel=Channel.teams),
            "sms": await make_subscriber(session, channel=Channel.sms),
        }
        left_out = {
            "follows-billing": await make_subscriber(session, scope="components", components=[other.id]),
            "other-incident": await make_subscriber(session, scope="incident", incident_id=other_incident.id),
            "unconfirmed": await make_subscriber(session, state=SubscriberState.pending),
            "quarantined": await make_subscriber(session, state=SubscriberState.quarantined),
        }
        incident = await make_incident(session, admin, components={hit.id: "major_outage"})
        follows_it = await make_subscriber(session, scope="incident", incident_id=incident.id)
        expected["follows-incident"] = follows_it
    await run_jobs(db, settings)

    created = await _latest_update(db, incident.id)
    rows = await deliveries_of(db, f"update:{created.id}")
    got = {r.recipient for r in rows}
    assert got == {s.id for s in expected.values()}, "the first update reaches exactly the subscribers in scope"
    assert not got & {s.id for s in left_out.values()}
    assert all(r.state == DeliveryState.pending and r.purpose == Purpose.update for r in rows)
    assert all(r.incident_id == incident.id and r.update_id == created.id for r in rows)
    by_recipient = {r.recipient: r for r in rows}
    assert by_recipient[expected["sms"].id].channel == Channel.sms, "SMS goes out on create"
    assert by_recipient[expected["webhook"].id].address == expected["webhook"].address

    # An ordinary update: every channel but SMS.
    identified = await _post(db, incident.id, "identified")
    await run_jobs(db, settings)
    rows = await deliveries_of(db, f"update:{identified.id}")
    assert {r.recipient for r in rows} == {s.id for k, s in expected.items() if k != "sms"}

    # Resolving: SMS again.
    resolved = await _post(db, incident.id, "resolved", "Fixed.")
    await run_jobs(db, settings)
    rows = await deliveries_of(db, f"update:{resolved.id}")
    assert expected["sms"].id in {r.recipient for r in rows}


async def test_sms_events_setting_and_social_accounts(db: Database, settings: Settings) -> None:
    settings = settings.model_copy(
        update={
            "sms_events": ["create", "update", "resolve"],
            "mastodon_base_url": "https://mastodon.example",
            "mastodon_token": "tok",
            "x_token": "xtok",
            "fanout_batch": 2,
        }
    )
    _, admin = await make_actor(db, Role.admin)
    async with db.session() as session:
        sms = await make_subscriber(session, channel=Channel.sms)
        await make_subscribers(session, 5)
        incident = await make_incident(session, admin)
    await run_jobs(db, settings)
    identified = await _post(db, incident.id, "identified")
    await run_jobs(db, settings)
    rows = await deliveries_of(db, f"update:{identified.id}")
    channels = Counter(r.channel for r in rows)
    assert channels == {Channel.email: 5, Channel.sms: 1, Channel.mastodon: 1, Channel.x: 1}
    assert sms.id in {r.recipient for r in rows}, "CRISISDESK_SMS_EVENTS turned SMS on for ordinary updates"
    social = {r.channel: r for r in rows if r.recipient == fanout.ACCOUNT}
    assert social[Channel.mastodon].address == "https://mastodon.example"
    assert social[Channel.x].address == settings.x_base_url


async def test_a_fanout_that_runs_twice_writes_each_delivery_once(db: Database, settings: Settings) -> None:
    _, admin = await make_actor(db, Role.admin)
    async with db.session() as session:
        await make_subscribers(session, 7)
        await make_subscriber(session, channel=Channel.webhook)
        incident = await make_incident(session, admin)
    await run_jobs(db, settings)
    update = await _latest_update(db, incident.id)
    before = await deliveries_of(db, f"update:{update.id}")
    assert len(before) == 8
    # The same job again, and a continuation that overlaps it: the unique constraint holds.
    async with db.session() as session:
        await fanout.run_fanout(session, settings, {"update_id": update.id})
        await fanout.run_fanout(session, settings, {"update_id": update.id, "after": before[0].recipient})
    after = await deliveries_of(db, f"update:{update.id}")
    assert [(d.id, d.recipient) for d in after] == [(d.id, d.recipient) for d in before]


async def test_batches_continue_until_every_subscriber_has_a_delivery(db: Database, settings: Settings) -> None:
    settings = settings.model_copy(update={"fanout_batch": 4})
    _, admin = await make_actor(db, Role.admin)
    async with db.session() as session:
        ids = await make_subscribers(session, 10)
        incident = await make_incident(session, admin)
    await run_jobs(db, settings)
    update = await _latest_update(db, incident.id)
    rows = await deliveries_of(db, f"update:{update.id}")
    assert sorted(r.recipient for r in rows) == sorted(ids)
    async with db.sessionmaker() as session:
        keys = set(await session.scalars(select(Job.key).where(Job.key.like(f"fanout:update:{update.id}%"))))
    ordered = sorted(ids)
    # Batches of 4 by subscriber id: the first job, then continuations after the 4th and 8th ids.
    assert keys == {
        f"fanout:update:{update.id}",
        f"fanout:update:{update.id}:{ordered[3]}",
        f"fanout:update:{update.id}:{ordered[7]}",
    }


async def test_channels_are_written_in_turn_webhooks_and_slack_before_email(db: Database, settings: Settings) -> None:
    """7 emails, 5 webhooks and a Slack channel in batches of 4: every webhook and Slack row is
    written before the first email row, so their lanes need not wait for the email backlog, and
    each continuation says which channel it goes on with."""
    settings = settings.model_copy(update={"fanout_batch": 4})
    _, admin = await make_actor(db, Role.admin)
    async with db.session() as session:
        emails = await make_subscribers(session, 7)
        hooks = await make_subscribers(
            session, 5, channel=Channel.webhook, address=lambda n: f"https://hooks{n}.example/in"
        )
        slack = await make_subscriber(session, channel=Channel.slack, address="https://hooks.slack.com/services/T/B/x")
        incident = await make_incident(session, admin)
    await run_jobs(db, settings)
    update = await _latest_update(db, incident.id)
    rows = await deliveries_of(db, f"update:{update.id}")
    assert sorted(r.recipient for r in rows) == sorted([*emails, *hooks, slack.id])
    first_email = min(r.id for r in rows if r.channel == Channel.email)
    assert all(r.id < first_email for r in rows if r.channel != Channel.email)
    async with db.sessionmaker() as session:
        payloads = list(await session.scalars(select(Job.payload).where(Job.key.like(f"fanout:update:{update.id}:%"))))
    # 13 rows in batches of 4: continuations after rows 4 (in the webhooks), 8 and 12 (in the emails).
    assert sorted(p["channel"] for p in payloads) == ["email", "email", "webhook"]


async def test_updates_without_notifications_write_nothing(db: Database, settings: Settings) -> None:
    _, admin = await make_actor(db, Role.admin)
    async with db.session() as session:
        await make_subscribers(session, 3)
        incident = await make_incident(session, admin)
    await run_jobs(db, settings)
    async with db.session() as session:
        loaded = await incidents.get_incident(session, incident.id)
        quiet = await incidents.post_update(
            session, admin, loaded, status="identified", body="Quiet.", deliver_notifications=False
        )
    await run_jobs(db, settings)
    assert await deliveries_of(db, f"update:{quiet.id}") == []


async def test_component_changes_reach_webhook_subscribers_following_them(db: Database, settings: Settings) -> None:
    async with db.session() as session:
        group = await make_component(session, "Platform", is_group=True)
        api = await make_component(session, "API", group_id=group.id)
        other = await make_component(session, "Billing")
        all_hook = await make_subscriber(session, channel=Channel.webhook)
        api_hook = await make_subscriber(session, channel=Channel.webhook, scope="components", components=[api.id])
        group_hook = await make_subscriber(session, channel=Channel.webhook, scope="components", components=[group.id])
        await make_subscriber(session, channel=Channel.webhook, scope="components", components=[other.id])
        await make_subscriber(session, channel=Channel.email)  # email hears of updates, not component changes
        await make_subscriber(session, channel=Channel.slack)
    await run_jobs(db, settings)
    async with db.session() as session:
        loaded = await catalog.get_component(session, api.id)
        await catalog.set_status(session, loaded, ComponentStatus.partial_outage)
    await run_jobs(db, settings)
    async with db.sessionmaker() as session:
        rows = list(await session.scalars(select(Delivery).where(Delivery.purpose == Purpose.component)))
    assert {r.recipient for r in rows} == {all_hook.id, api_hook.id, group_hook.id}
    assert all(r.channel == Channel.webhook and r.subject.startswith("component:") for r in rows)
    assert len({r.subject for r in rows}) == 1


def _incident(kind: Kind) -> Incident:
    return Incident(kind=kind, name="x", status="investigating", impact="minor", number=1)


def _update(status: str) -> IncidentUpdate:
    return IncidentUpdate(status=status, body="", body_html="")


@pytest.mark.parametrize(
    ("kind", "previous", "status", "event"),
    [
        (Kind.incident, None, "investigating", "create"),
        (Kind.incident, "investigating", "identified", "update"),
        (Kind.incident, "monitoring", "resolved", "resolve"),
        (Kind.incident, "resolved", "resolved", "update"),
        (Kind.incident, "resolved", "postmortem", "update"),
        (Kind.maintenance, None, "scheduled", "maintenance_scheduled"),
        (Kind.maintenance, "scheduled", "scheduled", "update"),
        (Kind.maintenance, "scheduled", "in_progress", "maintenance_start"),
        (Kind.maintenance, "in_progress", "verifying", "update"),
        (Kind.maintenance, "verifying", "completed", "maintenance_complete"),
    ],
)
def test_event_of_an_update(kind: Kind, previous: str | None, status: str, event: str) -> None:
    before = _update(previous) if previous else None
    assert fanout.event_of(_incident(kind), _update(status), before) == event


async def test_maintenance_start_goes_out_by_sms(db: Database, settings: Settings) -> None:
    _, admin = await make_actor(db, Role.admin)
    async with db.session() as session:
        component = await make_component(session, "Database")
        sms = await make_subscriber(session, channel=Channel.sms)
        window = await make_maintenance(session, admin, [component.id])
    await run_jobs(db, settings)
    scheduled = await _latest_update(db, window.id)
    assert sms.id not in {r.recipient for r in await deliveries_of(db, f"update:{scheduled.id}")}
    async with db.session() as session:
        loaded = await incidents.get_incident(session, window.id)
        await maintenance.start(session, admin, loaded)
    await run_jobs(db, settings)
    started = await _latest_update(db, window.id)
    assert started.status == "in_progress"
    assert sms.id in {r.recipient for r in await deliveries_of(db, f"update:{started.id}")}


async def test_ten_thousand_subscribers_expand_in_seconds(db: Database, settings: Settings) -> None:
    _, admin = await make_actor(db, Role.admin)
    async with db.session() as session:
        await make_subscribers(session, 10_000)
        incident = await make_incident(session, admin)
    began = time.perf_counter()
    await run_jobs(db, settings)
    took = time.perf_counter() - began
    update = await _latest_update(db, incident.id)
    async with db.sessionmaker() as session:
        count = await session.scalar(select(func.count()).where(Delivery.subject == f"update:{update.id}"))
    assert count == 10_000
    assert took < 10, f"expanding 10,000 subscribers took {took:.1f} s"


async def test_an_update_reaches_email_and_webhook_subscribers_through_the_real_channels(
    db: Database, settings: Settings
) -> None:
    """The whole path: publish → fan-out job → delivery worker → aiosmtpd and an HTTP receiver."""
    settings = settings.model_copy(
        update={
            "smtp_host": "127.0.0.1",
            "smtp_port": worker_port(18120),
            "allow_private_webhooks": True,
            "smtp_connections": 4,
        }
    )
    async with SmtpSink(worker_port(18120)) as sink, HttpReceiver(worker_port(18121)) as receiver:
        _, admin = await make_actor(db, Role.admin)
        async with db.session() as session:
            await make_subscribers(session, 30)
            hooks = await make_subscribers(
                session, 10, channel=Channel.webhook, address=lambda i: receiver.url(f"/hook/{i}")
            )
            incident = await make_incident(session, admin, body="Sign-ins fail for SSO users.")
        runtime = Runtime(settings, db, ChangeWatcher(db, interval=1.0), JobRunner(db))
        await run_jobs(db, settings)
        update = await _latest_update(db, incident.id)
        async with notify_tasks.delivery_worker(runtime) as worker:
            # A worker holds a few of one endpoint's deliveries at first and puts the rest back
            # for a second or so: run it until everything is through.
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                await worker.run_once()
                rows = await deliveries_of(db, f"update:{update.id}")
                if all(r.state == DeliveryState.delivered for r in rows):
                    break
                await asyncio.sleep(0.2)
        assert len(rows) == 40 and all(r.state == DeliveryState.delivered for r in rows), Counter(
            (r.channel, r.state, r.last_error) for r in rows
        )
        assert len(sink.messages()) == 30
        assert "Sign-ins fail for SSO users." in sink.messages()[0].message.get_body(("plain",)).get_content()
        assert len(receiver.received()) == 10
        ids = {r.headers["webhook-id"] for r in receiver.received()}
        assert ids == {r.message_id for r in rows if r.channel == Channel.webhook}
        assert {r.recipient for r in rows if r.channel == Channel.webhook} == set(hooks)
