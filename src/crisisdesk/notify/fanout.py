"""Fan-out: turn one update (or one component change) into one delivery row per recipient.

The request that publishes an update commits only a ``notify.fanout`` job. The job expands it
channel by channel (:data:`FANOUT_ORDER`: webhooks, Slack, Teams and SMS before email), each in
batches ordered by subscriber id: it selects the next ``fanout_batch`` ids, writes their
deliveries with one ``INSERT … SELECT … ON CONFLICT DO NOTHING``, and schedules a continuation
job for the rest. A channel's deliveries are so written together, and each channel's lane in
the workers sends them at once, rather than as they trickle in among 100,000 emails. The
unique (subject, channel, recipient) constraint makes a batch that runs twice insert nothing
the second time.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, false, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from crisisdesk.catalog.models import Component, ComponentStatusChange
from crisisdesk.config import Settings
from crisisdesk.incident.models import (
    Incident,
    IncidentComponent,
    IncidentStatus,
    IncidentUpdate,
    Kind,
    MaintenanceStatus,
    Visibility,
)
from crisisdesk.kit import events, jobs
from crisisdesk.kit.db import UTCDateTime, dialect_insert
from crisisdesk.kit.time import utcnow
from crisisdesk.notify.models import (
    Channel,
    Delivery,
    DeliveryState,
    Purpose,
    Subscriber,
    SubscriberComponent,
    SubscriberState,
    SubscriptionScope,
)

log = logging.getLogger(__name__)

FANOUT_JOB = "notify.fanout"
COMPONENT_JOB = "notify.component"
ACCOUNT = "account"  # the recipient of the installation's own social accounts

# Channels every public update goes to; SMS only for the events in ``settings.sms_events``.
UPDATE_CHANNELS = (Channel.email, Channel.webhook, Channel.slack, Channel.teams)
# The order channels are expanded in: the quick, usually small audiences first.
FANOUT_ORDER = (Channel.webhook, Channel.slack, Channel.teams, Channel.sms, Channel.email)
EVENTS = ("create", "update", "resolve", "maintenance_scheduled", "maintenance_start", "maintenance_complete")
_CLOSED = (IncidentStatus.resolved, IncidentStatus.postmortem)
_MAINTENANCE_EVENTS: dict[str, str] = {
    MaintenanceStatus.scheduled: "maintenance_scheduled",
    MaintenanceStatus.in_progress: "maintenance_start",
    MaintenanceStatus.completed: "maintenance_complete",
}


def event_of(incident: Incident, update: IncidentUpdate, previous: IncidentUpdate | None) -> str:
    """Which kind of news an update is, given the public update before it (None for the first)."""
    status = update.status
    if incident.kind == Kind.maintenance:
        if previous is not None and previous.status == status:
            return "update"
        return _MAINTENANCE_EVENTS.get(status, "update")
    if previous is None:
        return "create"
    if status in _CLOSED and previous.status not in _CLOSED:
        return "resolve"
    return "update"


def update_channels(settings: Settings, event: str) -> list[Channel]:
    """The subscriber channels an update of this event goes to."""
    channels = list(UPDATE_CHANNELS)
    if event in settings.sms_events:
        channels.append(Channel.sms)
    return channels


def social_accounts(settings: Settings) -> list[tuple[Channel, str]]:
    """The installation's configured social accounts: (channel, where it posts)."""
    accounts: list[tuple[Channel, str]] = []
    if settings.mastodon_base_url and settings.mastodon_token:
        accounts.append((Channel.mastodon, settings.mastodon_base_url))
    if settings.x_token:
        accounts.append((Channel.x, settings.x_base_url))
    return accounts


def _audience(
    channels: Sequence[Channel], component_ids: Sequence[str], incident_id: str | None
) -> list[ColumnElement[bool]]:
    """Who follows this news: active subscribers on these channels whose scope includes it."""
    scopes: list[ColumnElement[bool]] = [Subscriber.scope == SubscriptionScope.all]
    if component_ids:
        follows = exists().where(
            SubscriberComponent.subscriber_id == Subscriber.id, SubscriberComponent.component_id.in_(component_ids)
        )
        scopes.append(and_(Subscriber.scope == SubscriptionScope.components, follows))
    if incident_id is not None:
        scopes.append(and_(Subscriber.scope == SubscriptionScope.incident, Subscriber.incident_id == incident_id))
    return [
        Subscriber.state == SubscriberState.active,
        Subscriber.channel.in_([c.value for c in channels]) if channels else false(),
        or_(*scopes),
    ]


