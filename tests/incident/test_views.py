"""The incident console: declaring, updating, notes, roles, severity, the dashboard and live refresh."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import func, select

from crisisdesk.auth.models import Role
from crisisdesk.catalog.models import Component
from crisisdesk.config import Settings
from crisisdesk.incident import service as incidents
from crisisdesk.incident.models import Incident, IncidentUpdate, RoleAssignment, TimelineEvent
from crisisdesk.kit.db import Database
from crisisdesk.kit.time import utcnow
from tests.fixtures.auth import make_actor
from tests.fixtures.comms import allow_free_text
from tests.fixtures.console import HTML, field_error, sign_in, utc_local
from tests.fixtures.incident import make_component, make_incident


@pytest.fixture(autouse=True)
async def _free_text(settings: Settings) -> None:
    """These tests are about the lifecycle; tests/comms covers who may publish free text."""
    database = Database(settings.database_url)
    try:
        await allow_free_text(database)
    finally:
        await database.dispose()


async def _declare(client: httpx.AsyncClient, csrf: str, **fields: str) -> httpx.Response:
    data = {
        "csrf_token": csrf,
        "name": "Sign-in failures for SSO users",
        "severity": "SEV1",
        "body": "We are investigating **failed sign-ins**.",
        **fields,
    }
    return await client.post("/console/incidents", data=data, headers=HTML)


def _incident_id(response: httpx.Response) -> str:
    assert response.status_code == 303, response.text
    match = re.fullmatch(r"/console/incidents/([\w-]+)", response.headers["location"])
    assert match, response.headers["location"]
    return match.group(1)


async def _count(db: Database, model: Any) -> int:
    async with db.session() as s:
        return int(await s.scalar(select(func.count()).select_from(model)) or 0)


async def test_declare_through_the_form_shows_on_dashboard_and_timeline(
    client: httpx.AsyncClient, db: Database
) -> None:
    async with db.session() as s:
        sso = await make_component(s, "Sign-in (SSO)")
        web = await make_component(s, "Web app")
    user, csrf = await sign_in(client, db)
    form = await client.get("/console/incidents/new")
    assert form.status_code == 200
    assert 'id="declare-form"' in form.text and f'name="component:{sso.id}"' in form.text
    sev1 = re.search(r'<tr data-severity="SEV1">(.*?)</tr>', form.text, re.S)
    assert sev1 and "<td>15 min</td>" in sev1.group(1)  # the SEV1 policy is shown
    incident_id = _incident_id(
        await _declare(
            client,
            csrf,
            **{f"component:{sso.id}": "major_outage", f"component:{web.id}": "", "role:incident_commander": user.id},
        )
    )
    async with db.session() as s:
        assert (await s.get(Component, sso.id)).status == "major_outage"  # type: ignore[union-attr]
        assert (await s.get(Component, web.id)).status == "operational"  # type: ignore[union-attr]

    dashboard = await client.get("/console")
    row = re.search(rf'<tr class="incident-row[^"]*" data-incident-id="{incident_id}">(.*?)</tr>', dashboard.text, re.S)
    assert row, dashboard.text
    assert "SEV1" in row.group(1) and "investigating" in row.group(1)
    assert f"Incident Commander: {user.name}" in row.group(1)
    assert "Missing Communications Lead" in row.group(1)  # required by SEV1, not yet filled
    assert "Due in" in row.group(1) and "overdue" not in row.group(0)

    page = await client.get(f"/console/incidents/{incident_id}")
    assert page.status_code == 200
    timeline = page.text.split('id="timeline"', 1)[1]
    assert "<strong>failed sign-ins</strong>" in timeline
    assert timeline.count('class="timeline-event') >= 3  # declared, update posted, role assigned


async def test_updates_through_to_resolution(client: httpx.AsyncClient, db: Database) -> None:
    async with db.session() as s:
        api = await make_component(s, "Public API")
    _, csrf = await sign_in(client, db)
    incident_id = _incident_id(await _declare(client, csrf, **{f"component:{api.id}": "partial_outage"}))
    promise = utcnow() + timedelta(minutes=40)
    steps = [("identified", {"next_update_at": utc_local(promise)}), ("monitoring", {}), ("resolved", {})]
    for status, extra in steps:
        response = await client.post(
            f"/console/incidents/{incident_id}/updates",
            headers=HTML,
            data={"csrf_token": csrf, "status": status, "body": f"Now {status}.", **extra},
        )
        assert response.status_code == 303, response.text
        assert response.headers["location"].startswith(f"/console/incidents/{incident_id}")
        if status == "identified":
            async with db.session() as s:
                got = (await incidents.get_incident(s, incident_id)).next_update_at
                assert got is not None and abs(got - promise.replace(second=0, microsecond=0)) < timedelta(seconds=1)
    async with db.session() as s:
        incident = await incidents.get_incident(s, incident_id)
        assert incident.status == "resolved" and incident.resolved_at is not None
        assert [u.status for u in incident.updates] == ["resolved", "monitoring", "identified", "investigating"]
        assert (await s.get(Component, api.id)).status == "operational"  # type: ignore[union-attr]
    page = await client.get(f"/console/incidents/{incident_id}")
    assert 'id="postmortem-form"' in page.text  # offered once resolved
    listing = await client.get("/console/incidents")
    assert incident_id in listing.text.split('id="resolved-list"', 1)[1]
    dashboard = await client.get("/console")
    assert f'data-incident-id="{incident_id}"' not in dashboard.text

    response = await client.post(
        f"/console/incidents/{incident_id}/postmortem",
        headers=HTML,
        data={"csrf_token": csrf, "postmortem_body": "Root cause: a bad deploy.", "action": "publish"},
    )
    assert response.status_code == 303
    async with db.session() as s:
        assert (await incidents.get_incident(s, incident_id)).status == "postmortem"


async def test_internal_notes_never_reach_the_public(client: httpx.AsyncClient, db: Database) -> None:
    _, csrf = await sign_in(client, db)
    incident_id = _incident_id(await _declare(client, csrf, body="Public words only."))
    secret = "Customer Initech escalated through their CEO"
    response = await client.post(
        f"/console/incidents/{incident_id}/notes", headers=HTML, data={"csrf_token": csrf, "body": secret}
    )
    assert response.status_code == 303
    page = await client.get(f"/console/incidents/{incident_id}")
    note = re.search(r'<li class="timeline-event kind-note_added internal".*?</li>', page.text, re.S)
    assert note and secret in note.group(0) and "Internal note" in note.group(0)
    public = await client.get("/api/v2/incidents.json")
    assert public.status_code == 200
    names = [i["name"] for i in orjson.loads(public.content)["incidents"]]
    assert "Sign-in failures for SSO users" in names  # the incident is public ...
    assert secret not in public.text  # ... its internal note is not
    assert secret not in (await client.get("/")).text


async def test_role_handover_keeps_history(client: httpx.AsyncClient, db: Database) -> None:
    first, csrf = await sign_in(client, db, name="Alice Ng")
    async with db.session() as s:
        from tests.fixtures.auth import make_user

        second = await make_user(s, name="Bob Ortiz")
    incident_id = _incident_id(await _declare(client, csrf))
    for user in (first, second):
        response = await client.post(
            f"/console/incidents/{incident_id}/roles",
            headers=HTML,
            data={"csrf_token": csrf, "role": "incident_commander", "user_id": user.id},
        )
        assert response.status_code == 303
    async with db.session() as s:
        rows = list(
            await s.scalars(
                select(RoleAssignment).where(RoleAssignment.incident_id == incident_id).order_by(RoleAssignment.id)
            )
        )
        assert [(r.user_id, r.ended_at is None) for r in rows] == [(first.id, False), (second.id, True)]
    page = await client.get(f"/console/incidents/{incident_id}")
    assert "Incident Commander handed over from Alice Ng to Bob Ortiz" in page.text
    history = re.search(r'data-role="incident_commander".*?<ul class="role-history[^>]*>(.*?)</ul>', page.text, re.S)
    assert history and "Alice Ng" in history.group(1) and "Bob Ortiz" in history.group(1)
    dashboard = await client.get("/console")
    assert "Incident Commander: Bob Ortiz" in dashboard.text


async def test_severity_change_needs_a_reason(client: httpx.AsyncClient, db: Database) -> None:
    _, csrf = await sign_in(client, db)
    incident_id = _incident_id(await _declare(client, csrf, severity="SEV3"))
    refused = await client.post(
        f"/console/incidents/{incident_id}/severity",
        headers=HTML,
        data={"csrf_token": csrf, "severity": "SEV1", "reason": "  "},
    )
    assert refused.status_code == 422
    assert field_error(refused.text, "reason") == "say why the severity changes"
    async with db.session() as s:
        assert (await incidents.get_incident(s, incident_id)).severity == "SEV3"
    response = await client.post(
        f"/console/incidents/{incident_id}/severity",
        headers=HTML,
        data={"csrf_token": csrf, "severity": "SEV1", "reason": "All EU tenants affected"},
    )
    assert response.status_code == 303
    page = await client.get(f"/console/incidents/{incident_id}")
    assert "Severity SEV3 → SEV1: All EU tenants affected" in page.text
    async with db.session() as s:
        assert (await incidents.get_incident(s, incident_id)).impact == "critical"


async def test_bad_input_rerenders_with_the_field_and_stores_nothing(client: httpx.AsyncClient, db: Database) -> None:
    async with db.session() as s:
        web = await make_component(s, "Web app")
    _, csrf = await sign_in(client, db)
    before = await _count(db, Incident), await _count(db, TimelineEvent)
    typed = "Customers see errors on <login>"
    cases = [
        ({"severity": "SEV9"}, "severity", "'SEV9' is not a severity"),
        ({"body": ""}, "body", "the message must not be empty"),
        ({"name": ""}, "name", "name must be 1 to 300 characters"),
        ({f"component:{web.id}": "on_fire"}, f"component:{web.id}", "'on_fire' is not a component status"),
        ({"next_update_at": utc_local(utcnow() - timedelta(hours=1))}, "next_update_at", "must be in the future"),
        ({"next_update_at": "tomorrow-ish"}, "next_update_at", "is not a time"),
        ({"body": "x" * 20_001}, "body", "at most 20000"),
    ]
    for fields, name, message in cases:
        response = await _declare(client, csrf, **{"name": typed, **fields})
        assert response.status_code == 422, (fields, response.status_code)
        error = field_error(response.text, name)
        assert error and message in error.replace("&#39;", "'"), (name, error)
        if "name" not in fields:  # what the user typed is kept (and escaped)
            assert 'value="Customers see errors on &lt;login&gt;"' in response.text
    unknown = await _declare(client, csrf, **{"component:nope": "major_outage"})
    assert unknown.status_code == 404
    assert re.search(r'data-form-error="declare">no component with id (&#39;|\')nope', unknown.text)
    assert (await _count(db, Incident), await _count(db, TimelineEvent)) == before
    async with db.session() as s:
        assert (await s.get(Component, web.id)).status == "operational"  # type: ignore[union-attr]


async def test_refused_update_keeps_the_incident_unchanged(client: httpx.AsyncClient, db: Database) -> None:
    _, csrf = await sign_in(client, db)
    incident_id = _incident_id(await _declare(client, csrf))
    updates = await _count(db, IncidentUpdate)
    refused = await client.post(
        f"/console/incidents/{incident_id}/updates",
        headers=HTML,
        data={"csrf_token": csrf, "status": "fixed", "body": "Typed text stays."},
    )
    assert refused.status_code == 422
    assert "is not an incident status" in (field_error(refused.text, "status") or "")
    assert "Typed text stays.</textarea>" in refused.text
    await client.post(
        f"/console/incidents/{incident_id}/updates",
        headers=HTML,
        data={"csrf_token": csrf, "status": "resolved", "body": "Fixed."},
    )
    twice = await client.post(
        f"/console/incidents/{incident_id}/updates",
        headers=HTML,
        data={"csrf_token": csrf, "status": "resolved", "body": "Again."},
    )
    assert twice.status_code == 409 and "already resolved" in twice.text
    assert await _count(db, IncidentUpdate) == updates + 1
    missing = await client.post(
        "/console/incidents/nope/updates", headers=HTML, data={"csrf_token": csrf, "status": "identified", "body": "x"}
    )
    assert missing.status_code == 404


async def test_overdue_promise_is_flagged(client: httpx.AsyncClient, db: Database) -> None:
    _, actor = await make_actor(db)
    async with db.session() as s:
        incident = await make_incident(s, actor, name="Exports stuck")
        incident.next_update_at = utcnow() - timedelta(minutes=7)
    await sign_in(client, db, role=Role.viewer)
    dashboard = await client.get("/console")
    row = re.search(
        rf'<tr class="incident-row overdue" data-incident-id="{incident.id}">(.*?)</tr>', dashboard.text, re.S
    )
    assert row and "Overdue by 7m" in row.group(1)
    # Viewers see everything but get no forms.
    page = await client.get(f"/console/incidents/{incident.id}")
    assert page.status_code == 200 and 'id="update-form"' not in page.text and "overdue by 7m" in page.text


async def test_dashboard_warns_when_the_database_is_unreachable(
    client: httpx.AsyncClient, db: Database, app: Any
) -> None:
    await sign_in(client, db)
    assert 'id="db-warning"' not in (await client.get("/console")).text
    watcher = app.state.runtime.watcher
    await watcher.stop()  # hold the state still while the page is read
    watcher.healthy, watcher.error, watcher.error_since = False, "OperationalError: unable to open database", utcnow()
    page = await client.get("/console")
    assert page.status_code == 200
    assert 'id="db-warning"' in page.text and "The database is unreachable" in page.text


async def test_severity_policy_is_admin_editable(client: httpx.AsyncClient, db: Database) -> None:
    _, csrf = await sign_in(client, db, role=Role.admin)
    page = await client.get("/console/severity")
    assert page.status_code == 200 and 'action="/console/severity/SEV2"' in page.text
    bad = await client.post(
        "/console/severity/SEV2",
        headers=HTML,
        data={"csrf_token": csrf, "cadence_minutes": "0", "required_roles": "scribe"},
    )
    assert bad.status_code == 422 and field_error(bad.text, "cadence_minutes")
    ok = await client.post(
        "/console/severity/SEV2",
        headers=HTML,
        data={"csrf_token": csrf, "cadence_minutes": "20", "required_roles": ["incident_commander", "scribe"]},
    )
    assert ok.status_code == 303
    from crisisdesk.incident import policy as policies
    from crisisdesk.incident.models import Severity

    async with db.session() as s:
        policy = await policies.get_policy(s, Severity.SEV2)
        assert policy.cadence_minutes == 20 and policy.required_roles == ["incident_commander", "scribe"]
        assert policy.postmortem_required is False


async def _read_events(app: Any, cookie: str, until: str, *, timeout: float = 5.0) -> tuple[int, str]:
    """Drive GET /console/events as a server would, until ``until`` appears in the stream."""
    received: asyncio.Queue[bytes] = asyncio.Queue()
    disconnect = asyncio.Event()
    status = 0
    sent_request = False

    async def receive() -> dict[str, Any]:
        nonlocal sent_request
        if not sent_request:
            sent_request = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await disconnect.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            received.put_nowait(message.get("body", b""))
            if not message.get("more_body", False):
                received.put_nowait(b"")

    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/console/events",
        "raw_path": b"/console/events",
        "query_string": b"",
        "root_path": "",
        "server": ("status.test", 80),
        "client": ("127.0.0.1", 5000),
        "headers": [
            (b"host", b"status.test"),
            (b"accept", b"text/event-stream"),
            (b"cookie", f"crisisdesk_session={cookie}".encode()),
        ],
    }
    task = asyncio.create_task(app(scope, receive, send))
    text = ""
    try:
        async with asyncio.timeout(timeout):
            while until not in text:
                chunk = await received.get()
                if chunk == b"" and status != 200:
                    break
                text += chunk.decode()
    finally:
        disconnect.set()
        async with asyncio.timeout(5):
            await task
    return status, text


async def test_events_stream_delivers_changes_from_other_sessions(
    client: httpx.AsyncClient, db: Database, app: Any
) -> None:
    await sign_in(client, db, role=Role.viewer)
    cookie = client.cookies["crisisdesk_session"]
    _, actor = await make_actor(db)

    async def someone_declares() -> None:
        await asyncio.sleep(0.3)
        async with db.session() as s:
            await make_incident(s, actor, name="Webhooks delayed")

    writer = asyncio.create_task(someone_declares())
    status, text = await _read_events(app, cookie, '"console"', timeout=5)
    await writer
    assert status == 200 and text.startswith("retry:")
    event = re.search(r"event: change\ndata: (\[.*?\])\n\n", text)
    assert event, text
    topics = orjson.loads(event.group(1))
    assert "console" in topics and any(t.startswith("incident:") for t in topics)
    assert not app.state.runtime.watcher._queues  # the stream unsubscribed when the client left


async def test_events_stream_needs_a_signed_in_user(client: httpx.AsyncClient) -> None:
    response = await client.get("/console/events", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"].startswith("/login")
