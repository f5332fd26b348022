"""The incident API: the whole lifecycle over HTTP, and every kind of bad input refused cleanly."""

from __future__ import annotations

from datetime import datetime, timedelta

import httpx
import pytest

from crisisdesk.auth.models import Role, Scope
from crisisdesk.catalog.models import Component, ComponentStatusChange
from crisisdesk.config import Settings
from crisisdesk.incident.models import Incident, IncidentUpdate, RoleAssignment, TimelineEvent
from crisisdesk.kit.db import MAX_OFFSET, Database
from crisisdesk.kit.time import utcnow
from tests.fixtures.api import count_rows, error_locs, error_text
from tests.fixtures.auth import api_key_headers, make_actor
from tests.fixtures.comms import allow_free_text
from tests.fixtures.incident import make_component

API = "/api/v1"


@pytest.fixture(autouse=True)
async def _free_text(settings: Settings) -> None:
    """These tests are about the lifecycle; tests/comms covers who may publish free text."""
    database = Database(settings.database_url)
    try:
        await allow_free_text(database)
    finally:
        await database.dispose()


async def _component(db: Database, name: str = "Web app") -> str:
    async with db.session() as s:
        return (await make_component(s, name)).id


async def _declare(client: httpx.AsyncClient, headers: dict[str, str], **body: object) -> dict[str, object]:
    payload = {"name": "Sign-in failures", "severity": "SEV1", "body": "We are investigating.", **body}
    response = await client.post(f"{API}/incidents", json=payload, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def _aware(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    assert parsed.tzinfo is not None, f"{value} has no offset"
    return parsed


async def test_incident_lifecycle_over_the_api(client: httpx.AsyncClient, db: Database) -> None:
    headers = await api_key_headers(db, Role.responder)
    web = await _component(db)
    holder, _ = await make_actor(db, Role.responder)

    incident = await _declare(
        client, headers, components={web: "major_outage"}, roles={"incident_commander": holder.id}
    )
    iid = incident["id"]
    assert incident["status"] == "investigating" and incident["impact"] == "critical"
    assert incident["components"] == [
        {"component_id": web, "status": "major_outage", "added_at": incident["components"][0]["added_at"]}
    ]
    assert [r["role"] for r in incident["roles"]] == ["incident_commander"]
    first = incident["updates"][0]
    assert first["affected_components"] == [
        {"component_id": web, "old_status": "operational", "new_status": "major_outage"}
    ]
    # SEV1 promises the next update within its 15-minute cadence, with an offset in the answer
    assert timedelta(minutes=14) < _aware(incident["next_update_at"]) - utcnow() <= timedelta(minutes=15)

    promise = (utcnow() + timedelta(minutes=40)).isoformat()
    response = await client.post(
        f"{API}/incidents/{iid}/updates",
        headers=headers,
        json={
            "status": "identified",
            "body": "Certificate expired.",
            "components": {web: "partial_outage"},
            "next_update_at": promise,
        },
    )
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "identified"
    assert _aware(response.json()["next_update_at"]) == datetime.fromisoformat(promise)

    note = await client.post(f"{API}/incidents/{iid}/notes", headers=headers, json={"body": "Rotating now."})
    assert note.status_code == 201 and note.json()["visibility"] == "internal"

    role = await client.put(f"{API}/incidents/{iid}/roles/scribe", headers=headers, json={"user_id": holder.id})
    assert role.status_code == 200
    assert {r["role"] for r in role.json()["roles"] if r["ended_at"] is None} == {"incident_commander", "scribe"}

    severity = await client.post(
        f"{API}/incidents/{iid}/severity", headers=headers, json={"severity": "SEV2", "reason": "Only SSO customers"}
    )
    assert severity.status_code == 200 and severity.json()["severity"] == "SEV2"

    listed = await client.get(f"{API}/incidents", params={"status": "open"}, headers=headers)
    assert [i["id"] for i in listed.json()] == [iid]
    assert (await client.get(f"{API}/incidents", params={"status": "resolved"}, headers=headers)).json() == []

    resolved = await client.post(f"{API}/incidents/{iid}/resolve", headers=headers, json={"body": "Fixed."})
    assert resolved.status_code == 200, resolved.text
    assert resolved.json()["status"] == "resolved" and resolved.json()["resolved_at"]
    async with db.sessionmaker() as s:
        assert (await s.get(Component, web)).status == "operational"

    postmortem = await client.put(
        f"{API}/incidents/{iid}/postmortem", headers=headers, json={"body": "# What happened", "publish": True}
    )
    assert postmortem.status_code == 200 and postmortem.json()["status"] == "postmortem"
    listed = await client.get(f"{API}/incidents", params={"status": "resolved"}, headers=headers)
    assert [i["id"] for i in listed.json()] == [iid]

    timeline = await client.get(f"{API}/incidents/{iid}/timeline", headers=headers)
    kinds = [e["kind"] for e in timeline.json()]
    for kind in (
        "declared",
        "update_posted",
        "note_added",
        "role_assigned",
        "severity_changed",
        "resolved",
        "postmortem_published",
    ):
        assert kind in kinds
    got = await client.get(f"{API}/incidents/{iid}", headers=headers)
    assert [u["status"] for u in got.json()["updates"]] == ["resolved", "identified", "identified", "investigating"]


async def test_list_pages_with_limit_and_offset(client: httpx.AsyncClient, db: Database) -> None:
    headers = await api_key_headers(db)
    for n in range(3):
        await _declare(client, headers, name=f"Incident {n}")
    page = await client.get(f"{API}/incidents", params={"limit": 2, "offset": 1}, headers=headers)
    assert [i["name"] for i in page.json()] == ["Incident 1", "Incident 0"]
    bad = await client.get(f"{API}/incidents", params={"status": "sideways"}, headers=headers)
    assert bad.status_code == 422 and ["query", "status"] in error_locs(bad)
    # An offset no database integer holds is refused by name (SQLite could not bind it: a 500).
    for offset in (MAX_OFFSET + 1, 10**20):
        deep = await client.get(f"{API}/incidents", params={"offset": offset}, headers=headers)
        assert deep.status_code == 422 and error_locs(deep) == [["query", "offset"]]
    assert (await client.get(f"{API}/incidents", params={"offset": MAX_OFFSET}, headers=headers)).json() == []


async def test_declare_with_unknown_component_is_404_and_stores_nothing(
    client: httpx.AsyncClient, db: Database
) -> None:
    """A component id that does not exist: 404 naming components.<id>; no incident, no update."""
    headers = await api_key_headers(db)
    response = await client.post(
        f"{API}/incidents",
        headers=headers,
        json={"name": "x", "severity": "SEV2", "body": "y", "components": {"nope": "major_outage"}},
    )
    assert response.status_code == 404
    assert ["body", "components", "nope"] in error_locs(response)
    assert await count_rows(db, Incident) == 0 and await count_rows(db, IncidentUpdate) == 0


async def test_declare_with_invalid_component_status_is_422(client: httpx.AsyncClient, db: Database) -> None:
    """A component status outside the Statuspage enum: 422 naming the component; nothing changes."""
    headers = await api_key_headers(db)
    web = await _component(db)
    response = await client.post(
        f"{API}/incidents",
        headers=headers,
        json={"name": "x", "severity": "SEV2", "body": "y", "components": {web: "on_fire"}},
    )
    assert response.status_code == 422
    assert ["body", "components", web] in error_locs(response)
    assert await count_rows(db, Incident) == 0
    assert await count_rows(db, ComponentStatusChange) == 1  # only the creation


async def test_update_with_invalid_incident_status_is_422(client: httpx.AsyncClient, db: Database) -> None:
    """Status 'fixed' is not an incident status: 422 on body.status; the update count is unchanged."""
    headers = await api_key_headers(db)
    iid = (await _declare(client, headers))["id"]
    response = await client.post(
        f"{API}/incidents/{iid}/updates", headers=headers, json={"status": "fixed", "body": "done"}
    )
    assert response.status_code == 422 and ["body", "status"] in error_locs(response)
    assert await count_rows(db, IncidentUpdate) == 1


async def test_nul_characters_are_refused_by_name_not_a_database_error(client: httpx.AsyncClient, db: Database) -> None:
    """PostgreSQL cannot store NUL in text; SQLite can. Both must answer the same clear 4xx.

    Tried: a NUL in an update's body (422 naming body, nothing stored), in an incident's name
    (422 naming name), and in an incident id in the path (404, no query).
    """
    headers = await api_key_headers(db)
    iid = (await _declare(client, headers))["id"]
    response = await client.post(
        f"{API}/incidents/{iid}/updates", headers=headers, json={"status": "identified", "body": "a\u0000b"}
    )
    assert response.status_code == 422 and ["body", "body"] in error_locs(response)
    assert await count_rows(db, IncidentUpdate) == 1
    response = await client.post(
        f"{API}/incidents", headers=headers, json={"name": "x\u0000", "severity": "SEV3", "body": "b"}
    )
    assert response.status_code == 422 and ["body", "name"] in error_locs(response)
    assert await count_rows(db, Incident) == 1
    assert (await client.get(f"{API}/incidents/a%00b", headers=headers)).status_code == 404


async def test_resolving_twice_is_409_and_writes_nothing(client: httpx.AsyncClient, db: Database) -> None:
    """A second resolve: 409 naming status; no extra update or timeline event is stored."""
    headers = await api_key_headers(db)
    iid = (await _declare(client, headers))["id"]
    assert (
        await client.post(f"{API}/incidents/{iid}/resolve", headers=headers, json={"body": "Fixed."})
    ).status_code == 200
    updates, events = await count_rows(db, IncidentUpdate), await count_rows(db, TimelineEvent)
    again = await client.post(f"{API}/incidents/{iid}/resolve", headers=headers, json={"body": "Fixed again."})
    assert again.status_code == 409
    assert ["body", "status"] in error_locs(again) and "already resolved" in error_text(again)
    assert await count_rows(db, IncidentUpdate) == updates and await count_rows(db, TimelineEvent) == events


async def test_next_update_in_the_past_is_422(client: httpx.AsyncClient, db: Database) -> None:
    """A promise an hour ago: 422 naming next_update_at; nothing stored."""
    headers = await api_key_headers(db)
    past = (utcnow() - timedelta(hours=1)).isoformat()
    response = await client.post(
        f"{API}/incidents", headers=headers, json={"name": "x", "severity": "SEV2", "body": "y", "next_update_at": past}
    )
    assert response.status_code == 422
    assert ["body", "next_update_at"] in error_locs(response) and "future" in error_text(response)
    assert await count_rows(db, Incident) == 0


async def test_naive_datetime_is_refused_naming_the_field(client: httpx.AsyncClient, db: Database) -> None:
    """A datetime without an offset is ambiguous: 422 naming next_update_at."""
    headers = await api_key_headers(db)
    naive = (utcnow() + timedelta(minutes=30)).replace(tzinfo=None).isoformat()
    response = await client.post(
        f"{API}/incidents",
        headers=headers,
        json={"name": "x", "severity": "SEV2", "body": "y", "next_update_at": naive},
    )
    assert response.status_code == 422
    assert ["body", "next_update_at"] in error_locs(response) and "timezone" in error_text(response)
    assert await count_rows(db, Incident) == 0


async def test_oversized_body_is_413(client: httpx.AsyncClient, db: Database, settings: object) -> None:
    """A body over settings.max_body_bytes is refused before it is read; nothing stored."""
    headers = await api_key_headers(db)
    limit = settings.max_body_bytes  # type: ignore[attr-defined]
    response = await client.post(
        f"{API}/incidents", headers=headers, json={"name": "big", "severity": "SEV2", "body": "x" * (limit + 10)}
    )
    assert response.status_code == 413
    assert ["body"] in error_locs(response) and str(limit) in error_text(response)
    assert await count_rows(db, Incident) == 0


async def test_malformed_json_is_422_naming_body(client: httpx.AsyncClient, db: Database) -> None:
    """A truncated JSON document: 422 with loc starting at body; nothing stored."""
    headers = {**await api_key_headers(db), "content-type": "application/json"}
    response = await client.post(f"{API}/incidents", headers=headers, content=b'{"name": "x", "severity": ')
    assert response.status_code == 422
    assert error_locs(response)[0][0] == "body" and "json" in response.json()["detail"][0]["type"]
    assert await count_rows(db, Incident) == 0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("severity", 5),
        ("severity", "SEV9"),
        ("deliver_notifications", "maybe"),
        ("components", ["web"]),
        ("name", ""),
        ("roles", {"chief": "u1"}),
        ("colour", "red"),
    ],
)
async def test_wrong_types_are_422_naming_the_field(
    client: httpx.AsyncClient, db: Database, field: str, value: object
) -> None:
    """Each wrong type or unknown field gives 422 whose loc names that field; nothing stored."""
    headers = await api_key_headers(db)
    payload = {"name": "x", "severity": "SEV2", "body": "y", field: value}
    response = await client.post(f"{API}/incidents", headers=headers, json=payload)
    assert response.status_code == 422, response.text
    assert any(loc[:2] == ["body", field] for loc in error_locs(response))
    assert await count_rows(db, Incident) == 0


