"""The on-call console: who is on call, schedules with layers, overrides, shifts and "who at T" in the
schedule's zone, escalation policies, severity paging, and each person's contact methods and rules."""

from __future__ import annotations

import html
import re
from datetime import datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import httpx
from sqlalchemy import select

from crisisdesk.auth.models import Role, User
from crisisdesk.kit.db import Database
from crisisdesk.kit.time import utcnow
from crisisdesk.oncall import schedules
from crisisdesk.oncall.models import (
    ContactMethod,
    EscalationPolicy,
    NotificationRule,
    OnCallSchedule,
    ScheduleLayer,
    ScheduleOverride,
    SeverityPaging,
)
from crisisdesk.oncall.schedules import LayerInput
from tests.fixtures.api import count_rows
from tests.fixtures.auth import make_actor, make_user
from tests.fixtures.console import HTML, field_error, sign_in
from tests.fixtures.paging import level, make_policy

BERLIN = ZoneInfo("Europe/Berlin")


async def _people(db: Database, *names: str) -> list[User]:
    async with db.session() as session:
        return [await make_user(session, name=name) for name in names]


async def _daily_berlin(db: Database, users: list[User], start: datetime, *, name: str = "Incident commanders") -> str:
    """A schedule shown in Berlin time with one daily layer handing off at `start`'s wall time there."""
    _, admin = await make_actor(db, Role.admin)
    async with db.session() as session:
        schedule = await schedules.create_schedule(
            session,
            admin,
            name=name,
            time_zone="Europe/Berlin",
            layers=[
                LayerInput(
                    name="primary",
                    users=[u.id for u in users],
                    start=start,
                    time_zone="Europe/Berlin",
                    rotation="daily",
                )
            ],
        )
        return schedule.id


def _rows(page: str, css: str) -> list[str]:
    return re.findall(rf'<tr class="{css}"[^>]*>(.*?)</tr>', page, re.S)


def _turns(page: str, layer: int) -> list[str]:
    """The person chosen in each turn of a layer's fieldset ('' for an empty turn)."""
    selects = re.findall(rf'<select[^>]*name="layers\.{layer}\.users"[^>]*>(.*?)</select>', page, re.S)
    return [(re.findall(r'<option value="([^"]*)" selected>', s) or [""])[0] for s in selects]


def _answer(page: str) -> tuple[str, str]:
    """The "who at T" answer: the user id it names and its text."""
    found = re.search(r'<p id="at-answer" data-user-id="([^"]*)">(.*?)</p>', page, re.S)
    assert found, "no answer shown"
    return found.group(1), " ".join(html.unescape(re.sub(r"<[^>]+>", "", found.group(2))).split())


# ---------------------------------------------------------------- overview and schedule page


async def test_overview_shows_who_is_on_call_now_and_until_when_in_the_schedules_zone(
    client: httpx.AsyncClient, db: Database
) -> None:
    await sign_in(client, db, Role.viewer)
    ada, bob = await _people(db, "Ada Lovelace", "Bob Moog")
    schedule_id = await _daily_berlin(db, [ada, bob], datetime(2025, 1, 6, 9, 0))
    async with db.session() as session:
        expected = await schedules.now_and_until(session, schedule_id)
    assert expected.user is not None and expected.until is not None

    console = await client.get("/console", headers=HTML)
    assert 'href="/console/oncall"' in console.text and ">On-call<" in console.text
    page = await client.get("/console/oncall", headers=HTML)
    assert page.status_code == 200
    (row,) = _rows(page.text, "schedule-row")
    assert f'href="/console/oncall/schedules/{schedule_id}"' in row and "Incident commanders" in row
    assert expected.user.name in row
    # The hand-off is 09:00 on the wall clock in Berlin, whatever the offset is that day.
    until = expected.until.astimezone(BERLIN)
    assert until.strftime("%a %Y-%m-%d 09:00 %Z") in html.unescape(row)
    assert 'href="/console/oncall/policies"' in page.text and 'href="/console/oncall/me"' in page.text
    # A viewer is not offered a new schedule.
    assert "/console/oncall/schedules/new" not in page.text


