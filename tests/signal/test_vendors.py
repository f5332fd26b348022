"""Vendor watch against a local status page: summary.json and Atom, ETag 304s, alerts per dependent."""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from xml.sax.saxutils import escape

import httpx
import pytest
from aiohttp import web
from sqlalchemy import select

from crisisdesk.auth.models import Role
from crisisdesk.config import Settings
from crisisdesk.kit.db import Database
from crisisdesk.kit.jobs import Job
from crisisdesk.kit.time import utcnow
from crisisdesk.signal import vendors
from crisisdesk.signal.models import Alert, AlertStatus, Vendor, VendorComponent, VendorDependency
from tests.fixtures.api import count_rows, error_locs, error_text
from tests.fixtures.auth import api_key_headers
from tests.fixtures.console import HTML, sign_in
from tests.fixtures.incident import make_component
from tests.signal.test_checks import make_due, run_probes

SUMMARY: dict[str, Any] = {
    "page": {
        "id": "idp0",
        "name": "Northwind Identity",
        "url": "https://status.northwind.test",
        "time_zone": "Etc/UTC",
    },
    "components": [
        {"id": "c-login", "name": "Login", "status": "operational", "position": 1, "group": False},
        {"id": "c-mfa", "name": "Multi-factor authentication", "status": "operational", "position": 2},
        {"id": "c-admin", "name": "Admin portal", "status": "operational", "position": 3},
    ],
    "incidents": [],
    "scheduled_maintenances": [],
    "status": {"indicator": "none", "description": "All Systems Operational"},
}


def degraded() -> dict[str, Any]:
    summary = copy.deepcopy(SUMMARY)
    summary["components"][0]["status"] = "major_outage"
    summary["components"][1]["status"] = "degraded_performance"
    summary["status"] = {"indicator": "major", "description": "Major System Outage"}
    summary["incidents"] = [
        {
            "id": "inc1",
            "name": "Sign-in failures in EU",
            "status": "identified",
            "impact": "major",
            "created_at": "2026-11-24T09:00:00.000Z",
            "updated_at": "2026-11-24T09:40:00.000Z",
            "components": [{"id": "c-login", "name": "Login"}, {"id": "c-mfa", "name": "Multi-factor authentication"}],
            "incident_updates": [
                {
                    "id": "u1",
                    "status": "investigating",
                    "body": "We are investigating reports of failed sign-ins.",
                    "created_at": "2026-11-24T09:00:00.000Z",
                },
                {
                    "id": "u2",
                    "status": "identified",
                    "body": "A certificate rotation broke token signing; we are <b>rolling it back</b>.",
                    "created_at": "2026-11-24T09:40:00.000Z",
                },
            ],
        }
    ]
    return summary


ATOM = """<?xml version="1.0" encoding="UTF-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
  <title>Cloudy Storage Status</title>
  <link href="https://status.cloudy.test"/>
  <id>tag:status.cloudy.test,2026:history</id>
  <updated>{updated}</updated>
  <entry>
    <id>tag:status.cloudy.test,2026:incident/1</id>
    <title>{title}</title>
    <updated>{updated}</updated>
    <link href="https://status.cloudy.test/incidents/1"/>
    <content type="html">&lt;p&gt;{text}&lt;/p&gt;</content>
  </entry>
  <entry>
    <id>tag:status.cloudy.test,2026:incident/0</id>
    <title>Earlier: slow uploads</title>
    <updated>{older}</updated>
    <content type="html">&lt;p&gt;Resolved - uploads are fast again.&lt;/p&gt;</content>
  </entry>
</feed>
"""


