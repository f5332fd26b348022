"""Macros: the incident's facts as variables, the sandbox, approval by the right people, edits withdraw it."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from crisisdesk.auth.models import Role
from crisisdesk.incident import guidance
from crisisdesk.incident import service as incidents
from crisisdesk.kit.db import Database
from crisisdesk.kit.errors import Conflict, Forbidden, InvalidInput, NotFound
from crisisdesk.kit.time import utcnow
from crisisdesk.support import macros
from crisisdesk.support.models import Macro, MacroKind, Ticket, TicketSource, TicketStatus
from tests.fixtures.api import count_rows, error_locs
from tests.fixtures.auth import api_key_headers, login, make_actor, make_user
from tests.fixtures.incident import make_component, make_incident
from tests.fixtures.support import make_macro

EVERYTHING = (
    "{{ incident.reference }} {{ incident.name }} ({{ incident.status }}) on {{ components | join(', ') }}.\n"
    "Latest: {{ latest_update }}\n"
    "Workaround: {{ workaround or 'none' }}\n"
    "ETA: {{ eta | datetime if eta else 'unknown' }} {{ eta_note }}\n"
    "Ticket {{ ticket.number }} for {{ requester_name or 'you' }}"
)


async def test_a_macro_renders_the_incident_facts_that_are_public_and_the_requester(db: Database) -> None:
    _, admin = await make_actor(db, Role.admin)
    eta = (utcnow() + timedelta(hours=3)).replace(second=0, microsecond=0)
    async with db.session() as session:
        web = await make_component(session, "Web app")
        api = await make_component(session, "Public API")
        incident = await make_incident(
            session,
            admin,
            name="Slow dashboards",
            body="Dashboards load slowly.",
            components={web.id: "degraded_performance", api.id: "partial_outage"},
        )
        loaded = await incidents.get_incident(session, incident.id)
        await incidents.add_note(session, admin, loaded, body="Internal: the DB primary is at 100% CPU.")
        await guidance.set_workaround(
            session, admin, incident_id=incident.id, body="Use the mobile app.", published=False
        )
        await guidance.set_eta(
            session, admin, incident_id=incident.id, eta_at=eta, note="after the failover", published=True
        )
        macro = await make_macro(session, admin, incident.id, MacroKind.acknowledge, EVERYTHING)
    ticket = Ticket(
        number=42,
        source=TicketSource.api,
        subject="Slow",
        body="",
        requester_name="Ann",
        tags=[],
        status=TicketStatus.open,
    )
    async with db.sessionmaker() as session:
        subject, body = await macros.render_macro(session, macro, ticket=ticket)
        placeholder = (await macros.render_macro(session, macro))[1]
    lines = body.splitlines()
    assert subject == ""
    assert lines[0] == f"INC-{incident.number} Slow dashboards (investigating) on Web app, Public API."
    # The latest *public* update, never the internal note; an unpublished workaround stays out.
    assert lines[1] == "Latest: Dashboards load slowly."
    assert lines[2] == "Workaround: none"
    assert lines[3] == f"ETA: {eta:%d %b %Y, %H:%M} UTC after the failover"
    assert lines[4] == "Ticket 42 for Ann"
    assert "Ticket [ticket number] for [requester name]" in placeholder
    async with db.session() as session:
        await guidance.set_workaround(
            session, admin, incident_id=incident.id, body="Use the mobile app.", published=True
        )
    async with db.sessionmaker() as session:
        assert "Workaround: Use the mobile app." in (await macros.render_macro(session, macro, ticket=ticket))[1]


@pytest.mark.parametrize(
    ("subject", "body", "field", "words"),
    [
        ("", "", "body", "must not be empty"),
        ("", "{{ customer_secret }}", "body", "not a macro variable"),
        ("{{ incident.name", "Hello", "subject", "syntax error"),
        ("", "{% for x in 'ab' %}{{ x }}", "body", "syntax error"),
        ("", "{{ ''.__class__.__mro__ }}", "body", "unsafe"),
        ("", "{{ 'x' * 10000000 }}", "body", "not allowed"),
        (
            "",
            "{% for a in components %}{% for b in components %}{{ latest_update * 200 }}{% endfor %}{% endfor %}",
            "body",
            "more than",
        ),
        ("", "hi\x00", "body", "NUL"),
        ("x" * 301, "Hello", "subject", "at most 300"),
        # Fine with a name, a workaround and an ETA; but many tickets come without them.
        ("", "Hi {{ requester_name.split()[0] }}, we know.", "body", "for a ticket without a requester name"),
        ("ETA {{ eta.hour }}h", "Hello", "subject", "no workaround or ETA published"),
        ("", "Meanwhile: {{ workaround[0] | upper }}{{ workaround[1:] }}", "body", "without a requester name"),
    ],
)
async def test_a_bad_macro_is_refused_naming_the_field(
    db: Database, subject: str, body: str, field: str, words: str
) -> None:
    _, admin = await make_actor(db, Role.admin)
    async with db.session() as session:
        incident = await make_incident(session, admin)
    with pytest.raises(InvalidInput) as refused:
        async with db.session() as session:
            await macros.put_macro(
                session, admin, incident_id=incident.id, kind=MacroKind.acknowledge, subject=subject, body=body
            )
    assert refused.value.field == field and words in refused.value.message, refused.value.message
    assert await count_rows(db, Macro) == 0


@hypothesis_settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=200))
def test_any_text_either_renders_or_is_refused_with_a_field(source: str) -> None:
    try:
        subject, body = macros.check("", source, kind=MacroKind.acknowledge)
    except InvalidInput as exc:
        assert exc.field == "body"
        return
    assert subject == "" and body == source.strip()


async def test_only_the_communications_lead_or_an_admin_approves_and_an_edit_withdraws_the_approval(
    db: Database,
) -> None:
    _, admin = await make_actor(db, Role.admin, name="Ada")
    lead_user, lead = await make_actor(db, Role.responder, name="Carla Lead")
    _, other = await make_actor(db, Role.responder, name="Rui")
    async with db.session() as session:
        incident = await make_incident(session, admin, roles={"communications_lead": lead_user.id})
        macro = await macros.put_macro(
            session, other, incident_id=incident.id, kind=MacroKind.resolution, subject="", body="Fixed."
        )
        assert macro.approved_at is None and macro.created_by_id == other.user_id
    with pytest.raises(Forbidden):
        async with db.session() as session:
            await macros.approve(session, other, incident_id=incident.id, kind=MacroKind.resolution)
    with pytest.raises(NotFound) as missing:
        async with db.session() as session:
            await macros.approve(session, lead, incident_id=incident.id, kind=MacroKind.acknowledge)
    assert missing.value.field == "kind"
    async with db.session() as session:
        approved = await macros.approve(
            session, lead, incident_id=incident.id, kind=MacroKind.resolution, seen=macro.updated_at
        )
        assert approved.approved_at is not None and approved.approved_by_id == lead.user_id
        assert [m.kind for m in await macros.approved_macros(session, incident.id)] == [MacroKind.resolution]
        # Saving the same words changes nothing; new words withdraw the approval, even an admin's.
        same = await macros.put_macro(
            session, admin, incident_id=incident.id, kind=MacroKind.resolution, subject="", body="Fixed."
        )
        assert same.approved_at is not None
        edited = await macros.put_macro(
            session, admin, incident_id=incident.id, kind=MacroKind.resolution, subject="", body="Fixed now."
        )
        assert edited.approved_at is None
        assert await macros.approved_macros(session, incident.id) == []
    with pytest.raises(Conflict) as stale:
        async with db.session() as session:
            await macros.approve(
                session, lead, incident_id=incident.id, kind=MacroKind.resolution, seen=macro.updated_at
            )
    assert stale.value.field == "updated_at"
    async with db.sessionmaker() as session:
        kinds = [e.kind for e in await incidents.timeline_of(session, incident.id)]
    assert kinds.count("macro_saved") == 2 and kinds.count("macro_approved") == 1


async def test_api_writes_reads_and_approves_macros(client: httpx.AsyncClient, db: Database) -> None:
    _, admin = await make_actor(db, Role.admin)
    async with db.session() as session:
        incident = await make_incident(session, admin, name="Webhooks delayed")
    writer = await api_key_headers(db, Role.responder)
    admin_key = await api_key_headers(db, Role.admin)
    base = f"/api/v1/incidents/{incident.id}/macros"
    assert (await client.get(f"{base}/acknowledge", headers=writer)).status_code == 404
    body = {
        "subject": "About {{ incident.reference }}",
        "body": "Hi {{ requester_name or 'there' }}: {{ incident.name }}.",
    }
    put = await client.put(f"{base}/acknowledge", json=body, headers=writer)
    assert put.status_code == 200, put.text
    macro = put.json()
    assert macro["approved_at"] is None and macro["kind"] == "acknowledge"
    assert macro["preview_subject"] == f"About INC-{incident.number}"
    assert macro["preview_body"] == "Hi [requester name]: Webhooks delayed."
    refused = await client.post(f"{base}/acknowledge/approve", headers=writer)
    assert refused.status_code == 403
    approved = await client.post(
        f"{base}/acknowledge/approve", json={"updated_at": macro["updated_at"]}, headers=admin_key
    )
    assert approved.status_code == 200 and approved.json()["approved_at"]
    listed = await client.get(base, headers=writer)
    assert [m["kind"] for m in listed.json()] == ["acknowledge"]
    bad = await client.put(f"{base}/acknowledge", json={"body": "{{ password }}"}, headers=writer)
    assert bad.status_code == 422 and error_locs(bad) == [["body", "body"]]
    wrong_kind = await client.put(f"{base}/apology", json={"body": "Sorry"}, headers=writer)
    assert wrong_kind.status_code == 422 and any("kind" in loc for loc in error_locs(wrong_kind))
    unknown = await client.put("/api/v1/incidents/nope/macros/acknowledge", json={"body": "x"}, headers=writer)
    assert unknown.status_code == 404
    still = await client.get(f"{base}/acknowledge", headers=writer)
    assert still.json()["approved_at"] is not None and still.json()["body"] == body["body"]


async def test_console_macro_page_saves_and_approves(client: httpx.AsyncClient, db: Database) -> None:
    async with db.session() as session:
        await make_user(session, role=Role.admin, email="ada@example.com")
    _, admin = await make_actor(db, Role.admin)
    async with db.session() as session:
        incident = await make_incident(session, admin)
    csrf = await login(client, "ada@example.com")
    page = await client.get(f"/console/incidents/{incident.id}/macros")
    assert page.status_code == 200 and 'id="macro-acknowledge"' in page.text and "not written" in page.text
    bad = await client.post(
        f"/console/incidents/{incident.id}/macros/acknowledge", data={"csrf_token": csrf, "body": "{{ nope }}"}
    )
    assert bad.status_code == 422 and "not a macro variable" in bad.text and 'data-field="body"' in bad.text
    saved = await client.post(
        f"/console/incidents/{incident.id}/macros/acknowledge",
        data={"csrf_token": csrf, "subject": "", "body": "We are on it: {{ incident.name }}"},
    )
    assert saved.status_code == 303
    page = await client.get(f"/console/incidents/{incident.id}/macros")
    assert "waiting for approval" in page.text and "We are on it: Sign-in failures for SSO users" in page.text
    async with db.sessionmaker() as session:
        macro = await macros.get_macro(session, incident.id, MacroKind.acknowledge)
        assert macro is not None
    stale = await client.post(
        f"/console/incidents/{incident.id}/macros/acknowledge/approve",
        data={"csrf_token": csrf, "updated_at": "2020-01-01T00:00"},
    )
    assert stale.status_code == 409 and "changed since you read it" in stale.text
    approve_form = page.text.split('action="/console/incidents/' + incident.id + '/macros/acknowledge/approve"')[1]
    seen = approve_form.split('name="updated_at" value="')[1].split('"')[0]
    approved = await client.post(
        f"/console/incidents/{incident.id}/macros/acknowledge/approve", data={"csrf_token": csrf, "updated_at": seen}
    )
    assert approved.status_code == 303
    page = await client.get(f"/console/incidents/{incident.id}")
    assert 'data-kind="acknowledge" data-state="approved"' in page.text


@pytest.mark.parametrize("seen", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-05:00"])
async def test_approving_a_version_at_the_ends_of_the_calendar_is_422_naming_it(
    client: httpx.AsyncClient, db: Database, seen: str
) -> None:
    _, admin = await make_actor(db, Role.admin)
    async with db.session() as session:
        incident = await make_incident(session, admin)
        await make_macro(session, admin, incident.id, MacroKind.acknowledge, "We know.", approved=False)
    admin_key = await api_key_headers(db, Role.admin)
    url = f"/api/v1/incidents/{incident.id}/macros/acknowledge/approve"
    refused = await client.post(url, json={"updated_at": seen}, headers=admin_key)
    assert refused.status_code == 422, refused.text
    assert error_locs(refused) == [["body", "updated_at"]] and "1970" in refused.text
    async with db.session() as session:
        await make_user(session, role=Role.admin, email="ada@example.com")
    csrf = await login(client, "ada@example.com")
    form = await client.post(
        f"/console/incidents/{incident.id}/macros/acknowledge/approve",
        data={"csrf_token": csrf, "updated_at": seen},
    )
    assert form.status_code == 422 and 'data-field="updated_at"' in form.text
    async with db.sessionmaker() as session:
        macro = await macros.get_macro(session, incident.id, MacroKind.acknowledge)
    assert macro is not None and macro.approved_at is None
