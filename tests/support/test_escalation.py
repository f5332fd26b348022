"""Escalating a ticket to the Incident Commander: the page to the IC's contact method, the timeline event,
one page per minute, the fallbacks without a commander, and the refusals."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import select, update

from crisisdesk.auth.models import Role, User
from crisisdesk.incident import service as incidents
from crisisdesk.incident.models import TimelineEvent
from crisisdesk.kit.db import Database
from crisisdesk.kit.time import utcnow
from crisisdesk.notify.models import Channel, Delivery, Purpose
from crisisdesk.oncall.models import Page, PageStatus, SeverityPaging, Urgency
from crisisdesk.support import escalation
from crisisdesk.support.models import Ticket, TicketEscalation
from tests.fixtures.api import error_locs
from tests.fixtures.auth import api_key_headers, make_actor, make_user
from tests.fixtures.brief import make_ticket, reachable
from tests.fixtures.console import HTML, field_error, sign_in
from tests.fixtures.incident import make_incident
from tests.fixtures.paging import level, make_policy


async def _incident_with_commander(db: Database, *, severity: str = "SEV2") -> dict[str, Any]:
    _, admin = await make_actor(db, Role.admin, name="Ada Admin")
    async with db.session() as s:
        commander = await make_user(s, name="Iris Commander")
        method = await reachable(s, commander, "iris-pager@example.com")
        incident = await make_incident(
            s, admin, severity=severity, roles={"incident_commander": commander.id}, name="Checkout errors"
        )
        ticket = await make_ticket(s, subject="Checkout fails for us", incident_id=incident.id)
    return {"admin": admin, "commander": commander, "method": method, "incident": incident, "ticket": ticket}


async def _pages(db: Database, incident_id: str) -> list[Page]:
    async with db.sessionmaker() as s:
        return list(
            await s.scalars(
                select(Page)
                .where(Page.incident_id == incident_id, Page.title.like("%escalated%"))
                .order_by(Page.started_at)
            )
        )


async def _deliveries_to(db: Database, recipient: str) -> list[Delivery]:
    async with db.sessionmaker() as s:
        return list(
            await s.scalars(select(Delivery).where(Delivery.recipient == recipient, Delivery.purpose == Purpose.page))
        )


async def _events(db: Database, incident_id: str, kind: str) -> list[TimelineEvent]:
    async with db.sessionmaker() as s:
        return list(
            await s.scalars(
                select(TimelineEvent)
                .where(TimelineEvent.incident_id == incident_id, TimelineEvent.kind == kind)
                .order_by(TimelineEvent.id)
            )
        )


async def test_escalating_pages_the_commander_on_their_contact_method_and_writes_the_timeline(
    client: httpx.AsyncClient, db: Database
) -> None:
    found = await _incident_with_commander(db)
    incident, ticket, method = found["incident"], found["ticket"], found["method"]
    async with db.session() as s:
        agent = await make_user(s, name="Sam Support")
    headers = await _headers_for(db, agent)

    answer = await client.post(
        f"/api/v1/tickets/{ticket.id}/escalate", headers=headers, json={"note": "Acme's CFO cannot pay invoices"}
    )
    assert answer.status_code == 201, answer.text
    data = answer.json()
    assert data["outcome"] == "paged_commander" and data["repeated"] is False
    assert data["ticket_number"] == ticket.number and data["incident_id"] == incident.id
    assert data["target"] == "Iris Commander (Incident Commander)"

    # The page: high urgency, to the commander alone, and a delivery to their contact method.
    pages = await _pages(db, incident.id)
    assert [p.id for p in pages] == [data["page_id"]]
    page = pages[0]
    assert page.urgency == Urgency.high and page.status == PageStatus.triggered
    targets = [t for lvl in page.policy["levels"] for t in lvl["targets"]]
    assert targets == [{"type": "user", "id": found["commander"].id}]
    assert "Acme's CFO cannot pay invoices" in page.title and f"#{ticket.number}" in page.title
    deliveries = await _deliveries_to(db, method.id)
    assert len(deliveries) == 1
    assert deliveries[0].channel == Channel.email and deliveries[0].address == "iris-pager@example.com"
    assert deliveries[0].incident_id == incident.id
    assert "Acme's CFO cannot pay invoices" in deliveries[0].payload["subject"]

    # The record and the timeline.
    async with db.sessionmaker() as s:
        rows = list(await s.scalars(select(TicketEscalation)))
    assert [(r.ticket_id, r.incident_id, r.actor_id, r.note) for r in rows] == [
        (ticket.id, incident.id, agent.id, "Acme's CFO cannot pay invoices")
    ]
    events = await _events(db, incident.id, escalation.KIND)
    assert [e.summary for e in events] == [
        f"Ticket #{ticket.number} escalated by Sam Support: Acme's CFO cannot pay invoices"
    ]
    assert events[0].actor_id == agent.id and events[0].data["page_id"] == page.id


async def _headers_for(db: Database, user: User) -> dict[str, str]:
    from crisisdesk.auth import service as auth

    async with db.session() as s:
        loaded = await s.get(User, user.id)
        assert loaded is not None
        who = auth.actor_for(loaded)
        _, secret = await auth.create_api_key(s, who, name="t", scopes=sorted(who.scopes))
    return {"authorization": f"Bearer {secret}"}


async def test_clicking_again_within_a_minute_does_not_page_twice(client: httpx.AsyncClient, db: Database) -> None:
    found = await _incident_with_commander(db)
    incident, ticket = found["incident"], found["ticket"]
    headers = await api_key_headers(db, Role.responder)
    url = f"/api/v1/tickets/{ticket.id}/escalate"

    first = await client.post(url, headers=headers, json={"note": "urgent"})
    again = await client.post(url, headers=headers, json={"note": "urgent!!"})
    assert first.status_code == 201 and again.status_code == 200
    assert again.json()["repeated"] is True and again.json()["id"] == first.json()["id"]
    assert again.json()["page_id"] == first.json()["page_id"]

    # Another ticket of the same incident within the minute is recorded, without a second page.
    async with db.session() as s:
        other = await make_ticket(s, subject="Checkout broken here too", incident_id=incident.id)
    third = await client.post(f"/api/v1/tickets/{other.id}/escalate", headers=headers, json={})
    assert third.status_code == 201
    assert third.json()["outcome"] == "already_paged" and third.json()["page_id"] == first.json()["page_id"]
    assert len(await _pages(db, incident.id)) == 1
    assert len(await _deliveries_to(db, found["method"].id)) == 1
    assert len(await _events(db, incident.id, escalation.KIND)) == 2

    # A minute later, the same ticket pages again.
    async with db.session() as s:
        past = utcnow() - timedelta(minutes=2)
        await s.execute(update(TicketEscalation).values(created_at=past))
        await s.execute(update(TimelineEvent).where(TimelineEvent.kind == escalation.KIND).values(at=past))
    later = await client.post(url, headers=headers, json={"note": "still failing"})
    assert later.status_code == 201 and later.json()["outcome"] == "paged_commander"
    assert len(await _pages(db, incident.id)) == 2
    assert len(await _deliveries_to(db, found["method"].id)) == 2


async def test_without_a_commander_the_severity_paging_policy_is_paged(client: httpx.AsyncClient, db: Database) -> None:
    _, admin = await make_actor(db, Role.admin)
    async with db.session() as s:
        oncall = await make_user(s, name="Otto Oncall")
        method = await reachable(s, oncall)
        policy = await make_policy(s, level(("user", oncall.id)), name="Primary SRE")
        s.add(SeverityPaging(severity="SEV3", escalation_policy_id=policy.id, role=None))
        incident = await make_incident(s, admin, severity="SEV3")
        ticket = await make_ticket(s, incident_id=incident.id)
    headers = await api_key_headers(db, Role.responder)
    answer = await client.post(f"/api/v1/tickets/{ticket.id}/escalate", headers=headers, json={"note": "help"})
    assert answer.status_code == 201, answer.text
    assert (
        answer.json()["outcome"] == "paged_policy" and answer.json()["target"] == "Primary SRE (no Incident Commander)"
    )
    pages = await _pages(db, incident.id)
    assert len(pages) == 1 and pages[0].escalation_policy_id == policy.id and pages[0].urgency == Urgency.high
    assert len(await _deliveries_to(db, method.id)) == 1


async def test_with_nobody_to_page_the_timeline_says_so_and_the_brief_is_flagged(
    client: httpx.AsyncClient, db: Database
) -> None:
    _, admin = await make_actor(db, Role.admin)
    async with db.session() as s:
        incident = await make_incident(s, admin, severity="SEV4")
        ticket = await make_ticket(s, incident_id=incident.id)
    _, csrf = await sign_in(client, db, role=Role.responder, name="Rita Responder")
    response = await client.post(
        f"/console/tickets/{ticket.id}/escalate", headers=HTML, data={"csrf_token": csrf, "note": "customer is angry"}
    )
    assert response.status_code == 303
    assert response.headers["location"] == f"/console/incidents/{incident.id}/brief#escalations"
    assert await _pages(db, incident.id) == []
    [event] = await _events(db, incident.id, escalation.KIND)
    assert event.summary == f"Ticket #{ticket.number} escalated by Rita Responder: customer is angry"
    assert event.data["outcome"] == "nobody"
    [unreached] = await _events(db, incident.id, escalation.UNREACHED_KIND)
    assert "no Incident Commander" in unreached.summary

    part = await client.get(f"/console/incidents/{incident.id}/brief/tickets", headers=HTML)
    assert 'id="brief-unreached"' in part.text and f"#{ticket.number}" in part.text
    assert 'data-outcome="nobody"' in part.text and "nobody paged" in part.text
    timeline = await client.get(f"/console/incidents/{incident.id}", headers=HTML)
    assert "escalated by Rita Responder: customer is angry" in timeline.text

    async with db.session() as s:
        loaded = await incidents.get_incident(s, incident.id)
        commander = await make_user(s)
        await incidents.assign_role(s, admin, loaded, role="incident_commander", user_id=commander.id)
    part = await client.get(f"/console/incidents/{incident.id}/brief/tickets", headers=HTML)
    assert 'id="brief-unreached"' not in part.text


async def test_an_unlinked_ticket_goes_to_its_suggested_incident_or_is_refused(
    client: httpx.AsyncClient, db: Database
) -> None:
    found = await _incident_with_commander(db)
    async with db.session() as s:
        suggested = await make_ticket(s, subject="Is checkout down?", suggested_incident_id=found["incident"].id)
        lonely = await make_ticket(s, subject="How do I change my plan?")
    headers = await api_key_headers(db, Role.responder)
    answer = await client.post(f"/api/v1/tickets/{suggested.id}/escalate", headers=headers, json={})
    assert answer.status_code == 201 and answer.json()["incident_id"] == found["incident"].id
    assert answer.json()["outcome"] == "paged_commander"

    refused = await client.post(f"/api/v1/tickets/{lonely.id}/escalate", headers=headers, json={"note": "?"})
    assert refused.status_code == 409
    assert error_locs(refused) == [["body", "incident_id"]]
    assert "linked to no incident" in refused.json()["detail"][0]["msg"]
    async with db.sessionmaker() as s:
        assert await s.scalar(select(TicketEscalation).where(TicketEscalation.ticket_id == lonely.id)) is None


async def test_bad_input_and_roles_are_refused(client: httpx.AsyncClient, db: Database) -> None:
    found = await _incident_with_commander(db)
    ticket = found["ticket"]
    url = f"/api/v1/tickets/{ticket.id}/escalate"
    writer = await api_key_headers(db, Role.responder)
    viewer = await api_key_headers(db, Role.viewer)

    assert (await client.post(url, json={})).status_code == 401
    assert (await client.post(url, headers=viewer, json={})).status_code == 403
    missing = await client.post("/api/v1/tickets/nope/escalate", headers=writer, json={})
    assert missing.status_code == 404 and error_locs(missing) == [["body", "ticket_id"]]
    long = await client.post(url, headers=writer, json={"note": "x" * 2001})
    assert long.status_code == 422 and error_locs(long) == [["body", "note"]]
    nul = await client.post(url, headers=writer, json={"note": "a\x00b"})
    assert nul.status_code == 422 and error_locs(nul) == [["body", "note"]]
    extra = await client.post(url, headers=writer, json={"urgency": "low"})
    assert extra.status_code == 422
    async with db.sessionmaker() as s:
        assert await s.scalar(select(TicketEscalation)) is None
        assert (await s.get(Ticket, ticket.id)) is not None
    assert await _pages(db, found["incident"].id) == []

    # The console: a viewer may read the brief but not escalate; a bad note comes back next to the field.
    _, csrf = await sign_in(client, db, role=Role.viewer)
    forbidden = await client.post(f"/console/tickets/{ticket.id}/escalate", headers=HTML, data={"csrf_token": csrf})
    assert forbidden.status_code == 403
    _, csrf = await sign_in(client, db, role=Role.responder)
    bad = await client.post(
        f"/console/tickets/{ticket.id}/escalate", headers=HTML, data={"csrf_token": csrf, "note": "y" * 2001}
    )
    assert bad.status_code == 422
    assert field_error(bad.text, "note") and "at most 2000" in (field_error(bad.text, "note") or "")
    assert "y" * 2001 in bad.text, "the note typed is kept"
    assert await _pages(db, found["incident"].id) == []


async def test_the_tickets_list_escalates_and_comes_back(client: httpx.AsyncClient, db: Database) -> None:
    found = await _incident_with_commander(db)
    incident, ticket = found["incident"], found["ticket"]
    _, csrf = await sign_in(client, db, role=Role.responder)
    listing = await client.get(f"/console/tickets?view=linked&incident={incident.id}", headers=HTML)
    assert listing.status_code == 200
    assert f'action="/console/tickets/{ticket.id}/escalate"' in listing.text
    back = re.search(r'name="next" value="([^"]+)"', listing.text[listing.text.index("escalate-form") :])
    assert back and back.group(1).startswith("/console/tickets")
    target = back.group(1).replace("&amp;", "&")
    done = await client.post(
        f"/console/tickets/{ticket.id}/escalate", headers=HTML, data={"csrf_token": csrf, "next": target}
    )
    assert done.status_code == 303 and done.headers["location"] == target
    assert len(await _pages(db, incident.id)) == 1
    # Somewhere else than the console is not a place to come back to.
    async with db.session() as s:
        other = await make_ticket(s, incident_id=incident.id)
    away = await client.post(
        f"/console/tickets/{other.id}/escalate", headers=HTML, data={"csrf_token": csrf, "next": "//evil.example/"}
    )
    assert away.headers["location"] == f"/console/incidents/{incident.id}/brief#escalations"
    panel = await client.get(f"/console/incidents/{incident.id}", headers=HTML)
    assert f'href="/console/incidents/{incident.id}/brief" id="tickets-brief-link"' in panel.text