async def test_schedule_page_shows_layers_and_the_next_14_days_of_shifts_in_the_zone(
    client: httpx.AsyncClient, db: Database
) -> None:
    await sign_in(client, db, Role.viewer)
    ada, bob = await _people(db, "Ada Lovelace", "Bob Moog")
    schedule_id = await _daily_berlin(db, [ada, bob], datetime(2025, 1, 6, 9, 0))

    page = await client.get(f"/console/oncall/schedules/{schedule_id}", headers=HTML)
    assert page.status_code == 200
    (layer,) = _rows(page.text, "layer-row")
    assert "Ada Lovelace, Bob Moog" in layer and "every day at 09:00 Europe/Berlin" in layer
    shifts = _rows(page.text, "shift-row")
    # Fourteen days from now hold 14 hand-offs at most and at least 13; the first shift is under way.
    assert 14 <= len(shifts) <= 15
    names = [("Ada" if "Ada Lovelace" in s else "Bob") for s in shifts]
    assert all(a != b for a, b in pairwise(names)), "daily shifts alternate"
    for shift in shifts[1:]:
        start = re.findall(r"<td>([^<]*)</td>", shift)[0]
        assert re.fullmatch(r"\w{3} \d{4}-\d\d-\d\d 09:00 CES?T", start), start
    # Viewers see no override form and no admin buttons.
    assert 'id="override-form"' not in page.text and "/edit" not in page.text and 'id="delete-form"' not in page.text


async def test_who_is_on_call_at_a_time_typed_in_berlin_across_the_march_change(
    client: httpx.AsyncClient, db: Database
) -> None:
    await sign_in(client, db, Role.viewer)
    ada, bob = await _people(db, "Ada Lovelace", "Bob Moog")
    # Hand-offs at 09:00 Berlin: Ada from Saturday 28 March (CET), Bob from Sunday 29 March (CEST, 07:00 UTC).
    schedule_id = await _daily_berlin(db, [ada, bob], datetime(2026, 3, 28, 9, 0))
    url = f"/console/oncall/schedules/{schedule_id}"

    # 08:30 in Berlin on the change day is 06:30 UTC: still Ada's shift (read as UTC or as +01:00 it would be Bob's).
    page = await client.get(url, params={"at": "2026-03-29T08:30"}, headers=HTML)
    assert page.status_code == 200
    who, said = _answer(page.text)
    assert who == ada.id
    assert "At Sun 2026-03-29 08:30 CEST (2026-03-29 06:30 UTC): Ada Lovelace, until Sun 2026-03-29 09:00 CEST" in said

    who, said = _answer((await client.get(url, params={"at": "2026-03-29T09:00"}, headers=HTML)).text)
    assert who == bob.id and "until Mon 2026-03-30 09:00 CEST" in said
    who, said = _answer((await client.get(url, params={"at": "2026-03-28T08:59"}, headers=HTML)).text)
    assert who == "" and "nobody is on call" in said  # before the layer starts

    # 02:30 does not exist in Berlin that night: refused by field, not guessed.
    skipped = await client.get(url, params={"at": "2026-03-29T02:30"}, headers=HTML)
    assert skipped.status_code == 422
    assert "does not exist in Europe/Berlin" in (field_error(skipped.text, "at") or "")
    assert 'id="at-answer"' not in skipped.text
    garbage = await client.get(url, params={"at": "next tuesday"}, headers=HTML)
    assert garbage.status_code == 422 and "is not a time" in (field_error(html.unescape(garbage.text), "at") or "")
    for edge in ("9999-12-31T23:59", "0001-01-01T00:00"):
        far = await client.get(url, params={"at": edge}, headers=HTML)
        assert far.status_code == 422 and "in the years 1970 to 9000" in (field_error(far.text, "at") or "")

    # 02:30 on the October change day happens twice; the first (CEST) is the one meant.
    who, said = _answer((await client.get(url, params={"at": "2026-10-25T02:30"}, headers=HTML)).text)
    assert "At Sun 2026-10-25 02:30 CEST (2026-10-25 00:30 UTC)" in said


