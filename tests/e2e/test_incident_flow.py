"""A responder runs a SEV1 in the console while a visitor watches the public page live."""

from __future__ import annotations

import re

from playwright.async_api import Browser, Page, expect

from crisisdesk.seed import ADMIN_EMAIL, DEMO_PASSWORD
from tests.e2e.conftest import OUTPUT, LiveServer

RESPONDER = "priya@example.com"
OTHER_RESPONDER = "marcus@example.com"
TITLE = "Sign-in failures for Microsoft Entra ID SSO users"


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


async def declare_from_template(page: Page, server: LiveServer, *, lead: str | None = None) -> None:
    """Declare a SEV1 from the seeded library's identity-provider template, as a responder does."""
    await page.goto(server.url + "/console/incidents/new")
    picker = page.locator("#declare-template-picker")
    await picker.locator("select[name=template_id]").select_option(label="Identity provider outage · investigating")
    await picker.locator("button[type=submit]").click()
    form = page.locator("#compose-form")
    await form.locator("select[name=severity]").select_option("SEV1")
    await form.locator("input[name='var:provider']").fill("Microsoft Entra ID")
    await form.locator("select[name='var:components']").select_option("Sign-in (SSO)")
    sso = form.locator(".component-choice", has_text="Sign-in (SSO)").locator("select")
    await sso.select_option("major_outage")
    if lead:
        await form.locator("select[name='role:communications_lead']").select_option(label=lead)
    await form.locator("button[value=preview]").click()
    sms = page.locator("[data-variant=sms]")
    await expect(sms).to_contain_text("Microsoft Entra ID")
    await expect(sms).to_contain_text("1 segment")
    await page.locator("#compose-form button[value=publish]").click()
    await expect(page.locator("h1")).to_contain_text(TITLE)


async def test_declare_update_resolve_seen_live_on_public_page(live_server: LiveServer, browser: Browser) -> None:
    console = await (await browser.new_context(viewport={"width": 1280, "height": 900})).new_page()
    public = await (await browser.new_context(viewport={"width": 1280, "height": 900})).new_page()
    errors: list[str] = []
    public.on("pageerror", lambda exc: errors.append(str(exc)))

    await public.goto(live_server.url + "/")
    await expect(public.locator("#overall-status")).to_contain_text("All Systems Operational")

    await sign_in(console, live_server, RESPONDER)
    await declare_from_template(console, live_server, lead="Priya Patel")
    await expect(console.locator("#timeline")).to_contain_text("declared")

    # The visitor never reloads: each change arrives over the live channel.
    incident = public.locator(".incident", has_text=TITLE)
    await expect(incident).to_be_visible(timeout=5000)
    await expect(public.locator("#overall-status")).not_to_contain_text("All Systems Operational")

    await post_update(console, "identified", "Microsoft confirmed an outage of Entra ID token issuance.")
    await expect(incident).to_contain_text("Microsoft confirmed an outage", timeout=5000)
    await post_update(console, "monitoring", "A fix is rolling out; sign-ins are recovering.")
    await expect(incident).to_contain_text("sign-ins are recovering", timeout=5000)

    await public.screenshot(path=str(OUTPUT / "public-desktop-incident.png"), full_page=True)
    await console.screenshot(path=str(OUTPUT / "console-incident.png"), full_page=True)

    await post_update(console, "resolved", "Sign-ins have worked normally for 30 minutes. Resolved.")
    await expect(public.locator(".incident", has_text=TITLE)).to_have_count(0, timeout=5000)
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


async def test_a_responders_free_text_is_approved_in_a_second_browser(
    live_server: LiveServer, browser: Browser
) -> None:
    responder = await (await browser.new_context(viewport={"width": 1280, "height": 900})).new_page()
    admin = await (await browser.new_context(viewport={"width": 1280, "height": 900})).new_page()
    public = await (await browser.new_context(viewport={"width": 1280, "height": 900})).new_page()
    errors: list[str] = []
    for page in (responder, admin, public):
        page.on("pageerror", lambda exc: errors.append(str(exc)))

    await sign_in(responder, live_server, OTHER_RESPONDER)
    await declare_from_template(responder, live_server)  # no Communications Lead named
    incident_url = responder.url
    await public.goto(live_server.url + "/")
    await expect(public.locator(".incident", has_text=TITLE)).to_be_visible(timeout=5000)

    # Free text on a SEV1 from a responder who is not the Communications Lead waits for approval.
    form = responder.locator("#update-form")
    await expect(responder.locator("#draft-note")).to_be_visible()
    await form.locator("select[name=status]").select_option("identified")
    text = "Microsoft confirmed an Entra ID outage; password sign-in works as a workaround."
    await form.locator("textarea[name=body]").fill(text)
    await expect(form.locator("button[type=submit]")).to_have_text("Submit for approval")
    await form.locator("button[type=submit]").click()
    await expect(responder.locator("#pending-drafts")).to_contain_text(text)
    await expect(public.locator(".incident", has_text=TITLE)).not_to_contain_text("password sign-in works")

    await sign_in(admin, live_server, ADMIN_EMAIL)
    await expect(admin.locator(".drafts-waiting")).to_contain_text("1 draft waiting for approval")
    await admin.locator(".drafts-waiting").click()
    await expect(admin).to_have_url(incident_url + "#drafts")
    await admin.locator("#pending-drafts button", has_text="Approve and publish").click()
    await expect(admin.locator("#timeline")).to_contain_text(text[:40])

    # The author's page and the public page follow without a reload.
    await expect(responder.locator("#timeline")).to_contain_text("approved and published", timeout=5000)
    await expect(responder.locator("#pending-drafts")).to_have_count(0)
    await expect(public.locator(".incident", has_text=TITLE)).to_contain_text("password sign-in works", timeout=5000)
    await admin.screenshot(path=str(OUTPUT / "console-draft-approved.png"), full_page=True)
    assert not errors, errors
