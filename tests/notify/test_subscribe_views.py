"""The public subscription pages through the real app: sign-up, confirmation, manage, unsubscribe."""

from __future__ import annotations

import re
from datetime import timedelta

import httpx
from fastapi import FastAPI
from sqlalchemy import select

from crisisdesk.app import serve_app
from crisisdesk.auth.models import Role
from crisisdesk.config import Settings
from crisisdesk.incident import service as incidents
from crisisdesk.kit.db import Database
from crisisdesk.kit.time import utcnow
from crisisdesk.notify.models import Delivery, Subscriber, SubscriberState, SubscriptionScope
from crisisdesk.notify.tasks import delivery_worker
from tests.fixtures.api import count_rows
from tests.fixtures.auth import make_actor
from tests.fixtures.console import HTML, sign_in
from tests.fixtures.console import field_error as console_field_error
from tests.fixtures.incident import make_component, make_incident
from tests.fixtures.notify import make_delivery, make_subscriber
from tests.fixtures.peers import SmtpSink
from tests.fixtures.ports import worker_port
from tests.fixtures.subscribe import confirmations, field_error, form_token, sign_up, subscriber_by_address


def _link(text: str) -> str:
    match = re.search(r"http://status\.test/subscriptions/[\w-]+/confirm", text)
    assert match, f"no confirmation link in {text!r}"
    return match.group(0)


async def test_email_double_opt_in_end_to_end(client: httpx.AsyncClient, db: Database) -> None:
    """Sign up, find the confirmation delivery with its link, follow it: the subscriber becomes active."""
    page = await client.get("/subscribe")
    assert page.status_code == 200 and "Subscribe to updates" in page.text
    assert page.headers["cache-control"] == "no-store"
    answer = await sign_up(client, {"channel": "email", "address": "  Reader@Example.COM ", "scope": "all"})
    assert answer.status_code == 200, answer.text
    assert 'data-result="email"' in answer.text and "reader@example.com" in answer.text

    subscriber = await subscriber_by_address(db, "reader@example.com")
    assert subscriber is not None
    assert subscriber.state == SubscriberState.pending and subscriber.scope == SubscriptionScope.all
    assert subscriber.created_ip == "127.0.0.1" and subscriber.source == "self"
    [delivery] = await confirmations(db, subscriber.id)
    assert delivery.channel == "email" and delivery.address == "reader@example.com"
    assert delivery.recipient == subscriber.id and delivery.state == "pending"
    assert delivery.payload is not None and delivery.payload["subject"].startswith("Confirm your subscription")
    link = _link(delivery.payload["text"])
    assert link == f"http://status.test/subscriptions/{subscriber.token}/confirm"
    assert link in delivery.payload["html"]

    confirmed = await client.get(link.removeprefix("http://status.test"))
    assert confirmed.status_code == 200 and 'data-result="confirmed"' in confirmed.text
    after = await subscriber_by_address(db, "reader@example.com")
    assert after is not None and after.state == SubscriberState.active and after.confirmed_at is not None
    # Following the link again (a mail scanner, a second click) changes nothing and does not fail.
    again = await client.get(link.removeprefix("http://status.test"))
    assert again.status_code == 200


async def test_the_confirmation_email_arrives_over_smtp_and_its_link_confirms(
    app: FastAPI, client: httpx.AsyncClient, db: Database, settings: Settings
) -> None:
    """The whole double opt-in through a real SMTP peer: sign up, the worker sends, the link confirms."""
    settings.smtp_host, settings.smtp_port = "127.0.0.1", worker_port(18350)
    async with SmtpSink(worker_port(18350)) as sink:
        answer = await sign_up(client, {"channel": "email", "address": "inbox@example.com", "scope": "all"})
        assert answer.status_code == 200
        async with delivery_worker(app.state.runtime) as worker:
            assert await worker.run_once() == 1
        await sink.wait_for(1)
        [mail] = sink.received
    assert mail.rcpt_tos == ["inbox@example.com"]
    message = mail.message
    assert str(message["Subject"]).startswith("Confirm your subscription to Acme Cloud status")
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    link = _link(body.get_content())
    subscriber = await subscriber_by_address(db, "inbox@example.com")
    assert subscriber is not None and subscriber.state == SubscriberState.pending
    assert link.endswith(f"/subscriptions/{subscriber.token}/confirm")
    confirmed = await client.get(link.removeprefix("http://status.test"))
    assert confirmed.status_code == 200
    active = await subscriber_by_address(db, "inbox@example.com")
    assert active is not None and active.state == SubscriberState.active


