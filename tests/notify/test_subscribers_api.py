"""The subscribers REST API: list, count, add and remove, with roles and field-named errors."""

from __future__ import annotations

import httpx

from crisisdesk.auth.models import Role
from crisisdesk.config import Settings
from crisisdesk.kit.db import Database
from crisisdesk.notify.models import Subscriber, SubscriberState
from tests.fixtures.api import count_rows, error_locs, error_text
from tests.fixtures.auth import api_key_headers
from tests.fixtures.incident import make_component
from tests.fixtures.notify import make_subscriber


async def test_admin_adds_lists_counts_and_removes(client: httpx.AsyncClient, db: Database, settings: Settings) -> None:
    admin = await api_key_headers(db, Role.admin)
    async with db.session() as session:
        web = await make_component(session, "Web app")
    created = await client.post(
        "/api/v1/subscribers",
        headers=admin,
        json={"channel": "email", "address": "API@Example.com", "components": [web.id]},
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["address"] == "api@example.com" and body["state"] == "active" and body["source"] == "admin"
    assert body["scope"] == "components" and body["components"] == [web.id] and body["secret"] is None
    assert "token" not in body

    settings.allow_private_webhooks = True
    hook = await client.post(
        "/api/v1/subscribers", headers=admin, json={"channel": "webhook", "address": "http://127.0.0.1:18320/in"}
    )
    assert hook.status_code == 201 and hook.json()["secret"].startswith("whsec_")

    listed = await client.get("/api/v1/subscribers", headers=admin, params={"channel": "webhook"})
    assert listed.status_code == 200
    page = listed.json()
    assert page["total"] == 1 and page["items"][0]["address"] == "http://127.0.0.1:18320/in"
    assert "secret" not in page["items"][0], "a listing never shows signing secrets"

    counts = await client.get("/api/v1/subscribers/counts", headers=admin)
    assert counts.status_code == 200
    assert counts.json()["channels"]["email"]["active"] == 1 and counts.json()["total"] == 2

    removed = await client.delete(f"/api/v1/subscribers/{body['id']}", headers=admin)
    assert removed.status_code == 200 and removed.json()["address"] == "api@example.com"
    again = await client.delete(f"/api/v1/subscribers/{body['id']}", headers=admin)
    assert again.status_code == 404
    assert await count_rows(db, Subscriber) == 1


async def test_viewers_read_but_do_not_change(client: httpx.AsyncClient, db: Database) -> None:
    async with db.session() as session:
        await make_subscriber(session, address="seen@example.com", state=SubscriberState.pending)
    viewer = await api_key_headers(db, Role.viewer)
    listed = await client.get("/api/v1/subscribers", headers=viewer, params={"q": "seen", "state": "pending"})
    assert listed.status_code == 200 and [s["address"] for s in listed.json()["items"]] == ["seen@example.com"]
    responder = await api_key_headers(db, Role.responder)
    refused = await client.post(
        "/api/v1/subscribers", headers=responder, json={"channel": "email", "address": "x@example.com"}
    )
    assert refused.status_code == 403
    assert await count_rows(db, Subscriber) == 1


async def test_bad_input_names_the_field_and_stores_nothing(client: httpx.AsyncClient, db: Database) -> None:
    admin = await api_key_headers(db, Role.admin)
    tried = [
        ({"channel": "email", "address": "nope"}, ["body", "address"], "not a valid email"),
        ({"channel": "sms", "address": "020 7946 0958"}, ["body", "address"], "country code"),
        ({"channel": "webhook", "address": "ftp://example.com/x"}, ["body", "address"], "https://"),
        ({"channel": "webhook", "address": "https://127.0.0.1/x"}, ["body", "address"], "loopback"),
        ({"channel": "webhook", "address": "https://10.0.0.1/x"}, ["body", "address"], "private"),
        ({"channel": "fax", "address": "x"}, ["body", "channel"], "choose a channel"),
        ({"channel": "email", "address": "a@example.com", "components": ["missing"]}, ["body", "components"],
         "no component"),
        ({"channel": "email", "address": "a@example.com", "incident_id": "missing"}, ["body", "incident_id"],
         "no incident"),
        ({"channel": "email"}, ["body", "address"], "Field required"),
    ]  # fmt: skip
    for data, loc, words in tried:
        answer = await client.post("/api/v1/subscribers", headers=admin, json=data)
        assert answer.status_code == 422, f"{data} -> {answer.status_code}"
        assert loc in error_locs(answer), f"{data}: {answer.text}"
        assert words in error_text(answer), f"{data}: {answer.text}"
    bad_filter = await client.get("/api/v1/subscribers", headers=admin, params={"state": "asleep"})
    assert bad_filter.status_code == 422 and ["body", "state"] in error_locs(bad_filter)
    # A NUL in the search reached PostgreSQL, which refused the query: 503 "database unreachable".
    nul_search = await client.get("/api/v1/subscribers", headers=admin, params={"q": "a\x00"})
    assert nul_search.status_code == 200 and nul_search.json()["total"] == 0
    far = await client.get("/api/v1/subscribers", headers=admin, params={"offset": 10**20})  # overflowed: 500
    assert far.status_code == 422 and ["query", "offset"] in error_locs(far)
    assert await count_rows(db, Subscriber) == 0

    await client.post("/api/v1/subscribers", headers=admin, json={"channel": "email", "address": "dup@example.com"})
    duplicate = await client.post(
        "/api/v1/subscribers", headers=admin, json={"channel": "email", "address": "DUP@example.com"}
    )
    assert duplicate.status_code == 409 and ["body", "address"] in error_locs(duplicate)


async def test_listings_do_not_reveal_slack_teams_or_webhook_credentials(
    client: httpx.AsyncClient, db: Database
) -> None:
    slack = "https://hooks.slack.com/services/T0001/B0001/Xsecret9Token"
    async with db.session() as session:
        await make_subscriber(session, channel="slack", address=slack)
        await make_subscriber(session, channel="webhook", address="https://hooks.example.com/in?token=abc123")
        await make_subscriber(session, address="ops@example.com")
    viewer = await api_key_headers(db, Role.viewer)
    listed = await client.get("/api/v1/subscribers", headers=viewer)
    shown = {s["channel"]: s["address"] for s in listed.json()["items"]}
    assert shown["slack"] == "https://hooks.slack.com/…oken" and "Xsecret9" not in listed.text
    assert shown["webhook"] == "https://hooks.example.com/in?…" and "abc123" not in listed.text
    assert shown["email"] == "ops@example.com"
    # Before, a viewer could guess a URL's secret one character at a time through the search.
    for guess in ("Xsecret9", "token=abc"):
        probe = await client.get("/api/v1/subscribers", headers=viewer, params={"q": guess})
        assert probe.json()["total"] == 0, guess
    assert (await client.get("/api/v1/subscribers", headers=viewer, params={"q": "ops@"})).json()["total"] == 1
    admin = await api_key_headers(db, Role.admin)
    found = await client.get("/api/v1/subscribers", headers=admin, params={"q": "Xsecret9"})
    assert found.json()["total"] == 1 and "Xsecret9" not in found.text