async def test_a_responder_covers_a_shift_with_an_override_in_the_schedules_zone(
    client: httpx.AsyncClient, db: Database
) -> None:
    me, csrf = await sign_in(client, db, Role.responder, name="Cleo Cover")
    ada, bob = await _people(db, "Ada Lovelace", "Bob Moog")
    schedule_id = await _daily_berlin(db, [ada, bob], datetime(2025, 1, 6, 9, 0))
    url = f"/console/oncall/schedules/{schedule_id}"
    start = (utcnow() + timedelta(days=2)).astimezone(BERLIN).replace(hour=18, minute=0, second=0, microsecond=0)
    end = start + timedelta(hours=6)
    form = {"csrf_token": csrf, "user_id": me.id, "start": f"{start:%Y-%m-%dT%H:%M}", "end": f"{end:%Y-%m-%dT%H:%M}"}

    # Ending before it starts: refused by field, nothing stored.
    refused = await client.post(f"{url}/overrides", data={**form, "end": form["start"]}, headers=HTML)
    assert refused.status_code == 422
    assert field_error(refused.text, "end") == "an override must end after it starts"
    assert 'value="' + form["start"] + '"' in refused.text  # the form keeps what was typed
    missing = await client.post(f"{url}/overrides", data={**form, "start": ""}, headers=HTML)
    assert missing.status_code == 422 and field_error(missing.text, "start")
    assert await count_rows(db, ScheduleOverride) == 0

    added = await client.post(f"{url}/overrides", data=form, headers=HTML)
    assert added.status_code == 303
    async with db.session() as session:
        (override,) = (await session.scalars(select(ScheduleOverride))).all()
    # Typed in Berlin time, stored as the instant it means.
    assert override.start == start and override.end == end

    page = await client.get(url, headers=HTML)
    (row,) = _rows(page.text, "override-row")
    assert "Cleo Cover" in row and html.escape(start.strftime("%a %Y-%m-%d 18:00 %Z")) in row
    assert "Cleo Cover" in "".join(_rows(page.text, "shift-row"))
    who, _ = _answer((await client.get(url, params={"at": f"{start + timedelta(hours=1):%Y-%m-%dT%H:%M}"})).text)
    assert who == me.id

    removed = await client.post(f"{url}/overrides/{override.id}/delete", data={"csrf_token": csrf}, headers=HTML)
    assert removed.status_code == 303 and await count_rows(db, ScheduleOverride) == 0


async def test_a_viewer_cannot_add_overrides_and_a_responder_cannot_change_schedules(
    client: httpx.AsyncClient, db: Database
) -> None:
    ada, bob = await _people(db, "Ada Lovelace", "Bob Moog")
    schedule_id = await _daily_berlin(db, [ada, bob], datetime(2025, 1, 6, 9, 0))
    url = f"/console/oncall/schedules/{schedule_id}"
    viewer, csrf = await sign_in(client, db, Role.viewer)
    tried = {"csrf_token": csrf, "user_id": viewer.id, "start": "2027-01-01T09:00", "end": "2027-01-01T10:00"}
    assert (await client.post(f"{url}/overrides", data=tried, headers=HTML)).status_code == 403
    assert await count_rows(db, ScheduleOverride) == 0

    _, csrf = await sign_in(client, db, Role.responder)
    assert (await client.get("/console/oncall/schedules/new", headers=HTML)).status_code == 403
    assert (await client.get(f"{url}/edit", headers=HTML)).status_code == 403
    posted = await client.post(url, data={"csrf_token": csrf, "name": "Taken over"}, headers=HTML)
    assert posted.status_code == 403
    assert (await client.post(f"{url}/delete", data={"csrf_token": csrf}, headers=HTML)).status_code == 403
    created = await client.post("/console/oncall/schedules", data={"csrf_token": csrf, "name": "X"}, headers=HTML)
    assert created.status_code == 403
    assert [s.name for s in await _all(db, OnCallSchedule)] == ["Incident commanders"]


