"""Private status pages: magic links (real SMTP), sessions, the SSO header, the page, subscriptions."""

from __future__ import annotations

import hashlib
import re
import socket
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, update

from crisisdesk.app import serve_app
from crisisdesk.auth.models import Role
from crisisdesk.config import Settings
from crisisdesk.customer import portal
from crisisdesk.customer.models import AccountDomain, PortalLogin, PortalSession
from crisisdesk.customer.portal_views import public_main
from crisisdesk.incident import guidance
from crisisdesk.incident import service as incidents
from crisisdesk.kit.db import Database
from crisisdesk.kit.time import utcnow
from crisisdesk.models import metadata
from crisisdesk.notify.models import Delivery, Subscriber, SubscriberComponent, SubscriberState, SubscriptionScope
from crisisdesk.notify.tasks import delivery_worker
from tests.fixtures.api import count_rows
from tests.fixtures.auth import api_key_headers, make_actor
from tests.fixtures.incident import make_component, make_incident
from tests.fixtures.notify import make_subscriber
from tests.fixtures.peers import SmtpSink
from tests.fixtures.portal import (
    ask_for_link,
    csrf_token,
    form_token,
    link_in,
    link_messages,
    make_account,
    portal_sign_in,
    use_link,
)


async def _acme(db: Database) -> tuple[str, str, str]:
    """Acme (acme.example) uses Web app; Public API exists but is not Acme's. Returns their ids."""
    async with db.session() as session:
        web = await make_component(session, "Web app")
        api = await make_component(session, "Public API")
        account = await make_account(
            session, "acme", name="Acme Corp", component_ids=[web.id], domains=["acme.example"]
        )
    return account.id, web.id, api.id


def _free_port() -> int:
    # Chosen by the kernel, so parallel test workers never share it.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _mail_link(message: object) -> str:
    body = message.get_body(preferencelist=("plain",))  # type: ignore[attr-defined]
    assert body is not None
    return link_in(body.get_content())


async def test_magic_link_arrives_over_smtp_and_signs_in_once(
    app: FastAPI, client: httpx.AsyncClient, db: Database, settings: Settings
) -> None:
    """Ask, receive the mail from a real SMTP peer, open the link (a GET uses nothing), press the button."""
    await _acme(db)
    port = _free_port()
    settings.smtp_host, settings.smtp_port = "127.0.0.1", port
    page = await client.get("/private")
    assert page.status_code == 200 and 'id="signin-form"' in page.text
    assert page.headers["cache-control"] == "private, no-store"
    async with SmtpSink(port) as sink:
        answer = await client.post(
            "/private/login", data={"email": " Dana@ACME.example ", "form_token": form_token(page.text)}
        )
        assert answer.status_code == 200 and 'data-result="sent"' in answer.text
        async with delivery_worker(app.state.runtime) as worker:
            assert await worker.run_once() == 1
        await sink.wait_for(1)
        [mail] = sink.messages()
    assert mail.rcpt_tos == ["dana@acme.example"]
    assert str(mail.message["Subject"]) == "Sign in to Acme Cloud status"
    path = _mail_link(mail.message)
    token = path.rsplit("/", 1)[1]
    assert len(token) >= 40

    # Only the digest is kept: the token is in no row of portal_login (the ledger holds the message).
    async with db.sessionmaker() as session:
        [login] = (await session.scalars(select(PortalLogin))).all()
        assert login.token_hash == hashlib.sha256(token.encode()).hexdigest() and login.used_at is None
        assert login.email == "dana@acme.example"
        assert login.expires_at - login.created_at == timedelta(minutes=settings.portal_link_minutes)
        for table in (t for t in metadata.sorted_tables if t.name in ("portal_login", "portal_session")):
            for row in (await session.execute(select(table))).all():
                assert token not in repr(tuple(row))

    # A mail scanner's GET shows a button and changes nothing.
    shown = await client.get(path)
    assert shown.status_code == 200 and "dana@acme.example" in shown.text and 'id="confirm-form"' in shown.text
    assert shown.headers["referrer-policy"] == "no-referrer"
    async with db.sessionmaker() as session:
        assert (await session.get(PortalLogin, login.token_hash)).used_at is None  # type: ignore[union-attr]
        assert await count_rows(db, PortalSession) == 0

    signed = await client.post(path, data={"form_token": form_token(shown.text)})
    assert signed.status_code == 303 and signed.headers["location"] == "/private/status"
    cookie = signed.headers["set-cookie"]
    assert cookie.startswith("crisisdesk_portal=") and "HttpOnly" in cookie and "Path=/private" in cookie
    assert "SameSite=lax" in cookie and "Secure" not in cookie
    assert f"Max-Age={settings.portal_session_hours * 3600}" in cookie
    status = await client.get("/private/status")
    assert status.status_code == 200 and "Acme Corp" in status.text and "dana@acme.example" in status.text
    assert status.headers["cache-control"] == "private, no-store"

    # The link works once.
    again = await client.post(path, data={"form_token": form_token(shown.text)})
    assert again.status_code == 410 and "used already" in again.text
    assert (await client.get(path)).status_code == 410
    async with db.sessionmaker() as session:
        [opened] = (await session.scalars(select(PortalSession))).all()
        assert opened.via == "link" and opened.email == "dana@acme.example"
        assert opened.expires_at - opened.created_at == timedelta(hours=settings.portal_session_hours)
        cookie_value = cookie.split(";", 1)[0].split("=", 1)[1]
        assert opened.token_hash == hashlib.sha256(cookie_value.encode()).hexdigest()


