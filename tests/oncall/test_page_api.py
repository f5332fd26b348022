"""Acknowledging a page by its link, the API and the console; reading pages; bad ids refused."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess

import httpx

from crisisdesk.auth.models import Role, Scope
from crisisdesk.kit.db import Database
from crisisdesk.oncall import paging
from crisisdesk.oncall.models import Page, PageStatus
from tests.fixtures.auth import api_key_headers, login, make_actor, make_user
from tests.fixtures.paging import level, make_policy, pending_job
from tests.fixtures.workers import CLI


async def _start(db: Database, title: str = "Sign-in failing") -> Page:
    async with db.session() as s:
        user = await make_user(s)
        second = await make_user(s)
        policy = await make_policy(s, level(("user", user.id)), level(("user", second.id)), name=f"Policy for {title}")
    async with db.session() as s:
        return await paging.start_page(s, escalation_policy_id=policy.id, title=title)


async def _status(db: Database, page_id: str) -> PageStatus:
    async with db.sessionmaker() as s:
        page = await s.get(Page, page_id)
        assert page is not None
        return PageStatus(page.status)


async def test_the_link_shows_a_button_and_only_its_post_acknowledges(client: httpx.AsyncClient, db: Database) -> None:
    page = await _start(db)
    shown = await client.get(f"/pages/ack/{page.ack_token}")
    assert shown.status_code == 200
    assert "Sign-in failing" in shown.text and 'id="ack-form"' in shown.text
    assert shown.headers["cache-control"] == "no-store"
    # A link scanner's GET (twice) acknowledged nothing.
    await client.get(f"/pages/ack/{page.ack_token}")
    assert await _status(db, page.id) == PageStatus.triggered

    done = await client.post(f"/pages/ack/{page.ack_token}")
    assert done.status_code == 200 and 'data-result="acknowledged"' in done.text
    assert await _status(db, page.id) == PageStatus.acknowledged
    assert await pending_job(db, paging.escalate_key(page.id)) is None
    again = await client.post(f"/pages/ack/{page.ack_token}")
    assert again.status_code == 200 and 'data-result="already"' in again.text

    unknown = await client.get("/pages/ack/not-a-token")
    assert unknown.status_code == 404 and 'data-result="missing"' in unknown.text
    assert (await client.post("/pages/ack/not-a-token")).status_code == 404


async def test_api_lists_reads_acknowledges_and_resolves(client: httpx.AsyncClient, db: Database) -> None:
    page = await _start(db, "Checkout 500s")
    other = await _start(db, "Queue lag")
    headers = await api_key_headers(db)
    listed = await client.get("/api/v1/pages", headers=headers)
    assert listed.status_code == 200
    assert {p["id"] for p in listed.json()} == {page.id, other.id}
    assert "ack_token" not in listed.json()[0]  # the link's secret is not in the API

    detail = await client.get(f"/api/v1/pages/{page.id}", headers=headers)
    assert detail.status_code == 200
    body = detail.json()
    assert body["policy"]["name"] == "Policy for Checkout 500s" and len(body["policy"]["levels"]) == 2
    assert [e["kind"] for e in body["events"]][:2] == ["triggered", "notified"]

    acked = await client.post(f"/api/v1/pages/{page.id}/acknowledge", headers=headers)
    assert acked.status_code == 200 and acked.json()["status"] == "acknowledged"
    assert acked.json()["acknowledged_by_id"] is not None
    assert acked.json()["events"][-1]["summary"].endswith("acknowledged via api")
    triggered = await client.get("/api/v1/pages", params={"status": "triggered"}, headers=headers)
    assert [p["id"] for p in triggered.json()] == [other.id]

    resolved = await client.post(f"/api/v1/pages/{other.id}/resolve", headers=headers)
    assert resolved.status_code == 200 and resolved.json()["status"] == "resolved"
    assert await pending_job(db, paging.escalate_key(other.id)) is None


async def test_api_refuses_unknown_pages_bad_filters_and_readers_acknowledging(
    client: httpx.AsyncClient, db: Database
) -> None:
    page = await _start(db)
    headers = await api_key_headers(db)
    missing = await client.get("/api/v1/pages/nope", headers=headers)
    assert missing.status_code == 404 and "page_id" in missing.text
    assert (await client.post("/api/v1/pages/nope/acknowledge", headers=headers)).status_code == 404
    bad = await client.get("/api/v1/pages", params={"status": "sleeping"}, headers=headers)
    assert bad.status_code == 422 and "status" in bad.text
    reader = await api_key_headers(db, scopes=[Scope.read])
    refused = await client.post(f"/api/v1/pages/{page.id}/acknowledge", headers=reader)
    assert refused.status_code == 403
    assert await _status(db, page.id) == PageStatus.triggered


async def test_console_lists_pages_and_acknowledges_then_resolves(client: httpx.AsyncClient, db: Database) -> None:
    page = await _start(db, "Disk full on db-1")
    user, _ = await make_actor(db, Role.responder, name="Cleo Console")
    csrf = await login(client, user.email)
    listing = await client.get("/console/pages")
    assert listing.status_code == 200
    assert re.search(rf'data-page-id="{page.id}" data-status="triggered"', listing.text)
    detail = await client.get(f"/console/pages/{page.id}")
    assert detail.status_code == 200 and "Disk full on db-1" in detail.text and 'id="policy-levels"' in detail.text

    # Without the CSRF token the form is refused and nothing changes.
    refused = await client.post(f"/console/pages/{page.id}/acknowledge", data={})
    assert refused.status_code in (400, 403)
    assert await _status(db, page.id) == PageStatus.triggered

    acked = await client.post(f"/console/pages/{page.id}/acknowledge", data={"csrf_token": csrf})
    assert acked.status_code == 303
    assert await _status(db, page.id) == PageStatus.acknowledged
    shown = await client.get(f"/console/pages/{page.id}")
    assert "Cleo Console acknowledged via console" in shown.text
    resolved = await client.post(f"/console/pages/{page.id}/resolve", data={"csrf_token": csrf})
    assert resolved.status_code == 303
    assert await _status(db, page.id) == PageStatus.resolved
    assert (await client.get("/console/pages/nope")).status_code == 404


async def test_cli_lists_pages_and_acknowledges_one(db: Database, database_url: str) -> None:
    page = await _start(db, "Payments timing out")
    user, _ = await make_actor(db, Role.responder, email="oncall.cli@example.com", name="Cli Responder")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRISISDESK_")}
    env |= {"CRISISDESK_DEMO": "true", "CRISISDESK_DATABASE_URL": database_url, "COLUMNS": "200"}

    def crisisdesk(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(CLI), *args], env=env, capture_output=True, text=True, timeout=60, check=False)

    listed = await asyncio.to_thread(crisisdesk, "oncall", "pages", "--status", "triggered")
    assert listed.returncode == 0, listed.stderr
    assert page.id in listed.stdout and "Payments timing out" in listed.stdout
    acked = await asyncio.to_thread(crisisdesk, "oncall", "ack", page.id, "--as", user.email)
    assert acked.returncode == 0, acked.stderr
    assert f"Acknowledged page {page.id}" in acked.stdout
    assert await _status(db, page.id) == PageStatus.acknowledged
    async with db.sessionmaker() as s:
        current = await s.get(Page, page.id)
        assert current is not None and current.acknowledged_by_id == user.id
    missing = await asyncio.to_thread(crisisdesk, "oncall", "ack", "nope", "--as", user.email)
    assert missing.returncode == 1 and "no page with id 'nope'" in missing.stderr