async def test_signing_up_again_reveals_nothing_and_widens(client: httpx.AsyncClient, db: Database) -> None:
    """An address already there gets the same answer, one row, and a fresh message to its owner."""
    async with db.session() as session:
        web = await make_component(session, "Web app")
        api = await make_component(session, "Public API")
    first = await sign_up(client, {"channel": "email", "address": "ops@example.com", "scope": "components",
                                   "components": [web.id]})  # fmt: skip
    second = await sign_up(client, {"channel": "email", "address": "ops@example.com", "scope": "components",
                                    "components": [api.id]})  # fmt: skip
    assert first.status_code == second.status_code == 200
    assert re.sub(r"<time.*?</time>", "", first.text) == re.sub(r"<time.*?</time>", "", second.text)
    assert await count_rows(db, Subscriber) == 1
    subscriber = await subscriber_by_address(db, "ops@example.com")
    assert subscriber is not None
    sent = await confirmations(db, subscriber.id)
    assert [d.subject for d in sent] == [f"confirm:{subscriber.id}:1", f"confirm:{subscriber.id}:2"]
    # Still pending: the newest request sets the scope.
    async with db.sessionmaker() as session:
        links = set(await session.scalars(select(Subscriber.id).where(Subscriber.scope == "components")))
    assert links == {subscriber.id}

    # Once active, a stranger can only widen the subscription, never narrow it.
    await client.get(f"/subscriptions/{subscriber.token}/confirm")
    await sign_up(
        client, {"channel": "email", "address": "ops@example.com", "scope": "components", "components": [web.id]}
    )
    manage = await client.get(f"/subscriptions/{subscriber.token}")
    assert f'value="{api.id}" checked' in manage.text and f'value="{web.id}" checked' in manage.text
    await sign_up(client, {"channel": "email", "address": "ops@example.com", "scope": "all"})
    after = await subscriber_by_address(db, "ops@example.com")
    assert after is not None and after.scope == SubscriptionScope.all and after.state == SubscriberState.active
    # The active owner was sent the manage link, not another confirmation.
    latest = (await confirmations(db, subscriber.id))[-1]
    assert latest.payload is not None and f"/subscriptions/{subscriber.token}" in latest.payload["text"]
    assert "/confirm" not in latest.payload["text"]


async def test_confirmation_messages_are_capped(client: httpx.AsyncClient, db: Database) -> None:
    """Re-sending the form cannot flood an inbox: five messages per window at most."""
    for _ in range(7):
        answer = await sign_up(client, {"channel": "email", "address": "victim@example.com", "scope": "all"})
        assert answer.status_code == 200
    subscriber = await subscriber_by_address(db, "victim@example.com")
    assert subscriber is not None and len(await confirmations(db, subscriber.id)) == 5


async def test_follow_one_incident(client: httpx.AsyncClient, db: Database) -> None:
    _, admin = await make_actor(db, Role.admin)
    async with db.session() as session:
        incident = await make_incident(session, admin, severity="SEV3", name="Exports are delayed")
    page = await client.get(f"/subscribe?incident={incident.id}")
    assert "Exports are delayed" in page.text and f'name="incident" value="{incident.id}"' in page.text
    answer = await client.post(
        "/subscribe",
        data={"form_token": form_token(page.text), "channel": "email", "address": "f@example.com",
              "incident": incident.id},
    )  # fmt: skip
    assert answer.status_code == 200, answer.text
    subscriber = await subscriber_by_address(db, "f@example.com")
    assert subscriber is not None and subscriber.scope == SubscriptionScope.incident
    assert subscriber.incident_id == incident.id

    permalink = await client.get(f"/incidents/{incident.id}")
    assert f"/subscribe?incident={incident.id}" in permalink.text and "Subscribe to this incident" in permalink.text

    async with db.session() as session:
        await incidents.post_update(
            session, admin, await incidents.get_incident(session, incident.id), status="resolved", body="Fixed."
        )
    stale = await client.get(f"/subscribe?incident={incident.id}")
    assert stale.status_code == 200 and "this incident is over" in stale.text
    refused = await client.post(
        "/subscribe",
        data={"form_token": form_token(stale.text), "channel": "email", "address": "late@example.com",
              "incident": incident.id},
    )  # fmt: skip
    assert refused.status_code == 422 and "over" in (field_error(refused.text, "incident") or "")
    assert await subscriber_by_address(db, "late@example.com") is None
    resolved_page = await client.get(f"/incidents/{incident.id}")
    assert "Subscribe to this incident" not in resolved_page.text


