"""The next-update promise is kept: a reminder before it is due, an alarm when it is overdue.

Every public update opens an ``UpdatePromise`` and records the job ``comms.promise``; its handler
sets two timers (``comms.remind`` at due − lead, ``comms.overdue`` at due). The next public
update closes the promise and cancels the timers; a timer that fires for a promise already kept
(or an incident already resolved) does nothing. The overdue alarm repeats until the promise is
kept. Reminders go to the Incident Commander and the Communications Lead by email, and to the
responders' Slack channel when one is configured, through the delivery ledger.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crisisdesk.auth.models import User
from crisisdesk.config import Settings
from crisisdesk.incident import service as incidents
from crisisdesk.incident.models import Incident, IncidentRole, IncidentUpdate, RoleAssignment, UpdatePromise
from crisisdesk.kit import jobs
from crisisdesk.kit.pages import humanize
from crisisdesk.kit.time import utcnow
from crisisdesk.notify import ledger
from crisisdesk.notify.models import Channel, Purpose
from crisisdesk.statuspage.public import shortlink

PROMISE = incidents.PROMISE_JOB
REMIND = "comms.remind"
OVERDUE = "comms.overdue"
RESPONDER_ROLES = (IncidentRole.incident_commander, IncidentRole.communications_lead)


def remind_key(promise_id: int) -> str:
    return f"promise:{promise_id}:remind"


def overdue_key(promise_id: int, repeat: int = 0) -> str:
    # Repeats get keys of their own: a handler must not reschedule the job it is running.
    return f"promise:{promise_id}:overdue" if repeat == 0 else f"promise:{promise_id}:overdue:{repeat}"


async def _open_promise(session: AsyncSession, payload: dict[str, Any]) -> tuple[UpdatePromise, Incident] | None:
    promise = await session.get(UpdatePromise, int(payload["promise_id"]))
    if promise is None or promise.kept_at is not None:
        return None
    incident = await session.get(Incident, promise.incident_id)
    if incident is None or not incident.is_open:
        return None
    return promise, incident


async def run_promise(session: AsyncSession, payload: dict[str, Any], *, settings: Settings) -> None:
    """Set the reminder and the overdue alarm of a new promise."""
    found = await _open_promise(session, payload)
    if found is None:
        return
    promise, _ = found
    now = utcnow()
    remind_at = max(now, promise.due_at - timedelta(minutes=settings.reminder_lead_minutes))
    await jobs.schedule(session, REMIND, remind_at, key=remind_key(promise.id), payload={"promise_id": promise.id})
    await jobs.schedule(
        session, OVERDUE, promise.due_at, key=overdue_key(promise.id), payload={"promise_id": promise.id, "repeat": 0}
    )


async def _recipients(session: AsyncSession, promise: UpdatePromise, incident: Incident) -> list[User]:
    holders = list(
        await session.scalars(
            select(User)
            .join(RoleAssignment, RoleAssignment.user_id == User.id)
            .where(
                RoleAssignment.incident_id == incident.id,
                RoleAssignment.ended_at.is_(None),
                RoleAssignment.role.in_([r.value for r in RESPONDER_ROLES]),
                User.is_active.is_(True),
            )
        )
    )
    if not holders:
        # Nobody holds either role: the person who made the promise hears about it.
        author_id = await session.scalar(select(IncidentUpdate.author_id).where(IncidentUpdate.id == promise.update_id))
        author = await session.get(User, author_id) if author_id else None
        holders = [author] if author is not None and author.is_active else []
    unique = {u.id: u for u in holders}
    return list(unique.values())


async def _notify(
    session: AsyncSession,
    settings: Settings,
    promise: UpdatePromise,
    incident: Incident,
    *,
    subject_key: str,
    subject: str,
    text: str,
) -> int:
    sent = 0
    payload = {"subject": subject, "text": text, "html": None}
    for user in await _recipients(session, promise, incident):
        await ledger.enqueue(
            session,
            subject=subject_key,
            purpose=Purpose.reminder,
            channel=Channel.email,
            recipient=user.id,
            address=user.email,
            payload=payload,
            incident_id=incident.id,
        )
        sent += 1
    if settings.responder_slack_webhook_url:
        await ledger.enqueue(
            session,
            subject=subject_key,
            purpose=Purpose.reminder,
            channel=Channel.slack,
            recipient="responders",
            address=settings.responder_slack_webhook_url,
            payload={"subject": subject, "text": f"*{subject}*\n{text}", "html": None},
            incident_id=incident.id,
        )
        sent += 1
    return sent


def _console_link(settings: Settings, incident: Incident) -> str:
    return f"{settings.base_url.rstrip('/')}/console/incidents/{incident.id}"


async def run_remind(session: AsyncSession, payload: dict[str, Any], *, settings: Settings) -> None:
    """Before the promise is due: a timeline event and a message to the IC and the Communications Lead."""
    found = await _open_promise(session, payload)
    if found is None:
        return
    promise, incident = found
    now = utcnow()
    due = promise.due_at
    when = f"in {humanize(due - now)}" if due > now else f"{humanize(now - due)} ago"
    subject = f"INC-{incident.number}: the next public update is due {when}"
    text = (
        f"The next public update on “{incident.name}” was promised for {due:%H:%M} UTC ({when}).\n"
        f"Write it from a template: {_console_link(settings, incident)}\n"
        f"Status page: {shortlink(settings.base_url, incident)}"
    )
    recipients = await _notify(
        session,
        settings,
        promise,
        incident,
        subject_key=f"reminder:{incident.id}:{promise.id}:remind",
        subject=subject,
        text=text,
    )
    promise.reminded_at = now
    await incidents.timeline(
        session,
        incident,
        None,
        "promise_reminder",
        f"Reminder: the next public update is due {when}",
        promise_id=promise.id,
        due_at=due.isoformat(),
        recipients=recipients,
    )


async def run_overdue(session: AsyncSession, payload: dict[str, Any], *, settings: Settings) -> None:
    """The promise has passed: alarm on the timeline and to the responders, and again every few minutes."""
    found = await _open_promise(session, payload)
    if found is None:
        return
    promise, incident = found
    now = utcnow()
    repeat = int(payload.get("repeat", 0))
    late = humanize(now - promise.due_at)
    subject = f"INC-{incident.number}: public update overdue by {late}"
    text = (
        f"The next public update on “{incident.name}” was promised for {promise.due_at:%H:%M} UTC and is overdue "
        f"by {late}. Customers are waiting: {_console_link(settings, incident)}"
    )
    recipients = await _notify(
        session,
        settings,
        promise,
        incident,
        subject_key=f"reminder:{incident.id}:{promise.id}:overdue:{repeat}",
        subject=subject,
        text=text,
    )
    promise.alarmed_at = now
    await incidents.timeline(
        session,
        incident,
        None,
        "promise_overdue",
        f"The public update promised for {promise.due_at:%H:%M} UTC is overdue by {late}",
        promise_id=promise.id,
        overdue_seconds=int((now - promise.due_at).total_seconds()),
        recipients=recipients,
        repeat=repeat,
    )
    await jobs.schedule(
        session,
        OVERDUE,
        now + timedelta(minutes=settings.overdue_repeat_minutes),
        key=overdue_key(promise.id, repeat + 1),
        payload={"promise_id": promise.id, "repeat": repeat + 1},
    )


@dataclass
class PromiseHistory:
    """An incident's promises, and how well they were kept."""

    promises: list[UpdatePromise]
    late: int
    late_seconds: int
    open: UpdatePromise | None

    @property
    def summary(self) -> str:
        count = len(self.promises)
        if not count:
            return "No promises yet"
        text = f"{count} promise{'s' if count != 1 else ''}"
        if self.late:
            text += f", {self.late} late by {humanize(timedelta(seconds=self.late_seconds))} in all"
        else:
            text += ", none late" if any(p.kept_at for p in self.promises) else ""
        return text

    def overdue_by(self, now: datetime) -> timedelta | None:
        if self.open is None or self.open.due_at >= now:
            return None
        return now - self.open.due_at


async def history(session: AsyncSession, incident_id: str) -> PromiseHistory:
    """Every promise of the incident, oldest first, with the late ones counted."""
    rows = list(
        await session.scalars(
            select(UpdatePromise).where(UpdatePromise.incident_id == incident_id).order_by(UpdatePromise.id)
        )
    )
    late = [p for p in rows if p.overdue_seconds]
    now = utcnow()
    current = next((p for p in rows if p.kept_at is None), None)
    late_seconds = sum(p.overdue_seconds or 0 for p in late)
    if current is not None and current.due_at < now:
        # The open promise already broken counts too, as far as it has run.
        late_seconds += int((now - current.due_at).total_seconds())
        late.append(current)
    return PromiseHistory(rows, len(late), late_seconds, current)