async def _all(db: Database, model: type) -> list:  # type: ignore[type-arg]
    async with db.session() as session:
        return list((await session.scalars(select(model))).all())


# ---------------------------------------------------------------- schedule forms


async def test_an_admin_builds_a_schedule_layer_by_layer_and_errors_name_the_layer(
    client: httpx.AsyncClient, db: Database
) -> None:
    _, csrf = await sign_in(client, db, Role.admin)
    ada, bob, cy = await _people(db, "Ada Lovelace", "Bob Moog", "Cy Young")
    new = await client.get("/console/oncall/schedules/new", headers=HTML)
    assert new.status_code == 200 and 'name="layers.0.users"' in new.text and 'name="layers.1.name"' not in new.text

    form = {
        "csrf_token": csrf,
        "name": "Support leads",
        "description": "Weekday support",
        "time_zone": "America/New_York",
        "layers.0.name": "primary",
        "layers.0.users": [ada.id, "", bob.id, ""],  # a browser sends the empty turns too
        "layers.0.rotation": "weekly",
        "layers.0.length_hours": "",
        "layers.0.start": "2026-03-02T08:00",
        "layers.0.time_zone": "America/New_York",
    }
    # "Add a layer" re-renders with one more (empty) fieldset and keeps what was typed; nothing stored.
    more = await client.post("/console/oncall/schedules", data={**form, "add_layer": "1"}, headers=HTML)
    assert more.status_code == 200
    assert 'name="layers.1.users"' in more.text and 'value="Support leads"' in more.text
    assert _turns(more.text, 0) == [ada.id, bob.id, "", "", ""] and _turns(more.text, 1) == ["", "", "", ""]
    assert await count_rows(db, OnCallSchedule) == 0

    second = {
        "layers.1.name": "weekend",
        "layers.1.rotation": "custom",
        "layers.1.length_hours": "48",
        "layers.1.start": "2026-03-07T08:00",
        "layers.1.time_zone": "America/New_York",
    }
    # A second layer without anyone in it is refused by its field; the first layer is not stored either.
    refused = await client.post("/console/oncall/schedules", data={**form, **second}, headers=HTML)
    assert refused.status_code == 422
    assert field_error(refused.text, "layers.1.users") == "a layer needs at least one user"
    assert 'value="weekend"' in refused.text and 'value="48"' in refused.text
    bad_zone = await client.post(
        "/console/oncall/schedules",
        data={**form, **second, "layers.1.users": cy.id, "layers.1.time_zone": "Mars/Olympus"},
        headers=HTML,
    )
    assert bad_zone.status_code == 422
    assert "unknown time zone 'Mars/Olympus'" in html.unescape(field_error(bad_zone.text, "layers.1.time_zone") or "")
    skipped = await client.post(
        "/console/oncall/schedules", data={**form, "layers.0.start": "2026-03-08T02:30"}, headers=HTML
    )
    assert skipped.status_code == 422 and "does not exist" in (field_error(skipped.text, "layers.0.start") or "")
    assert await count_rows(db, OnCallSchedule) == 0 and await count_rows(db, ScheduleLayer) == 0

    created = await client.post("/console/oncall/schedules", data={**form, **second, "layers.1.users": cy.id})
    assert created.status_code == 303
    schedule_id = created.headers["location"].rsplit("/", 1)[1]
    async with db.session() as session:
        layers = await schedules.layers_of(session, schedule_id)
    assert [(r.name, r.user_ids, r.rotation, r.length_hours) for r in layers] == [
        ("primary", [ada.id, bob.id], "weekly", None),
        ("weekend", [cy.id], "custom", 48),
    ]
    # 08:00 in New York on 2 March (EST) is 13:00 UTC.
    assert layers[0].start == datetime(2026, 3, 2, 13, 0, tzinfo=ZoneInfo("UTC"))

    page = await client.get(created.headers["location"], headers=HTML)
    assert "every Monday at 08:00 America/New_York" in page.text and "every 48 h from" in page.text


