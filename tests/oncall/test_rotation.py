"""Rotation arithmetic: daylight-saving hand-offs, layering, overrides, and properties of the timeline."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crisisdesk.kit.errors import InvalidInput
from crisisdesk.oncall.rotation import Layer, Override, Schedule, Shift, on_call, shifts

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
USERS = ("ana", "ben", "cho")


def local(zone: ZoneInfo, *args: int) -> datetime:
    return datetime(*args, tzinfo=zone)  # type: ignore[misc]


def layer(start: datetime, zone: str, rotation: str, length: timedelta | None = None, users=USERS) -> Layer:
    return Layer(name="primary", users=users, start=start, time_zone=zone, rotation=rotation, length=length)  # type: ignore[arg-type]


def inside(start: datetime, span: timedelta, fraction: float) -> datetime:
    """An instant in [start, start + span): multiplying a timedelta by a float can round up to the end."""
    micros = span // timedelta(microseconds=1)
    return start + timedelta(microseconds=min(int(micros * fraction), micros - 1))


def durations(timeline: list[Shift]) -> list[timedelta]:
    return [s.end - s.start for s in timeline]


def local_hours(timeline: list[Shift], zone: ZoneInfo) -> list[tuple[int, int]]:
    return [(s.start.astimezone(zone).hour, s.start.astimezone(zone).minute) for s in timeline]


# --- daylight-saving hand-offs ---------------------------------------------------------------

# (zone, local start of a daily 09:00 rotation two days before the change, hours of the spanning shift)
DAILY_CASES = [
    ("Europe/Berlin", (2025, 3, 28, 9), 23),  # CET -> CEST on 30 March
    ("Europe/Berlin", (2025, 10, 24, 9), 25),  # CEST -> CET on 26 October
    ("America/New_York", (2025, 3, 7, 9), 23),  # EST -> EDT on 9 March
    # New York's autumn change is the first Sunday of November, not October.
    ("America/New_York", (2025, 10, 31, 9), 25),  # EDT -> EST on 2 November
]


@pytest.mark.parametrize(("zone_name", "start", "spanning_hours"), DAILY_CASES)
def test_daily_handoff_keeps_local_hour_across_dst(zone_name: str, start: tuple[int, ...], spanning_hours: int) -> None:
    zone = ZoneInfo(zone_name)
    first = local(zone, *start)
    schedule = Schedule(layers=(layer(first, zone_name, "daily"),))
    timeline = shifts(schedule, first, first + timedelta(days=4))
    # The window ends on an absolute instant, so trim the last (partial) shift out of the check.
    full = timeline[:-1]
    assert [s.user for s in timeline] == ["ana", "ben", "cho", "ana"]
    assert local_hours(timeline, zone) == [(9, 0)] * 4
    assert durations(full) == [timedelta(hours=24), timedelta(hours=spanning_hours), timedelta(hours=24)]


# (zone, local Monday 09:00 start, hours of the week that spans the change)
WEEKLY_CASES = [
    ("Europe/Berlin", (2025, 3, 24, 9), 167),
    ("Europe/Berlin", (2025, 10, 20, 9), 169),
    ("America/New_York", (2025, 3, 3, 9), 167),
    ("America/New_York", (2025, 10, 27, 9), 169),
]


@pytest.mark.parametrize(("zone_name", "start", "spanning_hours"), WEEKLY_CASES)
def test_weekly_handoff_keeps_local_hour_across_dst(
    zone_name: str, start: tuple[int, ...], spanning_hours: int
) -> None:
    zone = ZoneInfo(zone_name)
    first = local(zone, *start)
    schedule = Schedule(layers=(layer(first, zone_name, "weekly"),))
    timeline = shifts(schedule, first, first + timedelta(weeks=3))
    assert [s.user for s in timeline] == ["ana", "ben", "cho"]
    assert local_hours(timeline, zone) == [(9, 0)] * 3
    assert durations(timeline)[0] == timedelta(hours=spanning_hours)
    assert durations(timeline)[1] == timedelta(hours=168)
    # A week later in local calendar terms: the hand-off is at 09:00 local, not at 08:00 or 10:00.
    next_day = first.date() + timedelta(days=7)
    assert on_call(schedule, datetime.combine(next_day, time(8, 59), tzinfo=zone)) == "ana"
    assert on_call(schedule, datetime.combine(next_day, time(9, 0), tzinfo=zone)) == "ben"


@pytest.mark.parametrize(
    ("zone_name", "start"),
    [
        ("Europe/Berlin", (2025, 3, 29, 20)),
        ("Europe/Berlin", (2025, 10, 25, 20)),
        ("America/New_York", (2025, 3, 8, 20)),
        ("America/New_York", (2025, 11, 1, 20)),
    ],
)
def test_custom_twelve_hour_shifts_stay_twelve_hours_absolute(zone_name: str, start: tuple[int, ...]) -> None:
    zone = ZoneInfo(zone_name)
    first = local(zone, *start)
    schedule = Schedule(layers=(layer(first, zone_name, "custom", timedelta(hours=12), users=("ana", "ben")),))
    # Add in UTC: `first + 48 h` with a zoneinfo tzinfo is wall-clock arithmetic and lands an hour off.
    timeline = shifts(schedule, first, first.astimezone(UTC) + timedelta(hours=48))
    assert durations(timeline) == [timedelta(hours=12)] * 4
    # Because the length is absolute, the local hand-off hour moves by the DST step.
    assert local_hours(timeline, zone)[0] == (20, 0)
    assert local_hours(timeline, zone)[2] in {(19, 0), (21, 0)}


def test_nonexistent_wall_time_hands_off_with_the_pre_change_offset() -> None:
    # 02:30 does not exist in Berlin on 30 March 2025; fold=0 reads it as 02:30 CET = 03:30 CEST.
    first = local(BERLIN, 2025, 3, 29, 2, 30)
    schedule = Schedule(layers=(layer(first, "Europe/Berlin", "daily"),))
    timeline = shifts(schedule, first, first + timedelta(days=3))
    assert timeline[1].start == datetime(2025, 3, 30, 1, 30, tzinfo=UTC)
    assert local_hours(timeline, BERLIN) == [(2, 30), (3, 30), (2, 30)]


def test_repeated_wall_time_hands_off_at_its_first_occurrence() -> None:
    first = local(BERLIN, 2025, 10, 25, 2, 30)
    schedule = Schedule(layers=(layer(first, "Europe/Berlin", "daily"),))
    timeline = shifts(schedule, first, first + timedelta(days=2))
    assert timeline[1].start == datetime(2025, 10, 26, 0, 30, tzinfo=UTC)  # 02:30 CEST
    assert durations(timeline)[0] == timedelta(hours=24)


# --- layering, future starts, overrides ------------------------------------------------------


def test_layer_starting_in_the_future_has_nobody_before_it() -> None:
    first = local(BERLIN, 2025, 6, 2, 9)
    schedule = Schedule(layers=(layer(first, "Europe/Berlin", "weekly"),))
    assert on_call(schedule, first - timedelta(seconds=1)) is None
    assert on_call(schedule, first) == "ana"
    timeline = shifts(schedule, first - timedelta(days=2), first + timedelta(days=1))
    assert timeline == [Shift("ana", first.astimezone(UTC), (first + timedelta(days=1)).astimezone(UTC))]


def test_higher_layer_wins_where_it_has_someone() -> None:
    base_start = local(BERLIN, 2025, 6, 2, 9)
    base = layer(base_start, "Europe/Berlin", "weekly")
    # The higher layer starts a day later, so the base layer still answers before it.
    upper = Layer(
        "nights", ("nia", "oto"), base_start + timedelta(days=1), "Europe/Berlin", "custom", timedelta(hours=12)
    )
    schedule = Schedule(layers=(base, upper))
    assert on_call(schedule, base_start + timedelta(hours=3)) == "ana"
    assert on_call(schedule, base_start + timedelta(days=1)) == "nia"
    assert on_call(schedule, base_start + timedelta(days=1, hours=12)) == "oto"
    timeline = shifts(schedule, base_start, base_start + timedelta(days=2))
    assert [s.user for s in timeline] == ["ana", "nia", "oto"]


def test_overrides_win_over_every_layer_and_the_last_listed_wins() -> None:
    first = local(NEW_YORK, 2025, 3, 3, 9)
    base = layer(first, "America/New_York", "weekly")
    upper = Layer("upper", ("uma",), first, "America/New_York", "daily")
    cover = Override("zed", first + timedelta(hours=2), first + timedelta(hours=5))
    inner = Override("yan", first + timedelta(hours=3), first + timedelta(hours=4))
    schedule = Schedule(layers=(base, upper), overrides=(cover, inner))
    assert on_call(schedule, first + timedelta(hours=1)) == "uma"
    assert on_call(schedule, first + timedelta(hours=2)) == "zed"
    assert on_call(schedule, first + timedelta(hours=3, minutes=30)) == "yan"
    assert on_call(schedule, first + timedelta(hours=5)) == "uma"
    timeline = shifts(schedule, first, first + timedelta(hours=6))
    assert [(s.user, s.end - s.start) for s in timeline] == [
        ("uma", timedelta(hours=2)),
        ("zed", timedelta(hours=1)),
        ("yan", timedelta(hours=1)),
        ("zed", timedelta(hours=1)),
        ("uma", timedelta(hours=1)),
    ]


def test_override_without_layers_leaves_gaps_out_of_the_timeline() -> None:
    t = datetime(2025, 1, 1, tzinfo=UTC)
    schedule = Schedule(overrides=(Override("zed", t + timedelta(hours=1), t + timedelta(hours=2)),))
    assert shifts(schedule, t, t + timedelta(hours=3)) == [Shift("zed", t + timedelta(hours=1), t + timedelta(hours=2))]
    assert on_call(schedule, t) is None


def test_adjacent_equal_users_are_merged() -> None:
    t = datetime(2025, 1, 1, tzinfo=UTC)
    schedule = Schedule(layers=(Layer("solo", ("ana",), t, "UTC", "daily"),))
    assert shifts(schedule, t, t + timedelta(days=5)) == [Shift("ana", t, t + timedelta(days=5))]


# --- validation ------------------------------------------------------------------------------

T = datetime(2025, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: Layer("x", (), T, "UTC", "daily"), "users"),
        (lambda: Layer("x", ("",), T, "UTC", "daily"), "users"),
        (lambda: Layer("x", ("a",), datetime(2025, 1, 1), "UTC", "daily"), "start"),
        (lambda: Layer("x", ("a",), T, "Mars/Olympus", "daily"), "time_zone"),
        (lambda: Layer("x", ("a",), T, "../etc/passwd", "daily"), "time_zone"),
        (lambda: Layer("x", ("a",), T, "UTC", "monthly"), "rotation"),
        (lambda: Layer("x", ("a",), T, "UTC", "custom"), "length"),
        (lambda: Layer("x", ("a",), T, "UTC", "custom", timedelta(0)), "length"),
        (lambda: Layer("x", ("a",), T, "UTC", "custom", timedelta(hours=-12)), "length"),
        (lambda: Layer("x", ("a",), T, "UTC", "custom", timedelta(hours=1, minutes=30)), "length"),
        (lambda: Layer("x", ("a",), T, "UTC", "daily", timedelta(hours=12)), "length"),
        (lambda: Override("a", T, T), "end"),
        (lambda: Override("a", T, T - timedelta(hours=1)), "end"),
        (lambda: Override("a", datetime(2025, 1, 1), T), "start"),
        (lambda: Override("", T, T + timedelta(hours=1)), "user"),
        (lambda: on_call(Schedule(), datetime(2025, 1, 1)), "at"),
        (lambda: shifts(Schedule(), T, T), "end"),
        (lambda: shifts(Schedule(), datetime(2025, 1, 1), T), "start"),
    ],
)
def test_invalid_input_names_the_field(build, field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        build()
    assert caught.value.field == field


# --- properties --------------------------------------------------------------------------------

ZONES = ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata", "UTC", "Pacific/Apia"]
instants = st.datetimes(min_value=datetime(2010, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC))


@st.composite
def layers(draw: st.DrawFn) -> Layer:
    rotation = draw(st.sampled_from(["daily", "weekly", "custom"]))
    length = timedelta(hours=draw(st.integers(1, 72))) if rotation == "custom" else None
    users = tuple(draw(st.lists(st.sampled_from(["ana", "ben", "cho", "dov"]), min_size=1, max_size=4)))
    return Layer("p", users, draw(instants), draw(st.sampled_from(ZONES)), rotation, length)  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(
    layer_=layers(),
    offset=st.timedeltas(timedelta(0), timedelta(days=400)),
    span=st.timedeltas(timedelta(seconds=1), timedelta(days=30)),
    probes=st.lists(st.floats(0, 1, exclude_max=True), min_size=1, max_size=10),
)
def test_gap_free_layer_has_exactly_one_user_and_a_seamless_timeline(
    layer_: Layer, offset: timedelta, span: timedelta, probes: list[float]
) -> None:
    schedule = Schedule(layers=(layer_,))
    start = layer_.start + offset
    end = start + span
    timeline = shifts(schedule, start, end)
    assert timeline[0].start == start
    assert timeline[-1].end == end
    for before, after in pairwise(timeline):
        assert before.end == after.start  # no gap, no overlap
        assert before.user != after.user  # merged
    assert all(s.start < s.end for s in timeline)
    for p in probes:
        at = inside(start, span, p)
        user = on_call(schedule, at)
        assert user in layer_.users
        [containing] = [s for s in timeline if s.start <= at < s.end]
        assert containing.user == user


@settings(max_examples=200, deadline=None)
@given(
    stack=st.lists(layers(), max_size=3),
    overrides=st.lists(st.tuples(st.sampled_from(["ovi", "pax"]), instants, st.integers(1, 72 * 60)), max_size=3),
    probe=st.floats(0, 1, exclude_max=True),
)
def test_overrides_win_and_on_call_agrees_with_shifts(
    stack: list[Layer], overrides: list[tuple[str, datetime, int]], probe: float
) -> None:
    ovs = tuple(Override(u, s, s + timedelta(minutes=m)) for u, s, m in overrides)
    schedule = Schedule(layers=tuple(stack), overrides=ovs)
    for ov in ovs:
        at = inside(ov.start, ov.end - ov.start, probe)
        covering = [o for o in ovs if o.start <= at < o.end]
        assert on_call(schedule, at) == covering[-1].user
        assert on_call(schedule, ov.start) in {o.user for o in ovs}
    points = [layer_.start for layer_ in stack] + [o.start for o in ovs]
    if not points:
        return
    start = min(points) - timedelta(days=1)
    end = max(points) + timedelta(days=3)
    if end - start > timedelta(days=60):
        end = start + timedelta(days=60)
    timeline = shifts(schedule, start, end)
    at = inside(start, end - start, probe)
    found = [s.user for s in timeline if s.start <= at < s.end]
    assert found == ([] if on_call(schedule, at) is None else [on_call(schedule, at)])
    for s in timeline:
        assert on_call(schedule, s.start) == s.user
        assert on_call(schedule, s.end - timedelta(microseconds=1)) == s.user


@settings(max_examples=300, deadline=None)
@given(layer_=layers(), k=st.integers(0, 2000))
def test_daily_and_weekly_handoffs_keep_the_local_wall_time(layer_: Layer, k: int) -> None:
    if layer_.rotation == "custom":
        return
    zone = ZoneInfo(layer_.time_zone)
    wall = layer_.start.astimezone(zone)
    handoff = layer_.handoff(k).astimezone(zone)
    step = 1 if layer_.rotation == "daily" else 7
    expected_day = wall.date() + timedelta(days=k * step)
    intended = datetime.combine(expected_day, wall.time(), tzinfo=zone)
    exists = intended.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == intended.replace(tzinfo=None)
    if exists:
        assert handoff.replace(tzinfo=None) == intended.replace(tzinfo=None)
    # Hand-offs never run backwards, so no shift has a negative length.
    assert layer_.handoff(k + 1) >= layer_.handoff(k)