async def test_missing_fields_are_listed(client: httpx.AsyncClient, db: Database) -> None:
    """An empty object: each required field is named."""
    response = await client.post(f"{API}/incidents", headers=await api_key_headers(db), json={})
    assert response.status_code == 422
    assert {tuple(loc) for loc in error_locs(response)} >= {("body", "name"), ("body", "severity"), ("body", "body")}


async def test_unknown_ids_are_404(client: httpx.AsyncClient, db: Database) -> None:
    headers = await api_key_headers(db)
    assert (await client.get(f"{API}/incidents/nope", headers=headers)).status_code == 404
    assert (
        await client.post(f"{API}/incidents/nope/updates", headers=headers, json={"status": "identified", "body": "x"})
    ).status_code == 404
    iid = (await _declare(client, headers))["id"]
    unknown_user = await client.put(f"{API}/incidents/{iid}/roles/scribe", headers=headers, json={"user_id": "ghost"})
    assert unknown_user.status_code == 404 and ["body", "user_id"] in error_locs(unknown_user)
    unknown_role = await client.put(f"{API}/incidents/{iid}/roles/chief", headers=headers, json={"user_id": None})
    assert unknown_role.status_code == 422 and ["path", "role"] in error_locs(unknown_role)
    assert await count_rows(db, RoleAssignment) == 0


