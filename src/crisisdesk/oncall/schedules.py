"""On-call schedules: stored layers and overrides, resolved by ``oncall.rotation``.

A schedule is stored as rows (``OnCallSchedule``, ``ScheduleLayer``, ``ScheduleOverride``) and
answered by building a ``rotation.Schedule`` from them, so what is stored answers exactly what the
rotation arithmetic says. Layer and override users are user ids.

Who may do what: anyone with ``read`` sees schedules; ``admin`` creates, edits and deletes them;
``write`` (responders) adds and removes overrides, so someone can cover a colleague's shift.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from crisisdesk.auth.models import Scope, User
from crisisdesk.auth.service import Actor
from crisisdesk.kit.errors import Conflict, InvalidInput, NotFound
from crisisdesk.kit.time import utcnow
from crisisdesk.oncall import policies, rotation
from crisisdesk.oncall.models import OnCallSchedule, ScheduleLayer, ScheduleOverride

MAX_NAME = 200
MAX_DESCRIPTION = 5_000
MAX_LAYERS = 10
MAX_LAYER_USERS = 100
MAX_CUSTOM_HOURS = 24 * 31
MAX_OVERRIDE = timedelta(days=31)
MAX_SHIFTS_WINDOW = timedelta(days=90)
ROTATIONS = ("daily", "weekly", "custom")


@dataclass(frozen=True)
class LayerInput:
    """A layer as a person enters it: ``start`` is a wall time in ``time_zone`` unless it carries an offset."""

    name: str
    users: Sequence[str]
    start: datetime
    time_zone: str
    rotation: str
    length_hours: int | None = None


@dataclass(frozen=True)
class OnCallNow:
    """Who is on call on a schedule at an instant, and until when (None: to the end of the window looked at)."""

    schedule: OnCallSchedule
    user: User | None
    until: datetime | None


def zone(name: str, *, field: str = "time_zone") -> ZoneInfo:
    """The IANA zone called `name`, or InvalidInput naming `field`."""
    if not isinstance(name, str) or not name or "\x00" in name or len(name) > 64:
        raise InvalidInput("a time zone is required, an IANA name such as Europe/Berlin", field=field)
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise InvalidInput(f"unknown time zone {name!r}; use an IANA name such as Europe/Berlin", field=field) from None


# Instants outside these years are refused: the look-ahead past one (90 days of shifts) must
# stay inside the calendar.
MIN_YEAR, MAX_YEAR = 1970, 9000


def in_range(value: datetime, *, field: str) -> datetime:
    """`value` (aware) unless it falls outside MIN_YEAR..MAX_YEAR."""
    if not MIN_YEAR <= value.year <= MAX_YEAR:
        raise InvalidInput(f"{field} must be between the years {MIN_YEAR} and {MAX_YEAR}", field=field)
    return value


def aware(value: datetime, *, field: str) -> datetime:
    """`value` in UTC; a naive datetime is refused because its instant would be a guess."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInput(f"{field} must carry a time zone offset, e.g. 2026-03-02T09:00:00+01:00", field=field)
    if not MIN_YEAR <= value.year <= MAX_YEAR:  # before converting: 9999-12-31 -01:00 has no UTC
        raise InvalidInput(f"{field} must be between the years {MIN_YEAR} and {MAX_YEAR}", field=field)
    return in_range(value.astimezone(UTC), field=field)


def local_to_utc(value: datetime, time_zone: str, *, field: str, zone_field: str = "time_zone") -> datetime:
    """A wall time in `time_zone` as a UTC instant; an aware value is taken as it is.

    A wall time the clock skips (the spring-forward hour) is refused rather than guessed.
    """
    if value.tzinfo is not None and value.utcoffset() is not None:
        return aware(value, field=field)
    in_range(value, field=field)
    tz = zone(time_zone, field=zone_field)
    local = value.replace(tzinfo=tz, fold=0)
    instant = local.astimezone(UTC)
    if instant.astimezone(tz).replace(tzinfo=None) != value:
        wall = value.isoformat(timespec="minutes")
        raise InvalidInput(f"{wall} does not exist in {time_zone} (the clocks skip it); pick another time", field=field)
    return in_range(instant, field=field)


def _check_id(value: str, what: str, field: str) -> None:
    if not isinstance(value, str) or "\x00" in value or len(value) > 64:
        raise NotFound(f"no {what} with that id", field=field)


def _clean_name(name: str, *, field: str = "name") -> str:
    name = (name or "").strip()
    if not name:
        raise InvalidInput("a name is required", field=field)
    if "\x00" in name:
        raise InvalidInput("the name must not contain a NUL character", field=field)
    if len(name) > MAX_NAME:
        raise InvalidInput(f"the name must be at most {MAX_NAME} characters", field=field)
    return name


