"""A responder runs a SEV1 in the console while a visitor watches the public page live."""

from __future__ import annotations

import re

from playwright.async_api import Browser, Page, expect

from crisisdesk.seed import ADMIN_EMAIL, DEMO_PASSWORD
from tests.e2e.conftest import OUTPUT, LiveServer

RESPONDER = "priya@example.com"


async def sign_in(page: Page, server: LiveServer, email: str) -> None:
    await page.goto(server.url + "/login")
    await page.fill("input[name=email]", email)
    await page.fill("input[name=password]", DEMO_PASSWORD)
    await page.click("button[type=submit]")
    await expect(page).to_have_url(re.compile(r"/console"))


async def post_update(page: Page, status: str, body: str) -> None:
    form = page.locator("#update-form")
    await form.locator("select[name=status]").select_option(status)
    await form.locator("textarea[name=body]").fill(body)
    await form.locator("button[type=submit]").click()
    await expect(page.locator("#timeline")).to_contain_text(body[:40])


async def test_declare_update_resolve_seen_live_on_public_page(live_server: LiveServer, browser: Browser) -> None:
    console = await (await browser.new_context(viewport={"width": 1280, "height": 900})).new_page()
    public = await (await browser.new_context(viewport={"width": 1280, "height": 900})).new_page()
    errors: list[str] = []
    public.on("pageerror", lambda exc: errors.append(str(exc)))

    await public.goto(live_server.url + "/")
    await expect(public.locator("#overall-status")).to_contain_text("All Systems Operational")

    await sign_in(console, live_server, RESPONDER)
    await console.goto(live_server.url + "/console/incidents/new")
    form = console.locator("#declare-form")
    await form.locator("input[name=name]").fill("Entra ID sign-ins failing")
    await form.locator("select[name=severity]").select_option("SEV1")
    sso = form.locator("select[name^='component:']").first
    await sso.select_option("major_outage")
    await form.locator("textarea[name=body]").fill(
        "Customers using Microsoft Entra ID cannot sign in. We are investigating."
    )
    await form.locator("button[type=submit]").click()
    await expect(console.locator("#timeline")).to_contain_text("declared")

    # The visitor never reloads: each change arrives over the live channel.
    incident = public.locator(".incident", has_text="Entra ID sign-ins failing")
    await expect(incident).to_be_visible(timeout=5000)
    await expect(public.locator("#overall-status")).not_to_contain_text("All Systems Operational")

    await post_update(console, "identified", "Microsoft confirmed an outage of Entra ID token issuance.")
    await expect(incident).to_contain_text("Microsoft confirmed an outage", timeout=5000)
    await post_update(console, "monitoring", "A fix is rolling out; sign-ins are recovering.")
    await expect(incident).to_contain_text("sign-ins are recovering", timeout=5000)

    await public.screenshot(path=str(OUTPUT / "public-desktop-incident.png"), full_page=True)
    await console.screenshot(path=str(OUTPUT / "console-incident.png"), full_page=True)

    await post_update(console, "resolved", "Sign-ins have worked normally for 30 minutes. Resolved.")
    await expect(public.locator(".incident", has_text="Entra ID sign-ins failing")).to_have_count(0, timeout=5000)
    await expect(public.locator("#overall-status")).to_contain_text("All Systems Operational", timeout=5000)
    assert not errors, errors

    phone = await (await browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)).new_page()
    await phone.goto(live_server.url + "/")
    await phone.screenshot(path=str(OUTPUT / "public-phone.png"), full_page=True)
    await public.screenshot(path=str(OUTPUT / "public-desktop.png"), full_page=True)
    await console.goto(live_server.url + "/console")
    await console.screenshot(path=str(OUTPUT / "console-dashboard.png"), full_page=True)


async def test_console_requires_login_in_the_browser(live_server: LiveServer, browser: Browser) -> None:
    page = await browser.new_page()
    await page.goto(live_server.url + "/console")
    await expect(page).to_have_url(re.compile(r"/login"))
    await page.fill("input[name=email]", ADMIN_EMAIL)
    await page.fill("input[name=password]", "wrong password")
    await page.click("button[type=submit]")
    await expect(page.locator("body")).to_contain_text(re.compile("incorrect|invalid|wrong", re.I))
