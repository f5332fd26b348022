"""Uptime from status history: the documented weighting, and properties that hold for any history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crisisdesk.catalog.models import ComponentStatus
from crisisdesk.statuspage.uptime import WEIGHTS, daily_uptime, format_percent

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
DAY = datetime(2026, 3, 5, tzinfo=UTC)  # a whole day inside the window
LONG_AGO = NOW - timedelta(days=200)


def bar_for(result_days: list, day: datetime):  # type: ignore[no-untyped-def]
    return next(d for d in result_days if d.day == day.date())


@pytest.mark.parametrize(
    ("status", "expected"),
    [("major_outage", 75.0), ("partial_outage", 87.5), ("degraded_performance", 100.0),
     ("under_maintenance", 100.0), ("operational", 100.0)],
)  # fmt: skip
def test_six_hours_of_each_status_weighs_as_documented(status: str, expected: float) -> None:
    changes = [(LONG_AGO, "operational"), (DAY + timedelta(hours=6), status),
               (DAY + timedelta(hours=12), "operational")]  # fmt: skip
    result = daily_uptime(changes, now=NOW)
    bar = bar_for(result.days, DAY)
    assert bar.percent == pytest.approx(expected)
    assert bar.worst == ComponentStatus(status)
    assert len(result.days) == 90 and result.days[-1].day == NOW.date()


def test_days_before_the_component_existed_have_no_data() -> None:
    result = daily_uptime([(NOW - timedelta(days=2, hours=1), "operational")], now=NOW)
    assert all(d.percent is None and d.worst is None for d in result.days[:-3])
    assert [d.percent for d in result.days[-3:]] == [100.0, 100.0, 100.0]
    assert result.percent == 100.0


def test_an_outage_across_midnight_is_split_between_days() -> None:
    start = DAY + timedelta(hours=22)
    changes = [(LONG_AGO, "operational"), (start, "major_outage"), (start + timedelta(hours=4), "operational")]
    days = daily_uptime(changes, now=NOW).days
    first, second = bar_for(days, DAY), bar_for(days, DAY + timedelta(days=1))
    assert first.seconds[ComponentStatus.major_outage] == 2 * 3600
    assert second.seconds[ComponentStatus.major_outage] == 2 * 3600
    assert first.percent == pytest.approx(100 * 22 / 24)


def test_today_counts_only_up_to_now() -> None:
    changes = [(LONG_AGO, "operational"), (NOW - timedelta(hours=3), "major_outage")]
    today = daily_uptime(changes, now=NOW).days[-1]
    assert today.percent == pytest.approx(100 * 9 / 12)  # 12 hours observed today, 3 of them down


def test_display_never_rounds_downtime_up_to_a_full_hundred() -> None:
    assert format_percent(99.999) == "99.99%"
    assert format_percent(100.0) == "100.00%"
    assert format_percent(None) == "no data"


statuses = st.sampled_from(list(ComponentStatus))
offsets = st.integers(min_value=0, max_value=120 * 24 * 60)  # minutes before now
histories = st.lists(st.tuples(offsets, statuses), min_size=1, max_size=40)


@settings(max_examples=200, deadline=None)
@given(histories)
def test_percentages_stay_between_0_and_100_and_match_the_weights(history: list[tuple[int, ComponentStatus]]) -> None:
    changes = [(NOW - timedelta(minutes=m), s) for m, s in history]
    result = daily_uptime(changes, now=NOW)
    assert len(result.days) == 90
    for day in result.days:
        if day.percent is None:
            continue
        assert 0.0 <= day.percent <= 100.0
        observed = sum(day.seconds.values())
        assert 0 < observed <= 86400
        expected = 100 * (1 - sum(WEIGHTS[s] * t for s, t in day.seconds.items()) / observed)
        assert day.percent == pytest.approx(expected)
        assert day.worst is not None and day.seconds[day.worst] > 0
    if result.percent is not None:
        assert 0.0 <= result.percent <= 100.0


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=120 * 24 * 60), min_size=1, max_size=20))
def test_a_component_that_was_always_operational_has_full_uptime(minutes: list[int]) -> None:
    result = daily_uptime([(NOW - timedelta(minutes=m), "operational") for m in minutes], now=NOW)
    assert result.percent == 100.0
    assert all(d.percent in (None, 100.0) for d in result.days)


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=1, max_value=24 * 60 - 1), st.sampled_from(["major_outage", "partial_outage"]))
def test_downtime_is_the_weighted_share_of_the_day(minutes: int, status: str) -> None:
    changes = [(LONG_AGO, "operational"), (DAY, status), (DAY + timedelta(minutes=minutes), "operational")]
    bar = bar_for(daily_uptime(changes, now=NOW).days, DAY)
    weight = WEIGHTS[ComponentStatus(status)]
    assert bar.percent == pytest.approx(100 * (1 - weight * minutes / (24 * 60)))