async def test_status_page_links_to_sign_up(client: httpx.AsyncClient) -> None:
    front = await client.get("/")
    assert 'href="http://status.test/subscribe"' in front.text and "Subscribe to updates" in front.text


async def test_bad_input_is_refused_per_channel_and_nothing_is_stored(client: httpx.AsyncClient, db: Database) -> None:
    """Each bad address is refused with 422 and a message next to the address field; no row, no message."""
    async with db.session() as session:
        group = await make_component(session, "Core platform", is_group=True)
    tried = [
        ({"channel": "email", "address": "not-an-email"}, "address", "not a valid email"),
        ({"channel": "email", "address": ""}, "address", "enter an address"),
        ({"channel": "sms", "address": "4155550123"}, "address", "country code"),
        ({"channel": "sms", "address": "+1 555"}, "address", "phone number"),
        ({"channel": "webhook", "address": "ftp://example.com/hook"}, "address", "https://"),
        ({"channel": "webhook", "address": "http://127.0.0.1/"}, "address", "https://"),
        ({"channel": "webhook", "address": "https://127.0.0.1/"}, "address", "loopback"),
        ({"channel": "webhook", "address": "https://10.0.0.1/"}, "address", "private"),
        ({"channel": "slack", "address": "https://192.168.1.20/services/x"}, "address", "private"),
        ({"channel": "teams", "address": "not a url"}, "address", "https://"),
        ({"channel": "pigeon", "address": "x@example.com"}, "channel", "choose a channel"),
        ({"channel": "email", "address": "a@example.com", "scope": "components"}, "components", "at least one"),
        ({"channel": "email", "address": "a@example.com", "scope": "components", "components": [group.id]},
         "components", "is a group"),
        ({"channel": "email", "address": "a@example.com", "scope": "components", "components": ["nope"]},
         "components", "no component"),
    ]  # fmt: skip
    for data, field, words in tried:
        answer = await sign_up(client, data)
        assert answer.status_code == 422, f"{data} -> {answer.status_code}"
        message = field_error(answer.text, field)
        assert message and words in message, f"{data}: expected {words!r} next to {field}, got {message!r}"
        if field == "address":
            assert 'aria-invalid="true" aria-describedby="err-address"' in answer.text
        if data.get("address"):
            assert f'value="{data["address"]}"' in answer.text, "the form keeps what was typed"
    assert await count_rows(db, Subscriber) == 0
    assert await count_rows(db, Delivery) == 0


async def test_forms_need_the_signed_token(client: httpx.AsyncClient, db: Database) -> None:
    """Without the page's token, with a forged one, or from another site: 403, nothing stored."""
    data = {"channel": "email", "address": "csrf@example.com", "scope": "all"}
    missing = await client.post("/subscribe", data=data)
    assert missing.status_code == 403 and "expired" in missing.text
    forged = await client.post("/subscribe", data={**data, "form_token": "9999999999.deadbeef"})
    assert forged.status_code == 403
    # Unicode digits int() refuses, and more digits than int() reads: refused like any forgery, not a 500.
    for odd in ("\u00b2.deadbeef", "1\u00b2.deadbeef", "\u0661\u0662.deadbeef", "9" * 5000 + ".deadbeef"):
        refused = await client.post("/subscribe", data={**data, "form_token": odd})
        assert refused.status_code == 403 and "expired" in refused.text
    page = await client.get("/subscribe")
    cross = await client.post(
        "/subscribe", data={**data, "form_token": form_token(page.text)}, headers={"origin": "https://evil.example"}
    )
    assert cross.status_code == 403 and "another site" in cross.text
    assert await count_rows(db, Subscriber) == 0
    # The refused page carries a fresh token, so sending it again works.
    retry = await client.post("/subscribe", data={**data, "form_token": form_token(missing.text)})
    assert retry.status_code == 200


