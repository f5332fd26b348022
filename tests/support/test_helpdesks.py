"""Helpdesks: the API and console, each vendor's signed webhook, and replies through each vendor's API."""

from __future__ import annotations

import base64
import re
import socket
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client import REGISTRY

from crisisdesk.auth.models import Role
from crisisdesk.config import Settings
from crisisdesk.kit.db import Database
from crisisdesk.kit.errors import InvalidInput
from crisisdesk.kit.time import utcnow
from crisisdesk.support import adapters, helpdesks, hooks
from crisisdesk.support.models import Helpdesk, HelpdeskKind, MacroKind, Ticket, TicketSource
from crisisdesk.support.plaintext import html_to_text
from tests.fixtures.api import count_rows, error_locs, error_text
from tests.fixtures.auth import api_key_headers, make_actor
from tests.fixtures.console import HTML, field_error, sign_in
from tests.fixtures.helpdesks import (
    SECRET,
    freshdesk_rule,
    intercom_headers,
    intercom_notification,
    make_account,
    make_helpdesk,
    tickets,
    zendesk_event,
    zendesk_headers,
    zendesk_trigger,
)
from tests.fixtures.incident import make_component, make_incident
from tests.fixtures.notify import run_jobs
from tests.fixtures.peers import HttpReceiver
from tests.fixtures.server import free_port
from tests.fixtures.support import SSO_INCIDENT, SSO_TICKET, SSO_UPDATE, make_macro


@pytest.fixture
def settings(database_url: str) -> Settings:
    """The suite's settings, with API addresses on loopback allowed (the local receivers)."""
    return Settings(
        demo=True,
        database_url=database_url,
        run_workers=False,
        poll_interval=0.05,
        base_url="http://status.test",
        page_name="Acme Cloud",
        allow_private_webhooks=True,
    )


def hook(helpdesk: Helpdesk) -> str:
    return f"/support/hooks/{helpdesk.token}"


# --- the API --------------------------------------------------------------------------------


async def test_admins_connect_a_helpdesk_and_see_its_secret_once(client: httpx.AsyncClient, db: Database) -> None:
    admin = await api_key_headers(db, Role.admin)
    created = await client.post(
        "/api/v1/helpdesks",
        headers=admin,
        json={"kind": "freshdesk", "name": "Freshdesk (umbrella)", "api_base_url": "http://127.0.0.1:8089/"},
    )
    assert created.status_code == 201, created.text
    body = created.json()
    secret = body["signing_secret"]
    assert len(secret) >= 40
    assert body["signing_secret_hint"] == "…" + secret[-4:]
    assert body["api_base_url"] == "http://127.0.0.1:8089"  # no trailing slash
    assert re.fullmatch(r"http://status\.test/support/hooks/[A-Za-z0-9_-]{32}", body["webhook_url"])
    assert body["has_api_token"] is False and body["tickets"] == 0

    listed = await client.get("/api/v1/helpdesks", headers=admin)
    assert listed.status_code == 200 and [h["id"] for h in listed.json()] == [body["id"]]
    assert secret not in listed.text and 'signing_secret"' not in listed.text
    one = await client.get(f"/api/v1/helpdesks/{body['id']}", headers=admin)
    assert one.json()["webhook_url"] == body["webhook_url"] and secret not in one.text

    # Responders see that it exists, not where to post.
    responder = await api_key_headers(db, Role.responder)
    seen = (await client.get("/api/v1/helpdesks", headers=responder)).json()
    assert seen[0]["webhook_url"] is None and seen[0]["signing_secret_hint"] is None
    refused = await client.post("/api/v1/helpdesks", headers=responder, json={"kind": "zendesk", "name": "x"})
    assert refused.status_code == 403
    assert await count_rows(db, Helpdesk) == 1


async def test_helpdesk_input_is_checked_field_by_field(client: httpx.AsyncClient, db: Database) -> None:
    admin = await api_key_headers(db, Role.admin)
    cases: list[tuple[dict[str, Any], str, str]] = [
        ({"kind": "servicenow", "name": "SN"}, "kind", "zendesk, freshdesk, intercom"),
        ({"kind": "zendesk", "name": "  "}, "name", "must not be empty"),
        ({"kind": "zendesk", "name": "Z"}, "api_base_url", "https://acme.zendesk.com"),
        ({"kind": "zendesk", "name": "Z", "api_base_url": "ftp://acme.zendesk.com"}, "api_base_url", "https://"),
        (
            {"kind": "zendesk", "name": "Z", "api_base_url": "http://127.0.0.1:1/?key=1"},
            "api_base_url",
            "no query",
        ),
        (
            {"kind": "zendesk", "name": "Z", "api_base_url": "http://127.0.0.1:1", "signing_secret": "short"},
            "signing_secret",
            "at least 16",
        ),
        (
            {"kind": "zendesk", "name": "Z", "api_base_url": "http://127.0.0.1:1", "api_user": "not an email"},
            "api_user",
            "email",
        ),
        ({"kind": "intercom", "name": "I", "api_user": "bob"}, "api_user", "admin"),
        # Unicode digits pass isdigit() but are no admin id.
        ({"kind": "intercom", "name": "I", "api_user": "81486²"}, "api_user", "admin"),
        ({"kind": "intercom", "name": "I", "api_token": "has space"}, "api_token", "spaces"),
    ]
    for payload, field, words in cases:
        response = await client.post("/api/v1/helpdesks", headers=admin, json=payload)
        assert response.status_code == 422, (payload, response.text)
        assert error_locs(response) == [["body", field]], (payload, response.text)
        assert words in error_text(response), (payload, response.text)
    assert await count_rows(db, Helpdesk) == 0
    # Intercom has one API address; it is the default.
    intercom = await client.post(
        "/api/v1/helpdesks",
        headers=admin,
        json={"kind": "intercom", "name": "Intercom", "api_user": "814860", "signing_secret": SECRET},
    )
    assert intercom.status_code == 201 and intercom.json()["api_base_url"] == "https://api.intercom.io"
    assert intercom.json()["signing_secret"] == SECRET


