"""The delivery ledger: what must be sent is a row, written in the transaction that causes it.

Workers claim due rows under a lease (:func:`claim`), send, and write what happened in one
transaction per flush (:func:`record`): an attempt row per send and the delivery's new state
(delivered, retrying with backoff, or failed), quarantining unreachable subscribers.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Boolean, ColumnElement, Table, and_, bindparam, case, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from crisisdesk.config import Settings
from crisisdesk.kit.db import Database, UTCDateTime
from crisisdesk.kit.time import utcnow
from crisisdesk.notify.channels.base import SendResult
from crisisdesk.notify.models import (
    AttemptOutcome,
    Channel,
    Delivery,
    DeliveryAttempt,
    DeliveryState,
    Purpose,
    Subscriber,
    SubscriberState,
)


async def enqueue(
    session: AsyncSession,
    *,
    subject: str,
    purpose: Purpose,
    channel: Channel,
    recipient: str,
    address: str,
    payload: dict[str, Any] | None = None,
    incident_id: str | None = None,
    update_id: str | None = None,
    subscriber_id: str | None = None,
) -> Delivery:
    """Record one message to send; the same (subject, channel, recipient) is recorded once.

    ``payload`` carries the text of messages that are not updates: ``{"subject", "text",
    "html"}`` (confirmations, reminders).
    """
    existing = await session.scalar(
        select(Delivery).where(
            Delivery.subject == subject, Delivery.channel == channel, Delivery.recipient == recipient
        )
    )
    if existing is not None:
        return existing
    delivery = Delivery(
        subject=subject,
        purpose=purpose,
        channel=channel,
        recipient=recipient,
        address=address,
        payload=payload,
        incident_id=incident_id,
        update_id=update_id,
        subscriber_id=subscriber_id,
        due_at=utcnow(),
    )
    session.add(delivery)
    await session.flush()
    return delivery


# ------------------------------------------------------------------------------- claiming


def _claim_step(condition: ColumnElement[bool], order: Any, limit: int, *, skip_locked: bool) -> Any:
    due = select(Delivery.id).where(condition).order_by(order).limit(limit)
    if skip_locked:
        due = due.with_for_update(skip_locked=True)
    return due.scalar_subquery()


async def claim(
    db: Database,
    *,
    worker: str,
    limit: int,
    lease_seconds: float,
    now: datetime | None = None,
    channels: Sequence[str] | None = None,
    exclude: Sequence[str] = (),
) -> list[Delivery]:
    """Claim up to ``limit`` due deliveries for ``worker`` under a lease, in one transaction.

    ``channels`` limits the claim to those channels and ``exclude`` leaves some out, so a worker
    claims each channel as its own stream (a backlog of emails does not hold up webhooks).

    Due means pending or retrying with ``due_at`` passed, or sending under a lease that ran out
    (its worker died). Each step is one ``UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP
    LOCKED) RETURNING`` on PostgreSQL, so concurrent workers never hold the same row; SQLite's
    single writer makes the same statement atomic. A step per state keeps each one on the
    (state, due_at) index in order, so a claim costs the rows it takes, not the backlog.
    """
    now = now or utcnow()
    lease_until = now + timedelta(seconds=lease_seconds)
    steps: list[tuple[ColumnElement[bool], Any]] = [
        (and_(Delivery.state == DeliveryState.sending, Delivery.lease_until < now), Delivery.lease_until),
        (and_(Delivery.state == DeliveryState.retrying, Delivery.due_at <= now), Delivery.due_at),
        (and_(Delivery.state == DeliveryState.pending, Delivery.due_at <= now), Delivery.due_at),
    ]
    if channels is not None:
        steps = [(and_(condition, Delivery.channel.in_(list(channels))), order) for condition, order in steps]
    if exclude:
        steps = [(and_(condition, Delivery.channel.not_in(list(exclude))), order) for condition, order in steps]
    claimed: list[Delivery] = []
    async with db.sessionmaker() as session:
        for condition, order in steps:
            room = limit - len(claimed)
            if room <= 0:
                break
            statement = (
                update(Delivery)
                .where(Delivery.id.in_(_claim_step(condition, order, room, skip_locked=not db.is_sqlite)))
                .values(
                    state=DeliveryState.sending,
                    claimed_by=worker,
                    lease_until=lease_until,
                    attempts=Delivery.attempts + 1,
                )
                .returning(Delivery)
                .execution_options(synchronize_session=False)
            )
            claimed.extend((await session.scalars(statement)).all())
        await session.commit()
    return claimed


# ------------------------------------------------------------------------------ recording


@dataclass(frozen=True)
class Outcome:
    """What one send of one claimed delivery came to."""

    delivery: Delivery
    result: SendResult
    at: datetime  # when the send started
    duration: float  # seconds


@dataclass(frozen=True)
class Deferral:
    """A claimed delivery put back unsent (its endpoint's breaker is open, or it holds too many)."""

    delivery: Delivery
    due_at: datetime
    reason: str  # shown as the delivery's last error, so a waiting row says why
    replace_error: bool = False  # else an earlier real error stays


def backoff(attempts: int, retry_after: float | None = None) -> float:
    """Seconds before the next try: min(1 h, 5 s × 2^attempts) × uniform(0.5, 1.5), or longer if asked."""
    delay: float = min(3600.0, 5.0 * 2.0 ** min(attempts, 12)) * random.uniform(0.5, 1.5)
    if retry_after is not None and retry_after > 0:
        delay = max(delay, min(retry_after, 86_400.0))
    return delay


def next_state(
    delivery: Delivery, result: SendResult, *, settings: Settings, now: datetime
) -> tuple[DeliveryState, datetime | None, str | None]:
    """The delivery's state after this outcome, when it is due next (retrying), and its error."""
    if result.outcome == AttemptOutcome.delivered:
        return DeliveryState.delivered, None, None
    error = f"{result.code}: {result.summary}" if result.code else result.summary
    if result.outcome == AttemptOutcome.failed:
        return DeliveryState.failed, None, error
    give_up_at = delivery.created_at + timedelta(hours=settings.delivery_give_up_hours)
    if now >= give_up_at:
        hours = settings.delivery_give_up_hours
        return DeliveryState.failed, None, f"gave up after {delivery.attempts} attempts over {hours:g} h; last: {error}"
    return DeliveryState.retrying, now + timedelta(seconds=backoff(delivery.attempts, result.retry_after)), error


async def record(
    session: AsyncSession,
    *,
    worker: str,
    settings: Settings,
    outcomes: Sequence[Outcome] = (),
    deferrals: Sequence[Deferral] = (),
    now: datetime | None = None,
) -> set[str]:
    """Write a flush of results in the caller's transaction; returns the incidents touched.

    One attempt row per send and the delivery's new state, written with executemany. A row is
    changed only while this worker still holds it (claimed by it, state sending): if its lease
    ran out and another worker took it, that worker's answer counts. The attempt is recorded
    either way, since the send happened.
    """
    now = now or utcnow()
    table = cast(Table, Delivery.__table__)
    incidents: set[str] = set()
    if outcomes:
        attempts = [
            {
                "delivery_id": o.delivery.id,
                "at": o.at,
                "duration_ms": int(o.duration * 1000),
                "outcome": o.result.outcome.value,
                "code": (o.result.code or "")[:20] or None,
                "summary": o.result.summary[:2000],
                "worker": worker,
            }
            for o in outcomes
        ]
        # Core, not the ORM entity: the ORM's bulk path costs more than the statement itself.
        await session.execute(insert(cast(Table, DeliveryAttempt.__table__)), attempts)
        changes: list[dict[str, Any]] = []
        quarantine: list[dict[str, Any]] = []
        for o in outcomes:
            state, due_at, error = next_state(o.delivery, o.result, settings=settings, now=now)
            changes.append(
                {
                    "_id": o.delivery.id,
                    "_state": state.value,
                    "_due_at": due_at or o.delivery.due_at,
                    "_delivered_at": now if state == DeliveryState.delivered else None,
                    "_failed_at": now if state == DeliveryState.failed else None,
                    "_last_error": error[:2000] if error else None,
                }
            )
            if o.delivery.incident_id:
                incidents.add(o.delivery.incident_id)
            if o.result.unreachable and o.delivery.subscriber_id:
                quarantine.append({"_id": o.delivery.subscriber_id, "_error": (error or "")[:2000]})
        statement = (
            update(table)
            .where(table.c.id == bindparam("_id"), table.c.claimed_by == worker, table.c.state == "sending")
            .values(
                state=bindparam("_state"),
                due_at=bindparam("_due_at", type_=UTCDateTime()),
                delivered_at=bindparam("_delivered_at", type_=UTCDateTime()),
                failed_at=bindparam("_failed_at", type_=UTCDateTime()),
                last_error=bindparam("_last_error"),
                lease_until=None,
            )
        )
        await session.execute(statement, changes)
        if quarantine:
            await _quarantine(session, quarantine, settings=settings, now=now)
    if deferrals:
        rows = [
            {"_id": d.delivery.id, "_due_at": d.due_at, "_reason": d.reason[:2000], "_replace": d.replace_error}
            for d in deferrals
        ]
        statement = (
            update(table)
            .where(table.c.id == bindparam("_id"), table.c.claimed_by == worker, table.c.state == "sending")
            .values(
                state=DeliveryState.retrying.value,
                due_at=bindparam("_due_at", type_=UTCDateTime()),
                attempts=table.c.attempts - 1,
                lease_until=None,
                last_error=case(
                    (
                        and_(bindparam("_replace", type_=Boolean()).is_(False), table.c.last_error.is_not(None)),
                        table.c.last_error,
                    ),
                    else_=bindparam("_reason"),
                ),
            )
        )
        await session.execute(statement, rows)
        incidents.update(d.delivery.incident_id for d in deferrals if d.delivery.incident_id)
    return incidents


async def _quarantine(session: AsyncSession, rows: list[dict[str, Any]], *, settings: Settings, now: datetime) -> None:
    table = cast(Table, Subscriber.__table__)
    statement = (
        update(table)
        .where(table.c.id == bindparam("_id"), table.c.state != SubscriberState.quarantined.value)
        .values(
            state=SubscriberState.quarantined.value,
            quarantined_at=now,
            purge_at=now + timedelta(days=settings.quarantine_purge_days),
            last_error=bindparam("_error"),
        )
    )
    await session.execute(statement, rows)


async def bring_forward(session: AsyncSession, ids: Sequence[int], *, now: datetime | None = None) -> int:
    """Make these deliveries due now if they still wait to retry later; returns how many did.

    The worker calls it when an endpoint answers again after failures, so rows waiting out
    their backoff (or an open circuit) for that endpoint go at once rather than minutes later.
    """
    now = now or utcnow()
    table = cast(Table, Delivery.__table__)
    moved = 0
    for start in range(0, len(ids), 500):
        chunk = list(ids[start : start + 500])
        result = await session.execute(
            update(table)
            .where(table.c.id.in_(chunk), table.c.state == DeliveryState.retrying.value, table.c.due_at > now)
            .values(due_at=now)
        )
        moved += cast(Any, result).rowcount or 0
    return moved