async def test_self_signups_are_rate_limited_per_client_address(app: FastAPI, settings: Settings, db: Database) -> None:
    """The 11th sign-up from one address in the window gets 429; another address still works."""
    assert settings.signup_limit == 10
    one = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=serve_app(app), client=("203.0.113.7", 5000)), base_url="http://status.test"
    )
    other = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=serve_app(app), client=("198.51.100.9", 5000)), base_url="http://status.test"
    )
    async with one, other:
        for n in range(10):
            ok = await sign_up(one, {"channel": "email", "address": f"n{n}@example.com", "scope": "all"})
            assert ok.status_code == 200, f"sign-up {n + 1}: {ok.status_code}"
        refused = await sign_up(one, {"channel": "email", "address": "n10@example.com", "scope": "all"})
        assert refused.status_code == 429
        assert "too many sign-ups" in (field_error(refused.text, "address") or "")
        assert await subscriber_by_address(db, "n10@example.com") is None
        fine = await sign_up(other, {"channel": "email", "address": "n10@example.com", "scope": "all"})
        assert fine.status_code == 200
    assert await count_rows(db, Subscriber) == 11


async def test_sms_code_confirms_and_wrong_tries_are_limited(client: httpx.AsyncClient, db: Database) -> None:
    answer = await sign_up(client, {"channel": "sms", "address": "+44 20 7946 0958", "scope": "all"})
    assert answer.status_code == 303
    code_page = answer.headers["location"]
    assert code_page.startswith("/subscribe/sms/")
    subscriber = await subscriber_by_address(db, "+442079460958")
    assert subscriber is not None and subscriber.state == SubscriberState.pending
    assert subscriber.token not in code_page, "the code page must not reveal the manage link"
    [message] = await confirmations(db, subscriber.id)
    assert message.channel == "sms" and message.address == "+442079460958"
    code = re.search(r"code is (\d{6})", message.payload["text"] if message.payload else "")
    assert code

    page = await client.get(code_page)
    wrong = await client.post(code_page, data={"form_token": form_token(page.text), "code": "000000"
                                               if code.group(1) != "000000" else "111111"})  # fmt: skip
    assert wrong.status_code == 422 and "not right" in (field_error(wrong.text, "code") or "")
    stored = await subscriber_by_address(db, "+442079460958")
    assert stored is not None and stored.confirm_code == f"{code.group(1)}:1", "the wrong try is counted"

    right = await client.post(code_page, data={"form_token": form_token(wrong.text), "code": code.group(1)})
    assert right.status_code == 303 and right.headers["location"] == f"/subscriptions/{subscriber.token}?confirmed=1"
    manage = await client.get(right.headers["location"])
    assert "Your subscription is confirmed" in manage.text
    active = await subscriber_by_address(db, "+442079460958")
    assert active is not None and active.state == SubscriberState.active and active.confirm_code is None

    # A new code for a new sign-up; five wrong tries void it.
    other = await sign_up(client, {"channel": "sms", "address": "+14155550123", "scope": "all"})
    location = other.headers["location"]
    page = await client.get(location)
    for _ in range(5):
        tried = await client.post(location, data={"form_token": form_token(page.text), "code": "12"})
        assert tried.status_code == 422
    pending = await subscriber_by_address(db, "+14155550123")
    assert pending is not None and pending.confirm_code is None and pending.state == SubscriberState.pending
    assert (await client.get("/subscribe/sms/x.forged")).status_code == 404