async def test_an_admin_edits_removes_a_layer_and_deletes_a_schedule_once_no_policy_pages_it(
    client: httpx.AsyncClient, db: Database
) -> None:
    _, csrf = await sign_in(client, db, Role.admin)
    ada, bob = await _people(db, "Ada Lovelace", "Bob Moog")
    schedule_id = await _daily_berlin(db, [ada, bob], datetime(2026, 3, 28, 9, 0))
    url = f"/console/oncall/schedules/{schedule_id}"

    edit = await client.get(f"{url}/edit", headers=HTML)
    assert edit.status_code == 200
    assert 'value="2026-03-28T09:00"' in edit.text and 'value="Europe/Berlin"' in edit.text
    assert _turns(edit.text, 0) == [ada.id, bob.id, "", "", ""]
    form = {
        "csrf_token": csrf,
        "name": "Commanders",
        "description": "",
        "time_zone": "Europe/Berlin",
        "layers.0.name": "primary",
        "layers.0.users": [bob.id, ada.id],
        "layers.0.rotation": "daily",
        "layers.0.start": "2026-03-28T10:00",
        "layers.0.time_zone": "Europe/Berlin",
        "layers.1.name": "extra",
        "layers.1.users": ada.id,
        "layers.1.rotation": "weekly",
        "layers.1.start": "2026-03-30T09:00",
        "layers.1.time_zone": "Europe/Berlin",
    }
    # Filling every turn and asking for more turns gives three more empty ones; nothing is stored.
    full = {**form, "layers.1.users": [ada.id, bob.id, ada.id, bob.id], "more_turns": "1"}
    more = await client.post(url, data=full, headers=HTML)
    assert more.status_code == 200 and _turns(more.text, 1) == [ada.id, bob.id, ada.id, bob.id, "", "", ""]
    less = await client.post(url, data={**form, "remove_layer": "0"}, headers=HTML)
    assert less.status_code == 200 and 'name="layers.1.name"' not in less.text and 'value="extra"' in less.text
    empty_name = await client.post(url, data={**form, "name": "  "}, headers=HTML)
    assert empty_name.status_code == 422 and field_error(empty_name.text, "name") == "a name is required"
    async with db.session() as session:
        assert (await schedules.get_schedule(session, schedule_id)).name == "Incident commanders"

    saved = await client.post(url, data=form)
    assert saved.status_code == 303
    async with db.session() as session:
        layers = await schedules.layers_of(session, schedule_id)
        assert (await schedules.get_schedule(session, schedule_id)).name == "Commanders"
    assert [(r.name, r.user_ids) for r in layers] == [("primary", [bob.id, ada.id]), ("extra", [ada.id])]
    # The turn order comes back as it was chosen, Bob first.
    assert _turns((await client.get(f"{url}/edit", headers=HTML)).text, 0)[:2] == [bob.id, ada.id]

    async with db.session() as session:
        policy = await make_policy(session, level(("schedule", schedule_id)), name="Commanders policy")
    refused = await client.post(f"{url}/delete", data={"csrf_token": csrf}, headers=HTML)
    assert refused.status_code == 409 and "Commanders policy" in refused.text
    assert await count_rows(db, OnCallSchedule) == 1
    await client.post(f"/console/oncall/policies/{policy.id}/delete", data={"csrf_token": csrf})
    deleted = await client.post(f"{url}/delete", data={"csrf_token": csrf})
    assert deleted.status_code == 303 and deleted.headers["location"] == "/console/oncall"
    assert await count_rows(db, OnCallSchedule) == 0 and await count_rows(db, ScheduleLayer) == 0


# ---------------------------------------------------------------- escalation policies


