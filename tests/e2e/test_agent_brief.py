"""A support agent keeps the brief open while responders work: a new ETA, set through the API, shows up
without a reload; the agent copies the approved macro and escalates a ticket to the commander in one click."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import httpx
from playwright.async_api import Browser, expect
from sqlalchemy import select

from crisisdesk.auth import service as auth
from crisisdesk.auth.models import Role, User
from crisisdesk.kit.db import Database
from crisisdesk.seed import ADMIN_EMAIL
from tests.e2e.conftest import OUTPUT, LiveServer
from tests.e2e.test_incident_flow import sign_in

AGENT = "agent@example.com"


async def _key_and_agent(server: LiveServer) -> str:
    """An API key for the seeded admin, and a responder account for the support agent."""
    db = Database(server.database_url)
    try:
        async with db.session() as s:
            admin = await s.scalar(select(User).where(User.email == ADMIN_EMAIL))
            assert admin is not None
            who = auth.actor_for(admin)
            _, secret = await auth.create_api_key(s, who, name="e2e", scopes=sorted(who.scopes))
            await auth.create_user(s, email=AGENT, name="Alex Agent", role=Role.responder, password="crisisdesk-demo")
    finally:
        await db.dispose()
    return secret


async def test_the_brief_updates_in_place_and_escalates_in_one_click(live_server: LiveServer, browser: Browser) -> None:
    secret = await _key_and_agent(live_server)
    async with httpx.AsyncClient(
        base_url=live_server.url, headers={"authorization": f"Bearer {secret}"}, timeout=10
    ) as api:
        components = (await api.get("/api/v1/components")).json()
        sso = next(c for c in components if c["name"] == "Sign-in (SSO)")
        declared = await api.post(
            "/api/v1/incidents",
            json={
                "name": "Sign-in failures for SSO users",
                "severity": "SEV3",
                "body": "We are investigating failed sign-ins.",
                "components": {sso["id"]: "major_outage"},
            },
        )
        assert declared.status_code == 201, declared.text
        incident_id = declared.json()["id"]
        first = datetime.now(UTC) + timedelta(hours=2)
        answer = await api.post(
            f"/api/v1/incidents/{incident_id}/eta",
            json={"eta_at": first.isoformat(), "note": "waiting for the vendor", "published": True},
        )
        assert answer.status_code == 200, answer.text
        macro = await api.put(
            f"/api/v1/incidents/{incident_id}/macros/acknowledge",
            json={"subject": "Sign-in trouble", "body": "We know about {{ incident.name }} and are working on it."},
        )
        assert macro.status_code == 200, macro.text
        approved = await api.post(f"/api/v1/incidents/{incident_id}/macros/acknowledge/approve", json={})
        assert approved.status_code == 200, approved.text
        ticket = await api.post("/api/v1/tickets", json={"subject": "Our team cannot log in", "body": "Since 9am."})
        assert ticket.status_code == 201, ticket.text
        ticket_id = ticket.json()["id"]
        if ticket.json()["incident_id"] != incident_id:
            linked = await api.post(f"/api/v1/tickets/{ticket_id}/link", json={"incident_id": incident_id})
            assert linked.status_code == 200, linked.text

        page = await (await browser.new_context(viewport={"width": 1280, "height": 900})).new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        await sign_in(page, live_server, AGENT)
        await page.goto(f"{live_server.url}/console/incidents/{incident_id}")
        await page.locator("#agent-brief-link a").click()
        await expect(page).to_have_url(re.compile(rf"/console/incidents/{incident_id}/brief$"))
        await expect(page.locator("h1")).to_contain_text("Sign-in failures for SSO users")
        eta = page.locator("#brief-eta")
        await expect(eta).to_contain_text(first.strftime("%Y-%m-%d %H:%M UTC"))
        await expect(page.locator("#brief-known")).to_contain_text("Sign-in (SSO)")
        await expect(page.locator("#brief-latest-update")).to_contain_text("We are investigating failed sign-ins.")
        await expect(page.locator("#brief-macros")).to_contain_text(
            "We know about Sign-in failures for SSO users and are working on it."
        )
        await expect(page.locator("#brief-ticket-counts")).to_contain_text("1 linked")
        # A mark on the window survives only if the page is never reloaded.
        await page.evaluate("window.__briefMark = 'kept'")

        second = datetime.now(UTC) + timedelta(hours=4)
        moved = await api.post(
            f"/api/v1/incidents/{incident_id}/eta",
            json={"eta_at": second.isoformat(), "note": "the vendor's fix slipped", "published": True},
        )
        assert moved.status_code == 200, moved.text
        await expect(eta).to_contain_text(second.strftime("%Y-%m-%d %H:%M UTC"), timeout=10_000)
        await expect(eta).to_contain_text("the vendor's fix slipped")
        history = page.locator("#brief-eta-history")
        await expect(history).to_contain_text("waiting for the vendor")
        await expect(history).to_contain_text(re.compile(r"ETA history \(2\)"))
        assert await page.evaluate("window.__briefMark") == "kept"

        # Copy the macro (the button confirms), then escalate the ticket with one click.
        await page.locator("#brief-macros [data-copy]").first.click()
        await expect(page.locator("#brief-macros [data-copy]").first).to_have_text("Copied")
        form = page.locator(f"form.escalate-form[data-ticket-id='{ticket_id}']")
        await form.locator("input[name=note]").fill("Their CFO is locked out")
        await form.locator("button[type=submit]").click()
        await expect(page.locator("#brief-escalations")).to_contain_text("Their CFO is locked out")
        await expect(page.locator("#brief-escalations")).to_contain_text("Alex Agent")
        await page.screenshot(path=str(OUTPUT / "console-agent-brief.png"), full_page=True)
        assert not errors, errors