async def test_webhook_is_active_at_once_with_a_secret_shown_once(
    client: httpx.AsyncClient, db: Database, settings: Settings
) -> None:
    settings.allow_private_webhooks = True  # a receiver on loopback, as in an air-gapped install
    url = "http://127.0.0.1:18301/hooks/status"
    answer = await sign_up(client, {"channel": "webhook", "address": url, "scope": "all"})
    assert answer.status_code == 200, answer.text
    secret = re.search(r'id="webhook-secret">(whsec_[A-Za-z0-9+/=]+)<', answer.text)
    assert secret and len(secret.group(1)) == len("whsec_") + 32
    subscriber = await subscriber_by_address(db, url)
    assert subscriber is not None and subscriber.state == SubscriberState.active
    assert subscriber.secret == secret.group(1)
    assert f"/subscriptions/{subscriber.token}" in answer.text
    assert await confirmations(db, subscriber.id) == []

    again = await sign_up(client, {"channel": "webhook", "address": url, "scope": "all"})
    assert again.status_code == 200 and "whsec_" not in again.text and subscriber.token not in again.text

    slack = await sign_up(client, {"channel": "slack", "address": "http://127.0.0.1:18302/services/T/B/x"})
    assert slack.status_code == 200 and 'data-result="slack"' in slack.text
    teams = await sign_up(client, {"channel": "teams", "address": "http://127.0.0.1:18302/webhookb2/x"})
    assert teams.status_code == 200 and 'data-result="teams"' in teams.text


async def test_manage_page_changes_what_is_followed(client: httpx.AsyncClient, db: Database) -> None:
    async with db.session() as session:
        web = await make_component(session, "Web app")
        await make_component(session, "Public API")
        subscriber = await make_subscriber(session, address="m@example.com")
    token = subscriber.token
    page = await client.get(f"/subscriptions/{token}")
    assert page.status_code == 200 and "m@example.com" in page.text
    saved = await client.post(
        f"/subscriptions/{token}", data={"form_token": form_token(page.text), "scope": "components",
                                         "components": [web.id]}
    )  # fmt: skip
    assert saved.status_code == 303 and saved.headers["location"] == f"/subscriptions/{token}?saved=1"
    after = await subscriber_by_address(db, "m@example.com")
    assert after is not None and after.scope == SubscriptionScope.components
    shown = await client.get(saved.headers["location"])
    assert f'value="{web.id}" checked' in shown.text and "Your choices are saved" in shown.text

    empty = await client.post(
        f"/subscriptions/{token}", data={"form_token": form_token(page.text), "scope": "components"}
    )
    assert empty.status_code == 422 and "at least one" in (field_error(empty.text, "components") or "")
    no_token = await client.post(f"/subscriptions/{token}", data={"scope": "all"})
    assert no_token.status_code == 403
    other_token = await client.post(
        f"/subscriptions/{token}",
        data={"scope": "all", "form_token": form_token((await client.get("/subscribe")).text)},
    )
    assert other_token.status_code == 403, "a token for another form does not fit this one"
    kept = await subscriber_by_address(db, "m@example.com")
    assert kept is not None and kept.scope == SubscriptionScope.components