async def test_secure_cookies_mark_the_session_cookie_secure(
    client: httpx.AsyncClient, db: Database, settings: Settings
) -> None:
    await _acme(db)
    settings.secure_cookies = True
    await ask_for_link(client, "eve@acme.example")
    [message] = await link_messages(db, "eve@acme.example")
    used = await use_link(client, link_in(message.payload["text"]))  # type: ignore[index]
    assert used.status_code == 303 and "Secure" in used.headers["set-cookie"]


def _same(html: str, email: str) -> str:
    """The page without the address it names and the footer's time of rendering."""
    return re.sub(r"<time [^>]*>[^<]*</time>", "", html.replace(email, "X"))


async def test_the_answer_never_tells_a_customer_domain_from_another(client: httpx.AsyncClient, db: Database) -> None:
    """A known and an unknown domain get the same page; only the known one gets a message."""
    await _acme(db)
    known = await ask_for_link(client, "dana@acme.example")
    unknown = await ask_for_link(client, "dana@stranger.example")
    assert known.status_code == unknown.status_code == 200
    assert _same(known.text, "dana@acme.example") == _same(unknown.text, "dana@stranger.example")
    assert len(await link_messages(db, "dana@acme.example")) == 1
    assert await link_messages(db, "dana@stranger.example") == []
    assert await count_rows(db, PortalLogin) == 1
    # A subdomain is not the domain: it must be allowed on its own.
    await ask_for_link(client, "dana@eu.acme.example")
    assert await link_messages(db, "dana@eu.acme.example") == []

    bad = await ask_for_link(client, "not an address")
    assert bad.status_code == 422 and 'data-field="email"' in bad.text and "not a valid email address" in bad.text
    page = await client.get("/private")
    stale = await client.post("/private/login", data={"email": "dana@acme.example", "form_token": "1.abc"})
    assert stale.status_code == 403 and "expired" in stale.text
    odd = await client.post("/private/login", data={"email": "dana@acme.example", "form_token": "\u00b2.abc"})
    assert odd.status_code == 403 and "expired" in odd.text
    assert page.status_code == 200 and len(await link_messages(db, "dana@acme.example")) == 1


async def test_links_per_address_are_capped(client: httpx.AsyncClient, db: Database) -> None:
    await _acme(db)
    for _ in range(7):
        answer = await ask_for_link(client, "dana@acme.example")
        assert answer.status_code == 200 and 'data-result="sent"' in answer.text
    assert len(await link_messages(db, "dana@acme.example")) == 5
    assert len(await link_messages(db, "fred@acme.example")) == 0
    await ask_for_link(client, "fred@acme.example")
    assert len(await link_messages(db, "fred@acme.example")) == 1