async def test_an_admin_creates_and_edits_a_policy_with_levels_of_users_and_schedules(
    client: httpx.AsyncClient, db: Database
) -> None:
    _, csrf = await sign_in(client, db, Role.admin)
    ada, bob = await _people(db, "Ada Lovelace", "Bob Moog")
    schedule_id = await _daily_berlin(db, [ada, bob], datetime(2025, 1, 6, 9, 0))
    new = await client.get("/console/oncall/policies/new", headers=HTML)
    assert new.status_code == 200 and 'name="levels.0.schedules"' in new.text

    form = {
        "csrf_token": csrf,
        "name": "Commanders",
        "description": "Wake the commander, then Bob",
        "repeats": "2",
        "levels.0.timeout_minutes": "5",
        "levels.0.schedules": schedule_id,
        "levels.1.timeout_minutes": "10",
        "levels.1.users": bob.id,
    }
    more = await client.post("/console/oncall/policies", data={**form, "add_level": "1"}, headers=HTML)
    assert more.status_code == 200 and 'name="levels.2.users"' in more.text
    # A level that notifies nobody, a timeout of 0, repeats out of range: each refused by its field.
    nobody = await client.post("/console/oncall/policies", data={**form, "levels.1.users": ""}, headers=HTML)
    assert nobody.status_code == 422
    assert field_error(nobody.text, "levels.1.targets") == "a level needs at least one user or schedule to notify"
    zero = await client.post("/console/oncall/policies", data={**form, "levels.0.timeout_minutes": "0"}, headers=HTML)
    assert zero.status_code == 422
    assert "from 1 to 1440" in (field_error(zero.text, "levels.0.timeout_minutes") or "")
    many = await client.post("/console/oncall/policies", data={**form, "repeats": "10"}, headers=HTML)
    assert many.status_code == 422 and "from 0 to 9" in (field_error(many.text, "repeats") or "")
    assert await count_rows(db, EscalationPolicy) == 0

    created = await client.post("/console/oncall/policies", data=form)
    assert created.status_code == 303
    policy_id = created.headers["location"].rsplit("/", 1)[1]
    async with db.session() as session:
        policy = await session.get(EscalationPolicy, policy_id)
        assert policy is not None
        assert policy.levels == [
            {"timeout_minutes": 5, "targets": [{"type": "schedule", "id": schedule_id}]},
            {"timeout_minutes": 10, "targets": [{"type": "user", "id": bob.id}]},
        ]
        assert policy.repeats == 2

    page = await client.get(f"/console/oncall/policies/{policy_id}", headers=HTML)
    assert page.status_code == 200
    levels = re.findall(r'<li class="level"[^>]*>(.*?)</li>', page.text, re.S)
    assert "whoever is on call on" in levels[0] and "Incident commanders" in levels[0]
    assert "escalate after 5 minutes" in levels[0]
    assert "Bob Moog" in levels[1] and "escalate after 10 minutes" in levels[1]
    assert "2 more times" in page.text

    edit = await client.get(f"/console/oncall/policies/{policy_id}/edit", headers=HTML)
    assert re.search(rf'<option value="{schedule_id}" selected>', edit.text)
    edited = {**form, "levels.0.users": ada.id, "remove_level": ""}
    edited.pop("levels.1.timeout_minutes")
    edited.pop("levels.1.users")
    saved = await client.post(f"/console/oncall/policies/{policy_id}", data=edited)
    assert saved.status_code == 303
    async with db.session() as session:
        policy = await session.get(EscalationPolicy, policy_id)
        assert policy is not None
        assert policy.levels == [
            {
                "timeout_minutes": 5,
                "targets": [{"type": "user", "id": ada.id}, {"type": "schedule", "id": schedule_id}],
            }
        ]

    # A responder sees the policy but no way to change it.
    await sign_in(client, db, Role.responder)
    seen = await client.get(f"/console/oncall/policies/{policy_id}", headers=HTML)
    assert seen.status_code == 200 and "/edit" not in seen.text
    assert (await client.get(f"/console/oncall/policies/{policy_id}/edit", headers=HTML)).status_code == 403


