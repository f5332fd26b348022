"""Scheduling, editing and cancelling maintenance from the console."""

from __future__ import annotations

import re
from datetime import timedelta

import httpx
from sqlalchemy import func, select

from crisisdesk.config import Settings
from crisisdesk.incident import service as incidents
from crisisdesk.incident.models import Incident, Kind
from crisisdesk.kit.db import Database
from crisisdesk.kit.time import utcnow
from tests.fixtures.console import HTML, field_error, sign_in, utc_local
from tests.fixtures.incident import make_component
from tests.fixtures.notify import make_subscribers, run_jobs


async def _schedule(client: httpx.AsyncClient, csrf: str, components: list[str], **fields: str) -> httpx.Response:
    start = utcnow() + timedelta(days=2)
    end = start + timedelta(hours=2)
    data: dict[str, object] = {
        "csrf_token": csrf,
        "name": "Database upgrade",
        "body": "Planned upgrade.",
        "scheduled_for": utc_local(start),
        "scheduled_until": utc_local(end),
        "components": components,
        "auto_transition": "on",
        **fields,
    }
    return await client.post("/console/maintenance", data=data, headers=HTML)


async def test_schedule_edit_and_cancel(client: httpx.AsyncClient, db: Database) -> None:
    async with db.session() as s:
        api = await make_component(s, "Public API")
        web = await make_component(s, "Web app")
    _, csrf = await sign_in(client, db)
    form = await client.get("/console/maintenance/new")
    assert form.status_code == 200 and 'name="auto_transition" value="on" checked' in form.text
    response = await _schedule(client, csrf, [api.id])
    assert response.status_code == 303
    maintenance_id = response.headers["location"].rsplit("/", 1)[1]
    async with db.session() as s:
        m = await incidents.get_incident(s, maintenance_id, kind=Kind.maintenance)
        assert m.status == "scheduled" and m.auto_transition
        assert [c.component_id for c in m.components] == [api.id]
        planned_for = m.scheduled_for
    listing = await client.get("/console/maintenance")
    assert "Database upgrade" in listing.text.split('id="current-maintenance"', 1)[1]
    assert "Database upgrade" in (await client.get("/console")).text

    assert planned_for is not None
    new_end = planned_for + timedelta(hours=3)
    response = await client.post(
        f"/console/maintenance/{maintenance_id}/edit",
        headers=HTML,
        data={
            "csrf_token": csrf,
            "name": "Database upgrade (extended)",
            "scheduled_for": utc_local(planned_for),
            "scheduled_until": utc_local(new_end),
            "components": [api.id, web.id],
            "components_shown": "1",
            "body": "We need one more hour.",
        },
    )
    assert response.status_code == 303, response.text
    async with db.session() as s:
        m = await incidents.get_incident(s, maintenance_id, kind=Kind.maintenance)
        assert m.name == "Database upgrade (extended)"
        assert m.scheduled_until == new_end.replace(second=0, microsecond=0)
        assert {c.component_id for c in m.components} == {api.id, web.id}
        assert m.updates[0].body == "We need one more hour."

    response = await client.post(
        f"/console/maintenance/{maintenance_id}/cancel",
        headers=HTML,
        data={"csrf_token": csrf, "reason": "The vendor postponed the upgrade."},
    )
    assert response.status_code == 303
    async with db.session() as s:
        m = await incidents.get_incident(s, maintenance_id, kind=Kind.maintenance)
        assert m.cancelled_at is not None and m.status == "completed"
        assert "The vendor postponed the upgrade." in m.updates[0].body
    page = await client.get(f"/console/maintenance/{maintenance_id}")
    assert "cancelled" in page.text and 'id="cancel-form"' not in page.text
    again = await client.post(
        f"/console/maintenance/{maintenance_id}/cancel", headers=HTML, data={"csrf_token": csrf, "reason": "twice"}
    )
    assert again.status_code == 409 and "already over" in again.text