async def test_severity_change_needs_a_reason_and_a_change(client: httpx.AsyncClient, db: Database) -> None:
    headers = await api_key_headers(db)
    iid = (await _declare(client, headers))["id"]
    blank = await client.post(
        f"{API}/incidents/{iid}/severity", headers=headers, json={"severity": "SEV2", "reason": " "}
    )
    assert blank.status_code == 422 and ["body", "reason"] in error_locs(blank)
    same = await client.post(
        f"{API}/incidents/{iid}/severity", headers=headers, json={"severity": "SEV1", "reason": "x"}
    )
    assert same.status_code == 409 and ["body", "severity"] in error_locs(same)


async def test_postmortem_before_resolution_is_409(client: httpx.AsyncClient, db: Database) -> None:
    headers = await api_key_headers(db)
    iid = (await _declare(client, headers))["id"]
    response = await client.put(
        f"{API}/incidents/{iid}/postmortem", headers=headers, json={"body": "x", "publish": True}
    )
    assert response.status_code == 409
    async with db.sessionmaker() as s:
        assert (await s.get(Incident, iid)).postmortem_body is None


async def test_read_key_cannot_declare_and_viewer_cannot_write(client: httpx.AsyncClient, db: Database) -> None:
    read_only = await api_key_headers(db, Role.responder, scopes=[Scope.read])
    assert (await client.get(f"{API}/incidents", headers=read_only)).status_code == 200
    refused = await client.post(
        f"{API}/incidents", headers=read_only, json={"name": "x", "severity": "SEV2", "body": "y"}
    )
    assert refused.status_code == 403 and "write" in error_text(refused)
    viewer = await api_key_headers(db, Role.viewer)
    assert (
        await client.post(f"{API}/incidents", headers=viewer, json={"name": "x", "severity": "SEV2", "body": "y"})
    ).status_code == 403
    assert await count_rows(db, Incident) == 0


