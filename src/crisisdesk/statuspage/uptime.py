"""Daily uptime per component, computed from its status history (not from probes).

The weighting is documented in docs/decisions/0002-uptime-weighting.md: a major outage counts
as full downtime, a partial outage as half, degraded performance and maintenance as none.
Days are UTC calendar days; a day the component did not yet exist has no data.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from crisisdesk.catalog.models import SEVERITY_ORDER, ComponentStatus

WEIGHTS: dict[ComponentStatus, float] = {
    ComponentStatus.major_outage: 1.0,
    ComponentStatus.partial_outage: 0.5,
    ComponentStatus.degraded_performance: 0.0,
    ComponentStatus.under_maintenance: 0.0,
    ComponentStatus.operational: 0.0,
}
DAYS = 90


@dataclass(frozen=True)
class Day:
    """One bar: the share of the observed time that was up, and the worst status seen."""

    day: date
    percent: float | None  # None when the component did not exist that day
    worst: ComponentStatus | None
    seconds: dict[ComponentStatus, float] = field(default_factory=dict)  # time spent in each status

    @property
    def downtime_seconds(self) -> float:
        """Weighted downtime in seconds."""
        return sum(WEIGHTS[s] * t for s, t in self.seconds.items())


@dataclass(frozen=True)
class Uptime:
    days: list[Day]
    percent: float | None  # over the whole window; None when there is no data at all


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


def daily_uptime(
    changes: Iterable[tuple[datetime, ComponentStatus | str]], *, now: datetime, days: int = DAYS
) -> Uptime:
    """Bars for the ``days`` UTC days ending today (oldest first), from (time, new status) changes.

    Only the history up to ``now`` counts; time before the first change has no data. Changes
    need not be sorted; several at the same instant resolve to the last one given.
    """
    now = now.astimezone(UTC)
    first_day = now.date() - timedelta(days=days - 1)
    window_start = _day_start(first_day)
    ordered = sorted(((at.astimezone(UTC), ComponentStatus(s)) for at, s in changes), key=lambda c: c[0])
    per_day: list[dict[ComponentStatus, float]] = [{} for _ in range(days)]
    for i, (start, status) in enumerate(ordered):
        end = ordered[i + 1][0] if i + 1 < len(ordered) else now
        start, end = max(start, window_start), min(end, now)
        while start < end:
            index = (start.date() - first_day).days
            boundary = min(end, _day_start(start.date() + timedelta(days=1)))
            spent = per_day[index]
            spent[status] = spent.get(status, 0.0) + (boundary - start).total_seconds()
            start = boundary
    result: list[Day] = []
    observed_total = down_total = 0.0
    for index, spent in enumerate(per_day):
        day = first_day + timedelta(days=index)
        observed = sum(spent.values())
        if observed <= 0:
            result.append(Day(day, None, None, {}))
            continue
        down = sum(WEIGHTS[s] * t for s, t in spent.items())
        observed_total += observed
        down_total += down
        worst = next(s for s in SEVERITY_ORDER if spent.get(s, 0.0) > 0)
        result.append(Day(day, _percent(down, observed), worst, dict(spent)))
    overall = _percent(down_total, observed_total) if observed_total > 0 else None
    return Uptime(result, overall)


def _percent(down: float, observed: float) -> float:
    return max(0.0, min(100.0, 100.0 * (1.0 - down / observed)))


def format_percent(value: float | None) -> str:
    """Two decimals, rounded down so that any downtime never displays as 100.00%."""
    if value is None:
        return "no data"
    floored = math.floor(value * 100) / 100
    return f"{floored:.2f}%"


def format_duration(seconds: float) -> str:
    """A short duration for a tooltip: 1 h 5 min, 12 min, under a minute."""
    minutes = round(seconds / 60)
    if minutes < 1:
        return "under a minute"
    hours, minutes = divmod(minutes, 60)
    if hours and minutes:
        return f"{hours} h {minutes} min"
    return f"{hours} h" if hours else f"{minutes} min"
