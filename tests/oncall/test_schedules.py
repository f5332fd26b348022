"""Stored schedules answer what the rotation arithmetic answers; every bad layer or override is refused by field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from crisisdesk.auth.models import Role, User
from crisisdesk.kit.db import Database
from crisisdesk.kit.errors import Conflict, Forbidden, InvalidInput, NotFound
from crisisdesk.oncall import rotation, schedules
from crisisdesk.oncall.models import OnCallSchedule, ScheduleLayer
from crisisdesk.oncall.schedules import LayerInput
from tests.fixtures.auth import make_actor, make_user

BERLIN = ZoneInfo("Europe/Berlin")


async def _users(db: Database, n: int) -> list[User]:
    async with db.session() as session:
        return [await make_user(session) for _ in range(n)]


async def _weekly_berlin(db: Database, users: list[User], **kw: object) -> str:
    _, admin = await make_actor(db, Role.admin)
    async with db.session() as session:
        schedule = await schedules.create_schedule(
            session,
            admin,
            name=str(kw.get("name", "Incident commanders")),
            time_zone="Europe/Berlin",
            layers=[
                LayerInput(
                    name="primary",
                    users=[u.id for u in users],
                    start=datetime(2025, 3, 24, 9, 0),  # a Monday, 09:00 Berlin wall time
                    time_zone="Europe/Berlin",
                    rotation="weekly",
                )
            ],
        )
        return schedule.id


async def test_stored_weekly_berlin_schedule_hands_off_at_0900_local_across_march_change(db: Database) -> None:
    ana, ben, cho = await _users(db, 3)
    schedule_id = await _weekly_berlin(db, [ana, ben, cho])
    async with db.session() as session:
        loaded = await schedules.load_schedule(session, schedule_id)
        # The first hand-off after the 30 March change stays at 09:00 Berlin, now CEST (07:00 UTC).
        before = datetime(2025, 3, 31, 6, 59, tzinfo=UTC)
        after = datetime(2025, 3, 31, 7, 0, tzinfo=UTC)
        assert (await schedules.on_call(session, schedule_id, before)).id == ana.id  # type: ignore[union-attr]
        assert (await schedules.on_call(session, schedule_id, after)).id == ben.id  # type: ignore[union-attr]
        # What is stored answers the same as the rotation module at every hour of four weeks.
        t = datetime(2025, 3, 20, tzinfo=UTC)
        while t < datetime(2025, 4, 20, tzinfo=UTC):
            expected = rotation.on_call(loaded, t)
            got = await schedules.on_call(session, schedule_id, t)
            assert (got.id if got else None) == expected, t
            t += timedelta(hours=7)
        stored = await session.scalar(select(ScheduleLayer).where(ScheduleLayer.schedule_id == schedule_id))
        assert stored is not None and stored.start == datetime(2025, 3, 24, 8, 0, tzinfo=UTC)
        window = await schedules.shifts(
            session, schedule_id, datetime(2025, 3, 24, 8, tzinfo=UTC), datetime(2025, 4, 7, 7, tzinfo=UTC)
        )
        assert [(s.start.astimezone(BERLIN).hour, s.end - s.start) for s, _ in window] == [
            (9, timedelta(hours=167)),  # the week that loses an hour
            (9, timedelta(hours=168)),
        ]


async def test_override_wins_and_the_latest_override_wins_over_an_earlier_one(db: Database) -> None:
    ana, ben, cho = await _users(db, 3)
    schedule_id = await _weekly_berlin(db, [ana, ben])
    _, responder = await make_actor(db)
    t = datetime(2025, 3, 25, 12, tzinfo=UTC)
    async with db.session() as session:
        await schedules.add_override(
            session, responder, schedule_id, user_id=cho.id, start=t - timedelta(hours=1), end=t + timedelta(hours=1)
        )
    async with db.session() as session:
        assert (await schedules.on_call(session, schedule_id, t)).id == cho.id  # type: ignore[union-attr]
        await schedules.add_override(
            session, responder, schedule_id, user_id=ben.id, start=t, end=t + timedelta(minutes=30)
        )
    async with db.session() as session:
        assert (await schedules.on_call(session, schedule_id, t)).id == ben.id  # type: ignore[union-attr]
        assert (await schedules.on_call(session, schedule_id, t + timedelta(minutes=45))).id == cho.id  # type: ignore[union-attr]
        assert (await schedules.on_call(session, schedule_id, t + timedelta(hours=2))).id == ana.id  # type: ignore[union-attr]
        now = await schedules.now_and_until(session, schedule_id, t + timedelta(minutes=45))
        assert now.user is not None and now.user.id == cho.id and now.until == t + timedelta(hours=1)


async def test_deactivated_user_is_passed_over_to_the_layer_below(db: Database) -> None:
    ana, ben, cho = await _users(db, 3)
    schedule_id = await _weekly_berlin(db, [ana, ben])
    _, responder = await make_actor(db)
    t = datetime(2025, 3, 25, 12, tzinfo=UTC)
    async with db.session() as session:
        await schedules.add_override(
            session, responder, schedule_id, user_id=cho.id, start=t, end=t + timedelta(hours=1)
        )
    async with db.session() as session:
        (await session.get(User, cho.id)).is_active = False  # type: ignore[union-attr]
    async with db.session() as session:
        assert (await schedules.on_call(session, schedule_id, t)).id == ana.id  # type: ignore[union-attr]
        (await session.get(User, ana.id)).is_active = False  # type: ignore[union-attr]
    async with db.session() as session:
        assert await schedules.on_call(session, schedule_id, t) is None


async def test_missing_schedule_is_not_found(db: Database) -> None:
    async with db.session() as session:
        with pytest.raises(NotFound):
            await schedules.load_schedule(session, "nope")
        with pytest.raises(NotFound):
            await schedules.on_call(session, "bad\x00id")


LAYER_ERRORS = [
    ({"time_zone": "Mars/Olympus"}, "layers.0.time_zone"),
    ({"users": []}, "layers.0.users"),
    ({"users": ["no-such-user"]}, "layers.0.users"),
    ({"rotation": "monthly"}, "layers.0.rotation"),
    ({"rotation": "custom"}, "layers.0.length_hours"),
    ({"rotation": "custom", "length_hours": 0}, "layers.0.length_hours"),
    ({"rotation": "daily", "length_hours": 12}, "layers.0.length_hours"),
    ({"start": datetime(2025, 3, 30, 2, 30)}, "layers.0.start"),  # skipped by the spring-forward change
    ({"name": "x" * 201}, "layers.0.name"),
]


@pytest.mark.parametrize(("change", "field"), LAYER_ERRORS)
async def test_bad_layer_is_refused_by_field_and_nothing_is_stored(
    db: Database, change: dict[str, object], field: str
) -> None:
    (ana,) = await _users(db, 1)
    _, admin = await make_actor(db, Role.admin)
    fields: dict[str, object] = {
        "name": "primary",
        "users": [ana.id],
        "start": datetime(2025, 3, 24, 9),
        "time_zone": "Europe/Berlin",
        "rotation": "weekly",
    }
    fields.update(change)
    with pytest.raises(InvalidInput) as caught:
        async with db.session() as session:
            await schedules.create_schedule(session, admin, name="S", layers=[LayerInput(**fields)])  # type: ignore[arg-type]
    assert caught.value.field == field
    async with db.session() as session:
        assert await session.scalar(select(func.count()).select_from(OnCallSchedule)) == 0


async def test_inactive_user_in_layer_is_refused(db: Database) -> None:
    (ana,) = await _users(db, 1)
    async with db.session() as session:
        (await session.get(User, ana.id)).is_active = False  # type: ignore[union-attr]
    _, admin = await make_actor(db, Role.admin)
    layer = LayerInput("p", [ana.id], datetime(2025, 3, 24, 9), "Europe/Berlin", "daily")
    async with db.session() as session:
        with pytest.raises(InvalidInput, match="deactivated") as caught:
            await schedules.create_schedule(session, admin, name="S", layers=[layer])
    assert caught.value.field == "layers.0.users"


async def test_schedule_fields_permissions_and_unique_name(db: Database) -> None:
    (ana,) = await _users(db, 1)
    schedule_id = await _weekly_berlin(db, [ana])
    _, admin = await make_actor(db, Role.admin)
    _, responder = await make_actor(db)
    async with db.session() as session:
        with pytest.raises(Forbidden):
            await schedules.create_schedule(session, responder, name="Mine")
        with pytest.raises(Forbidden):
            await schedules.delete_schedule(session, responder, schedule_id)
        with pytest.raises(InvalidInput) as caught:
            await schedules.create_schedule(session, admin, name="  ")
        assert caught.value.field == "name"
        with pytest.raises(InvalidInput) as caught:
            await schedules.create_schedule(session, admin, name="Z", time_zone="Nowhere/City")
        assert caught.value.field == "time_zone"
        with pytest.raises(Conflict):
            await schedules.create_schedule(session, admin, name="incident COMMANDERS")
    async with db.session() as session:
        found = await schedules.find_schedule(session, "incident commanders")
        assert found.id == schedule_id
        await schedules.update_schedule(session, admin, schedule_id, description="Owns SEV1", layers=[])
    async with db.session() as session:
        assert await schedules.on_call(session, schedule_id, datetime(2025, 3, 25, tzinfo=UTC)) is None
        await schedules.delete_schedule(session, admin, schedule_id)
    async with db.session() as session:
        with pytest.raises(NotFound):
            await schedules.get_schedule(session, schedule_id)


OVERRIDE_ERRORS = [
    (lambda t: {"start": t.replace(tzinfo=None), "end": t + timedelta(hours=1)}, "start"),
    (lambda t: {"start": t, "end": t}, "end"),
    (lambda t: {"start": t, "end": t - timedelta(hours=1)}, "end"),
    (lambda t: {"start": t, "end": t + timedelta(days=31, seconds=1)}, "end"),
    (lambda t: {"user_id": "ghost"}, "user_id"),
]


@pytest.mark.parametrize(("change", "field"), OVERRIDE_ERRORS)
async def test_bad_override_is_refused_by_field(db: Database, change: object, field: str) -> None:
    (ana,) = await _users(db, 1)
    schedule_id = await _weekly_berlin(db, [ana])
    _, responder = await make_actor(db)
    t = datetime(2025, 3, 25, 12, tzinfo=UTC)
    fields: dict[str, object] = {"user_id": ana.id, "start": t, "end": t + timedelta(hours=1)}
    fields.update(change(t))  # type: ignore[operator]
    async with db.session() as session:
        with pytest.raises(InvalidInput) as caught:
            await schedules.add_override(session, responder, schedule_id, **fields)  # type: ignore[arg-type]
    assert caught.value.field == field


async def test_shifts_window_is_bounded(db: Database) -> None:
    (ana,) = await _users(db, 1)
    schedule_id = await _weekly_berlin(db, [ana])
    t = datetime(2025, 3, 25, tzinfo=UTC)
    async with db.session() as session:
        with pytest.raises(InvalidInput) as caught:
            await schedules.shifts(session, schedule_id, t, t + timedelta(days=91))
        assert caught.value.field == "end"
        with pytest.raises(InvalidInput) as caught:
            await schedules.on_call(session, schedule_id, datetime(2025, 3, 25))
        assert caught.value.field == "at"