async def test_severity_policies(client: httpx.AsyncClient, db: Database) -> None:
    responder = await api_key_headers(db, Role.responder)
    admin = await api_key_headers(db, Role.admin)
    listed = await client.get(f"{API}/severity-policies", headers=responder)
    assert [p["severity"] for p in listed.json()] == ["SEV1", "SEV2", "SEV3", "SEV4"]
    denied = await client.put(f"{API}/severity-policies/SEV3", headers=responder, json={"cadence_minutes": 20})
    assert denied.status_code == 403
    changed = await client.put(
        f"{API}/severity-policies/SEV3", headers=admin, json={"cadence_minutes": 20, "required_roles": ["scribe"]}
    )
    assert changed.status_code == 200
    assert changed.json()["cadence_minutes"] == 20 and changed.json()["required_roles"] == ["scribe"]
    bad = await client.put(f"{API}/severity-policies/SEV3", headers=admin, json={"cadence_minutes": 0})
    assert bad.status_code == 422 and ["body", "cadence_minutes"] in error_locs(bad)
    unknown = await client.put(f"{API}/severity-policies/SEV7", headers=admin, json={})
    assert unknown.status_code == 422 and ["path", "severity"] in error_locs(unknown)


async def test_an_api_declaration_is_on_the_public_page_at_once(client: httpx.AsyncClient, db: Database) -> None:
    """The commit publishes a new snapshot before the response returns; the v2 JSON shows the incident."""
    headers = await api_key_headers(db)
    web = await _component(db)
    iid = (await _declare(client, headers, name="Public API errors", components={web: "major_outage"}))["id"]
    unresolved = (await client.get("/api/v2/incidents/unresolved.json")).json()
    assert [i["id"] for i in unresolved["incidents"]] == [iid]
    assert (await client.get("/api/v2/status.json")).json()["status"]["indicator"] == "critical"
    await client.post(f"{API}/incidents/{iid}/resolve", headers=headers, json={"body": "Fixed."})
    assert (await client.get("/api/v2/incidents/unresolved.json")).json()["incidents"] == []


async def test_markup_in_updates_is_sanitised_in_the_api(client: httpx.AsyncClient, db: Database) -> None:
    headers = await api_key_headers(db)
    hostile = '<script>alert(1)</script> [x](javascript:alert(2)) <img src=x onerror="alert(3)">'
    incident = await _declare(client, headers, body=hostile)
    html = incident["updates"][0]["body_html"].lower()
    assert "<script" not in html and "<img" not in html and 'href="javascript:' not in html
    assert incident["updates"][0]["body"] == hostile  # the source is kept as written
