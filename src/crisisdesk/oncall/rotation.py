"""Rotation arithmetic: layered schedules and overrides resolved to who is on call, with no I/O.

Every instant this module returns is timezone-aware and in UTC. Wall-clock arithmetic happens only
where a rotation is defined by the wall clock (daily and weekly hand-offs); everything else is
compared in UTC, because Python compares two datetimes that share a tzinfo by their wall time,
which is wrong across a daylight-saving change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from crisisdesk.kit.errors import InvalidInput

Rotation = Literal["daily", "weekly", "custom"]

_ROTATION_DAYS: dict[str, int] = {"daily": 1, "weekly": 7}
_HOUR = timedelta(hours=1)


def _require_aware(value: datetime, field_name: str) -> datetime:
    """Return `value` in UTC, refusing a naive datetime (its instant would be a guess)."""
    if not isinstance(value, datetime):
        raise InvalidInput(f"{field_name} must be a datetime", field=field_name)
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInput(f"{field_name} must carry a time zone (a naive datetime is ambiguous)", field=field_name)
    return value.astimezone(UTC)


def _load_zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
        # ValueError/TypeError: malformed keys such as "../etc/passwd" or a non-string.
        message = f"unknown time zone {name!r}; use an IANA name such as Europe/Berlin"
        raise InvalidInput(message, field="time_zone") from exc


@dataclass(frozen=True)
class Layer:
    """One rotation: `users` take turns, the first starting at `start`.

    Daily and weekly layers hand off at `start`'s wall-clock time in `time_zone` every 1 or 7 local
    calendar days, so a shift that spans a daylight-saving change lasts 23 h or 25 h (167 h or 169 h).
    A wall time that occurs twice hands off at its first occurrence; one the clock skips is read
    with the offset in force before the change (PEP 495 `fold=0`), e.g. 02:30 in Berlin on the
    March change day hands off at 03:30 CEST. Custom layers hand off every `length` of absolute time.
    """

    name: str
    users: tuple[str, ...]
    start: datetime
    time_zone: str
    rotation: Rotation
    length: timedelta | None = None
    zone: ZoneInfo = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        users = tuple(self.users)
        if not users:
            raise InvalidInput("a layer needs at least one user", field="users")
        if any(not isinstance(u, str) or not u.strip() for u in users):
            raise InvalidInput("every user in a layer must be a non-empty name", field="users")
        object.__setattr__(self, "users", users)
        object.__setattr__(self, "start", _require_aware(self.start, "start"))
        object.__setattr__(self, "zone", _load_zone(self.time_zone))
        if self.rotation not in ("daily", "weekly", "custom"):
            raise InvalidInput("rotation must be daily, weekly or custom", field="rotation")
        if self.rotation == "custom":
            if (
                not isinstance(self.length, timedelta)
                or self.length <= timedelta(0)
                or self.length % _HOUR != timedelta(0)
            ):
                message = "a custom rotation needs a length of a positive whole number of hours"
                raise InvalidInput(message, field="length")
        elif self.length is not None:
            # Silently ignoring it would let someone believe they configured 12-hour daily shifts.
            raise InvalidInput("length applies only to custom rotations", field="length")

    def handoff(self, k: int) -> datetime:
        """The instant (UTC) at which shift `k` begins; shift 0 begins at `start`."""
        if k == 0:
            return self.start
        if self.rotation == "custom":
            assert self.length is not None
            return self.start + k * self.length
        local_start = self.start.astimezone(self.zone)
        day = local_start.date() + timedelta(days=k * _ROTATION_DAYS[self.rotation])
        # Rebuild from the local calendar date and wall time so the hand-off hour survives DST.
        wall = datetime.combine(day, local_start.time(), tzinfo=self.zone).replace(fold=0)
        return wall.astimezone(UTC)

    def shift_index(self, at: datetime) -> int | None:
        """Index of the shift in force at `at` (UTC), or None before the layer starts."""
        if at < self.start:
            return None
        if self.rotation == "custom":
            assert self.length is not None
            return (at - self.start) // self.length
        # The nominal period is within a few hours of the real one, so the guess is off by at most one
        # step; the loops correct it (and skip zero-length shifts when a zone drops a whole day).
        k = (at - self.start) // timedelta(days=_ROTATION_DAYS[self.rotation])
        while k > 0 and self.handoff(k) > at:
            k -= 1
        while self.handoff(k + 1) <= at:
            k += 1
        return k

    def user_at(self, at: datetime) -> str | None:
        """Who this layer puts on call at `at` (UTC), or None before it starts."""
        k = self.shift_index(at)
        return None if k is None else self.users[k % len(self.users)]

    def handoffs_between(self, start: datetime, end: datetime) -> list[datetime]:
        """Every hand-off instant (including the layer's own start) in [start, end), in UTC."""
        result: list[datetime] = []
        k = self.shift_index(start)
        if k is None:
            if self.start >= end:
                return result
            k = 0
        else:
            k += 1
        while (instant := self.handoff(k)) < end:
            result.append(instant)
            k += 1
        return result


@dataclass(frozen=True)
class Override:
    """`user` is on call over [start, end), above every layer."""

    user: str
    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if not isinstance(self.user, str) or not self.user.strip():
            raise InvalidInput("an override needs a user", field="user")
        object.__setattr__(self, "start", _require_aware(self.start, "start"))
        object.__setattr__(self, "end", _require_aware(self.end, "end"))
        if self.end <= self.start:
            raise InvalidInput("an override must end after it starts", field="end")


@dataclass(frozen=True)
class Schedule:
    """Layers, lowest first; a higher layer wins wherever it has someone, and overrides win over all.

    Where overrides overlap, the one listed last wins, so appending an override always takes effect.
    """

    layers: tuple[Layer, ...] = ()
    overrides: tuple[Override, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(self.layers))
        object.__setattr__(self, "overrides", tuple(self.overrides))


@dataclass(frozen=True)
class Shift:
    """A stretch [start, end) of the resolved timeline during which `user` is on call (UTC)."""

    user: str
    start: datetime
    end: datetime


def _resolve(schedule: Schedule, at: datetime) -> str | None:
    for override in reversed(schedule.overrides):
        if override.start <= at < override.end:
            return override.user
    for layer in reversed(schedule.layers):
        user = layer.user_at(at)
        if user is not None:
            return user
    return None


def on_call(schedule: Schedule, at: datetime) -> str | None:
    """Who is on call at the instant `at` (aware), or None when nobody is."""
    return _resolve(schedule, _require_aware(at, "at"))


def shifts(schedule: Schedule, start: datetime, end: datetime) -> list[Shift]:
    """The resolved timeline over [start, end): consecutive shifts, equal neighbours merged, gaps left out."""
    start = _require_aware(start, "start")
    end = _require_aware(end, "end")
    if end <= start:
        raise InvalidInput("end must be after start", field="end")
    # Who is on call can change only at a boundary, so evaluating once per segment is exact.
    boundaries = {start, end}
    for layer in schedule.layers:
        boundaries.update(layer.handoffs_between(start, end))
    for override in schedule.overrides:
        boundaries.update(t for t in (override.start, override.end) if start < t < end)
    ordered = sorted(boundaries)
    result: list[Shift] = []
    for seg_start, seg_end in pairwise(ordered):
        user = _resolve(schedule, seg_start)
        if user is None:
            continue
        if result and result[-1].user == user and result[-1].end == seg_start:
            result[-1] = Shift(user, result[-1].start, seg_end)
        else:
            result.append(Shift(user, seg_start, seg_end))
    return result
