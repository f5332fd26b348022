"""Isolation: signed in as account A, no private route shows anything of account B, or acts on it.

A and B use different components (and share one), have incidents of their own and a shared one,
notes, subscriptions and an unpublished workaround. B's page is checked to show B's things, so
every string A's pages are searched for is one that really is on a page.
"""

from __future__ import annotations

from datetime import timedelta

import httpx
from fastapi import FastAPI
from sqlalchemy import select, update

from crisisdesk.app import serve_app
from crisisdesk.auth.models import Role
from crisisdesk.customer.models import PortalLogin
from crisisdesk.customer.portal_views import public_main
from crisisdesk.incident import guidance
from crisisdesk.incident import service as incidents
from crisisdesk.incident.models import Incident
from crisisdesk.kit import events
from crisisdesk.kit.db import Database
from crisisdesk.kit.time import utcnow
from crisisdesk.notify.models import Subscriber, SubscriberState
from tests.fixtures.api import count_rows
from tests.fixtures.auth import api_key_headers, make_actor
from tests.fixtures.incident import make_component, make_incident
from tests.fixtures.notify import make_subscriber
from tests.fixtures.portal import ask_for_link, link_in, link_messages, make_account, portal_sign_in, use_link

# What B's page shows of B that must never reach A: its name, a component kept off the public page,
# notes, addresses, a B-only incident that is not on the public front page (resolved 20 days ago).
B_PRIVATE = [
    "Bravo Holdings",
    "Bravo Ledger",
    "Jane from support will call",
    "your ledger credits are safe",
    "rebuild finished for you",
    "Archive rebuild for ledgers",  # B-only, resolved 20 days ago: not on the public front page
    "bravo-ops@bravo.example",
    "bravo-cfo@bravo.example",
]
B_UNPUBLISHED = "BRAVO-SECRET-WORKAROUND"
B_PUBLIC_INCIDENT = "Nightly reconciliation delayed"  # B-only but public: on the public part only


def _peer(app: FastAPI) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=serve_app(app))  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=transport, base_url="http://status.test")


def _account_part(html: str) -> str:
    assert '<section id="public"' in html
    return html.split('<section id="public"', 1)[0]


