"""The next-update promise through the job runner: reminder before, alarms after, silence once kept.

The clock is driven by moving due times into the past and running what is due.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update

from crisisdesk.auth.models import Role
from crisisdesk.comms import promises, tasks
from crisisdesk.config import Settings
from crisisdesk.incident import service as incidents
from crisisdesk.incident.models import Incident, TimelineEvent, UpdatePromise
from crisisdesk.kit.db import Database
from crisisdesk.kit.jobs import Job, JobRunner
from crisisdesk.kit.time import utcnow
from crisisdesk.notify.models import Delivery
from tests.fixtures.auth import make_actor
from tests.fixtures.incident import make_incident

SLACK = "https://hooks.slack.example/services/T0/B0/responders"
# Declaring also records on-call's mobilise job; these tests count comms' timers alone.
ONCALL = (incidents.MOBILISE_JOB,)


async def _make_due(db: Database, key: str) -> None:
    async with db.session() as s:
        changed = await s.execute(
            update(Job).where(Job.key == key, Job.finished_at.is_(None)).values(due_at=utcnow() - timedelta(seconds=1))
        )
        assert changed.rowcount == 1, f"no pending job {key}"  # type: ignore[attr-defined]


async def _events(db: Database, incident_id: str, kind: str) -> list[TimelineEvent]:
    async with db.session() as s:
        return list(
            await s.scalars(
                select(TimelineEvent)
                .where(TimelineEvent.incident_id == incident_id, TimelineEvent.kind == kind)
                .order_by(TimelineEvent.id)
            )
        )


async def _reminders(db: Database, incident_id: str) -> list[Delivery]:
    async with db.session() as s:
        return list(
            await s.scalars(
                select(Delivery)
                .where(Delivery.incident_id == incident_id, Delivery.purpose == "reminder")
                .order_by(Delivery.id)
            )
        )


async def test_reminder_then_repeating_alarms_until_the_promise_is_kept(db: Database, settings: Settings) -> None:
    settings = settings.model_copy(update={"responder_slack_webhook_url": SLACK})
    runner = JobRunner(db)
    tasks.register(runner, settings)
    lead_user, lead = await make_actor(db, name="Carla Lead")
    commander, _ = await make_actor(db, name="Ivan Commander")
    await make_actor(db, Role.admin)
    async with db.session() as s:
        incident = await make_incident(
            s,
            lead,
            severity="SEV1",
            deliver_notifications=False,
            roles={"communications_lead": lead_user.id, "incident_commander": commander.id},
        )
    async with db.session() as s:
        promise = await s.scalar(select(UpdatePromise).where(UpdatePromise.incident_id == incident.id))
    assert await runner.run_due(exclude=ONCALL) == 1  # comms.promise sets the two timers
    async with db.session() as s:
        timers = {j.key: j for j in await s.scalars(select(Job).where(Job.finished_at.is_(None)))}
    remind, overdue = timers[f"promise:{promise.id}:remind"], timers[f"promise:{promise.id}:overdue"]
    assert abs((remind.due_at - (promise.due_at - timedelta(minutes=5))).total_seconds()) < 1
    assert overdue.due_at == promise.due_at
    assert await runner.run_due(exclude=ONCALL) == 0  # nothing is due yet

    await _make_due(db, f"promise:{promise.id}:remind")
    assert await runner.run_due(exclude=ONCALL) == 1
    [reminder] = await _events(db, incident.id, "promise_reminder")
    assert "due in" in reminder.summary and reminder.data["recipients"] == 3
    sent = await _reminders(db, incident.id)
    assert sorted((d.channel, d.address) for d in sent) == sorted(
        [("email", lead_user.email), ("email", commander.email), ("slack", SLACK)]
    )
    assert "due in" in sent[0].payload["subject"] and f"/console/incidents/{incident.id}" in sent[0].payload["text"]

    # The promised time passes without an update.
    async with db.session() as s:
        await s.execute(
            update(UpdatePromise).where(UpdatePromise.id == promise.id).values(due_at=utcnow() - timedelta(minutes=7))
        )
        await s.execute(
            update(Incident).where(Incident.id == incident.id).values(next_update_at=utcnow() - timedelta(minutes=7))
        )
    await _make_due(db, f"promise:{promise.id}:overdue")
    assert await runner.run_due(exclude=ONCALL) == 1
    [alarm] = await _events(db, incident.id, "promise_overdue")
    assert "overdue by 7m" in alarm.summary and alarm.data["overdue_seconds"] >= 420
    assert len(await _reminders(db, incident.id)) == 6
    # It repeats every overdue_repeat_minutes while the promise stays broken.
    async with db.session() as s:
        repeat = await s.scalar(select(Job).where(Job.key == f"promise:{promise.id}:overdue:1"))
        assert repeat.finished_at is None
        assert timedelta(minutes=9) < repeat.due_at - utcnow() <= timedelta(minutes=10)
    await _make_due(db, f"promise:{promise.id}:overdue:1")
    assert await runner.run_due(exclude=ONCALL) == 1
    assert len(await _events(db, incident.id, "promise_overdue")) == 2
    assert len(await _reminders(db, incident.id)) == 9
    async with db.session() as s:
        kept = await s.get(UpdatePromise, promise.id)
        assert kept.reminded_at is not None and kept.alarmed_at is not None

    # The Communications Lead posts: the promise is kept (late), and the alarms fall silent.
    async with db.session() as s:
        loaded = await incidents.get_incident(s, incident.id)
        await incidents.post_update(
            s, lead, loaded, status="identified", body="We found the cause.", deliver_notifications=False
        )
    async with db.session() as s:
        kept = await s.get(UpdatePromise, promise.id)
        assert kept.kept_at is not None and kept.overdue_seconds >= 420
    await _make_due(db, f"promise:{promise.id}:overdue:2")
    await runner.run_due(exclude=ONCALL)  # the stale repeat and the new promise's comms.promise
    assert len(await _events(db, incident.id, "promise_overdue")) == 2
    async with db.session() as s:
        history = await promises.history(s, incident.id)
    assert len(history.promises) == 2 and history.late == 1
    assert history.summary.startswith("2 promises, 1 late by 7m")


async def test_a_promise_already_close_is_reminded_at_once_and_resolved_incidents_stay_quiet(
    db: Database, settings: Settings
) -> None:
    settings = settings.model_copy(update={"reminder_lead_minutes": 30})  # longer than SEV1's 15-minute cadence
    runner = JobRunner(db)
    tasks.register(runner, settings)
    lead_user, lead = await make_actor(db)
    async with db.session() as s:
        incident = await make_incident(s, lead, severity="SEV1", deliver_notifications=False)
    assert await runner.run_due(exclude=ONCALL) == 1  # comms.promise
    assert await runner.run_due(exclude=ONCALL) == 1  # the reminder is already due
    [event] = await _events(db, incident.id, "promise_reminder")
    assert [d.address for d in await _reminders(db, incident.id)] == [lead_user.email]
    async with db.session() as s:
        loaded = await incidents.get_incident(s, incident.id)
        await incidents.post_update(s, lead, loaded, status="resolved", body="Fixed.", deliver_notifications=False)
        promise = await s.scalar(select(UpdatePromise).where(UpdatePromise.incident_id == incident.id))
    async with db.session() as s:
        # The resolving update cancelled the timers; an alarm scheduled by hand finds nothing to do.
        assert await s.scalar(select(Job).where(Job.key == f"promise:{promise.id}:overdue")) is None
    await promises_run_overdue(db, settings, promise.id)
    assert await _events(db, incident.id, "promise_overdue") == []
    assert event.data["recipients"] == 1


async def promises_run_overdue(db: Database, settings: Settings, promise_id: int) -> None:
    async with db.session() as s:
        await promises.run_overdue(s, {"promise_id": promise_id, "repeat": 0}, settings=settings)
