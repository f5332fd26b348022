"""Pages: the frozen policy, notifying by each user's rules on real peers, escalation, repeats, acknowledgement.

The clock is driven by moving a timer's due time into the past and running what is due.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook

from crisisdesk.auth.models import Role
from crisisdesk.config import Settings
from crisisdesk.incident.models import TimelineEvent
from crisisdesk.kit.db import Database
from crisisdesk.kit.errors import InvalidInput, NotFound
from crisisdesk.kit.jobs import JobRunner
from crisisdesk.kit.runtime import Runtime
from crisisdesk.kit.watch import ChangeWatcher
from crisisdesk.notify import tasks as notify_tasks
from crisisdesk.notify.models import Delivery, DeliveryState
from crisisdesk.oncall import paging
from crisisdesk.oncall.models import ContactKind, EscalationPolicy, Page, PageEvent, PageStatus, Urgency
from tests.fixtures.auth import make_actor, make_user
from tests.fixtures.incident import make_incident
from tests.fixtures.notify import run_jobs
from tests.fixtures.paging import (
    level,
    make_contact,
    make_due,
    make_policy,
    make_rule,
    make_schedule,
    pending_job,
    whsec,
)
from tests.fixtures.peers import HttpReceiver, SmtpSink
from tests.fixtures.server import free_port


async def _deliveries(db: Database, page_id: str) -> list[Delivery]:
    async with db.sessionmaker() as s:
        rows = await s.scalars(select(Delivery).where(Delivery.subject.like(f"page:{page_id}:%")).order_by(Delivery.id))
        return list(rows)


async def _events(db: Database, page_id: str) -> list[PageEvent]:
    async with db.sessionmaker() as s:
        return await paging.events_of(s, page_id)


async def _page(db: Database, page_id: str) -> Page:
    async with db.sessionmaker() as s:
        page = await s.get(Page, page_id)
        assert page is not None
        return page


async def test_a_page_freezes_its_policy_and_notifies_level_one_users_and_whoever_is_on_call(
    db: Database, settings: Settings
) -> None:
    _, actor = await make_actor(db, name="Dana Declarer")
    async with db.session() as s:
        direct = await make_user(s, name="Uma User")
        oncall = await make_user(s, name="Otto Oncall")
        later = await make_user(s, name="Lena Later")
        schedule = await make_schedule(s, oncall, name="Primary SRE")
        policy = await make_policy(
            s,
            level(("user", direct.id), ("schedule", schedule.id), timeout=5),
            level(("user", later.id), timeout=10),
            name="Identity outage",
            repeats=1,
        )
        incident = await make_incident(s, actor, severity="SEV2")
    async with db.session() as s:
        page = await paging.start_page(
            s, escalation_policy_id=policy.id, title="Sign-in is failing", incident_id=incident.id, actor=actor
        )
    # Editing the policy afterwards does not reach the running page.
    async with db.session() as s:
        stored = await s.get(EscalationPolicy, policy.id)
        assert stored is not None
        stored.levels = [level(("user", later.id), timeout=1)]
        stored.repeats = 0
        stored.name = "Renamed"
    page = await _page(db, page.id)
    assert page.policy["name"] == "Identity outage"
    assert page.policy["repeats"] == 1
    assert [t["id"] for t in page.policy["levels"][0]["targets"]] == [direct.id, schedule.id]
    assert page.status == PageStatus.triggered and page.level == 0 and page.next_escalation_at is not None

    deliveries = await _deliveries(db, page.id)
    # Neither has notification rules: each gets an email at the login address, with the ack link.
    assert sorted(d.address for d in deliveries) == sorted([direct.email, oncall.email])
    assert {d.subject for d in deliveries} == {f"page:{page.id}:0:0"}
    assert all(d.channel == "email" and d.purpose == "page" for d in deliveries)
    notified = [e for e in await _events(db, page.id) if e.kind == "notified"]
    assert {e.user_id for e in notified} == {direct.id, oncall.id}
    job = await pending_job(db, paging.escalate_key(page.id))
    assert job is not None and job.kind == paging.ESCALATE
    assert abs((job.due_at - page.started_at).total_seconds() - 300) < 5

    async with db.sessionmaker() as s:
        timeline = list(await s.scalars(select(TimelineEvent).where(TimelineEvent.incident_id == incident.id)))
    summaries = [e.summary for e in timeline]
    assert any("Paging Identity outage" in t for t in summaries)
    assert "Paged Identity outage: Otto Oncall via email" in summaries


async def test_escalation_moves_level_by_level_repeats_then_is_exhausted(db: Database, settings: Settings) -> None:
    async with db.session() as s:
        first = await make_user(s, name="First Responder")
        second = await make_user(s, name="Second Responder")
        policy = await make_policy(
            s, level(("user", first.id), timeout=1), level(("user", second.id), timeout=1), repeats=1
        )
    async with db.session() as s:
        page = await paging.start_page(s, escalation_policy_id=policy.id, title="Queue backlog")
    key = paging.escalate_key(page.id)
    assert await run_jobs(db, settings) == 0  # not due yet: nothing escalates early
    steps = []
    for _ in range(3):
        await make_due(db, key)
        await run_jobs(db, settings)
        current = await _page(db, page.id)
        steps.append((current.level, current.cycle))
    assert steps == [(1, 0), (0, 1), (1, 1)]
    await make_due(db, key)
    await run_jobs(db, settings)
    assert await pending_job(db, key) is None
    kinds = [e.kind for e in await _events(db, page.id)]
    assert kinds.count("escalated") == 3 and kinds[-1] == "exhausted"
    subjects = sorted({d.subject for d in await _deliveries(db, page.id)})
    assert subjects == sorted(f"page:{page.id}:{lv}:{cy}" for lv, cy in [(0, 0), (1, 0), (0, 1), (1, 1)])
    assert (await _page(db, page.id)).status == PageStatus.triggered  # still nobody acknowledged


async def test_low_urgency_notifies_but_never_escalates(db: Database, settings: Settings) -> None:
    async with db.session() as s:
        first = await make_user(s)
        second = await make_user(s)
        policy = await make_policy(s, level(("user", first.id), timeout=1), level(("user", second.id)))
    async with db.session() as s:
        page = await paging.start_page(s, escalation_policy_id=policy.id, title="Disk 80% full", urgency=Urgency.low)
    assert await pending_job(db, paging.escalate_key(page.id)) is None
    assert [d.address for d in await _deliveries(db, page.id)] == [first.email]
    # Even a stray escalation timer does nothing to a low-urgency page.
    async with db.session() as s:
        await paging.run_escalate(s, {"page_id": page.id, "level": 0, "cycle": 0})
    assert (await _page(db, page.id)).level == 0


async def test_acknowledge_stops_the_escalation_and_the_delayed_notifications_and_is_idempotent(
    db: Database, settings: Settings
) -> None:
    async with db.session() as s:
        user = await make_user(s, name="Ria Rules")
        backup = await make_user(s)
        sms = await make_contact(s, user, ContactKind.sms, "+14155550100")
        mail = await make_contact(s, user, ContactKind.email, "ria.pager@example.com")
        await make_rule(s, mail, delay=0)
        rule = await make_rule(s, sms, delay=2)
        await make_rule(s, sms, delay=0, urgency=Urgency.low)  # another urgency: not used
        policy = await make_policy(s, level(("user", user.id)), level(("user", backup.id)))
    async with db.session() as s:
        page = await paging.start_page(s, escalation_policy_id=policy.id, title="Payments down")
    assert [(d.channel, d.address) for d in await _deliveries(db, page.id)] == [("email", "ria.pager@example.com")]
    delayed = paging.notify_key(page.id, 0, 0, rule.id)
    assert await pending_job(db, delayed) is not None

    async with db.session() as s:
        current = await paging.get_page(s, page.id)
        await paging.acknowledge(s, current, user_id=user.id, via="api")
    async with db.session() as s:
        again = await paging.acknowledge(s, await paging.get_page(s, page.id), user_id=backup.id, via="console")
        assert again.acknowledged_by_id == user.id  # the first acknowledgement stands
    assert await pending_job(db, delayed) is None
    assert await pending_job(db, paging.escalate_key(page.id)) is None
    assert await run_jobs(db, settings) == 0
    assert len(await _deliveries(db, page.id)) == 1  # no SMS, nothing to the next level
    acks = [e for e in await _events(db, page.id) if e.kind == "acknowledged"]
    assert len(acks) == 1 and acks[0].summary == "Ria Rules acknowledged via api"


async def test_a_delayed_rule_notifies_when_its_time_comes_if_still_unacknowledged(
    db: Database, settings: Settings
) -> None:
    async with db.session() as s:
        user = await make_user(s)
        sms = await make_contact(s, user, ContactKind.sms, "+14155550101")
        rule = await make_rule(s, sms, delay=3)
        policy = await make_policy(s, level(("user", user.id), timeout=30))
    async with db.session() as s:
        page = await paging.start_page(s, escalation_policy_id=policy.id, title="Late SMS")
    assert await _deliveries(db, page.id) == []
    await make_due(db, paging.notify_key(page.id, 0, 0, rule.id))
    assert await run_jobs(db, settings) == 1
    assert [(d.channel, d.address) for d in await _deliveries(db, page.id)] == [("sms", "+14155550101")]


async def test_group_acknowledge_and_resolve_pages(db: Database, settings: Settings) -> None:
    async with db.session() as s:
        user = await make_user(s)
        policy = await make_policy(s, level(("user", user.id)))
    async with db.session() as s:
        one = await paging.start_page(s, escalation_policy_id=policy.id, title="A", alert_group_id="grp1")
        two = await paging.start_page(s, escalation_policy_id=policy.id, title="B", alert_group_id="grp1")
        other = await paging.start_page(s, escalation_policy_id=policy.id, title="C", alert_group_id="grp2")
    async with db.session() as s:
        assert await paging.acknowledge_group(s, "grp1", via="alert") == 2
    async with db.session() as s:
        assert await paging.acknowledge_group(s, "grp1", via="alert") == 0
        assert await paging.resolve_pages(s, alert_group_id="grp2", via="alert resolved") == 1
    assert (await _page(db, one.id)).status == PageStatus.acknowledged
    assert (await _page(db, two.id)).status == PageStatus.acknowledged
    resolved = await _page(db, other.id)
    assert resolved.status == PageStatus.resolved and resolved.resolved_at is not None
    assert await pending_job(db, paging.escalate_key(other.id)) is None
    async with db.session() as s:
        with pytest.raises(InvalidInput) as refused:
            await paging.resolve_pages(s, via="nothing named")
        assert refused.value.field == "alert_group_id"


async def test_start_page_refuses_bad_input_by_field_and_stores_nothing(db: Database, settings: Settings) -> None:
    async with db.session() as s:
        user = await make_user(s)
        policy = await make_policy(s, level(("user", user.id)))
    tries = [
        ({"escalation_policy_id": "nope", "title": "x"}, NotFound, "escalation_policy_id"),
        ({"escalation_policy_id": policy.id, "title": "   "}, InvalidInput, "title"),
        ({"escalation_policy_id": policy.id, "title": "x", "urgency": "loud"}, InvalidInput, "urgency"),
        ({"escalation_policy_id": policy.id, "title": "x", "incident_id": "missing"}, NotFound, "incident_id"),
    ]
    for kwargs, error, field in tries:
        with pytest.raises(error) as refused:  # type: ignore[call-overload]
            async with db.session() as s:
                await paging.start_page(s, **kwargs)  # type: ignore[arg-type]
        assert refused.value.field == field, kwargs
    async with db.sessionmaker() as s:
        assert list(await s.scalars(select(Page))) == []


async def test_every_channel_reaches_a_real_peer_with_the_ack_link(db: Database, settings: Settings) -> None:
    smtp_port, http_port = free_port(), free_port()
    secret = whsec()
    base = f"http://127.0.0.1:{http_port}"
    settings = settings.model_copy(
        update={
            "smtp_host": "127.0.0.1",
            "smtp_port": smtp_port,
            "slack_bot_token": "xoxb-test-token",
            "slack_api_url": f"{base}/slack/api",
            "twilio_base_url": f"{base}/twilio",
            "twilio_account_sid": "AC123",
            "twilio_auth_token": "tw-secret",
            "twilio_from": "+14155550000",
            "allow_private_webhooks": True,
        }
    )
    async with db.session() as s:
        user = await make_user(s, name="Pat Pager", role=Role.responder)
        for kind, address, extra in [
            (ContactKind.email, "pat@example.com", {}),
            (ContactKind.sms, "+14155550199", {}),
            (ContactKind.slack_dm, "U024BE7LH", {}),
            (ContactKind.push, f"{base}/push/device-1", {"secret": secret}),
        ]:
            await make_rule(s, await make_contact(s, user, kind, address, **extra))
        policy = await make_policy(s, level(("user", user.id)))
    async with db.session() as s:
        page = await paging.start_page(s, escalation_policy_id=policy.id, title="Checkout errors at 40%")
    ack_url = f"http://status.test/pages/ack/{page.ack_token}"

    async with SmtpSink(smtp_port) as sink, HttpReceiver(http_port) as receiver:
        receiver.behave(path="/slack/api/chat.postMessage", status=200, body='{"ok": true, "ts": "1.2"}')
        receiver.behave(path="/twilio/2010-04-01/Accounts/AC123/Messages.json", status=201, body='{"sid": "SM1"}')
        runtime = Runtime(settings, db, ChangeWatcher(db, interval=1.0), JobRunner(db))
        async with notify_tasks.delivery_worker(runtime) as worker:
            assert await worker.run_once() == 4
        await sink.wait_for(1)
        await receiver.wait_for(3)
        mail = sink.messages()[0].message
        assert mail["To"] == "pat@example.com"
        assert "Checkout errors at 40%" in mail["Subject"]
        assert ack_url in mail.get_content()
        by_path = {r.path: r for r in receiver.requests}
        slack = by_path["/slack/api/chat.postMessage"]
        assert slack.headers["authorization"] == "Bearer xoxb-test-token"
        body = slack.json()
        assert body["channel"] == "U024BE7LH" and "Checkout errors" in body["text"]
        assert ack_url in str(body["blocks"])
        sms = by_path["/twilio/2010-04-01/Accounts/AC123/Messages.json"].form()
        assert sms["To"] == "+14155550199" and sms["Body"].endswith(ack_url)
        push = by_path["/push/device-1"]
        document = Webhook(secret).verify(push.body, push.headers)
        assert document["type"] == "page"
        assert document["page"]["id"] == page.id and document["page"]["ack_url"] == ack_url
        assert document["page"]["urgency"] == "high"
    states = {d.channel: d.state for d in await _deliveries(db, page.id)}
    assert states == {c: DeliveryState.delivered for c in ("email", "sms", "slack_dm", "webhook")}