async def test_the_hourly_link_limit_remembers_links_that_have_expired(
    db: Database, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A link expires long before its hour is over: asking again later in that hour is still counted."""
    await _acme(db)
    start = utcnow()

    async def ask(minute: int) -> bool:
        monkeypatch.setattr(portal, "utcnow", lambda: start + timedelta(minutes=minute))
        async with db.session() as session:
            return await portal.request_link(session, settings, email="dana@acme.example") is not None

    assert settings.portal_link_minutes < 16
    sent = [minute for minute in [0, 1, 2, 3, *range(16, 60)] if await ask(minute)]
    assert sent == [0, 1, 2, 3, 16]
    assert len(await link_messages(db, "dana@acme.example")) == portal.LINKS_PER_ADDRESS
    # The hour slides: as each early link leaves it, one more may go; rows older than the hour are gone.
    assert [await ask(minute) for minute in range(60, 66)] == [False, True, True, True, True, False]
    async with db.sessionmaker() as session:
        kept = sorted(row.created_at for row in await session.scalars(select(PortalLogin)))
    assert [round((at - start).total_seconds() / 60) for at in kept] == [16, 61, 62, 63, 64]


async def test_expired_unknown_and_forged_links_are_clear_4xx_pages(client: httpx.AsyncClient, db: Database) -> None:
    await _acme(db)
    await ask_for_link(client, "dana@acme.example")
    [message] = await link_messages(db, "dana@acme.example")
    path = link_in(message.payload["text"])  # type: ignore[index]
    page = await client.get(path)
    async with db.session() as session:
        await session.execute(update(PortalLogin).values(expires_at=utcnow() - timedelta(seconds=1)))
    expired = await client.get(path)
    assert expired.status_code == 410 and "expired" in expired.text and 'href="/private"' in expired.text
    pressed = await client.post(path, data={"form_token": form_token(page.text)})
    assert pressed.status_code == 410 and "set-cookie" not in pressed.headers
    unknown = await client.get("/private/login/not-a-real-token")
    assert unknown.status_code == 404 and "unknown" in unknown.text
    assert (await client.get("/private/login/" + "x" * 300)).status_code == 404
    assert (await client.get("/private/login/a%00b")).status_code == 404
    assert await count_rows(db, PortalSession) == 0


async def test_sessions_end_by_signing_out_by_expiry_and_when_the_domain_goes(
    app: FastAPI, client: httpx.AsyncClient, db: Database
) -> None:
    account_id, _, _ = await _acme(db)
    csrf = await portal_sign_in(client, db, "dana@acme.example")
    cookie = client.cookies.get("crisisdesk_portal")
    assert cookie

    # A forged cookie is nobody.
    forged = _peer(app, "127.0.0.1")
    forged.cookies.set("crisisdesk_portal", "forged-" + cookie[7:], domain="status.test", path="/private")
    async with forged:
        answer = await forged.get("/private/status")
        assert answer.status_code == 303 and answer.headers["location"] == "/private"
        refused = await forged.post("/private/subscriptions", data={"address": "x@acme.example", "csrf_token": csrf})
        assert refused.status_code == 401 and 'id="signin-form"' in refused.text
    assert await count_rows(db, Subscriber) == 0

    # An expired session is nobody either.
    async with db.session() as session:
        await session.execute(update(PortalSession).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert (await client.get("/private/status")).headers["location"] == "/private"
    async with db.session() as session:
        await session.execute(update(PortalSession).values(expires_at=utcnow() + timedelta(hours=1)))
    assert (await client.get("/private/status")).status_code == 200

    # Removing the domain signs its people out at once.
    async with db.session() as session:
        await session.execute(AccountDomain.__table__.delete())
    assert (await client.get("/private/status")).status_code == 303
    async with db.session() as session:
        session.add(AccountDomain(domain="acme.example", account_id=account_id))
    assert (await client.get("/private/status")).status_code == 200

    # Signing out needs the page's token, deletes the session and clears the cookie.
    refused = await client.post("/private/logout", data={"csrf_token": "wrong"})
    assert refused.status_code == 403 and await count_rows(db, PortalSession) == 1
    out = await client.post("/private/logout", data={"csrf_token": csrf})
    assert out.status_code == 303 and out.headers["location"] == "/private?signed_out=1"
    assert 'crisisdesk_portal=""' in out.headers["set-cookie"] or "Max-Age=0" in out.headers["set-cookie"]
    assert await count_rows(db, PortalSession) == 0
    client.cookies.set("crisisdesk_portal", cookie, domain="status.test", path="/private")
    assert (await client.get("/private/status")).status_code == 303


def _peer(app: FastAPI, host: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=serve_app(app), client=(host, 5000))  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=transport, base_url="http://status.test")


async def test_sso_header_signs_in_only_from_a_trusted_proxy(app: FastAPI, db: Database, settings: Settings) -> None:
    await _acme(db)
    header = {"X-Forwarded-Email": "Grace@Acme.example"}
    async with _peer(app, "127.0.0.1") as proxy:
        # Off until configured: the header means nothing.
        assert (await proxy.get("/private", headers=header)).status_code == 200
        assert await count_rows(db, PortalSession) == 0
        settings.portal_sso_header = "X-Forwarded-Email"
        entered = await proxy.get("/private", headers=header)
        assert entered.status_code == 303 and entered.headers["location"] == "/private/status"
        assert "crisisdesk_portal=" in entered.headers["set-cookie"]
        page = await proxy.get("/private/status", headers=header)
        assert page.status_code == 200 and "Acme Corp" in page.text and "grace@acme.example" in page.text
        async with db.sessionmaker() as session:
            [opened] = (await session.scalars(select(PortalSession))).all()
        assert opened.via == "sso" and opened.email == "grace@acme.example"
        # The proxy speaks for someone else now: the cookie gives way to the header.
        other = await proxy.get("/private/status", headers={"X-Forwarded-Email": "heidi@acme.example"})
        assert other.status_code == 200 and "heidi@acme.example" in other.text
        refused = await proxy.get("/private/status", headers={"X-Forwarded-Email": "ivan@elsewhere.example"})
        assert refused.status_code == 403 and "Elsewhere.example is not allowed" in refused.text
        assert "Acme Corp" not in refused.text and "heidi" not in refused.text
        garbage = await proxy.get("/private", headers={"X-Forwarded-Email": "nobody"})
        assert garbage.status_code == 403 and "does not hold an email address" in garbage.text
    async with _peer(app, "203.0.113.7") as stranger:
        ignored = await stranger.get("/private", headers=header)
        assert ignored.status_code == 200 and 'id="signin-form"' in ignored.text
        assert (await stranger.get("/private/status", headers=header)).status_code == 303
    settings.portal_sso_trusted_proxies = ["10.0.0.0/8", "not-an-address"]
    for host in ("10.1.2.3", "::ffff:10.1.2.4"):  # the second as a dual-stack listener sees it
        async with _peer(app, host) as inside:
            assert (await inside.get("/private", headers=header)).headers["location"] == "/private/status", host
    async with _peer(app, "127.0.0.1") as no_longer:
        assert (await no_longer.get("/private", headers=header)).status_code == 200


async def test_the_page_shows_the_account_and_the_public_page(
    app: FastAPI, client: httpx.AsyncClient, db: Database
) -> None:
    """Components with their status; the incident with public updates, published guidance, notes."""
    account_id, web, api = await _acme(db)
    _, admin = await make_actor(db, Role.admin)
    async with db.session() as session:
        hit = await make_incident(
            session, admin, name="Web app sign-in errors", components={web: "major_outage"}, body="We are on it."
        )
        await incidents.add_note(session, admin, hit, body="INTERNAL: the primary database is on fire")
        other = await make_incident(session, admin, name="API latency", components={api: "degraded_performance"})
    async with db.session() as session:
        await guidance.set_workaround(
            session, admin, incident_id=hit.id, body="Use the **desktop app** meanwhile.", published=True
        )
        await guidance.set_eta(
            session, admin, incident_id=hit.id, eta_at=utcnow() + timedelta(hours=2), note="after the failover",
            published=True,
        )  # fmt: skip
        await guidance.set_workaround(
            session, admin, incident_id=other.id, body="SECRET internal workaround", published=False
        )
    headers = await api_key_headers(db, Role.responder)
    note = await client.post(
        f"/api/v1/accounts/{account_id}/notes",
        json={"body": "Your **dedicated** engineer is Sam.", "incident_id": hit.id},
        headers=headers,
    )
    assert note.status_code == 201, note.text
    general = await client.post(
        f"/api/v1/accounts/{account_id}/notes", json={"body": "Renewal call on Friday."}, headers=headers
    )
    await portal_sign_in(client, db, "dana@acme.example")
    page = await client.get("/private/status")
    html = page.text
    account = html.split('<section id="public"', 1)[0]
    assert 'data-component-id="' + web + '" data-status="major_outage"' in account and "Major outage" in account
    assert "Public API" not in account and "API latency" not in account
    assert f'data-incident-id="{hit.id}"' in account and "We are on it." in account
    assert "Affects your:</span> Web app (major outage)" in account
    assert "<strong>desktop app</strong>" in account and "after the failover" in account and "data-eta" in account
    assert "<strong>dedicated</strong> engineer is Sam" in account and "Renewal call on Friday." in account
    assert f'href="/private/notes/{general.json()["id"]}"' in account
    assert "INTERNAL" not in html and "SECRET internal workaround" not in html
    # The rest is the public page's own content, as the snapshot serves it.
    public = public_main(app.state.site)
    assert public is not None and str(public) in html and "API latency" in str(public)
    front = await client.get("/")
    assert str(public) in front.text
    one = await client.get(f"/private/notes/{note.json()['id']}")
    assert one.status_code == 200 and "dedicated" in one.text and "Web app sign-in errors" in one.text
    assert (await client.get("/private/notes/99999")).status_code == 404
    assert (await client.get("/private/notes/abc")).status_code == 404
    # Characters Unicode calls digits but int() refuses ("²", "①") are no note either.
    for odd in ("%C2%B2", "%E2%91%A0", "1%C2%B2"):
        missing = await client.get(f"/private/notes/{odd}")
        assert missing.status_code == 404 and "No such note for this account" in missing.text


async def test_subscriptions_own_address_at_once_others_by_double_opt_in(
    client: httpx.AsyncClient, db: Database, settings: Settings
) -> None:
    account_id, web, _ = await _acme(db)
    async with db.session() as session:
        public = await make_subscriber(session, address="paul@acme.example", state=SubscriberState.pending)
    csrf = await portal_sign_in(client, db, "dana@acme.example")

    own = await client.post(
        "/private/subscriptions", data={"address": "Dana@acme.example", "scope": "components", "csrf_token": csrf}
    )
    assert own.status_code == 303 and "notice=subscribed" in own.headers["location"]
    other = await client.post(
        "/private/subscriptions", data={"address": "ops@acme.example", "scope": "all", "csrf_token": csrf}
    )
    assert other.status_code == 303 and "notice=confirm" in other.headers["location"]
    # An address subscribed on the public page is not taken over without its owner.
    taken = await client.post(
        "/private/subscriptions", data={"address": "paul@acme.example", "scope": "all", "csrf_token": csrf}
    )
    assert taken.status_code == 303 and "notice=confirm" in taken.headers["location"]
    async with db.sessionmaker() as session:
        rows = {s.address: s for s in await session.scalars(select(Subscriber))}
        mine = rows["dana@acme.example"]
        assert mine.state == SubscriberState.active and mine.account_id == account_id and mine.source == "portal"
        assert mine.scope == SubscriptionScope.components
        links = await session.scalars(select(SubscriberComponent).where(SubscriberComponent.subscriber_id == mine.id))
        assert [link.component_id for link in links] == [web]
        ops = rows["ops@acme.example"]
        assert ops.state == SubscriberState.pending and ops.account_id == account_id
        assert rows["paul@acme.example"].account_id is None and rows["paul@acme.example"].id == public.id
        confirmations = (await session.scalars(select(Delivery).where(Delivery.purpose == "confirm"))).all()
        assert sorted(d.address for d in confirmations) == ["ops@acme.example", "paul@acme.example"]
        assert not [d for d in confirmations if d.address == "dana@acme.example"]

    page = await client.get("/private/status?notice=subscribed")
    listed = page.text.split('id="subscriptions"', 1)[1].split("</section>", 1)[0]
    assert "dana@acme.example" in listed and "ops@acme.example" in listed and "paul@acme.example" not in listed
    assert "waiting for confirmation" in listed and "your systems" in listed
    assert "now receives updates" in page.text

    bad = await client.post("/private/subscriptions", data={"address": "nope", "scope": "all", "csrf_token": csrf})
    assert bad.status_code == 422 and 'data-field="address"' in bad.text
    scope = await client.post(
        "/private/subscriptions", data={"address": "x@acme.example", "scope": "sms", "csrf_token": csrf}
    )
    assert scope.status_code == 422 and 'data-field="scope"' in scope.text
    forged = await client.post("/private/subscriptions", data={"address": "x@acme.example", "csrf_token": "1"})
    assert forged.status_code == 403
    assert await count_rows(db, Subscriber) == 3

    gone = await client.post(f"/private/subscriptions/{ops.id}/delete", data={"csrf_token": csrf})
    assert gone.status_code == 303 and "notice=unsubscribed" in gone.headers["location"]
    missing = await client.post(f"/private/subscriptions/{public.id}/delete", data={"csrf_token": csrf})
    assert missing.status_code == 404
    assert await count_rows(db, Subscriber) == 2

    # Subscribing is capped per account like self sign-up per network address.
    settings.signup_limit = 1
    capped = await client.post(
        "/private/subscriptions", data={"address": "more@acme.example", "scope": "all", "csrf_token": csrf}
    )
    assert capped.status_code == 429 and 'data-field="address"' in capped.text


async def test_own_address_claims_its_public_subscription_and_anonymous_requests_are_refused(
    client: httpx.AsyncClient, db: Database
) -> None:
    account_id, _, _ = await _acme(db)
    async with db.session() as session:
        mine = await make_subscriber(session, address="dana@acme.example", state=SubscriberState.pending)
    anonymous = await client.get("/private/status")
    assert anonymous.status_code == 303 and anonymous.headers["location"] == "/private"
    for path in ("/private/subscriptions", f"/private/subscriptions/{mine.id}/delete", "/private/logout"):
        refused = await client.post(path, data={"address": "dana@acme.example"})
        assert refused.status_code == 401, path
    csrf = await portal_sign_in(client, db, "dana@acme.example")
    answer = await client.post(
        "/private/subscriptions", data={"address": "dana@acme.example", "scope": "all", "csrf_token": csrf}
    )
    assert answer.status_code == 303
    async with db.sessionmaker() as session:
        [row] = (await session.scalars(select(Subscriber))).all()
    assert row.id == mine.id and row.account_id == account_id and row.state == SubscriberState.active


def _count(pattern: str, text: str) -> int:
    return len(re.findall(pattern, text))


async def test_a_page_without_components_offers_all_updates_only(client: httpx.AsyncClient, db: Database) -> None:
    async with db.session() as session:
        await make_account(session, "bare", name="Bare Ltd", domains=["bare.example"])
    await portal_sign_in(client, db, "kim@bare.example")
    page = await client.get("/private/status")
    assert "No systems are listed for your account yet" in page.text
    assert 'value="components"' not in page.text and _count('name="scope" value="all"', page.text) == 1
    assert csrf_token(page.text)