async def test_severity_paging_is_set_per_severity_and_a_role_filled_twice_is_refused(
    client: httpx.AsyncClient, db: Database
) -> None:
    _, csrf = await sign_in(client, db, Role.admin)
    (ada,) = await _people(db, "Ada Lovelace")
    async with db.session() as session:
        commanders = await make_policy(session, level(("user", ada.id)), name="Commanders")
        support = await make_policy(session, level(("user", ada.id)), name="Support")
    page = await client.get("/console/oncall/policies", headers=HTML)
    assert page.status_code == 200 and f'name="paging.SEV1.{commanders.id}"' in page.text

    good = {
        "csrf_token": csrf,
        f"paging.SEV1.{commanders.id}": "incident_commander",
        f"paging.SEV1.{support.id}": "page",
        f"paging.SEV2.{commanders.id}": "incident_commander",
        f"paging.SEV2.{support.id}": "",
    }
    saved = await client.post("/console/oncall/severity-paging", data=good)
    assert saved.status_code == 303
    rows = {(r.severity, r.escalation_policy_id, r.role) for r in await _all(db, SeverityPaging)}
    assert rows == {
        ("SEV1", commanders.id, "incident_commander"),
        ("SEV1", support.id, None),
        ("SEV2", commanders.id, "incident_commander"),
    }
    shown = await client.get("/console/oncall/policies", headers=HTML)
    assert re.search(
        rf'name="paging.SEV1.{support.id}"[^>]*>\s*<option value="">Not paged</option>\s*'
        r'<option value="page" selected>',
        shown.text,
    )

    # Two policies filling the commander role on SEV1: the second choice is named; nothing changes.
    twice = {**good, f"paging.SEV1.{support.id}": "incident_commander"}
    refused = await client.post("/console/oncall/severity-paging", data=twice, headers=HTML)
    assert refused.status_code == 422
    message = field_error(refused.text, f"paging.SEV1.{support.id}")
    assert message == "another policy already fills incident_commander on SEV1"
    unknown = await client.post("/console/oncall/severity-paging", data={**good, f"paging.SEV1.{support.id}": "chef"})
    assert unknown.status_code == 422 and "not an incident role" in html.unescape(unknown.text)
    assert {(r.severity, r.escalation_policy_id, r.role) for r in await _all(db, SeverityPaging)} == rows

    policy_page = await client.get(f"/console/oncall/policies/{commanders.id}", headers=HTML)
    assert "fills Incident Commander" in policy_page.text

    _, csrf = await sign_in(client, db, Role.responder)
    as_responder = await client.get("/console/oncall/policies", headers=HTML)
    assert 'id="paging-form"' not in as_responder.text and 'id="paging-table"' in as_responder.text
    forbidden = await client.post("/console/oncall/severity-paging", data={"csrf_token": csrf}, headers=HTML)
    assert forbidden.status_code == 403 and await count_rows(db, SeverityPaging) == 3


# ---------------------------------------------------------------- contact methods and rules


