"""A support agent keeps the brief open while a responder moves the ETA through the API: it updates in place."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import httpx
from playwright.async_api import Browser, expect
from sqlalchemy import select

from crisisdesk.auth import service as auth
from crisisdesk.auth.models import Role, User
from crisisdesk.kit.db import Database
from tests.e2e.conftest import OUTPUT, LiveServer
from tests.e2e.test_incident_flow import sign_in

RESPONDER = "priya@example.com"
AGENT = "agent@example.com"


async def _keys_and_agent(server: LiveServer) -> str:
    """An API key for the seeded responder, and a viewer account for the support agent."""
    db = Database(server.database_url)
    try:
        async with db.session() as s:
            user = await s.scalar(select(User).where(User.email == RESPONDER))
            assert user is not None
            who = auth.actor_for(user)
            _, secret = await auth.create_api_key(s, who, name="e2e", scopes=sorted(who.scopes))
            await auth.create_user(s, email=AGENT, name="Alex Agent", role=Role.viewer, password="crisisdesk-demo")
    finally:
        await db.dispose()
    return secret


async def test_the_brief_shows_a_new_eta_without_a_reload(live_server: LiveServer, browser: Browser) -> None:
    secret = await _keys_and_agent(live_server)
    headers = {"authorization": f"Bearer {secret}"}
    async with httpx.AsyncClient(base_url=live_server.url, headers=headers, timeout=10) as api:
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

        page = await (await browser.new_context(viewport={"width": 1280, "height": 900})).new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        await sign_in(page, live_server, AGENT)
        await page.goto(f"{live_server.url}/console/incidents/{incident_id}/brief")
        await expect(page.locator("h1")).to_contain_text("Sign-in failures for SSO users")
        eta = page.locator("#brief-eta")
        await expect(eta).to_contain_text(first.strftime("%Y-%m-%d %H:%M UTC"))
        await expect(page.locator("#brief-known")).to_contain_text("Sign-in (SSO)")
        await expect(page.locator("#brief-latest-update")).to_contain_text("We are investigating failed sign-ins.")
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
        await page.screenshot(path=str(OUTPUT / "console-agent-brief.png"), full_page=True)
        assert not errors, errors
