"""Console: the incident page's delivery panel and the drill-down per update and channel."""

from __future__ import annotations

import re

import httpx
from sqlalchemy import select

from crisisdesk.auth.models import Role
from crisisdesk.config import Settings
from crisisdesk.incident.models import IncidentUpdate
from crisisdesk.kit.db import Database
from crisisdesk.notify.channels.base import SendResult
from crisisdesk.notify.models import Channel
from tests.fixtures.auth import make_actor
from tests.fixtures.console import HTML, sign_in
from tests.fixtures.incident import make_incident
from tests.fixtures.notify import make_subscriber, make_subscribers, run_jobs, settle


async def _incident_with_deliveries(db: Database, settings: Settings, emails: int = 5) -> tuple[str, str]:
    _, admin = await make_actor(db, Role.admin)
    async with db.session() as session:
        await make_subscribers(session, emails)
        await make_subscriber(
            session, channel=Channel.slack, address="https://hooks.slack.com/services/T1/B2/SECRETSECRET9999"
        )
        incident = await make_incident(session, admin)
    await run_jobs(db, settings)
    async with db.sessionmaker() as session:
        update_id = await session.scalar(select(IncidentUpdate.id).where(IncidentUpdate.incident_id == incident.id))
    assert update_id
    return incident.id, update_id


def _cell(html: str, channel: str, bucket: str) -> str:
    row = re.search(rf'<tr data-channel="{channel}">(.*?)</tr>', html, re.S)
    assert row, f"no row for {channel}"
    cell = re.search(rf'<td data-bucket="{bucket}"[^>]*>(.*?)</td>', row.group(1), re.S)
    assert cell, f"no {bucket} cell for {channel}"
    return re.sub(r"<[^>]+>", "", cell.group(1)).strip()


async def test_the_incident_page_loads_the_panel_with_counts_per_channel(
    client: httpx.AsyncClient, db: Database, settings: Settings
) -> None:
    incident_id, update_id = await _incident_with_deliveries(db, settings)
    results = [SendResult.delivered("250"), SendResult.delivered("250"), SendResult.retry("451", "greylisted")]
    await settle(db, settings, f"update:{update_id}", [*results, SendResult.failed("550", "no such user")])
    await sign_in(client, db, Role.viewer)

    page = await client.get(f"/console/incidents/{incident_id}", headers=HTML)
    assert page.status_code == 200
    assert f'data-fragment="/console/incidents/{incident_id}/deliveries"' in page.text
    assert "/static/fragments.js" in page.text

    panel = await client.get(f"/console/incidents/{incident_id}/deliveries", headers=HTML)
    assert panel.status_code == 200
    assert "<html" not in panel.text, "the panel is a fragment"
    assert f'data-update-id="{update_id}"' in panel.text
    buckets = ("delivered", "pending", "retrying", "failed")
    assert [_cell(panel.text, "email", b) for b in buckets] == ["2", "1", "1", "1"]
    assert [_cell(panel.text, "slack", b) for b in buckets] == ["0", "1", "0", "0"]
    assert f"/console/updates/{update_id}/deliveries?channel=email&amp;state=failed" in panel.text


async def test_the_drill_down_lists_recipients_and_attempts(
    client: httpx.AsyncClient, db: Database, settings: Settings
) -> None:
    _, update_id = await _incident_with_deliveries(db, settings, emails=60)
    results = [SendResult.retry("451", "greylisted"), SendResult.delivered("250", "2.0.0 queued as 1234")]
    ids = await settle(db, settings, f"update:{update_id}", results)
    await sign_in(client, db, Role.viewer)
    base = f"/console/updates/{update_id}/deliveries"

    page = await client.get(base, headers=HTML)
    assert page.status_code == 200
    assert "Page 1 of 2" in page.text, "61 deliveries, 50 to a page"
    assert len(re.findall(r"<tr data-delivery-id=", page.text)) == 50
    assert "SECRETSECRET" not in page.text

    retrying = await client.get(base, params={"state": "retrying"}, headers=HTML)
    rows = re.findall(r'<tr data-delivery-id="(\d+)" data-state="(\w+)"', retrying.text)
    assert rows == [(str(ids[0]), "retrying")]
    assert "451 · greylisted" in retrying.text and 'data-outcome="retry"' in retrying.text

    delivered = await client.get(base, params={"state": "delivered", "channel": "email"}, headers=HTML)
    assert re.findall(r'<tr data-delivery-id="(\d+)"', delivered.text) == [str(ids[1])]
    assert "250 · 2.0.0 queued as 1234" in delivered.text

    second = await client.get(base, params={"page": "2"}, headers=HTML)
    assert len(re.findall(r"<tr data-delivery-id=", second.text)) == 11

    slack = await client.get(base, params={"channel": "slack"}, headers=HTML)
    assert "https://hooks.slack.com/…9999" in slack.text and "SECRETSECRET" not in slack.text


async def test_bad_drill_down_filters_are_refused(client: httpx.AsyncClient, db: Database, settings: Settings) -> None:
    _, update_id = await _incident_with_deliveries(db, settings)
    await sign_in(client, db, Role.viewer)
    base = f"/console/updates/{update_id}/deliveries"
    for params, word in [({"channel": "fax"}, "unknown channel"), ({"state": "lost"}, "unknown state")]:
        response = await client.get(base, params=params, headers=HTML)
        assert response.status_code == 422 and word in response.text, params
    # Twenty digits overflowed the database's offset and 5,000 broke int() itself: both were 500s.
    # "²" passes isdigit() but not int(); isdecimal() is what int() takes.
    for page in ("zero", "0", "9" * 20, "9" * 5000, "²"):
        response = await client.get(base, params={"page": page}, headers=HTML)
        assert response.status_code == 422 and "page must be a whole number" in response.text, page
    assert (await client.get("/console/updates/nope/deliveries", headers=HTML)).status_code == 404
    assert (await client.get("/console/incidents/nope/deliveries", headers=HTML)).status_code == 404


async def test_anonymous_visitors_are_sent_to_sign_in(
    client: httpx.AsyncClient, db: Database, settings: Settings
) -> None:
    incident_id, update_id = await _incident_with_deliveries(db, settings)
    for path in (f"/console/incidents/{incident_id}/deliveries", f"/console/updates/{update_id}/deliveries"):
        response = await client.get(path, headers=HTML)
        assert response.status_code == 303 and response.headers["location"].startswith("/login")