def _clean_description(description: str) -> str:
    description = (description or "").strip()
    if "\x00" in description:
        raise InvalidInput("the description must not contain a NUL character", field="description")
    if len(description) > MAX_DESCRIPTION:
        raise InvalidInput(f"the description must be at most {MAX_DESCRIPTION} characters", field="description")
    return description


async def active_users(session: AsyncSession, user_ids: Sequence[str], *, field: str) -> dict[str, User]:
    """The users named by `user_ids`, each of which must exist and be active."""
    for user_id in user_ids:
        if not isinstance(user_id, str) or "\x00" in user_id or len(user_id) > 64:
            raise InvalidInput("every user must be a user id", field=field)
    wanted = set(user_ids)
    found = {u.id: u for u in (await session.scalars(select(User).where(User.id.in_(wanted)))).all()} if wanted else {}
    for user_id in user_ids:
        user = found.get(user_id)
        if user is None:
            raise InvalidInput(f"no user with id {user_id!r}", field=field)
        if not user.is_active:
            raise InvalidInput(f"{user.name} is deactivated and cannot be on call", field=field)
    return found


# ---------------------------------------------------------------- reading


async def get_schedule(session: AsyncSession, schedule_id: str) -> OnCallSchedule:
    """The schedule with id `schedule_id`, or NotFound."""
    _check_id(schedule_id, "schedule", "schedule_id")
    schedule = await session.get(OnCallSchedule, schedule_id)
    if schedule is None:
        raise NotFound(f"no schedule with id {schedule_id!r}", field="schedule_id")
    return schedule


async def find_schedule(session: AsyncSession, ref: str) -> OnCallSchedule:
    """The schedule whose id or (case-insensitive) name is `ref`."""
    if "\x00" in ref or len(ref) > MAX_NAME:
        raise NotFound("no schedule with that id or name", field="schedule")
    schedule = await session.get(OnCallSchedule, ref)
    if schedule is not None:
        return schedule
    for candidate in await list_schedules(session):
        if candidate.name.casefold() == ref.strip().casefold():
            return candidate
    raise NotFound(f"no schedule with id or name {ref!r}", field="schedule")


async def list_schedules(session: AsyncSession) -> list[OnCallSchedule]:
    """Every schedule, by name."""
    return list((await session.scalars(select(OnCallSchedule).order_by(OnCallSchedule.name))).all())


async def layers_of(session: AsyncSession, schedule_id: str) -> list[ScheduleLayer]:
    """The schedule's layers, lowest first (a higher layer wins where both have someone)."""
    query = select(ScheduleLayer).where(ScheduleLayer.schedule_id == schedule_id)
    return list((await session.scalars(query.order_by(ScheduleLayer.position, ScheduleLayer.id))).all())


async def overrides_of(
    session: AsyncSession, schedule_id: str, *, ending_after: datetime | None = None
) -> list[ScheduleOverride]:
    """The schedule's overrides in the order they win (the one added last wins), optionally only those still to end."""
    query = select(ScheduleOverride).where(ScheduleOverride.schedule_id == schedule_id)
    if ending_after is not None:
        query = query.where(ScheduleOverride.end > ending_after)
    return list((await session.scalars(query.order_by(ScheduleOverride.created_at, ScheduleOverride.id))).all())


def _layer(row: ScheduleLayer) -> rotation.Layer:
    length = timedelta(hours=row.length_hours) if row.rotation == "custom" and row.length_hours else None
    return rotation.Layer(
        name=row.name,
        users=tuple(row.user_ids),
        start=row.start,
        time_zone=row.time_zone,
        rotation=row.rotation,  # type: ignore[arg-type]  # validated on write
        length=length,
    )


async def load_schedule(session: AsyncSession, schedule_id: str) -> rotation.Schedule:
    """The stored schedule as a ``rotation.Schedule`` of user ids; NotFound if there is none."""
    await get_schedule(session, schedule_id)
    layers = tuple(_layer(row) for row in await layers_of(session, schedule_id))
    overrides = tuple(
        rotation.Override(row.user_id, row.start, row.end) for row in await overrides_of(session, schedule_id)
    )
    return rotation.Schedule(layers=layers, overrides=overrides)


def _resolve_active(schedule: rotation.Schedule, at: datetime, active: set[str]) -> str | None:
    # rotation.on_call, except that a deactivated user is skipped: the next override or lower layer
    # answers instead, so a page never goes to someone who can no longer sign in.
    for override in reversed(schedule.overrides):
        if override.start <= at < override.end and override.user in active:
            return override.user
    for layer in reversed(schedule.layers):
        user = layer.user_at(at)
        if user is not None and user in active:
            return user
    return None