async def test_bad_window_rerenders_and_stores_nothing(client: httpx.AsyncClient, db: Database) -> None:
    async with db.session() as s:
        api = await make_component(s, "Public API")
    _, csrf = await sign_in(client, db)
    start = utcnow() + timedelta(days=1)
    cases = [
        (
            {"scheduled_until": utc_local(start - timedelta(hours=1)), "scheduled_for": utc_local(start)},
            "scheduled_until",
            "must be after",
        ),
        ({"scheduled_for": ""}, "scheduled_for", "enter a date and time"),
        ({"scheduled_for": "next week"}, "scheduled_for", "is not a time"),
        ({"body": " "}, "body", "must not be empty"),
    ]
    for fields, name, message in cases:
        response = await _schedule(client, csrf, [api.id], **fields)
        assert response.status_code == 422, fields
        assert message in (field_error(response.text, name) or ""), (name, response.text[-3000:])
        assert 'value="Database upgrade"' in response.text
        assert re.search(rf'value="{api.id}" checked', response.text)  # the chosen component stays chosen
    unknown = await _schedule(client, csrf, ["nope"])
    assert unknown.status_code == 404
    async with db.session() as s:
        assert await s.scalar(select(func.count()).select_from(Incident)) == 0


async def test_started_window_only_moves_its_end(client: httpx.AsyncClient, db: Database) -> None:
    async with db.session() as s:
        api = await make_component(s, "Public API")
    _, csrf = await sign_in(client, db)
    maintenance_id = (await _schedule(client, csrf, [api.id])).headers["location"].rsplit("/", 1)[1]
    assert (
        await client.post(f"/console/maintenance/{maintenance_id}/start", data={"csrf_token": csrf})
    ).status_code == 303
    page = await client.get(f"/console/maintenance/{maintenance_id}")
    assert re.search(r'name="scheduled_for"[^>]*disabled', page.text)
    async with db.session() as s:
        planned = (await incidents.get_incident(s, maintenance_id)).scheduled_for
    assert planned is not None
    end = planned + timedelta(hours=5)
    response = await client.post(
        f"/console/maintenance/{maintenance_id}/edit",
        headers=HTML,
        data={"csrf_token": csrf, "name": "Database upgrade", "scheduled_until": utc_local(end)},
    )
    assert response.status_code == 303, response.text
    async with db.session() as s:
        m = await incidents.get_incident(s, maintenance_id, kind=Kind.maintenance)
        assert m.status == "in_progress" and m.scheduled_until == end.replace(second=0, microsecond=0)
    response = await client.post(f"/console/maintenance/{maintenance_id}/complete", data={"csrf_token": csrf})
    assert response.status_code == 303
    async with db.session() as s:
        assert (await incidents.get_incident(s, maintenance_id)).status == "completed"


async def test_the_maintenance_page_shows_who_was_notified(
    client: httpx.AsyncClient, db: Database, settings: Settings
) -> None:
    """Announcing a window notifies subscribers; its page has the same live panel as an incident's."""
    async with db.session() as s:
        api = await make_component(s, "Public API")
        await make_subscribers(s, 3)
    _, csrf = await sign_in(client, db)
    maintenance_id = (await _schedule(client, csrf, [api.id])).headers["location"].rsplit("/", 1)[1]
    await run_jobs(db, settings)

    page = await client.get(f"/console/maintenance/{maintenance_id}", headers=HTML)
    assert f'data-fragment="/console/incidents/{maintenance_id}/deliveries"' in page.text
    panel = await client.get(f"/console/incidents/{maintenance_id}/deliveries", headers=HTML)
    assert panel.status_code == 200
    row = re.search(r'<tr data-channel="email">(.*?)</tr>', panel.text, re.S)
    assert row, panel.text
    pending = re.search(r'<td data-bucket="pending"[^>]*>(.*?)</td>', row.group(1), re.S)
    assert pending and re.sub(r"<[^>]+>", "", pending.group(1)).strip() == "3"