async def test_one_click_unsubscribe(client: httpx.AsyncClient, db: Database) -> None:
    """RFC 8058: a POST with List-Unsubscribe=One-Click, no login, no form token, answers 200."""
    async with db.session() as session:
        subscriber = await make_subscriber(session, address="bye@example.com")
        delivery = await make_delivery(
            session, address="bye@example.com", channel="email", subscriber_id=subscriber.id, recipient=subscriber.id
        )
    answer = await client.post(
        f"/subscriptions/{subscriber.token}/unsubscribe",
        content=b"List-Unsubscribe=One-Click",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert answer.status_code == 200 and 'data-result="unsubscribed"' in answer.text
    assert await subscriber_by_address(db, "bye@example.com") is None
    async with db.sessionmaker() as session:
        kept = await session.get(Delivery, delivery.id)
    assert kept is not None and kept.address == "bye@example.com" and kept.subscriber_id is None
    gone = await client.post(f"/subscriptions/{subscriber.token}/unsubscribe", content=b"List-Unsubscribe=One-Click")
    assert gone.status_code == 404 and 'data-result="missing"' in gone.text


async def test_get_never_unsubscribes(client: httpx.AsyncClient, db: Database) -> None:
    """Mail scanners follow links: the GET shows a button and changes nothing."""
    async with db.session() as session:
        subscriber = await make_subscriber(session, address="scan@example.com")
    for _ in range(3):
        page = await client.get(f"/subscriptions/{subscriber.token}/unsubscribe")
        assert page.status_code == 200
        assert f'action="/subscriptions/{subscriber.token}/unsubscribe"' in page.text and "<button" in page.text
    assert await subscriber_by_address(db, "scan@example.com") is not None
    clicked = await client.post(f"/subscriptions/{subscriber.token}/unsubscribe")
    assert clicked.status_code == 200
    assert await subscriber_by_address(db, "scan@example.com") is None


async def test_unknown_tokens_are_404_pages(client: httpx.AsyncClient) -> None:
    for method, path in [
        ("GET", "/subscriptions/nope"),
        ("POST", "/subscriptions/nope"),
        ("GET", "/subscriptions/nope/confirm"),
        ("GET", "/subscriptions/nope/unsubscribe"),
        ("POST", "/subscriptions/nope/unsubscribe"),
        # A NUL reached PostgreSQL, which refused the query: 503 "database unreachable" to anyone.
        ("GET", "/subscriptions/a%00b"),
        ("POST", "/subscriptions/a%00b/unsubscribe"),
    ]:
        answer = await client.request(method, path)
        assert answer.status_code == 404, f"{method} {path}"
        assert "Subscription not found" in answer.text and 'data-result="missing"' in answer.text
    follow = await client.get("/subscribe", params={"incident": "a\x00b"})
    assert follow.status_code == 200 and "a\x00b" not in follow.text


# ---------------------------------------------------------------------------- console


async def test_console_viewers_read_admins_change(client: httpx.AsyncClient, db: Database, settings: Settings) -> None:
    async with db.session() as session:
        await make_subscriber(session, address="reader1@example.com")
        await make_subscriber(session, address="reader2@example.com", state=SubscriberState.pending)
        sick = await make_subscriber(
            session,
            channel="webhook",
            address="https://hooks.example.com/gone",
            state=SubscriberState.quarantined,
            quarantined_at=utcnow(),
            purge_at=utcnow() + timedelta(days=30),
            last_error="HTTP 410 Gone",
        )
    _, csrf = await sign_in(client, db, Role.viewer)
    page = await client.get("/console/subscribers", headers=HTML)
    assert page.status_code == 200 and 'id="counts-table"' in page.text
    email_row = re.search(r'<tr data-channel="email">(.*?)</tr>', page.text, re.S)
    assert email_row and '<td data-state="active">1</td>' in email_row.group(1)
    assert '<td data-state="pending">1</td>' in email_row.group(1)
    assert "HTTP 410 Gone" in page.text and 'id="add-form"' not in page.text and "Reactivate" not in page.text
    searched = await client.get("/console/subscribers?q=reader2", headers=HTML)
    assert "reader2@example.com" in searched.text and "reader1@example.com" not in searched.text
    async with db.session() as session:
        await make_subscriber(session, channel="teams", address="https://acme.webhook.office.com/wh/Tsecret77x")
    listed = await client.get("/console/subscribers", headers=HTML)
    assert "https://acme.webhook.office.com/…t77x" in listed.text and "Tsecret77" not in listed.text
    guessed = await client.get("/console/subscribers?q=Tsecret77", headers=HTML)  # a search cannot probe the URL
    assert guessed.status_code == 200 and "acme.webhook.office.com" not in guessed.text
    for page in ("9" * 20, "9" * 5000, "\u00b2", "\u0663"):  # overflowed the offset, int() itself, or isdigit()
        assert (await client.get("/console/subscribers", params={"page": page}, headers=HTML)).status_code == 200
    refused = await client.post(
        "/console/subscribers", data={"csrf_token": csrf, "channel": "email", "address": "v@example.com"}
    )
    assert refused.status_code == 403

    client.cookies.clear()
    _, csrf = await sign_in(client, db, Role.admin)
    bad = await client.post(
        "/console/subscribers", data={"csrf_token": csrf, "channel": "sms", "address": "555 0100"}, headers=HTML
    )
    assert bad.status_code == 422 and "country code" in (console_field_error(bad.text, "address") or "")
    added = await client.post(
        "/console/subscribers", data={"csrf_token": csrf, "channel": "sms", "address": "+14155550111"}, headers=HTML
    )
    assert added.status_code == 201 and "+14155550111" in added.text
    now_active = await subscriber_by_address(db, "+14155550111")
    assert now_active is not None and now_active.state == SubscriberState.active and now_active.source == "admin"
    settings.allow_private_webhooks = True
    hook = await client.post(
        "/console/subscribers",
        data={"csrf_token": csrf, "channel": "webhook", "address": "http://127.0.0.1:18340/h"},
        headers=HTML,
    )
    assert hook.status_code == 201 and re.search(r'id="added-secret">whsec_', hook.text)

    back = await client.post(f"/console/subscribers/{sick.id}/reactivate", data={"csrf_token": csrf})
    assert back.status_code == 303
    revived = await subscriber_by_address(db, "https://hooks.example.com/gone")
    assert revived is not None and revived.state == SubscriberState.active and revived.last_error is None
    removed = await client.post(f"/console/subscribers/{sick.id}/remove", data={"csrf_token": csrf})
    assert removed.status_code == 303 and await subscriber_by_address(db, "https://hooks.example.com/gone") is None


async def test_console_import_upload(client: httpx.AsyncClient, db: Database) -> None:
    _, csrf = await sign_in(client, db, Role.admin)
    content = b"channel,address\nemail,up1@example.com\nemail,nonsense\nemail,UP1@example.com\nsms,+14155550112\n"
    answer = await client.post(
        "/console/subscribers/import",
        data={"csrf_token": csrf, "pending": "1"},
        files={"file": ("list.csv", content, "text/csv")},
        headers=HTML,
    )
    assert answer.status_code == 200, answer.text
    report = re.search(r'id="import-report">(.*?)</div>', answer.text, re.S)
    assert report and "Imported 2</strong> of 4 rows; 1 duplicates skipped; 1 lines refused" in report.group(1)
    assert 'data-line="3">line 3: address:' in report.group(1)
    pending = await subscriber_by_address(db, "up1@example.com")
    assert (
        pending is not None
        and pending.state == SubscriberState.pending
        and len(await confirmations(db, pending.id)) == 1
    )

    empty = await client.post("/console/subscribers/import", data={"csrf_token": csrf}, headers=HTML)
    assert empty.status_code == 422 and "choose a CSV file" in (console_field_error(empty.text, "file") or "")
    wrong = await client.post(
        "/console/subscribers/import",
        data={"csrf_token": csrf},
        files={"file": ("x.csv", b"name,email\n", "text/csv")},
        headers=HTML,
    )
    assert wrong.status_code == 422 and "header" in (console_field_error(wrong.text, "file") or "")
    assert await count_rows(db, Subscriber) == 2


async def test_behind_a_proxy_the_limit_counts_the_forwarded_client(
    client: httpx.AsyncClient, db: Database, settings: Settings
) -> None:
    """With one trusted proxy the limit counts X-Forwarded-For's last entry, not the proxy or a forged entry."""
    settings.proxy_hops = 1
    settings.signup_limit = 2
    for n in range(2):
        page = await client.get("/subscribe")
        sent = await client.post(
            "/subscribe",
            data={"form_token": form_token(page.text), "channel": "email", "address": f"p{n}@example.com"},
            headers={"x-forwarded-for": f"10.9.9.{n}, 192.0.2.10"},  # a forged first entry changes nothing
        )
        assert sent.status_code == 200
    page = await client.get("/subscribe")
    third = await client.post(
        "/subscribe",
        data={"form_token": form_token(page.text), "channel": "email", "address": "p2@example.com"},
        headers={"x-forwarded-for": "192.0.2.10"},
    )
    assert third.status_code == 429
    other = await client.post(
        "/subscribe",
        data={"form_token": form_token(page.text), "channel": "email", "address": "p2@example.com"},
        headers={"x-forwarded-for": "192.0.2.11"},
    )
    assert other.status_code == 200
    stored = await subscriber_by_address(db, "p0@example.com")
    assert stored is not None and stored.created_ip == "192.0.2.10"