async def _active_ids(session: AsyncSession, schedule: rotation.Schedule) -> dict[str, User]:
    ids = {o.user for o in schedule.overrides} | {u for layer in schedule.layers for u in layer.users}
    if not ids:
        return {}
    users = await session.scalars(select(User).where(User.id.in_(ids), User.is_active.is_(True)))
    return {u.id: u for u in users}


async def on_call(session: AsyncSession, schedule_id: str, at: datetime | None = None) -> User | None:
    """Who is on call on the schedule at `at` (aware; default now): an active user, or None.

    A deactivated user in a rotation or override is passed over; the next override or the layer
    below answers in their place.
    """
    instant = utcnow() if at is None else aware(at, field="at")
    schedule = await load_schedule(session, schedule_id)
    users = await _active_ids(session, schedule)
    user_id = _resolve_active(schedule, instant, set(users))
    return None if user_id is None else users[user_id]


async def shifts(
    session: AsyncSession, schedule_id: str, start: datetime, end: datetime
) -> list[tuple[rotation.Shift, User | None]]:
    """The resolved shifts over [start, end) (at most 90 days), each with its user (None if deactivated)."""
    start = aware(start, field="start")
    end = aware(end, field="end")
    if end <= start:
        raise InvalidInput("end must be after start", field="end")
    if end - start > MAX_SHIFTS_WINDOW:
        raise InvalidInput("a window of shifts may span at most 90 days", field="end")
    schedule = await load_schedule(session, schedule_id)
    users = await _active_ids(session, schedule)
    return [(s, users.get(s.user)) for s in rotation.shifts(schedule, start, end)]


async def now_and_until(
    session: AsyncSession, schedule_id: str, at: datetime | None = None, *, horizon: timedelta = MAX_SHIFTS_WINDOW
) -> OnCallNow:
    """Who is on call at `at` and until when (the end of their stretch, looked for within `horizon`)."""
    instant = utcnow() if at is None else aware(at, field="at")
    row = await get_schedule(session, schedule_id)
    user = await on_call(session, schedule_id, instant)
    until: datetime | None = None
    if user is not None:
        window = await shifts(session, schedule_id, instant, instant + horizon)
        if window and window[0][0].start == instant and window[0][0].user == user.id:
            until = window[0][0].end
            if until == instant + horizon:
                until = None
    return OnCallNow(row, user, until)


# ---------------------------------------------------------------- writing


async def _layer_rows(session: AsyncSession, layers: Sequence[LayerInput]) -> list[ScheduleLayer]:
    if len(layers) > MAX_LAYERS:
        raise InvalidInput(f"a schedule may have at most {MAX_LAYERS} layers", field="layers")
    rows: list[ScheduleLayer] = []
    for i, layer in enumerate(layers):
        prefix = f"layers.{i}"
        name = _clean_name(layer.name or f"Layer {i + 1}", field=f"{prefix}.name")
        users = list(layer.users)
        if not users:
            raise InvalidInput("a layer needs at least one user", field=f"{prefix}.users")
        if len(users) > MAX_LAYER_USERS:
            raise InvalidInput(f"a layer may have at most {MAX_LAYER_USERS} users", field=f"{prefix}.users")
        await active_users(session, users, field=f"{prefix}.users")
        zone(layer.time_zone, field=f"{prefix}.time_zone")
        if layer.rotation not in ROTATIONS:
            raise InvalidInput("rotation must be daily, weekly or custom", field=f"{prefix}.rotation")
        length: int | None = None
        if layer.rotation == "custom":
            if layer.length_hours is None or not 1 <= layer.length_hours <= MAX_CUSTOM_HOURS:
                message = f"a custom rotation needs a length of 1 to {MAX_CUSTOM_HOURS} hours"
                raise InvalidInput(message, field=f"{prefix}.length_hours")
            length = layer.length_hours
        elif layer.length_hours is not None:
            message = "length_hours applies only to custom rotations (daily is 24 h, weekly 7 days)"
            raise InvalidInput(message, field=f"{prefix}.length_hours")
        start = local_to_utc(layer.start, layer.time_zone, field=f"{prefix}.start", zone_field=f"{prefix}.time_zone")
        row = ScheduleLayer(
            name=name,
            position=i,
            user_ids=users,
            start=start,
            time_zone=layer.time_zone,
            rotation=layer.rotation,
            length_hours=length,
        )
        _layer(row)  # the rotation module's own checks, named by this layer
        rows.append(row)
    return rows


