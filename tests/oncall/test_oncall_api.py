"""The on-call API: schedules answer over HTTP what the rotation arithmetic answers, and bad input is named."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx

from crisisdesk.auth.models import Role, Scope
from crisisdesk.kit.db import Database
from crisisdesk.oncall import rotation
from crisisdesk.oncall.models import ContactMethod, EscalationPolicy, OnCallSchedule, SeverityPaging
from tests.fixtures.api import count_rows, error_locs, error_text
from tests.fixtures.auth import api_key_headers, make_actor

API = "/api/v1"
BERLIN = ZoneInfo("Europe/Berlin")


async def _people(db: Database, n: int) -> list[str]:
    return [(await make_actor(db))[0].id for _ in range(n)]


async def _schedule(client: httpx.AsyncClient, admin: dict[str, str], users: list[str], **extra: object) -> dict:  # type: ignore[type-arg]
    body = {
        "name": "Incident commanders",
        "time_zone": "Europe/Berlin",
        "layers": [
            {
                "name": "primary",
                "users": users,
                "start": "2025-10-13T09:00",  # a Monday, Berlin wall time
                "time_zone": "Europe/Berlin",
                "rotation": "weekly",
            }
        ],
        **extra,
    }
    response = await client.post(f"{API}/schedules", json=body, headers=admin)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def test_on_call_across_the_berlin_october_change_matches_rotation(
    client: httpx.AsyncClient, db: Database
) -> None:
    admin = await api_key_headers(db, Role.admin)
    users = await _people(db, 3)
    schedule = await _schedule(client, admin, users)
    assert schedule["layers"][0]["start_local"] == "2025-10-13T09:00"
    assert schedule["layers"][0]["start"].startswith("2025-10-13T07:00")
    expected = rotation.Schedule(
        layers=(
            rotation.Layer(
                "primary", tuple(users), datetime(2025, 10, 13, 9, tzinfo=BERLIN), "Europe/Berlin", "weekly"
            ),
        )
    )
    # Berlin falls back on Sunday 26 October; the Monday hand-off stays at 09:00, now CET (08:00 UTC).
    handoff = datetime(2025, 10, 27, 8, tzinfo=UTC)
    for at in (
        handoff - timedelta(minutes=1),
        handoff,
        handoff - timedelta(hours=1),
        datetime(2025, 10, 26, 1, 30, tzinfo=UTC),
    ):
        response = await client.get(
            f"{API}/schedules/{schedule['id']}/on-call", params={"at": at.isoformat()}, headers=admin
        )
        assert response.status_code == 200, response.text
        assert response.json()["user"]["id"] == rotation.on_call(expected, at), at
    before = (
        await client.get(
            f"{API}/schedules/{schedule['id']}/on-call", params={"at": "2025-10-27T08:59:00+01:00"}, headers=admin
        )
    ).json()
    after = (
        await client.get(
            f"{API}/schedules/{schedule['id']}/on-call", params={"at": "2025-10-27T09:00:00+01:00"}, headers=admin
        )
    ).json()
    assert before["user"]["id"] == users[1] and after["user"]["id"] == users[2]
    assert datetime.fromisoformat(before["until"]) == handoff
    shifts = await client.get(
        f"{API}/schedules/{schedule['id']}/shifts",
        params={"start": "2025-10-20T09:00:00+02:00", "end": "2025-11-03T09:00:00+01:00"},
        headers=admin,
    )
    assert shifts.status_code == 200, shifts.text
    spans = [(datetime.fromisoformat(s["end"]) - datetime.fromisoformat(s["start"])) for s in shifts.json()]
    assert spans == [timedelta(hours=169), timedelta(hours=168)]  # the week that gains an hour, then a normal one
    assert [s["user_id"] for s in shifts.json()] == [users[1], users[2]]


async def test_override_wins_and_can_be_removed(client: httpx.AsyncClient, db: Database) -> None:
    admin = await api_key_headers(db, Role.admin)
    responder = await api_key_headers(db, Role.responder)
    viewer = await api_key_headers(db, Role.viewer)
    ana, ben, cover = await _people(db, 3)
    schedule = await _schedule(client, admin, [ana, ben])
    url = f"{API}/schedules/{schedule['id']}"
    body = {"user_id": cover, "start": "2025-10-14T12:00:00+02:00", "end": "2025-10-14T20:00:00+02:00"}
    assert (await client.post(f"{url}/overrides", json=body, headers=viewer)).status_code == 403
    created = await client.post(f"{url}/overrides", json=body, headers=responder)
    assert created.status_code == 201, created.text
    at = {"at": "2025-10-14T13:00:00+02:00"}
    assert (await client.get(f"{url}/on-call", params=at, headers=viewer)).json()["user"]["id"] == cover
    removed = await client.delete(f"{url}/overrides/{created.json()['id']}", headers=responder)
    assert removed.status_code == 200 and removed.json()["user_id"] == cover
    assert (await client.get(f"{url}/on-call", params=at, headers=viewer)).json()["user"]["id"] == ana
    assert (await client.delete(f"{url}/overrides/{created.json()['id']}", headers=responder)).status_code == 404
    naive = {**body, "start": "2025-10-14T12:00:00"}
    refused = await client.post(f"{url}/overrides", json=naive, headers=responder)
    assert refused.status_code == 422 and error_locs(refused) == [["body", "start"]]
    too_long = {**body, "end": "2025-11-20T12:00:00+02:00"}
    refused = await client.post(f"{url}/overrides", json=too_long, headers=responder)
    assert refused.status_code == 422 and error_locs(refused) == [["body", "end"]] and "31 days" in error_text(refused)


async def test_schedule_validation_names_the_field_and_stores_nothing(client: httpx.AsyncClient, db: Database) -> None:
    admin = await api_key_headers(db, Role.admin)
    (ana,) = await _people(db, 1)
    layer = {"users": [ana], "start": "2025-10-13T09:00", "time_zone": "Europe/Berlin", "rotation": "weekly"}
    cases = [
        ({"time_zone": "Mars/Base"}, ["body", "time_zone"]),
        ({"layers": [{**layer, "time_zone": "Europe/Atlantis"}]}, ["body", "layers", "0", "time_zone"]),
        ({"layers": [layer, {**layer, "users": []}]}, ["body", "layers", "1", "users"]),
        ({"layers": [{**layer, "users": ["ghost"]}]}, ["body", "layers", "0", "users"]),
        ({"layers": [{**layer, "rotation": "custom"}]}, ["body", "layers", "0", "length_hours"]),
        ({"layers": [{**layer, "start": "2025-03-30T02:30"}]}, ["body", "layers", "0", "start"]),
        ({"layers": [{**layer, "start": "yesterday"}]}, ["body", "layers", 0, "start"]),
        ({"name": ""}, ["body", "name"]),
    ]
    for change, loc in cases:
        body = {"name": "S", "layers": [layer], **change}
        response = await client.post(f"{API}/schedules", json=body, headers=admin)
        assert response.status_code == 422, (change, response.text)
        assert error_locs(response)[0] == loc, (change, response.text)
    assert await count_rows(db, OnCallSchedule) == 0


async def test_schedule_crud_and_permissions(client: httpx.AsyncClient, db: Database) -> None:
    admin = await api_key_headers(db, Role.admin)
    responder = await api_key_headers(db, Role.responder)
    reader = await api_key_headers(db, Role.admin, scopes=[Scope.read])
    users = await _people(db, 2)
    assert (await client.post(f"{API}/schedules", json={"name": "X"}, headers=responder)).status_code == 403
    schedule = await _schedule(client, admin, users)
    url = f"{API}/schedules/{schedule['id']}"
    assert (
        await client.post(f"{API}/schedules", json={"name": "incident commanders"}, headers=admin)
    ).status_code == 409
    listed = await client.get(f"{API}/schedules", headers=reader)
    assert [s["name"] for s in listed.json()] == ["Incident commanders"]
    patched = await client.patch(url, json={"description": "Runs SEV1", "layers": []}, headers=admin)
    assert (
        patched.status_code == 200 and patched.json()["layers"] == [] and patched.json()["description"] == "Runs SEV1"
    )
    nobody = await client.get(f"{url}/on-call", headers=reader)
    assert nobody.status_code == 200 and nobody.json()["user"] is None
    assert (await client.get(f"{url}/on-call", params={"at": "2025-10-14T12:00"}, headers=reader)).status_code == 422
    too_wide = await client.get(
        f"{url}/shifts", params={"start": "2025-01-01T00:00:00Z", "end": "2025-06-01T00:00:00Z"}, headers=reader
    )
    assert too_wide.status_code == 422 and error_locs(too_wide) == [["body", "end"]]
    assert (await client.delete(url, headers=responder)).status_code == 403
    assert (await client.delete(url, headers=admin)).status_code == 200
    assert (await client.get(url, headers=reader)).status_code == 404
    assert (await client.get(f"{API}/schedules/nope/on-call", headers=reader)).status_code == 404


async def test_contact_methods_and_rules_for_me(client: httpx.AsyncClient, db: Database) -> None:
    me = await api_key_headers(db, Role.responder)
    other = await api_key_headers(db, Role.responder)
    made = await client.post(
        f"{API}/users/me/contact-methods", json={"kind": "email", "address": "Me@Example.com"}, headers=me
    )
    assert made.status_code == 201, made.text
    assert made.json()["address"] == "me@example.com" and made.json()["secret"] is None
    user_id = made.json()["user_id"]
    rules = (await client.get(f"{API}/users/me/notification-rules", headers=me)).json()
    assert [(r["urgency"], r["delay_minutes"]) for r in rules] == [("high", 0), ("low", 0)]
    sms = await client.post(
        f"{API}/users/{user_id}/contact-methods", json={"kind": "sms", "address": "+14155550123"}, headers=me
    )
    assert sms.status_code == 201
    rule = await client.post(
        f"{API}/users/me/notification-rules",
        json={"urgency": "high", "contact_method_id": sms.json()["id"], "delay_minutes": 2},
        headers=me,
    )
    assert rule.status_code == 201, rule.text
    bad = await client.post(
        f"{API}/users/me/notification-rules",
        json={"urgency": "high", "contact_method_id": sms.json()["id"], "delay_minutes": 90},
        headers=me,
    )
    assert bad.status_code == 422 and error_locs(bad) == [["body", "delay_minutes"]]
    slack = await client.post(
        f"{API}/users/me/contact-methods", json={"kind": "slack_dm", "address": "#general"}, headers=me
    )
    assert slack.status_code == 422 and "Slack member id" in error_text(slack)
    # Someone else may neither see nor change them.
    assert (await client.get(f"{API}/users/{user_id}/contact-methods", headers=other)).status_code == 403
    attempt = {"kind": "email", "address": "x@example.com"}
    assert (await client.post(f"{API}/users/{user_id}/contact-methods", json=attempt, headers=other)).status_code == 403
    gone = await client.delete(f"{API}/users/me/contact-methods/{sms.json()['id']}", headers=me)
    assert gone.status_code == 200
    assert len((await client.get(f"{API}/users/me/notification-rules", headers=me)).json()) == 2
    assert await count_rows(db, ContactMethod) == 1


async def test_escalation_policies_and_severity_paging(client: httpx.AsyncClient, db: Database) -> None:
    admin = await api_key_headers(db, Role.admin)
    responder = await api_key_headers(db, Role.responder)
    users = await _people(db, 2)
    schedule = await _schedule(client, admin, users)
    levels = [
        {"timeout_minutes": 5, "targets": [{"type": "schedule", "id": schedule["id"]}]},
        {"timeout_minutes": 15, "targets": [{"type": "user", "id": users[1]}]},
    ]
    body = {"name": "IC", "levels": levels, "repeats": 1}
    assert (await client.post(f"{API}/escalation-policies", json=body, headers=responder)).status_code == 403
    bad_levels = [levels[0], levels[1], {"timeout_minutes": 5, "targets": []}]
    bad = await client.post(f"{API}/escalation-policies", json={**body, "levels": bad_levels}, headers=admin)
    assert bad.status_code == 422 and error_locs(bad) == [["body", "levels", "2", "targets"]]
    assert await count_rows(db, EscalationPolicy) == 0
    policy = await client.post(f"{API}/escalation-policies", json=body, headers=admin)
    assert policy.status_code == 201, policy.text
    assert policy.json()["levels"] == levels
    # A schedule a policy pages cannot be deleted.
    assert (await client.delete(f"{API}/schedules/{schedule['id']}", headers=admin)).status_code == 409
    patched = await client.patch(
        f"{API}/escalation-policies/{policy.json()['id']}", json={"repeats": 10}, headers=admin
    )
    assert patched.status_code == 422 and error_locs(patched) == [["body", "repeats"]]
    paging = {"entries": [{"severity": "SEV1", "policy_id": policy.json()["id"], "role": "incident_commander"}]}
    put = await client.put(f"{API}/severity-paging", json=paging, headers=admin)
    assert put.status_code == 200 and put.json() == paging
    assert (await client.put(f"{API}/severity-paging", json=paging, headers=responder)).status_code == 403
    wrong = {"entries": [*paging["entries"], {"severity": "SEV2", "policy_id": policy.json()["id"], "role": "chief"}]}
    refused = await client.put(f"{API}/severity-paging", json=wrong, headers=admin)
    assert refused.status_code == 422 and error_locs(refused) == [["body", "entries", "1", "role"]]
    assert (await client.get(f"{API}/severity-paging", headers=responder)).json() == paging
    assert await count_rows(db, SeverityPaging) == 1
    assert (await client.delete(f"{API}/escalation-policies/{policy.json()['id']}", headers=admin)).status_code == 200
    assert (await client.get(f"{API}/severity-paging", headers=responder)).json() == {"entries": []}


async def test_instants_at_the_end_of_the_calendar_are_refused_by_name(client: httpx.AsyncClient, db: Database) -> None:
    admin = await api_key_headers(db, Role.admin)
    schedule = await _schedule(client, admin, await _people(db, 2))
    # Tried: the last minute of year 9999 (its 90-day look-ahead would leave the calendar), and a
    # time whose offset pushes it past the end of the calendar in UTC.
    for at in ("9999-12-31T23:59:00+00:00", "9999-12-31T23:30:00-01:00", "1900-01-01T00:00:00+00:00"):
        response = await client.get(f"{API}/schedules/{schedule['id']}/on-call", params={"at": at}, headers=admin)
        assert response.status_code == 422, (at, response.text)
        assert ["query", "at"] in error_locs(response) or "at" in error_text(response), response.text


async def test_an_override_or_rule_id_past_any_database_integer_is_not_found(
    client: httpx.AsyncClient, db: Database
) -> None:
    admin = await api_key_headers(db, Role.admin)
    schedule = await _schedule(client, admin, await _people(db, 1))
    # Tried: ids of 2**63 and 10**30, past the largest 64-bit integer a database stores.
    for huge in (2**63, 10**30):
        for path in (f"schedules/{schedule['id']}/overrides/{huge}", f"users/me/notification-rules/{huge}"):
            response = await client.delete(f"{API}/{path}", headers=admin)
            assert response.status_code == 404, f"{path}: {response.text}"
            assert error_locs(response) in ([["body", "override_id"]], [["body", "rule_id"]]), path