async def _expand_batch(
    session: AsyncSession,
    *,
    batch: int,
    after: str | None,
    audience: list[ColumnElement[bool]],
    subject: str,
    purpose: Purpose,
    update_id: str | None,
    incident_id: str | None,
) -> tuple[int, str | None]:
    """Write the deliveries of the next ``batch`` subscribers after ``after``.

    Returns how many subscribers the batch covered and the last subscriber id (None when the
    batch was empty).
    """
    conditions = list(audience)
    if after is not None:
        conditions.append(Subscriber.id > after)
    ids = list(await session.scalars(select(Subscriber.id).where(*conditions).order_by(Subscriber.id).limit(batch)))
    if not ids:
        return 0, None
    last = ids[-1]
    now = utcnow()
    rows = select(
        literal(subject),
        literal(purpose.value),
        literal(update_id),
        literal(incident_id),
        Subscriber.channel,
        Subscriber.id,
        Subscriber.id,
        Subscriber.address,
        literal(DeliveryState.pending.value),
        literal(0),
        literal(now, UTCDateTime()),
        literal(now, UTCDateTime()),
    ).where(*conditions, Subscriber.id <= last)
    columns = [
        "subject",
        "purpose",
        "update_id",
        "incident_id",
        "channel",
        "recipient",
        "subscriber_id",
        "address",
        "state",
        "attempts",
        "due_at",
        "created_at",
    ]
    statement = dialect_insert(session)(Delivery).from_select(columns, rows).on_conflict_do_nothing()
    await session.execute(statement)
    return len(ids), last


async def _previous_public(session: AsyncSession, update: IncidentUpdate) -> IncidentUpdate | None:
    return await session.scalar(
        select(IncidentUpdate)
        .where(
            IncidentUpdate.incident_id == update.incident_id,
            IncidentUpdate.visibility == Visibility.public,
            IncidentUpdate.id != update.id,
            IncidentUpdate.created_at <= update.created_at,
        )
        .order_by(IncidentUpdate.created_at.desc(), IncidentUpdate.id.desc())
        .limit(1)
    )


async def _incident_components(session: AsyncSession, incident_id: str) -> list[str]:
    """The incident's components and their groups (a subscriber may follow a whole group)."""
    rows = (
        await session.execute(
            select(Component.id, Component.group_id)
            .join(IncidentComponent, IncidentComponent.component_id == Component.id)
            .where(IncidentComponent.incident_id == incident_id)
        )
    ).all()
    return sorted({r.id for r in rows} | {r.group_id for r in rows if r.group_id})


async def run_fanout(session: AsyncSession, settings: Settings, payload: dict[str, Any]) -> None:
    """Job ``notify.fanout``: write the deliveries of one public update, one batch per job."""
    update = await session.get(IncidentUpdate, payload["update_id"])
    if update is None:
        log.warning("fan-out of update %s: the update no longer exists", payload["update_id"])
        return
    if update.visibility != Visibility.public or not update.deliver_notifications:
        return
    incident = await session.get(Incident, update.incident_id)
    assert incident is not None  # the foreign key cascades
    after: str | None = payload.get("after")
    event = event_of(incident, update, await _previous_public(session, update))
    subject = f"update:{update.id}"
    if after is None:
        for channel, address in social_accounts(settings):
            statement = dialect_insert(session)(Delivery).values(
                subject=subject,
                purpose=Purpose.update.value,
                update_id=update.id,
                incident_id=incident.id,
                channel=channel.value,
                recipient=ACCOUNT,
                address=address,
                state=DeliveryState.pending.value,
                attempts=0,
                due_at=utcnow(),
                created_at=utcnow(),
            )
            await session.execute(statement.on_conflict_do_nothing())
    wanted = update_channels(settings, event)
    channels = [c for c in FANOUT_ORDER if c in wanted]
    position = next((i for i, c in enumerate(channels) if c.value == payload.get("channel")), None)
    if position is None:
        # The first job (or one written before channels were expanded in turn: starting over is
        # safe, the unique constraint skips what is there).
        position, after = 0, None
    components = await _incident_components(session, incident.id)
    room, covered = settings.fanout_batch, 0
    while position < len(channels):
        written, last = await _expand_batch(
            session,
            batch=room,
            after=after,
            audience=_audience([channels[position]], components, incident.id),
            subject=subject,
            purpose=Purpose.update,
            update_id=update.id,
            incident_id=incident.id,
        )
        covered += written
        room -= written
        if last is not None and room <= 0:
            await jobs.schedule(
                session,
                FANOUT_JOB,
                utcnow(),
                key=f"fanout:update:{update.id}:{last}",
                payload={"update_id": update.id, "channel": channels[position].value, "after": last},
            )
            break
        position, after = position + 1, None
    log.info(
        "fan-out of update %s (%s): %s subscribers from %s",
        update.id,
        event,
        covered,
        payload.get("after") or "the start",
    )
    events.record(session, f"incident:{incident.id}")


async def run_component(session: AsyncSession, settings: Settings, payload: dict[str, Any]) -> None:
    """Job ``notify.component``: a ``component_update`` delivery to every webhook subscriber following it."""
    change = await session.get(ComponentStatusChange, payload["change_id"])
    if change is None:
        log.warning("component fan-out of change %s: the change no longer exists", payload["change_id"])
        return
    component = await session.get(Component, change.component_id)
    assert component is not None
    followed = [component.id] + ([component.group_id] if component.group_id else [])
    after: str | None = payload.get("after")
    audience = _audience([Channel.webhook], followed, None)
    covered, last = await _expand_batch(
        session,
        batch=settings.fanout_batch,
        after=after,
        audience=audience,
        subject=f"component:{change.id}",
        purpose=Purpose.component,
        update_id=None,
        incident_id=None,
    )
    if last is not None and covered >= settings.fanout_batch:
        await jobs.schedule(
            session,
            COMPONENT_JOB,
            utcnow(),
            key=f"fanout:component:{change.id}:{last}",
            payload={"change_id": change.id, "after": last},
        )
