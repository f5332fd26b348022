"""Read side of the ledger: who was told, where, when, and what the provider said."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from crisisdesk.incident.models import Incident, IncidentUpdate, Visibility
from crisisdesk.kit.errors import InvalidInput, NotFound
from crisisdesk.notify.models import Channel, Delivery, DeliveryState

# What the console counts: "pending" covers rows waiting and rows being sent right now.
BUCKETS = ("delivered", "pending", "retrying", "failed")
_BUCKET_OF = {
    DeliveryState.pending: "pending",
    DeliveryState.sending: "pending",
    DeliveryState.retrying: "retrying",
    DeliveryState.delivered: "delivered",
    DeliveryState.failed: "failed",
}
_STATES_OF = {
    "pending": (DeliveryState.pending, DeliveryState.sending),
    "sending": (DeliveryState.sending,),
    "retrying": (DeliveryState.retrying,),
    "delivered": (DeliveryState.delivered,),
    "failed": (DeliveryState.failed,),
}
STATE_FILTERS = tuple(_STATES_OF)
CHANNEL_ORDER = [c.value for c in Channel]


@dataclass
class Counts:
    """Deliveries of one channel (or all of them) by console bucket."""

    channel: str
    delivered: int = 0
    pending: int = 0
    retrying: int = 0
    failed: int = 0

    @property
    def total(self) -> int:
        return self.delivered + self.pending + self.retrying + self.failed

    def add(self, bucket: str, count: int) -> None:
        setattr(self, bucket, getattr(self, bucket) + count)

    def as_dict(self) -> dict[str, int]:
        return {b: getattr(self, b) for b in BUCKETS} | {"total": self.total}


@dataclass
class UpdateDeliveries:
    """One public update and its deliveries per channel."""

    update: IncidentUpdate
    channels: list[Counts] = field(default_factory=list)
    total: Counts = field(default_factory=lambda: Counts("all"))


async def _counts(session: AsyncSession, update_ids: list[str]) -> dict[str, dict[str, Counts]]:
    if not update_ids:
        return {}
    rows = await session.execute(
        select(Delivery.update_id, Delivery.channel, Delivery.state, func.count())
        .where(Delivery.update_id.in_(update_ids))
        .group_by(Delivery.update_id, Delivery.channel, Delivery.state)
    )
    found: dict[str, dict[str, Counts]] = {}
    for update_id, channel, state, count in rows:
        per_channel = found.setdefault(str(update_id), {})
        per_channel.setdefault(channel, Counts(channel)).add(_BUCKET_OF[DeliveryState(state)], count)
    return found


def _ordered(per_channel: dict[str, Counts]) -> list[Counts]:
    return sorted(per_channel.values(), key=lambda c: CHANNEL_ORDER.index(c.channel))


def _summed(channels: list[Counts]) -> Counts:
    total = Counts("all")
    for counts in channels:
        for bucket in BUCKETS:
            total.add(bucket, getattr(counts, bucket))
    return total


async def incident_deliveries(session: AsyncSession, incident_id: str) -> list[UpdateDeliveries]:
    """Each public update of an incident, newest first, with its delivery counts per channel."""
    if "\x00" in incident_id or await session.get(Incident, incident_id) is None:
        raise NotFound("no such incident", field="incident_id")
    updates = list(
        await session.scalars(
            select(IncidentUpdate)
            .where(IncidentUpdate.incident_id == incident_id, IncidentUpdate.visibility == Visibility.public)
            .order_by(IncidentUpdate.created_at.desc(), IncidentUpdate.id.desc())
        )
    )
    counts = await _counts(session, [u.id for u in updates])
    result = []
    for update in updates:
        channels = _ordered(counts.get(update.id, {}))
        result.append(UpdateDeliveries(update, channels, _summed(channels)))
    return result


async def update_deliveries(session: AsyncSession, update_id: str) -> UpdateDeliveries:
    """One update's delivery counts per channel (404 naming ``update_id`` if there is no such update)."""
    # A NUL is in no id, and PostgreSQL refuses one in a query (the app answered 503).
    update = await session.get(IncidentUpdate, update_id) if "\x00" not in update_id else None
    if update is None or update.visibility != Visibility.public:
        raise NotFound("no such public update", field="update_id")
    channels = _ordered((await _counts(session, [update_id])).get(update_id, {}))
    return UpdateDeliveries(update, channels, _summed(channels))


def parse_filters(channel: str | None, state: str | None) -> tuple[Channel | None, str | None]:
    """Check the drill-down's filters; an unknown one is refused naming the field."""
    chosen_channel = None
    if channel:
        try:
            chosen_channel = Channel(channel)
        except ValueError:
            raise InvalidInput(
                f"unknown channel {channel!r}; use one of {', '.join(CHANNEL_ORDER)}", field="channel"
            ) from None
    if state and state not in _STATES_OF:
        raise InvalidInput(f"unknown state {state!r}; use one of {', '.join(STATE_FILTERS)}", field="state")
    return chosen_channel, state or None


async def list_deliveries(
    session: AsyncSession,
    update_id: str,
    *,
    channel: str | None = None,
    state: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[int, list[Delivery]]:
    """One page of an update's deliveries (with their attempts) and how many match in all."""
    chosen_channel, chosen_state = parse_filters(channel, state)
    conditions = [Delivery.update_id == update_id]
    if chosen_channel is not None:
        conditions.append(Delivery.channel == chosen_channel)
    if chosen_state is not None:
        conditions.append(Delivery.state.in_(_STATES_OF[chosen_state]))
    total = int(await session.scalar(select(func.count()).select_from(Delivery).where(*conditions)) or 0)
    rows = await session.scalars(
        select(Delivery)
        .where(*conditions)
        .options(selectinload(Delivery.attempt_rows))
        .order_by(Delivery.id)
        .limit(limit)
        .offset(offset)
    )
    return total, list(rows)


def bucket_of(state: str) -> str:
    """The console bucket of a delivery state."""
    return _BUCKET_OF[DeliveryState(state)]
