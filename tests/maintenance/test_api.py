"""The maintenance API: schedule, edit, cancel, and bad windows refused."""

from __future__ import annotations

from datetime import timedelta

import httpx

from crisisdesk.auth.models import Role
from crisisdesk.incident.models import Incident
from crisisdesk.kit.db import Database
from crisisdesk.kit.time import utcnow
from tests.fixtures.api import count_rows, error_locs, error_text
from tests.fixtures.auth import api_key_headers
from tests.fixtures.incident import make_component

API = "/api/v1"


def _window(hours_from_now: float = 24, length: float = 2) -> dict[str, str]:
    start = utcnow() + timedelta(hours=hours_from_now)
    return {"scheduled_for": start.isoformat(), "scheduled_until": (start + timedelta(hours=length)).isoformat()}


async def test_schedule_edit_cancel(client: httpx.AsyncClient, db: Database) -> None:
    headers = await api_key_headers(db)
    async with db.session() as s:
        web, api = (await make_component(s, "Web app")).id, (await make_component(s, "API")).id
    created = await client.post(
        f"{API}/maintenances",
        headers=headers,
        json={"name": "Database upgrade", "body": "Read-only for 10 minutes.", "components": [web], **_window()},
    )
    assert created.status_code == 201, created.text
    mid = created.json()["id"]
    assert created.json()["status"] == "scheduled"
    assert [c["component_id"] for c in created.json()["components"]] == [web]

    edited = await client.patch(
        f"{API}/maintenances/{mid}",
        headers=headers,
        json={"name": "Database upgrade (EU)", "components": [web, api], **_window(48)},
    )
    assert edited.status_code == 200, edited.text
    assert edited.json()["name"] == "Database upgrade (EU)"
    assert {c["component_id"] for c in edited.json()["components"]} == {web, api}

    listed = await client.get(f"{API}/maintenances", headers=headers)
    assert [m["id"] for m in listed.json()] == [mid]
    assert (await client.get(f"{API}/maintenances/{mid}", headers=headers)).json()["name"] == "Database upgrade (EU)"

    cancelled = await client.post(f"{API}/maintenances/{mid}/cancel", headers=headers, json={"reason": "Postponed."})
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "completed" and cancelled.json()["cancelled_at"]
    again = await client.post(f"{API}/maintenances/{mid}/cancel", headers=headers, json={})
    assert again.status_code == 409 and ["body", "status"] in error_locs(again)


async def test_bad_windows_are_refused_and_nothing_is_stored(client: httpx.AsyncClient, db: Database) -> None:
    """End before start, a naive time, an end in the past, an unknown component: 4xx naming the field."""
    headers = await api_key_headers(db)
    base = {"name": "x", "body": "y"}
    start = utcnow() + timedelta(days=1)
    backwards = await client.post(
        f"{API}/maintenances",
        headers=headers,
        json={**base, "scheduled_for": start.isoformat(), "scheduled_until": (start - timedelta(hours=1)).isoformat()},
    )
    assert backwards.status_code == 422 and ["body", "scheduled_until"] in error_locs(backwards)
    naive = await client.post(
        f"{API}/maintenances",
        headers=headers,
        json={
            **base,
            "scheduled_for": start.replace(tzinfo=None).isoformat(),
            "scheduled_until": (start + timedelta(hours=1)).isoformat(),
        },
    )
    assert naive.status_code == 422 and ["body", "scheduled_for"] in error_locs(naive)
    assert "timezone" in error_text(naive)
    past = await client.post(f"{API}/maintenances", headers=headers, json={**base, **_window(-5, 1)})
    assert past.status_code == 422 and ["body", "scheduled_until"] in error_locs(past)
    unknown = await client.post(
        f"{API}/maintenances", headers=headers, json={**base, **_window(), "components": ["nope"]}
    )
    assert unknown.status_code == 404 and ["body", "components", "nope"] in error_locs(unknown)
    assert await count_rows(db, Incident) == 0


async def test_unknown_maintenance_is_404_and_an_incident_is_not_a_maintenance(
    client: httpx.AsyncClient, db: Database
) -> None:
    headers = await api_key_headers(db, Role.responder)
    assert (await client.get(f"{API}/maintenances/nope", headers=headers)).status_code == 404
    incident = await client.post(
        f"{API}/incidents", headers=headers, json={"name": "x", "severity": "SEV3", "body": "y"}
    )
    assert (
        await client.post(f"{API}/maintenances/{incident.json()['id']}/cancel", headers=headers, json={})
    ).status_code == 404