async def test_account_a_never_sees_or_touches_account_b(app: FastAPI, db: Database) -> None:
    _, admin = await make_actor(db, Role.admin)
    async with db.session() as session:
        login = await make_component(session, "Login")
        console = await make_component(session, "Alpha Console")
        reconciliation = await make_component(session, "Reconciliation")
        ledger = await make_component(session, "Bravo Ledger", showcase=False)
        a = await make_account(
            session,
            "alpha-ext-1",
            name="Alpha Industries",
            component_ids=[login.id, console.id],
            domains=["alpha.example"],
        )
        b = await make_account(
            session,
            "bravo-ext-2",
            name="Bravo Holdings",
            component_ids=[login.id, reconciliation.id, ledger.id],
            domains=["bravo.example"],
        )
        shared = await make_incident(session, admin, name="Login outage", components={login.id: "major_outage"})
        await make_incident(session, admin, name="Alpha Console errors", components={console.id: "partial_outage"})
        b_open = await make_incident(
            session, admin, name=B_PUBLIC_INCIDENT, components={reconciliation.id: "degraded_performance"}
        )
        b_old = await make_incident(
            session, admin, name="Archive rebuild for ledgers", components={ledger.id: "major_outage"}
        )
    async with db.session() as session:
        old = await incidents.get_incident(session, b_old.id)
        await incidents.post_update(session, admin, old, status="resolved", body="Rebuilt.")
        await guidance.set_workaround(session, admin, incident_id=b_open.id, body=B_UNPUBLISHED, published=False)
        await guidance.set_workaround(
            session, admin, incident_id=shared.id, body="Use a recovery code.", published=True
        )
    async with db.session() as session:
        long_ago = utcnow() - timedelta(days=20)
        await session.execute(
            update(Incident)
            .where(Incident.id == b_old.id)
            .values(started_at=long_ago - timedelta(hours=2), created_at=long_ago - timedelta(hours=2),
                    resolved_at=long_ago, updated_at=long_ago)
        )  # fmt: skip
        events.record(session, events.PUBLIC)  # the front page is rendered again without it
        a_sub = await make_subscriber(session, address="alpha-ops@alpha.example", account_id=a.id)
        b_sub = await make_subscriber(session, address="bravo-ops@bravo.example", account_id=b.id)
        await make_subscriber(
            session, address="bravo-cfo@bravo.example", account_id=b.id, state=SubscriberState.pending
        )
    staff = await api_key_headers(db, Role.responder)
    async with _peer(app) as api:

        async def note(account_id: str, body: str, incident_id: str | None = None) -> int:
            answer = await api.post(
                f"/api/v1/accounts/{account_id}/notes", json={"body": body, "incident_id": incident_id}, headers=staff
            )
            assert answer.status_code == 201, answer.text
            return int(answer.json()["id"])

        a_note = await note(a.id, "Alpha note: Sam is your engineer", shared.id)
        await note(a.id, "Alpha note: quarterly review", None)
        b_note = await note(b.id, "Bravo note: Jane from support will call", None)
        await note(b.id, "Bravo note: your ledger credits are safe", shared.id)
        await note(b.id, "Bravo note: rebuild finished for you", b_old.id)

    # Control: B's own page shows every one of those things, so searching A's pages for them means something.
    async with _peer(app) as b_client:
        await portal_sign_in(b_client, db, "boss@bravo.example")
        b_page = (await b_client.get("/private/status")).text
        b_account = _account_part(b_page)
        for marker in B_PRIVATE:
            assert marker in b_account, marker
        assert B_PUBLIC_INCIDENT in b_account and "Login outage" in b_account
        assert B_UNPUBLISHED not in b_page
    async with _peer(app) as public:
        front = (await public.get("/")).text
    assert B_PUBLIC_INCIDENT in front and "Archive rebuild for ledgers" not in front and "Bravo Ledger" not in front

    async with _peer(app) as a_client:
        csrf = await portal_sign_in(a_client, db, "anna@alpha.example")
        pages: dict[str, httpx.Response] = {}
        pages["/private"] = await a_client.get("/private", follow_redirects=True)
        pages["/private/status"] = await a_client.get("/private/status")
        pages["notice"] = await a_client.get("/private/status?notice=unsubscribed")
        pages["a note"] = await a_client.get(f"/private/notes/{a_note}")
        pages["b note"] = await a_client.get(f"/private/notes/{b_note}")
        pages["refused subscribe"] = await a_client.post(
            "/private/subscriptions", data={"address": "broken", "scope": "all", "csrf_token": csrf}
        )
        pages["b unsubscribe"] = await a_client.post(
            f"/private/subscriptions/{b_sub.id}/delete", data={"csrf_token": csrf}
        )
        pages["bad link"] = await a_client.get("/private/login/nothing-here")

        status = pages["/private/status"]
        assert status.status_code == 200 and "Alpha Industries" in status.text
        account = _account_part(status.text)
        assert "Login outage" in account and "Alpha Console errors" in account and "Use a recovery code." in account
        assert "Sam is your engineer" in account and "quarterly review" in account
        assert "alpha-ops@alpha.example" in account
        # B's public incident is on the public part (everyone sees it there) and nowhere in A's part.
        assert B_PUBLIC_INCIDENT not in account and b_open.id not in account
        assert str(public_main(app.state.site)) in status.text
        assert pages["b note"].status_code == 404 and pages["b unsubscribe"].status_code == 404
        assert pages["refused subscribe"].status_code == 422 and pages["a note"].status_code == 200
        for name, response in pages.items():
            for marker in [*B_PRIVATE, B_UNPUBLISHED, b.external_id, b.id, b_sub.id]:
                assert marker not in response.text, f"{marker!r} of account B is on A's {name} page"
        async with db.sessionmaker() as session:
            kept = await session.get(Subscriber, b_sub.id)
            assert kept is not None and kept.account_id == b.id
        assert await count_rows(db, Subscriber) == 3

        # A's session cannot be pointed at B: B's ids in A's forms change nothing of B's.
        signed_out = await a_client.post("/private/logout", data={"csrf_token": csrf})
        assert signed_out.status_code == 303
        after = await a_client.get("/private/status")
        assert after.status_code == 303 and after.headers["location"] == "/private"
        assert a_sub.id

    # A forged or expired cookie is the sign-in page.
    async with _peer(app) as forger:
        forger.cookies.set("crisisdesk_portal", "x" * 43, domain="status.test", path="/private")
        answer = await forger.get("/private/status", follow_redirects=True)
        assert answer.status_code == 200 and 'id="signin-form"' in answer.text
        assert "Alpha" not in answer.text and "Bravo" not in answer.text

    # An address at B's domain only ever gets a link to B's page.
    async with _peer(app) as b_person:
        await ask_for_link(b_person, "someone@bravo.example")
        async with db.sessionmaker() as session:
            owners = set((await session.scalars(select(PortalLogin.account_id).where(
                PortalLogin.email == "someone@bravo.example"))).all())  # fmt: skip
        assert owners == {b.id}
        [message] = await link_messages(db, "someone@bravo.example")
        assert message.payload is not None and "Alpha" not in message.payload["text"]
        await use_link(b_person, link_in(message.payload["text"]))
        landed = await b_person.get("/private/status")
        assert "Bravo Holdings" in landed.text and "Alpha Industries" not in landed.text
        assert "Sam is your engineer" not in landed.text and "alpha-ops@alpha.example" not in landed.text
        assert "Alpha Console errors" not in _account_part(landed.text)