async def _check_unique_name(session: AsyncSession, name: str, *, exclude: str | None = None) -> None:
    for other in await list_schedules(session):
        if other.id != exclude and other.name.casefold() == name.casefold():
            raise Conflict(f"a schedule called {other.name!r} already exists", field="name")


async def create_schedule(
    session: AsyncSession,
    actor: Actor,
    *,
    name: str,
    description: str = "",
    time_zone: str = "Etc/UTC",
    layers: Sequence[LayerInput] = (),
) -> OnCallSchedule:
    """Add a schedule with its layers (admin)."""
    actor.require(Scope.admin)
    name = _clean_name(name)
    description = _clean_description(description)
    zone(time_zone)
    rows = await _layer_rows(session, layers)
    await _check_unique_name(session, name)
    schedule = OnCallSchedule(name=name, description=description, time_zone=time_zone)
    session.add(schedule)
    await session.flush()
    for row in rows:
        row.schedule_id = schedule.id
        session.add(row)
    await session.flush()
    return schedule


async def update_schedule(
    session: AsyncSession,
    actor: Actor,
    schedule_id: str,
    *,
    name: str | None = None,
    description: str | None = None,
    time_zone: str | None = None,
    layers: Sequence[LayerInput] | None = None,
) -> OnCallSchedule:
    """Change a schedule (admin); `layers`, when given, replaces every layer."""
    actor.require(Scope.admin)
    schedule = await get_schedule(session, schedule_id)
    new_name = _clean_name(name) if name is not None else None
    new_description = _clean_description(description) if description is not None else None
    if time_zone is not None:
        zone(time_zone)
    rows = await _layer_rows(session, layers) if layers is not None else None
    if new_name is not None:
        await _check_unique_name(session, new_name, exclude=schedule.id)
        schedule.name = new_name
    if new_description is not None:
        schedule.description = new_description
    if time_zone is not None:
        schedule.time_zone = time_zone
    if rows is not None:
        await session.execute(delete(ScheduleLayer).where(ScheduleLayer.schedule_id == schedule.id))
        for row in rows:
            row.schedule_id = schedule.id
            session.add(row)
    await session.flush()
    return schedule


async def delete_schedule(session: AsyncSession, actor: Actor, schedule_id: str) -> None:
    """Remove a schedule with its layers and overrides (admin); refused while a policy pages it."""
    actor.require(Scope.admin)
    schedule = await get_schedule(session, schedule_id)
    users = await policies.policies_targeting_schedule(session, schedule.id)
    if users:
        names = ", ".join(p.name for p in users)
        raise Conflict(f"escalation policies page this schedule ({names}); change them first", field="schedule_id")
    await session.execute(delete(ScheduleLayer).where(ScheduleLayer.schedule_id == schedule.id))
    await session.execute(delete(ScheduleOverride).where(ScheduleOverride.schedule_id == schedule.id))
    await session.delete(schedule)
    await session.flush()


async def add_override(
    session: AsyncSession, actor: Actor, schedule_id: str, *, user_id: str, start: datetime, end: datetime
) -> ScheduleOverride:
    """Put `user_id` on call over [start, end) above every layer (at most 31 days; start and end aware)."""
    actor.require(Scope.write)
    schedule = await get_schedule(session, schedule_id)
    start = aware(start, field="start")
    end = aware(end, field="end")
    if end <= start:
        raise InvalidInput("an override must end after it starts", field="end")
    if end - start > MAX_OVERRIDE:
        raise InvalidInput("an override may last at most 31 days", field="end")
    await active_users(session, [user_id], field="user_id")
    override = ScheduleOverride(schedule_id=schedule.id, user_id=user_id, start=start, end=end, created_at=utcnow())
    session.add(override)
    await session.flush()
    return override


async def get_override(session: AsyncSession, schedule_id: str, override_id: int) -> ScheduleOverride:
    """One of the schedule's overrides, or NotFound."""
    await get_schedule(session, schedule_id)
    # An id past a 64-bit integer names no row; the database would refuse to compare it.
    override = await session.get(ScheduleOverride, override_id) if 0 < override_id < 2**63 else None
    if override is None or override.schedule_id != schedule_id:
        raise NotFound(f"no override {override_id} on this schedule", field="override_id")
    return override


async def delete_override(session: AsyncSession, actor: Actor, schedule_id: str, override_id: int) -> None:
    """Remove an override from a schedule."""
    actor.require(Scope.write)
    override = await get_override(session, schedule_id, override_id)
    await session.delete(override)
    await session.flush()


async def users_by_id(session: AsyncSession, ids: set[str]) -> dict[str, User]:
    """Users (active or not) by id, for showing names."""
    if not ids:
        return {}
    return {u.id: u for u in await session.scalars(select(User).where(User.id.in_(ids)))}