@dataclass
class StatusSite:
    """A vendor's status site: summary.json with an ETag, an Atom feed with Last-Modified."""

    summary: dict[str, Any] = field(default_factory=lambda: copy.deepcopy(SUMMARY))
    feed: str = ""
    feed_modified: str = "Tue, 24 Nov 2026 09:00:00 GMT"
    seen: list[tuple[str, dict[str, str], int]] = field(default_factory=list)
    port: int = 0

    def atom(self, title: str, text: str, *, age: timedelta = timedelta(minutes=5)) -> None:
        updated = (utcnow() - age).strftime("%Y-%m-%dT%H:%M:%SZ")
        older = (utcnow() - age - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        self.feed = ATOM.format(updated=updated, older=older, title=escape(title), text=escape(text))

    async def summary_json(self, request: web.Request) -> web.Response:
        body = json.dumps(self.summary).encode()
        etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
        status = 304 if request.headers.get("if-none-match") == etag else 200
        self.seen.append((request.path, dict(request.headers), status))
        if status == 304:
            return web.Response(status=304, headers={"etag": etag})
        return web.Response(body=body, content_type="application/json", headers={"etag": etag})

    async def history(self, request: web.Request) -> web.Response:
        status = 304 if request.headers.get("if-modified-since") == self.feed_modified else 200
        self.seen.append((request.path, dict(request.headers), status))
        if status == 304:
            return web.Response(status=304)
        return web.Response(
            text=self.feed, content_type="application/atom+xml", headers={"last-modified": self.feed_modified}
        )

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
def settings(database_url: str) -> Settings:
    """The vendor's site runs on loopback here, so private addresses are allowed."""
    return Settings(
        demo=True,
        database_url=database_url,
        run_workers=False,
        poll_interval=0.05,
        base_url="http://status.test",
        allow_private_webhooks=True,
    )


async def moved(request: web.Request) -> web.Response:
    raise web.HTTPFound("/api/v2/summary.json")


async def broken(request: web.Request) -> web.Response:
    return web.Response(text="<html>maintenance</html>", content_type="text/html")


@pytest.fixture
async def site() -> AsyncIterator[StatusSite]:
    state = StatusSite()
    app = web.Application()
    app.router.add_get("/api/v2/summary.json", state.summary_json)
    app.router.add_get("/history.atom", state.history)
    app.router.add_get("/broken.json", broken)
    app.router.add_get("/moved.json", moved)
    runner = web.AppRunner(app)
    await runner.setup()
    server = web.TCPSite(runner, "127.0.0.1", 0)
    await server.start()
    state.port = runner.addresses[0][1]
    try:
        yield state
    finally:
        await runner.cleanup()


async def poll(db: Database, settings: Settings, vendor_id: str) -> None:
    await make_due(db, vendors.job_key(vendor_id))
    assert await run_probes(db, settings) == 1


async def components(db: Database, vendor_id: str) -> dict[str, VendorComponent]:
    async with db.sessionmaker() as session:
        return {c.external_id: c for c in await vendors.components_of(session, vendor_id)}


async def vendor_alerts(db: Database) -> list[Alert]:
    async with db.sessionmaker() as session:
        return list(await session.scalars(select(Alert).where(Alert.dedup_key.like("vendor:%")).order_by(Alert.id)))


async def test_summary_json_degradation_alerts_each_dependent_and_recovery_resolves(
    db: Database, settings: Settings, site: StatusSite
) -> None:
    async with db.session() as session:
        sign_in_component = await make_component(session, "Sign-in")
        sso = await make_component(session, "SSO")
        unrelated = await make_component(session, "Billing")
        vendor = await vendors.create_vendor(
            session, name="Northwind", kind="statuspage", url=site.url("/api/v2/summary.json")
        )
    assert await run_probes(db, settings) == 1
    rows = await components(db, vendor.id)
    assert {k: v.status for k, v in rows.items()} == {
        "c-login": "operational",
        "c-mfa": "operational",
        "c-admin": "operational",
    }
    assert rows["c-login"].name == "Login"
    async with db.session() as session:
        v = await vendors.get_vendor(session, vendor.id)
        assert v.etag and v.indicator == "none" and v.last_error is None
        login = await vendors.get_vendor_component(session, v, rows["c-login"].id)
        await vendors.set_dependents(session, v, login, [sign_in_component.id, sso.id], settings)
        admin = await vendors.get_vendor_component(session, v, rows["c-admin"].id)
        await vendors.set_dependents(session, v, admin, [unrelated.id], settings)

    # Unchanged page: the poll sends the ETag back and the site answers 304.
    await poll(db, settings, vendor.id)
    _, headers, status = site.seen[-1]
    assert status == 304 and headers.get("If-None-Match") == (await get_vendor(db, vendor.id)).etag

    site.summary = degraded()
    await poll(db, settings, vendor.id)
    assert site.seen[-1][2] == 200
    rows = await components(db, vendor.id)
    assert rows["c-login"].status == "major_outage"
    words = "Sign-in failures in EU: A certificate rotation broke token signing; we are rolling it back."
    assert rows["c-login"].message == words and rows["c-mfa"].message == words
    assert rows["c-admin"].message is None
    assert (await get_vendor(db, vendor.id)).indicator == "major"
    alerts = await vendor_alerts(db)
    # One alert for each of our components depending on Login; none for Billing (Admin portal is fine).
    assert sorted(a.dedup_key for a in alerts) == sorted(
        f"vendor:{rows['c-login'].id}:{c}" for c in (sign_in_component.id, sso.id)
    )
    for alert in alerts:
        assert alert.status == AlertStatus.firing
        assert alert.summary == "Northwind: Login is major outage"
        assert alert.details["vendor_says"] == words
        assert alert.link == "https://status.northwind.test"
        assert alert.severity == "critical"

    # The same outage polled again: 304, no new alert.
    await poll(db, settings, vendor.id)
    assert site.seen[-1][2] == 304 and len(await vendor_alerts(db)) == 2

    site.summary = copy.deepcopy(SUMMARY)
    await poll(db, settings, vendor.id)
    assert (await components(db, vendor.id))["c-login"].status == "operational"
    assert [a.status for a in await vendor_alerts(db)] == [AlertStatus.resolved, AlertStatus.resolved]


async def get_vendor(db: Database, vendor_id: str) -> Vendor:
    async with db.sessionmaker() as session:
        return await vendors.get_vendor(session, vendor_id)


async def test_atom_feed_is_degraded_until_its_newest_entry_is_a_resolution(
    db: Database, settings: Settings, site: StatusSite
) -> None:
    site.atom("Elevated error rates for uploads", "We are investigating <b>5xx errors</b> on uploads &amp; downloads.")
    async with db.session() as session:
        storage = await make_component(session, "File storage")
        vendor = await vendors.create_vendor(session, name="Cloudy", kind="feed", url=site.url("/history.atom"))
    assert await run_probes(db, settings) == 1
    row = (await components(db, vendor.id))["feed"]
    assert row.name == "Cloudy Storage Status" and row.status == "degraded_performance"
    assert row.message == "Elevated error rates for uploads — We are investigating 5xx errors on uploads & downloads."
    async with db.session() as session:
        v = await vendors.get_vendor(session, vendor.id)
        # Depending on a vendor component that is already degraded alerts at once.
        await vendors.set_dependents(
            session, v, await vendors.get_vendor_component(session, v, row.id), [storage.id], settings
        )
    [alert] = await vendor_alerts(db)
    assert (
        alert.status == AlertStatus.firing and alert.summary == "Cloudy: Cloudy Storage Status is degraded performance"
    )

    # Unchanged: If-Modified-Since gets a 304.
    await poll(db, settings, vendor.id)
    assert site.seen[-1][2] == 304 and site.seen[-1][1].get("If-Modified-Since") == site.feed_modified

    site.atom("Elevated error rates for uploads", "Resolved - this incident has been resolved.")
    site.feed_modified = "Tue, 24 Nov 2026 10:00:00 GMT"
    await poll(db, settings, vendor.id)
    row = (await components(db, vendor.id))["feed"]
    assert row.status == "operational" and row.message is None
    [alert] = await vendor_alerts(db)
    assert alert.status == AlertStatus.resolved


def test_feed_rules_old_entries_and_resolution_words() -> None:
    site = StatusSite()
    site.atom("Database maintenance", "Work on the primary.", age=timedelta(days=8))
    assert vendors.parse_feed(site.feed.encode()).components[0].status == "operational"
    site.atom("Maintenance completed", "All done.")
    assert vendors.parse_feed(site.feed.encode()).components[0].status == "operational"
    site.atom("Partial outage", "Some requests fail.")
    assert vendors.parse_feed(site.feed.encode()).components[0].status == "degraded_performance"
    with pytest.raises(vendors.Unreadable):
        vendors.parse_feed(b"<html><body>not a feed</body></html>")
    with pytest.raises(vendors.Unreadable):
        vendors.parse_summary(b'{"page": {}}')


async def test_a_fetch_error_is_recorded_and_polling_goes_on(
    db: Database, settings: Settings, site: StatusSite
) -> None:
    async with db.session() as session:
        vendor = await vendors.create_vendor(session, name="Broken", kind="statuspage", url=site.url("/broken.json"))
        missing = await vendors.create_vendor(session, name="Gone", kind="statuspage", url=site.url("/nope.json"))
    assert await run_probes(db, settings) == 2
    assert "not JSON" in ((await get_vendor(db, vendor.id)).last_error or "")
    assert "HTTP 404" in ((await get_vendor(db, missing.id)).last_error or "")
    async with db.sessionmaker() as session:
        jobs = list(await session.scalars(select(Job).where(Job.finished_at.is_(None))))
    assert len(jobs) == 2 and all(j.due_at > utcnow() + timedelta(seconds=60) for j in jobs)
    assert await vendor_alerts(db) == []


async def test_the_api_refuses_bad_vendors_by_field(client: httpx.AsyncClient, db: Database) -> None:
    headers = await api_key_headers(db, Role.admin)
    cases: list[tuple[dict[str, Any], str, str]] = [
        ({"url": "ftp://status.test/x"}, "url", "http:// or https://"),
        ({"url": "status.test"}, "url", "http:// or https://"),
        ({"url": "https://status.test:99999/"}, "url", "port"),
        ({"kind": "html"}, "kind", "statuspage"),
        ({"interval_seconds": 5}, "interval_seconds", "30-86400"),
        ({"name": ""}, "name", "1-200"),
        ({"enabled": None}, "enabled", "valid boolean"),
    ]
    for values, name, words in cases:
        body = {"name": "IdP", "kind": "statuspage", "url": "https://status.idp.test/api/v2/summary.json", **values}
        response = await client.post("/api/v1/vendors", json=body, headers=headers)
        assert response.status_code == 422, f"tried {values}: {response.text}"
        assert ["body", name] in error_locs(response) and words in error_text(response), f"tried {values}"
    assert await count_rows(db, Vendor) == 0 and await count_rows(db, Job) == 0


async def test_vendors_api_and_dependencies(
    client: httpx.AsyncClient, db: Database, settings: Settings, site: StatusSite
) -> None:
    admin = await api_key_headers(db, Role.admin)
    reader = await api_key_headers(db, Role.viewer)
    async with db.session() as session:
        sign_in_component = await make_component(session, "Sign-in")
    body = {"name": "Northwind", "kind": "statuspage", "url": site.url("/api/v2/summary.json"), "interval_seconds": 60}
    assert (await client.post("/api/v1/vendors", json=body, headers=reader)).status_code == 403
    created = await client.post("/api/v1/vendors", json=body, headers=admin)
    assert created.status_code == 201, created.text
    vendor_id = created.json()["id"]
    assert await run_probes(db, settings) == 1
    listed = (await client.get("/api/v1/vendors", headers=reader)).json()
    assert [v["name"] for v in listed] == ["Northwind"] and listed[0]["indicator"] == "none"
    parts = (await client.get(f"/api/v1/vendors/{vendor_id}/components", headers=reader)).json()
    login = next(p for p in parts if p["external_id"] == "c-login")
    assert login["status"] == "operational" and login["component_ids"] == []

    url = f"/api/v1/vendors/{vendor_id}/components/{login['id']}/dependents"
    refused = await client.put(url, json={"component_ids": ["nope"]}, headers=admin)
    assert refused.status_code == 404 and ["body", "component_ids", "0"] in error_locs(refused)
    assert await count_rows(db, VendorDependency) == 0
    put = await client.put(url, json={"component_ids": [sign_in_component.id]}, headers=admin)
    assert put.status_code == 200 and put.json()["component_ids"] == [sign_in_component.id]
    one = (await client.get(f"/api/v1/vendors/{vendor_id}", headers=reader)).json()
    assert any(c["component_ids"] == [sign_in_component.id] for c in one["components"])

    patched = await client.patch(f"/api/v1/vendors/{vendor_id}", json={"enabled": False}, headers=admin)
    assert patched.status_code == 200 and patched.json()["enabled"] is False
    assert (await client.get("/api/v1/vendors/nope", headers=reader)).status_code == 404
    deleted = await client.delete(f"/api/v1/vendors/{vendor_id}", headers=admin)
    assert deleted.status_code == 200
    assert await count_rows(db, Vendor) == 0 and await count_rows(db, VendorDependency) == 0


async def test_console_vendor_pages_and_dependency_form(
    client: httpx.AsyncClient, db: Database, settings: Settings, site: StatusSite
) -> None:
    async with db.session() as session:
        sign_in_component = await make_component(session, "Sign-in")
    _, csrf = await sign_in(client, db, Role.admin)
    form = {"csrf_token": csrf, "name": "Northwind", "kind": "statuspage", "url": "nope", "interval_seconds": "120"}
    refused = await client.post("/console/vendors", data=form, headers=HTML)
    assert refused.status_code == 422 and "http:// or https://" in refused.text
    form["url"] = site.url("/api/v2/summary.json")
    added = await client.post("/console/vendors", data=form, headers=HTML)
    assert added.status_code == 303, added.text
    [vendor_id] = [v.id for v in await all_vendors(db)]
    site.summary = degraded()
    assert await run_probes(db, settings) == 1
    page = await client.get(f"/console/vendors/{vendor_id}", headers=HTML)
    assert page.status_code == 200
    assert "Login" in page.text and "Major outage" in page.text and "certificate rotation" in page.text
    login = (await components(db, vendor_id))["c-login"]
    mapped = await client.post(
        f"/console/vendors/{vendor_id}/components/{login.id}/dependents",
        data={"csrf_token": csrf, "component_ids": [sign_in_component.id]},
        headers=HTML,
    )
    assert mapped.status_code == 303
    [alert] = await vendor_alerts(db)
    assert alert.summary == "Northwind: Login is major outage"
    listing = await client.get("/console/vendors", headers=HTML)
    assert listing.status_code == 200 and "Northwind" in listing.text and "Sign-in" in listing.text


async def all_vendors(db: Database) -> list[Vendor]:
    async with db.sessionmaker() as session:
        return await vendors.list_vendors(session)


async def test_redirects_are_followed_hop_by_hop_and_private_addresses_refused_unless_allowed(
    db: Database, settings: Settings, site: StatusSite
) -> None:
    followed = await vendors.fetch(
        vendors.VendorKind.statuspage, site.url("/moved.json"), etag=None, last_modified=None, allow_private=True
    )
    assert followed.error is None and followed.page is not None
    assert [path for path, _headers, _status in site.seen] == ["/api/v2/summary.json"]
    # Tried: the same loopback page without CRISISDESK_ALLOW_PRIVATE_WEBHOOKS, directly and through
    # a redirect, and a link-local metadata address: each is refused before any request is made.
    site.seen.clear()
    for url in (site.url("/api/v2/summary.json"), site.url("/moved.json"), "https://169.254.169.254/latest"):
        refused = await vendors.fetch(
            vendors.VendorKind.statuspage, url, etag=None, last_modified=None, allow_private=False
        )
        assert refused.page is None and refused.error is not None and refused.error.startswith("refused"), url
    assert site.seen == []