async def test_my_contact_methods_and_rules_and_a_push_secret_shown_once(
    client: httpx.AsyncClient, db: Database
) -> None:
    me, csrf = await sign_in(client, db, Role.responder, name="Cleo Cover")
    page = await client.get("/console/oncall/me", headers=HTML)
    assert page.status_code == 200 and "My contact methods" in page.text and 'id="method-form"' in page.text
    base = f"/console/oncall/people/{me.id}"

    bad = await client.post(f"{base}/contact-methods", data={"csrf_token": csrf, "kind": "sms", "address": "12"})
    assert bad.status_code == 422 and field_error(bad.text, "address")
    assert await count_rows(db, ContactMethod) == 0

    email = await client.post(
        f"{base}/contact-methods", data={"csrf_token": csrf, "kind": "email", "address": "Cleo@Example.com"}
    )
    assert email.status_code == 303 and email.headers["location"] == "/console/oncall/me#methods"
    push = await client.post(
        f"{base}/contact-methods",
        data={"csrf_token": csrf, "kind": "push", "address": "https://9.9.9.9/hooks/push", "label": "Phone"},
        headers=HTML,
    )
    assert push.status_code == 200
    secret = re.search(r'id="push-secret">(whsec_[^<]+)<', push.text)
    assert secret
    async with db.session() as session:
        methods = {m.kind: m for m in (await session.scalars(select(ContactMethod))).all()}
    assert methods["push"].secret == secret.group(1) and methods["email"].address == "cleo@example.com"
    again = await client.get("/console/oncall/me", headers=HTML)
    assert secret.group(1) not in again.text and "https://9.9.9.9/hooks/push" in again.text
    # The first email address brought a rule per urgency to email at once.
    assert len(_rows(again.text, "rule-row")) == 2

    rule = {"csrf_token": csrf, "urgency": "high", "contact_method_id": methods["push"].id, "delay_minutes": "61"}
    late = await client.post(f"{base}/rules", data=rule, headers=HTML)
    assert late.status_code == 422 and "0 to 60" in (field_error(late.text, "delay_minutes") or "")
    foreign = await client.post(f"{base}/rules", data={**rule, "contact_method_id": "nope", "delay_minutes": "2"})
    assert foreign.status_code == 422 and field_error(foreign.text, "contact_method_id")
    assert await count_rows(db, NotificationRule) == 2
    added = await client.post(f"{base}/rules", data={**rule, "delay_minutes": "2"})
    assert added.status_code == 303
    page = await client.get("/console/oncall/me", headers=HTML)
    rows = _rows(page.text, "rule-row")
    assert len(rows) == 3 and any("2 min" in r and "Push webhook Phone" in r for r in rows)

    async with db.session() as session:
        pushed = await session.scalar(select(NotificationRule).where(NotificationRule.delay_minutes == 2))
        assert pushed is not None
    removed = await client.post(f"{base}/rules/{pushed.id}/delete", data={"csrf_token": csrf})
    assert removed.status_code == 303 and await count_rows(db, NotificationRule) == 2
    # Removing the email address removes the rules that use it.
    gone = await client.post(f"{base}/contact-methods/{methods['email'].id}/delete", data={"csrf_token": csrf})
    assert gone.status_code == 303
    assert await count_rows(db, NotificationRule) == 0 and await count_rows(db, ContactMethod) == 1


async def test_only_an_admin_opens_and_changes_someone_elses_contact_methods(
    client: httpx.AsyncClient, db: Database
) -> None:
    (other,) = await _people(db, "Ada Lovelace")
    url = f"/console/oncall/people/{other.id}"
    _, csrf = await sign_in(client, db, Role.responder)
    assert (await client.get(url, headers=HTML)).status_code == 403
    tried = {"csrf_token": csrf, "kind": "email", "address": "ada@example.com"}
    assert (await client.post(f"{url}/contact-methods", data=tried, headers=HTML)).status_code == 403
    assert await count_rows(db, ContactMethod) == 0

    viewer, csrf = await sign_in(client, db, Role.viewer)
    mine = await client.get("/console/oncall/me", headers=HTML)
    assert mine.status_code == 200 and 'id="method-form"' not in mine.text
    own = {"csrf_token": csrf, "kind": "email", "address": "viewer@example.com"}
    refused = await client.post(f"/console/oncall/people/{viewer.id}/contact-methods", data=own, headers=HTML)
    assert refused.status_code == 403 and await count_rows(db, ContactMethod) == 0

    _, csrf = await sign_in(client, db, Role.admin)
    mine = await client.get("/console/oncall/me", headers=HTML)
    assert f'href="{url}"' in mine.text  # admins can open anyone's
    page = await client.get(url, headers=HTML)
    assert page.status_code == 200 and "Ada Lovelace" in page.text
    added = await client.post(f"{url}/contact-methods", data={**tried, "csrf_token": csrf})
    assert added.status_code == 303 and added.headers["location"] == f"{url}#methods"
    async with db.session() as session:
        (method,) = (await session.scalars(select(ContactMethod))).all()
    assert method.user_id == other.id
    assert (await client.get("/console/oncall/people/nobody", headers=HTML)).status_code == 404