async def test_api_addresses_must_be_public_unless_private_ones_are_allowed() -> None:
    for url, words in (
        ("https://127.0.0.1", "loopback"),
        ("https://10.1.2.3", "private"),
        ("http://acme.zendesk.example", "https://"),
    ):
        with pytest.raises(InvalidInput) as refused:
            await helpdesks.check_api_base_url(HelpdeskKind.zendesk, url, allow_private=False)
        assert refused.value.field == "api_base_url" and words in refused.value.message


async def test_rotating_the_url_the_secret_and_changing_settings(client: httpx.AsyncClient, db: Database) -> None:
    admin = await api_key_headers(db, Role.admin)
    body = (
        await client.post(
            "/api/v1/helpdesks",
            headers=admin,
            json={"kind": "freshdesk", "name": "FD", "api_base_url": "http://127.0.0.1:8089", "api_token": "k" * 20},
        )
    ).json()
    old_url, old_secret = body["webhook_url"], body["signing_secret"]
    old_path = old_url.removeprefix("http://status.test")
    assert (await client.head(old_path)).status_code == 200

    rotated = await client.post(f"/api/v1/helpdesks/{body['id']}/rotate", headers=admin)
    assert rotated.status_code == 200 and rotated.json()["webhook_url"] != old_url
    assert (await client.head(old_path)).status_code == 404
    gone = await client.post(old_path, content=freshdesk_rule(), headers={"authorization": f"Bearer {old_secret}"})
    assert gone.status_code == 404

    secret = await client.post(f"/api/v1/helpdesks/{body['id']}/rotate-secret", headers=admin)
    assert secret.status_code == 200
    new_secret = secret.json()["signing_secret"]
    assert new_secret != old_secret and len(new_secret) >= 40
    new_path = rotated.json()["webhook_url"].removeprefix("http://status.test")
    stale = await client.post(new_path, content=freshdesk_rule(), headers={"authorization": f"Bearer {old_secret}"})
    assert stale.status_code == 401
    fresh = await client.post(new_path, content=freshdesk_rule(), headers={"authorization": f"Bearer {new_secret}"})
    assert fresh.status_code == 200 and fresh.json()["status"] == "ok"

    patched = await client.patch(
        f"/api/v1/helpdesks/{body['id']}",
        headers=admin,
        json={"name": "Freshdesk EU", "api_token": "", "enabled": False, "signing_secret": "s" * 20},
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["name"] == "Freshdesk EU" and patched.json()["has_api_token"] is False
    assert patched.json()["signing_secret_hint"] == "…ssss" and patched.json()["tickets"] == 1
    # Disabled: the URL answers like an unknown one.
    disabled = await client.post(
        new_path, content=freshdesk_rule("89"), headers={"authorization": "Bearer " + "s" * 20}
    )
    assert disabled.status_code == 404 and (await client.head(new_path)).status_code == 404
    bad = await client.patch(f"/api/v1/helpdesks/{body['id']}", headers=admin, json={"api_base_url": "gopher://x"})
    assert bad.status_code == 422 and error_locs(bad) == [["body", "api_base_url"]]
    # A ticket came from it: disconnecting would strand its replies.
    refused = await client.delete(f"/api/v1/helpdesks/{body['id']}", headers=admin)
    assert refused.status_code == 409 and "disable it instead" in error_text(refused)
    other = (await client.post("/api/v1/helpdesks", headers=admin, json={"kind": "intercom", "name": "Unused"})).json()
    assert (await client.delete(f"/api/v1/helpdesks/{other['id']}", headers=admin)).status_code == 204
    assert (await client.get(f"/api/v1/helpdesks/{other['id']}", headers=admin)).status_code == 404


# --- Zendesk ----------------------------------------------------------------------------------


async def test_a_signed_zendesk_trigger_creates_one_ticket(client: httpx.AsyncClient, db: Database) -> None:
    account = await make_account(db, external_id="initech", name="Initech")
    helpdesk = await make_helpdesk(db, HelpdeskKind.zendesk)
    body = zendesk_trigger("4521")
    response = await client.post(hook(helpdesk), content=body, headers=zendesk_headers(body))
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "ok" and response.json()["number"] >= 1
    [ticket] = await tickets(db)
    assert ticket.id == response.json()["ticket_id"]
    assert (ticket.source, ticket.helpdesk_id, ticket.external_id) == (TicketSource.zendesk, helpdesk.id, "4521")
    assert ticket.subject == "Cannot sign in to the dashboard"
    assert "every login fails" in ticket.body
    assert ticket.requester_email == "jane.doe@initech.example" and ticket.requester_name == "Jane Doe"
    assert ticket.account_id == account.id  # by the organization's external id

    # Zendesk retries a delivery it thinks failed, signed anew: still one ticket.
    again = await client.post(hook(helpdesk), content=body, headers=zendesk_headers(body))
    assert again.status_code == 200
    assert again.json() == {"status": "duplicate", "ticket_id": ticket.id, "number": ticket.number}
    assert await count_rows(db, Ticket) == 1
    async with db.sessionmaker() as session:
        seen = await session.get(Helpdesk, helpdesk.id)
        assert seen is not None and seen.last_received_at is not None


async def test_a_zendesk_ticket_created_event_creates_a_ticket(client: httpx.AsyncClient, db: Database) -> None:
    account = await make_account(db, helpdesk_org_id="10002")
    helpdesk = await make_helpdesk(db, HelpdeskKind.zendesk)
    body = zendesk_event(35436, organization_id=10002)
    response = await client.post(hook(helpdesk), content=body, headers=zendesk_headers(body))
    assert response.status_code == 200 and response.json()["status"] == "ok", response.text
    [ticket] = await tickets(db)
    assert (ticket.external_id, ticket.subject, ticket.account_id) == ("35436", "Login timing out", account.id)
    assert ticket.requester_email is None
    # Another event type is answered, so Zendesk does not retry it, and stores nothing.
    other = orjson.dumps({**orjson.loads(body), "type": "zen:event-type:ticket.status_changed"})
    ignored = await client.post(hook(helpdesk), content=other, headers=zendesk_headers(other))
    assert ignored.status_code == 200 and ignored.json()["status"] == "ignored"
    assert "ticket.status_changed" in ignored.json()["detail"]
    assert await count_rows(db, Ticket) == 1


async def test_zendesk_signatures_are_checked_before_anything_is_stored(
    client: httpx.AsyncClient, db: Database
) -> None:
    helpdesk = await make_helpdesk(db, HelpdeskKind.zendesk)
    body = zendesk_trigger()
    cases: list[tuple[dict[str, str], str, str]] = [
        ({"content-type": "application/json"}, "x-zendesk-webhook-signature", "missing"),
        (zendesk_headers(body, secret="another-secret-of-16+"), "x-zendesk-webhook-signature", "does not match"),
        (
            zendesk_headers(body, at=utcnow() - timedelta(minutes=6)),
            "x-zendesk-webhook-signature-timestamp",
            "more than 5 minutes",
        ),
        (
            zendesk_headers(body, at=utcnow() + timedelta(minutes=6)),
            "x-zendesk-webhook-signature-timestamp",
            "more than 5 minutes",
        ),
        (
            {**zendesk_headers(body), "x-zendesk-webhook-signature-timestamp": "yesterday"},
            "x-zendesk-webhook-signature-timestamp",
            "is not a time",
        ),
    ]
    for headers, header, words in cases:
        response = await client.post(hook(helpdesk), content=body, headers=headers)
        assert response.status_code == 401, (header, response.text)
        assert error_locs(response) == [["header", header]] and words in error_text(response), response.text
    # A body changed after signing, with the original signature.
    signed = zendesk_headers(body)
    tampered = body.replace(b"4521", b"4522")
    assert (await client.post(hook(helpdesk), content=tampered, headers=signed)).status_code == 401
    # Four minutes of clock difference are tolerated.
    near = zendesk_headers(body, at=utcnow() - timedelta(minutes=4))
    assert (await client.post(hook(helpdesk), content=body, headers=near)).status_code == 200
    assert await count_rows(db, Ticket) == 1


@pytest.mark.parametrize("stamp", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-05:00"])
async def test_a_zendesk_timestamp_at_the_ends_of_the_calendar_is_401_naming_it(
    client: httpx.AsyncClient, db: Database, stamp: str
) -> None:
    helpdesk = await make_helpdesk(db, HelpdeskKind.zendesk)
    body = zendesk_trigger()
    refused_before = _refused("invalid_signature")
    headers = {**zendesk_headers(body), "x-zendesk-webhook-signature-timestamp": stamp}
    response = await client.post(hook(helpdesk), content=body, headers=headers)
    assert response.status_code == 401, response.text
    assert error_locs(response) == [["header", "x-zendesk-webhook-signature-timestamp"]]
    assert "between the years 1970 and 9000" in error_text(response)
    assert _refused("invalid_signature") == refused_before + 1
    assert await count_rows(db, Ticket) == 0


@pytest.mark.parametrize("created_at", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-05:00"])
async def test_a_ticket_time_at_the_ends_of_the_calendar_is_ignored(
    client: httpx.AsyncClient, db: Database, created_at: str
) -> None:
    helpdesk = await make_helpdesk(db, HelpdeskKind.zendesk)
    body = zendesk_trigger("12", created_at=created_at)
    response = await client.post(hook(helpdesk), content=body, headers=zendesk_headers(body))
    assert response.status_code == 200 and response.json()["status"] == "ok", response.text
    [ticket] = await tickets(db)
    assert abs((ticket.created_at - utcnow()).total_seconds()) < 60


def _refused(reason: str) -> float:
    return REGISTRY.get_sample_value("crisisdesk_helpdesk_webhooks_refused_total", {"reason": reason}) or 0.0


async def test_refused_deliveries_are_counted_by_reason(client: httpx.AsyncClient, db: Database) -> None:
    helpdesk = await make_helpdesk(db, HelpdeskKind.zendesk)
    reasons = ("not_found", "invalid_signature", "invalid_json", "invalid_payload")
    before = {reason: _refused(reason) for reason in reasons}
    body = zendesk_trigger()
    assert (await client.post("/support/hooks/nope", content=body, headers=zendesk_headers(body))).status_code == 404
    unsigned = {"content-type": "application/json"}
    assert (await client.post(hook(helpdesk), content=body, headers=unsigned)).status_code == 401
    for bad in (b"{not json", b'{"ticket": "x"}'):
        assert (await client.post(hook(helpdesk), content=bad, headers=zendesk_headers(bad))).status_code == 400
    assert {reason: _refused(reason) - before[reason] for reason in reasons} == dict.fromkeys(reasons, 1.0)


async def test_unknown_and_disabled_helpdesks_are_404(client: httpx.AsyncClient, db: Database) -> None:
    disabled = await make_helpdesk(db, HelpdeskKind.zendesk, enabled=False)
    body = zendesk_trigger()
    for path in ("/support/hooks/no-such-token", hook(disabled), "/support/hooks/" + "x" * 80):
        response = await client.post(path, content=body, headers=zendesk_headers(body))
        assert response.status_code == 404 and error_locs(response) == [[]], path
        assert (await client.head(path)).status_code == 404
    assert await count_rows(db, Ticket) == 0


async def test_malformed_bodies_are_400_naming_the_field(client: httpx.AsyncClient, db: Database) -> None:
    helpdesk = await make_helpdesk(db, HelpdeskKind.zendesk)
    cases: list[tuple[bytes, list[str | int], str]] = [
        (b"{not json", ["body"], "not valid JSON"),
        (b"[1, 2]", ["body"], "must be a JSON object"),
        (b'{"ticket_id": 1}', ["body", "ticket"], "required"),
        (b'{"ticket": "4521"}', ["body", "ticket"], "must be a JSON object"),
        (b'{"ticket": {"subject": "x"}}', ["body", "ticket", "id"], "required"),
        (b'{"ticket": {"id": 1, "subject": {"a": 1}}}', ["body", "ticket", "subject"], "must be a string"),
        (b'{"ticket": {"id": 1, "subject": "", "description": " "}}', ["body", "ticket", "subject"], "subject or"),
        (
            b'{"ticket": {"id": 1, "subject": "x", "requester": {"email": "nobody"}}}',
            ["body", "ticket", "requester", "email"],
            "is not a valid email address",
        ),
        (b'{"type": "zen:event-type:ticket.created", "detail": []}', ["body", "detail"], "JSON object"),
    ]
    for body, loc, words in cases:
        response = await client.post(hook(helpdesk), content=body, headers=zendesk_headers(body))
        assert response.status_code == 400, (body, response.text)
        assert error_locs(response) == [loc] and words in error_text(response), (body, response.text)
    assert await count_rows(db, Ticket) == 0


async def test_bodies_over_the_limit_are_413(client: httpx.AsyncClient, db: Database, settings: Settings) -> None:
    helpdesk = await make_helpdesk(db, HelpdeskKind.zendesk)
    body = zendesk_trigger(description="x" * (settings.max_body_bytes + 10))
    response = await client.post(hook(helpdesk), content=body, headers=zendesk_headers(body))
    assert response.status_code == 413
    assert await count_rows(db, Ticket) == 0


# --- Freshdesk --------------------------------------------------------------------------------


async def test_freshdesk_sends_the_secret_and_html_becomes_text(client: httpx.AsyncClient, db: Database) -> None:
    account = await make_account(db, name="Umbrella", contacts=("ops@umbrella.example",))
    helpdesk = await make_helpdesk(db, HelpdeskKind.freshdesk)
    body = freshdesk_rule("88")
    response = await client.post(hook(helpdesk), content=body, headers={"authorization": f"Bearer {SECRET}"})
    assert response.status_code == 200 and response.json()["status"] == "ok", response.text
    [ticket] = await tickets(db)
    assert (ticket.source, ticket.external_id, ticket.account_id) == (TicketSource.freshdesk, "88", account.id)
    assert ticket.body == "Our nightly CSV export has been queued for two hours.\nPlease advise."
    # "Requires authentication" with the secret as password works too; the simple shape is read.
    basic = "Basic " + base64.b64encode(f"crisisdesk:{SECRET}".encode()).decode()
    simple = orjson.dumps(
        {
            "freshdesk_webhook": {
                "ticket_id": 89,
                "ticket_subject": "API returns 502",
                "ticket_description": "Since 10:05 every call returns 502.",
                "ticket_contact_email": "dev@unknown.example",
                "ticket_contact_name": "Dev",
            }
        }
    )
    second = await client.post(hook(helpdesk), content=simple, headers={"authorization": basic})
    assert second.status_code == 200 and second.json()["status"] == "ok", second.text
    redelivered = await client.post(hook(helpdesk), content=simple, headers={"authorization": basic})
    assert redelivered.json()["status"] == "duplicate"
    unknown = (await tickets(db))[1]
    # An unknown account is fine: the ticket is stored and matched on its text alone.
    assert (unknown.external_id, unknown.account_id, unknown.subject) == ("89", None, "API returns 502")
    for authorization in ("", "Bearer wrong-secret-value-xyz", "Basic !!!", "Token " + SECRET):
        refused = await client.post(
            hook(helpdesk), content=freshdesk_rule("90"), headers={"authorization": authorization}
        )
        assert refused.status_code == 401 and error_locs(refused) == [["header", "authorization"]], authorization
    assert await count_rows(db, Ticket) == 2


# --- Intercom ---------------------------------------------------------------------------------


async def test_intercom_conversations_become_tickets(client: httpx.AsyncClient, db: Database) -> None:
    account = await make_account(db, name="Hooli", domains=("hooli.example",))
    helpdesk = await make_helpdesk(db, HelpdeskKind.intercom)
    # Intercom checks the URL with HEAD before saving it, then sends a ping.
    assert (await client.head(hook(helpdesk))).status_code == 200
    ping = orjson.dumps({"type": "notification_event", "topic": "ping", "data": {"item": {"type": "ping"}}})
    pong = await client.post(hook(helpdesk), content=ping, headers=intercom_headers(ping))
    assert pong.status_code == 200 and pong.json()["status"] == "pong"

    body = intercom_notification("1911149811")
    response = await client.post(hook(helpdesk), content=body, headers=intercom_headers(body))
    assert response.status_code == 200 and response.json()["status"] == "ok", response.text
    [ticket] = await tickets(db)
    assert (ticket.source, ticket.external_id, ticket.account_id) == (TicketSource.intercom, "1911149811", account.id)
    assert ticket.body == "Hi, webhooks from your API stopped arriving at 10:02.\n\nIs something down?"
    assert ticket.subject == "Hi, webhooks from your API stopped arriving at 10:02."  # chats have no subject
    assert ticket.requester_email == "bob@hooli.example"
    # The customer's reply in the same conversation is not a new ticket.
    replied = intercom_notification("1911149811", topic="conversation.user.replied")
    again = await client.post(hook(helpdesk), content=replied, headers=intercom_headers(replied))
    assert again.json()["status"] == "duplicate"
    other = intercom_notification("77", topic="contact.created")
    ignored = await client.post(hook(helpdesk), content=other, headers=intercom_headers(other))
    assert ignored.json()["status"] == "ignored"

    forged = intercom_notification("78")
    for headers in (
        {"content-type": "application/json"},
        intercom_headers(forged, secret="not-the-client-secret"),
        {"x-hub-signature": "sha256=" + "0" * 64},
    ):
        refused = await client.post(hook(helpdesk), content=forged, headers=headers)
        assert refused.status_code == 401 and error_locs(refused) == [["header", "x-hub-signature"]]
    no_topic = b'{"type": "notification_event"}'
    bad = await client.post(hook(helpdesk), content=no_topic, headers=intercom_headers(no_topic))
    assert bad.status_code == 400 and error_locs(bad) == [["body", "topic"]]
    assert await count_rows(db, Ticket) == 1


async def test_a_webhook_ticket_during_an_incident_is_linked_and_answered_through_the_helpdesk(
    client: httpx.AsyncClient, db: Database, settings: Settings, receiver: HttpReceiver
) -> None:
    """The whole road: Freshdesk posts a ticket, it is matched and linked, and the approved
    acknowledgement goes back through Freshdesk's API with the incident's tag."""
    _, admin = await make_actor(db, Role.admin)
    async with db.session() as session:
        sso = await make_component(session, "Sign-in (SSO)")
        incident = await make_incident(
            session, admin, name=SSO_INCIDENT, body=SSO_UPDATE, components={sso.id: "major_outage"}
        )
        await make_macro(session, admin, incident.id, MacroKind.acknowledge, "We know: {{ incident.name }}.")
    helpdesk = await make_helpdesk(
        db, HelpdeskKind.freshdesk, api_base_url=receiver.url("").rstrip("/"), api_token="fd-key"
    )
    receiver.behave(path="/api/v2/tickets/501", body='{"id": 501, "tags": ["vip"]}')
    body = freshdesk_rule("501", subject=SSO_TICKET[0], description=f"<p>{SSO_TICKET[1]}</p>")
    response = await client.post(hook(helpdesk), content=body, headers={"authorization": f"Bearer {SECRET}"})
    assert response.status_code == 200 and response.json()["status"] == "ok", response.text
    [ticket] = await tickets(db)
    tag = f"incident-{incident.number}"
    assert ticket.incident_id == incident.id and tag in ticket.tags

    await run_jobs(db, settings)
    reply, current, update = receiver.received()
    assert (reply.method, reply.path) == ("POST", "/api/v2/tickets/501/reply")
    assert reply.json() == {"body": f"<p>We know: {SSO_INCIDENT}.</p>"}
    assert (current.method, update.method) == ("GET", "PUT")
    assert update.json() == {"tags": ["vip", tag]}  # acknowledged, not solved


def test_html_to_text_keeps_the_words_and_their_breaks() -> None:
    html = (
        "<html><head><style>p{color:red}</style><script>alert(1)</script></head><body>"
        "<h1>Outage?</h1><p>Logins fail&nbsp;since <b>09:40</b> &amp; retries too.</p>"
        "<ul><li>EU region</li><li>US region</li></ul><p>Thanks,<br>Jane</p></body></html>"
    )
    assert (
        html_to_text(html)
        == "Outage?\n\nLogins fail since 09:40 & retries too.\n\n- EU region\n\n- US region\n\nThanks,\nJane"
    )


# --- replies out ------------------------------------------------------------------------------


@pytest.fixture
async def receiver() -> Any:
    async with HttpReceiver(free_port()) as peer:
        yield peer


def _helpdesk(kind: HelpdeskKind, url: str, **kw: Any) -> Helpdesk:
    return Helpdesk(kind=kind, name=f"{kind} desk", token="t", signing_secret=SECRET, api_base_url=url, **kw)


async def test_zendesk_replies_comment_tag_and_solve(receiver: HttpReceiver) -> None:
    desk = _helpdesk(HelpdeskKind.zendesk, receiver.url(""), api_user="agent@acme.example", api_token="zd-token-1")
    async with httpx.AsyncClient() as client:
        await adapters.send_reply(
            desk,
            external_id="4521",
            body="We are on it: sign-in is failing for some customers.",
            solve=True,
            tags=["incident-42"],
            client=client,
            timeout=5,
        )
    [request] = receiver.received()
    assert (request.method, request.path) == ("PUT", "/api/v2/tickets/4521.json")
    expected = base64.b64encode(b"agent@acme.example/token:zd-token-1").decode()
    assert request.headers["authorization"] == f"Basic {expected}"
    assert request.json() == {
        "ticket": {
            "comment": {"body": "We are on it: sign-in is failing for some customers.", "public": True},
            "status": "solved",
            "additional_tags": ["incident-42"],
        }
    }


async def test_freshdesk_replies_then_resolves_keeping_its_tags(receiver: HttpReceiver) -> None:
    receiver.behave(path="/api/v2/tickets/88", body='{"id": 88, "tags": ["vip", "incident-42"]}')
    desk = _helpdesk(HelpdeskKind.freshdesk, receiver.url("/"), api_token="fd-key")
    async with httpx.AsyncClient() as client:
        await adapters.send_reply(
            desk,
            external_id="88",
            body="Fixed at 11:02.\n\nSorry for the trouble <3",
            solve=True,
            tags=["incident-42", "crisisdesk"],
            client=client,
            timeout=5,
        )
    reply, current, update = receiver.received()
    auth = "Basic " + base64.b64encode(b"fd-key:X").decode()
    assert (reply.method, reply.path, reply.headers["authorization"]) == ("POST", "/api/v2/tickets/88/reply", auth)
    assert reply.json() == {"body": "<p>Fixed at 11:02.</p><p>Sorry for the trouble &lt;3</p>"}
    assert (current.method, current.path) == ("GET", "/api/v2/tickets/88")
    assert (update.method, update.path, update.headers["authorization"]) == ("PUT", "/api/v2/tickets/88", auth)
    assert update.json() == {"status": 4, "tags": ["vip", "incident-42", "crisisdesk"]}


async def test_intercom_replies_as_the_admin_tags_then_closes(receiver: HttpReceiver) -> None:
    receiver.behave(path="/tags", body='{"type": "tag", "id": "17513", "name": "incident-42"}')
    desk = _helpdesk(HelpdeskKind.intercom, receiver.url(""), api_user="814860", api_token="ic-token")
    async with httpx.AsyncClient() as client:
        await adapters.send_reply(
            desk,
            external_id="1911149811",
            body="Back to normal.",
            solve=True,
            tags=["incident-42"],
            client=client,
            timeout=5,
        )
        await adapters.send_reply(
            desk, external_id="5", body="Looking into it.", solve=False, tags=[], client=client, timeout=5
        )
    reply, tag, tagged, close, ack = receiver.received()
    for request in (reply, tag, tagged, close, ack):
        assert request.method == "POST" and request.headers["authorization"] == "Bearer ic-token"
        assert request.headers["intercom-version"] == adapters.INTERCOM_VERSION
    assert reply.path == "/conversations/1911149811/reply"
    assert reply.json() == {
        "message_type": "comment",
        "type": "admin",
        "admin_id": "814860",
        "body": "<p>Back to normal.</p>",
    }
    # The tag is found (or made) by name, then put on the conversation by its id.
    assert (tag.path, tag.json()) == ("/tags", {"name": "incident-42"})
    assert tagged.path == "/conversations/1911149811/tags"
    assert tagged.json() == {"id": "17513", "admin_id": "814860"}
    assert close.path == "/conversations/1911149811/parts"
    assert close.json() == {"message_type": "close", "type": "admin", "admin_id": "814860"}
    assert ack.path == "/conversations/5/reply"  # not solved and no tags: nothing after the reply


async def test_an_intercom_tag_without_an_id_is_an_error_naming_it(receiver: HttpReceiver) -> None:
    receiver.behave(path="/tags", body='{"type": "error.list"}')
    desk = _helpdesk(HelpdeskKind.intercom, receiver.url(""), api_user="814860", api_token="ic-token")
    async with httpx.AsyncClient() as client:
        with pytest.raises(adapters.HelpdeskError) as failed:
            await adapters.finish_reply(
                desk, external_id="7", solve=True, tags=["incident-42"], client=client, timeout=5
            )
    assert "incident-42" in failed.value.message and "no tag id" in failed.value.message
    assert [r.path for r in receiver.received()] == ["/tags"]  # not closed with its tag missing


async def test_reply_failures_say_whether_to_retry(receiver: HttpReceiver) -> None:
    desk = _helpdesk(HelpdeskKind.zendesk, receiver.url(""), api_user="a@acme.example", api_token="t")
    async with httpx.AsyncClient() as client:

        async def send() -> adapters.HelpdeskError:
            with pytest.raises(adapters.HelpdeskError) as failed:
                await adapters.send_reply(
                    desk, external_id="1", body="b", solve=False, tags=[], client=client, timeout=2
                )
            return failed.value

        receiver.behave(status=429, headers={"Retry-After": "37"}, body='{"error": "TooManyRequests"}')
        limited = await send()
        assert (limited.status, limited.retryable, limited.retry_after) == (429, True, 37.0)
        receiver.behave(status=503, body="upstream down")
        assert (await send()).retryable is True
        receiver.behave(status=422, body='{"error": "RecordInvalid", "description": "' + "long " * 200 + '"}')
        invalid = await send()
        assert invalid.status == 422 and invalid.retryable is False
        assert "RecordInvalid" in invalid.message and len(invalid.message) < 400
        receiver.behave(status=200, hang_seconds=5)
        timed_out = await send()
        assert timed_out.retryable is True and "no answer within 2 s" in timed_out.message
        receiver.behave(status=200)
        closed = _helpdesk(
            HelpdeskKind.zendesk, f"http://127.0.0.1:{free_port()}", api_user="a@b.example", api_token="t"
        )
        with pytest.raises(adapters.HelpdeskError) as refused:
            await adapters.send_reply(closed, external_id="1", body="b", solve=False, tags=[], client=client, timeout=2)
        assert refused.value.retryable is True and refused.value.status is None
    no_token = _helpdesk(HelpdeskKind.freshdesk, receiver.url(""))
    with pytest.raises(adapters.HelpdeskError) as missing:
        await adapters.send_reply(no_token, external_id="1", body="b", solve=False, tags=[], client=client, timeout=2)
    assert missing.value.retryable is False and "no API token" in missing.value.message


async def test_the_reply_client_reaches_only_public_hosts_unless_allowed(
    receiver: HttpReceiver, settings: Settings
) -> None:
    desk = _helpdesk(HelpdeskKind.zendesk, receiver.url(""), api_user="a@acme.example", api_token="t")
    public_only = settings.model_copy(update={"allow_private_webhooks": False})
    async with adapters.http_client(public_only) as client:
        with pytest.raises(adapters.HelpdeskError) as refused:
            await adapters.send_reply(desk, external_id="1", body="b", solve=False, tags=[], client=client, timeout=2)
    assert "loopback" in refused.value.message and refused.value.retryable is False
    assert receiver.count == 0
    async with adapters.http_client(settings) as client:
        await adapters.send_reply(desk, external_id="1", body="b", solve=False, tags=[], client=client, timeout=2)
    assert receiver.count == 1


def _recording() -> tuple[list[httpx.Request], httpx.MockTransport]:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={})

    return seen, httpx.MockTransport(answer)


async def test_the_reply_client_connects_to_the_very_address_it_checked(
    receiver: HttpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """desk.example resolves nowhere from here: the reply reaches the receiver only because it goes to
    the address the check found (loopback, allowed for this test alone), the name kept as Host."""
    looked_up: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        looked_up.append(host)
        return ["127.0.0.1"]

    monkeypatch.setattr(adapters, "address_problem", lambda address: None)
    transport = adapters._PublicOnly(httpx.AsyncHTTPTransport(retries=0), resolve=resolve)
    desk = _helpdesk(
        HelpdeskKind.zendesk, f"http://desk.example:{receiver.port}", api_user="a@acme.example", api_token="t"
    )
    async with httpx.AsyncClient(transport=transport) as client:
        for _ in range(2):
            await adapters.send_reply(desk, external_id="1", body="b", solve=False, tags=[], client=client, timeout=5)
    assert [r.headers["host"] for r in receiver.received()] == [f"desk.example:{receiver.port}"] * 2
    assert looked_up == ["desk.example"]  # the checked answer is kept, and it is what is used

    # Over https the name stays the TLS server name too, so the certificate is checked against it.
    seen, inner = _recording()
    pinned = adapters._PublicOnly(inner, resolve=_public)
    async with httpx.AsyncClient(transport=pinned) as client:
        await client.get("https://desk.example/api/v2/tickets/1.json")
    [request] = seen
    assert (request.url.host, request.headers["host"]) == ("93.184.216.34", "desk.example")
    assert request.extensions["sni_hostname"] == "desk.example"


async def _public(host: str, port: int) -> list[str]:
    return ["93.184.216.34"]


async def test_the_reply_client_refuses_a_name_that_does_not_resolve_or_resolves_privately() -> None:
    async def unresolvable(host: str, port: int) -> list[str]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    async def private(host: str, port: int) -> list[str]:
        return ["93.184.216.34", "10.0.0.5"]

    desk = _helpdesk(HelpdeskKind.zendesk, "https://desk.example", api_user="a@acme.example", api_token="t")
    for resolve, words, retryable in (
        (unresolvable, "desk.example does not resolve to an address", True),
        (private, "desk.example resolves to 10.0.0.5, a private address", False),
    ):
        seen, inner = _recording()
        async with httpx.AsyncClient(transport=adapters._PublicOnly(inner, resolve=resolve)) as client:
            with pytest.raises(adapters.HelpdeskError) as refused:
                await adapters.send_reply(
                    desk, external_id="1", body="b", solve=False, tags=[], client=client, timeout=2
                )
        assert words in refused.value.message and refused.value.retryable is retryable
        assert seen == []  # nothing was sent, and httpx never looked the name up itself


# --- the console ------------------------------------------------------------------------------


async def test_the_console_connects_a_helpdesk_and_shows_its_setup(client: httpx.AsyncClient, db: Database) -> None:
    _, csrf = await sign_in(client, db, role=Role.admin)
    form = {"csrf_token": csrf, "kind": "freshdesk", "name": "Freshdesk", "api_base_url": "http://127.0.0.1:8089"}
    page = await client.post("/console/helpdesks", data=form, headers=HTML)
    assert page.status_code == 201, page.text
    secret = re.search(r'id="new-secret".*?<code class="secret">([^<]+)</code>', page.text, re.S)
    assert secret, page.text
    async with db.sessionmaker() as session:
        [helpdesk] = [h for h in await helpdesks.list_helpdesks(session)]
    assert helpdesk.signing_secret == secret.group(1)
    assert f"http://status.test/support/hooks/{helpdesk.token}" in page.text
    assert f"Authorization: Bearer {helpdesk.signing_secret}" in page.text  # the rule's header, filled in
    assert "{{ticket.contact.email}}" in page.text

    # Shown once: the page afterwards names the secret without its value.
    later = await client.get(f"/console/helpdesks/{helpdesk.id}", headers=HTML)
    assert later.status_code == 200 and helpdesk.signing_secret not in later.text
    assert "ends in …" + helpdesk.signing_secret[-4:] in later.text
    listed = await client.get("/console/helpdesks", headers=HTML)
    assert "Freshdesk" in listed.text and helpdesk.signing_secret not in listed.text

    refused = await client.post(
        "/console/helpdesks",
        data={**form, "kind": "zendesk", "api_base_url": "", "api_token": "tok-123456"},
        headers=HTML,
    )
    assert refused.status_code == 422 and "acme.zendesk.com" in (field_error(refused.text, "api_base_url") or "")
    assert "tok-123456" not in refused.text  # a refused form does not echo a secret

    saved = await client.post(
        f"/console/helpdesks/{helpdesk.id}",
        data={"csrf_token": csrf, "name": "Freshdesk EU", "api_base_url": "http://127.0.0.1:8089", "enabled": "1"},
        headers=HTML,
    )
    assert saved.status_code == 303
    rotated = await client.post(
        f"/console/helpdesks/{helpdesk.id}/rotate-secret", data={"csrf_token": csrf}, headers=HTML
    )
    async with db.sessionmaker() as session:
        again = await session.get(Helpdesk, helpdesk.id)
    assert again is not None and again.name == "Freshdesk EU" and again.signing_secret != helpdesk.signing_secret
    assert rotated.status_code == 200 and again.signing_secret in rotated.text


async def test_responders_see_helpdesks_but_not_their_secrets(client: httpx.AsyncClient, db: Database) -> None:
    helpdesk = await make_helpdesk(db, HelpdeskKind.zendesk)
    await sign_in(client, db, role=Role.viewer)
    page = await client.get(f"/console/helpdesks/{helpdesk.id}", headers=HTML)
    assert page.status_code == 200 and helpdesk.name in page.text
    assert helpdesk.token not in page.text and "Only admins see" in page.text
    listed = await client.get("/console/helpdesks", headers=HTML)
    assert listed.status_code == 200 and helpdesk.token not in listed.text and "Connect a helpdesk" not in listed.text


def test_zendesk_signatures_match_the_documented_example() -> None:
    """The worked example in Zendesk's guide: secret, timestamp and body give its published signature."""
    secret, stamp, body = "HRkRd4BeOAoUkfZr-mhauJT64rvBASlJRoIyPsd3zeA=", "2021-07-25T10:00:00Z", b'{"say": "hello"}'
    desk = Helpdesk(kind=HelpdeskKind.zendesk, name="z", token="t", signing_secret=secret, api_base_url="x")
    headers = {
        "x-zendesk-webhook-signature": "tRDSF7URY8BLCDlaBcQ7FHu051Zk+aAB0NKMP53teMw=",
        "x-zendesk-webhook-signature-timestamp": stamp,
    }
    at = datetime(2021, 7, 25, 10, 1, tzinfo=UTC)
    assert hooks.verify(desk, headers, body, now=at) is None
    signed = {**headers, "x-zendesk-webhook-signature": hooks.sign_zendesk(secret, stamp, body)}
    assert hooks.verify(desk, signed, body, now=at) is None
    assert hooks.verify(desk, headers, body + b" ", now=at) is not None
    late = hooks.verify(desk, headers, body, now=at + timedelta(minutes=5))
    assert late is not None and late.header == "x-zendesk-webhook-signature-timestamp"
