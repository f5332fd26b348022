"""The agent brief: what is known, customer-safe words (never internal notes), workaround, ETA history,
approved macros only, ticket counts; its parts refresh after a change, announced over the live channel."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta
from typing import Any

import httpx
import orjson

from crisisdesk.auth.models import Role
from crisisdesk.incident import guidance
from crisisdesk.incident import service as incidents
from crisisdesk.kit.db import Database
from crisisdesk.kit.time import utcnow
from crisisdesk.support import brief, macros
from crisisdesk.support.models import MacroKind, TicketStatus
from tests.fixtures.auth import api_key_headers, make_actor
from tests.fixtures.brief import depend, make_account, make_ticket
from tests.fixtures.console import HTML, sign_in
from tests.fixtures.incident import make_component, make_incident
from tests.incident.test_views import _read_events

SECRET_NOTE = "Failover to replica db-7 corrupted the session table"
PUBLIC_WORDS = "We identified failed token issuance at our identity provider."


async def _scenario(db: Database) -> dict[str, Any]:
    """A SEV2 on SSO with a dependent component, accounts, guidance, macros, a note and tickets."""
    _, admin = await make_actor(db, Role.admin, name="Ada Admin")
    async with db.session() as s:
        sso = await make_component(s, "Sign-in (SSO)")
        portal = await make_component(s, "Customer portal")
        other = await make_component(s, "Billing")
        await depend(s, portal.id, sso.id)
        await make_account(s, "Globex", tier="Enterprise", arr=500_000, components=[portal.id])
        await make_account(s, "Initech", tier="Enterprise", arr=250_000, components=[sso.id, portal.id])
        await make_account(s, "Hooli", tier="Starter", arr=1_200, components=[sso.id])
        await make_account(s, "Umbrella", tier="Enterprise", arr=900_000, components=[other.id])
        incident = await make_incident(
            s, admin, name="Sign-in failures for SSO users", components={sso.id: "major_outage"}
        )
    async with db.session() as s:
        loaded = await incidents.get_incident(s, incident.id)
        await incidents.post_update(s, admin, loaded, status="identified", body=PUBLIC_WORDS)
        await incidents.add_note(s, admin, loaded, body=SECRET_NOTE)
    async with db.session() as s:
        await guidance.set_workaround(
            s, admin, incident_id=incident.id, body="Sign in with a password instead of SSO.", published=True
        )
    first_eta = utcnow() + timedelta(hours=1)
    second_eta = utcnow() + timedelta(hours=3)
    async with db.session() as s:
        await guidance.set_eta(s, admin, incident_id=incident.id, eta_at=first_eta, note="first guess", published=True)
    async with db.session() as s:
        await guidance.set_eta(
            s, admin, incident_id=incident.id, eta_at=second_eta, note="the vendor's fix slipped", published=False
        )
    async with db.session() as s:
        await macros.put_macro(
            s,
            admin,
            incident_id=incident.id,
            kind=MacroKind.acknowledge,
            subject="About {{ incident.name }}",
            body="Thanks for writing. We know about {{ incident.name }} and are on it.",
        )
        await macros.approve(s, admin, incident_id=incident.id, kind=MacroKind.acknowledge)
        await macros.put_macro(
            s,
            admin,
            incident_id=incident.id,
            kind=MacroKind.resolution,
            subject="Fixed",
            body="UNAPPROVED resolution words",
        )
    async with db.session() as s:
        await make_ticket(s, subject="SSO broken", incident_id=incident.id)
        await make_ticket(s, subject="Login loop", incident_id=incident.id)
        await make_ticket(s, subject="Solved one", incident_id=incident.id, status=TicketStatus.solved)
        await make_ticket(s, subject="Maybe sign-in?", suggested_incident_id=incident.id, confidence=0.42)
        await make_ticket(s, subject="Old suggestion", suggested_incident_id=incident.id, status=TicketStatus.solved)
        await make_ticket(s, subject="How do I export invoices?")
    return {
        "incident": incident,
        "sso": sso,
        "portal": portal,
        "admin": admin,
        "first_eta": first_eta,
        "second_eta": second_eta,
    }


async def test_the_brief_holds_what_agents_need_and_never_an_internal_note(
    client: httpx.AsyncClient, db: Database
) -> None:
    found = await _scenario(db)
    incident = found["incident"]
    headers = await api_key_headers(db, Role.viewer)

    answer = await client.get(f"/api/v1/incidents/{incident.id}/brief", headers=headers)
    assert answer.status_code == 200, answer.text
    assert SECRET_NOTE not in answer.text
    data = answer.json()
    assert data["incident"]["name"] == "Sign-in failures for SSO users"
    assert data["incident"]["status"] == "identified" and data["incident"]["severity"] == "SEV2"
    assert data["incident"]["next_update_at"] is not None
    # The latest public update, not the (newer) internal note.
    assert data["latest_update"]["body"] == PUBLIC_WORDS
    # Components through dependencies: the portal is hit through SSO.
    components = {c["name"]: c for c in data["components"]}
    assert components["Sign-in (SSO)"]["via_id"] is None
    assert components["Customer portal"]["via_id"] == found["sso"].id
    assert "Billing" not in components
    # Impact: three accounts (Umbrella uses only billing), ARR by tier.
    assert data["impact"]["account_count"] == 3
    assert data["impact"]["arr_cents"] == (500_000 + 250_000 + 1_200) * 100
    tiers = {t["tier"]: (t["account_count"], t["arr_cents"]) for t in data["impact"]["by_tier"]}
    assert tiers == {"Enterprise": (2, 75_000_000), "Starter": (1, 120_000)}
    assert [a["name"] for a in data["impact"]["top"]][:2] == ["Globex", "Initech"]
    # Workaround and ETA with history, newest first, with their notes.
    assert data["workaround"]["body"] == "Sign in with a password instead of SSO."
    assert data["workaround"]["published"] is True and data["workaround_since"] is not None
    assert data["eta"]["note"] == "the vendor's fix slipped" and data["eta"]["published"] is False
    assert [e["note"] for e in data["etas"]] == ["the vendor's fix slipped", "first guess"]
    # Approved macros only, rendered for the incident.
    assert [m["kind"] for m in data["macros"]] == ["acknowledge"]
    assert (
        data["macros"][0]["body"] == "Thanks for writing. We know about Sign-in failures for SSO users and are on it."
    )
    assert "UNAPPROVED" not in answer.text
    # Linked (solved ones count), suggested (open only), and the open tickets to escalate.
    assert data["tickets"]["linked"] == 3
    assert data["tickets"]["suggested"] == 1
    assert sorted(t["subject"] for t in data["tickets"]["open"]) == ["Login loop", "Maybe sign-in?", "SSO broken"]


async def test_the_brief_page_is_a_live_frame_of_parts_every_role_reads(
    client: httpx.AsyncClient, db: Database
) -> None:
    found = await _scenario(db)
    incident = found["incident"]
    await sign_in(client, db, role=Role.viewer)

    page = await client.get(f"/console/incidents/{incident.id}/brief", headers=HTML)
    assert page.status_code == 200
    assert "Sign-in failures for SSO users" in page.text
    assert f'data-live-topics="incident:{incident.id}"' in page.text
    for part in brief.PARTS:
        assert f'data-fragment="/console/incidents/{incident.id}/brief/{part}"' in page.text
    assert "/static/fragments.js" in page.text

    texts = {}
    for part in brief.PARTS:
        fragment = await client.get(f"/console/incidents/{incident.id}/brief/{part}", headers=HTML)
        assert fragment.status_code == 200 and "<html" not in fragment.text, part
        texts[part] = fragment.text
    everything = page.text + "".join(texts.values())
    assert SECRET_NOTE not in everything and "UNAPPROVED" not in everything

    known = texts["known"]
    assert "Customer portal" in known and "through Sign-in (SSO)" in known
    assert 'data-accounts="3"' in known and 'data-tier="Enterprise"' in known and "Globex" in known
    talking = texts["talking"]
    assert PUBLIC_WORDS in talking
    assert "We know about Sign-in failures for SSO users and are on it." in talking and "data-copy=" in talking
    guidance_html = texts["guidance"]
    assert "Sign in with a password instead of SSO." in guidance_html
    assert found["second_eta"].strftime("%Y-%m-%d %H:%M UTC") in guidance_html
    assert "Not public: do not promise it" in guidance_html
    history = re.search(r'id="brief-eta-history".*?</details>', guidance_html, re.S)
    assert history and "first guess" in history.group(0) and "the vendor&#39;s fix slipped" in history.group(0)
    tickets = texts["tickets"]
    assert 'data-linked="3"' in tickets and 'data-suggested="1"' in tickets
    assert "Login loop" in tickets and "How do I export invoices?" not in tickets
    assert "escalate-form" not in tickets, "a viewer cannot escalate"

    missing = await client.get(f"/console/incidents/{incident.id}/brief/timeline", headers=HTML)
    assert missing.status_code == 404


async def test_the_incident_page_links_to_the_brief_and_responders_get_escalate_buttons(
    client: httpx.AsyncClient, db: Database
) -> None:
    found = await _scenario(db)
    incident = found["incident"]
    await sign_in(client, db, role=Role.responder)
    page = await client.get(f"/console/incidents/{incident.id}", headers=HTML)
    assert f'href="/console/incidents/{incident.id}/brief"' in page.text
    tickets = await client.get(f"/console/incidents/{incident.id}/brief/tickets", headers=HTML)
    assert tickets.text.count('class="inline-form escalate-form"') == 3
    assert "/escalate" in tickets.text


async def test_a_part_shows_the_change_when_fetched_again(client: httpx.AsyncClient, db: Database) -> None:
    found = await _scenario(db)
    incident = found["incident"]
    await sign_in(client, db, role=Role.viewer)
    url = f"/console/incidents/{incident.id}/brief/guidance"
    before = await client.get(url, headers=HTML)
    assert "fix deployed to half the fleet" not in before.text
    third = utcnow() + timedelta(minutes=45)
    async with db.session() as s:
        await guidance.set_eta(
            s,
            found["admin"],
            incident_id=incident.id,
            eta_at=third,
            note="fix deployed to half the fleet",
            published=True,
        )
    after = await client.get(url, headers=HTML)
    assert "fix deployed to half the fleet" in after.text
    assert third.strftime("%Y-%m-%d %H:%M UTC") in after.text
    assert "ETA history (3)" in after.text

    async with db.session() as s:
        await make_ticket(s, subject="Another one", incident_id=incident.id)
    tickets = await client.get(f"/console/incidents/{incident.id}/brief/tickets", headers=HTML)
    assert 'data-linked="4"' in tickets.text and "Another one" in tickets.text

    async with db.session() as s:
        loaded = await incidents.get_incident(s, incident.id)
        await incidents.post_update(s, found["admin"], loaded, status="monitoring", body="A fix is rolling out.")
    talking = await client.get(f"/console/incidents/{incident.id}/brief/talking", headers=HTML)
    assert "A fix is rolling out." in talking.text and PUBLIC_WORDS not in talking.text


async def test_a_change_to_the_incident_is_announced_on_a_topic_the_brief_listens_to(
    client: httpx.AsyncClient, db: Database, app: Any
) -> None:
    found = await _scenario(db)
    incident = found["incident"]
    await sign_in(client, db, role=Role.viewer)
    cookie = client.cookies["crisisdesk_session"]
    topic = f"incident:{incident.id}"
    assert topic in brief.topics(incident.id)

    async def someone_moves_the_eta() -> None:
        await asyncio.sleep(0.3)
        async with db.session() as s:
            await guidance.set_eta(
                s,
                found["admin"],
                incident_id=incident.id,
                eta_at=utcnow() + timedelta(hours=5),
                note="later",
                published=False,
            )

    writer = asyncio.create_task(someone_moves_the_eta())
    status, text = await _read_events(app, cookie, f'"{topic}"', timeout=5)
    await writer
    assert status == 200
    event = re.search(r"event: change\ndata: (\[.*?\])\n\n", text)
    assert event, text
    assert topic in orjson.loads(event.group(1))


async def test_the_brief_of_an_unknown_incident_is_404(client: httpx.AsyncClient, db: Database) -> None:
    headers = await api_key_headers(db, Role.viewer)
    answer = await client.get("/api/v1/incidents/nope/brief", headers=headers)
    assert answer.status_code == 404 and answer.json()["detail"][0]["loc"] == ["body", "incident_id"]
    await sign_in(client, db, role=Role.viewer)
    page = await client.get("/console/incidents/nope/brief", headers=HTML)
    assert page.status_code == 404
