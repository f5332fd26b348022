"""REST API of an update's deliveries: counts per channel and state, and the list with attempts."""

from __future__ import annotations

import httpx
from sqlalchemy import select

from crisisdesk.auth.models import Role
from crisisdesk.config import Settings
from crisisdesk.incident.models import IncidentUpdate
from crisisdesk.kit.db import Database
from crisisdesk.notify.channels.base import SendResult
from crisisdesk.notify.models import Channel
from tests.fixtures.auth import api_key_headers, make_actor
from tests.fixtures.incident import make_incident
from tests.fixtures.notify import make_subscriber, make_subscribers, run_jobs, settle


async def _published(db: Database, settings: Settings) -> str:
    """An incident's first update fanned out to 6 email and 2 webhook subscribers; 4 emails settled."""
    _, admin = await make_actor(db, Role.admin)
    async with db.session() as session:
        await make_subscribers(session, 6)
        await make_subscriber(session, channel=Channel.webhook, address="https://hooks.example.com/a?token=s3cret")
        await make_subscriber(session, channel=Channel.webhook)
        incident = await make_incident(session, admin)
    await run_jobs(db, settings)
    async with db.sessionmaker() as session:
        update_id = await session.scalar(select(IncidentUpdate.id).where(IncidentUpdate.incident_id == incident.id))
    assert update_id
    return update_id


async def test_counts_per_channel_and_state(client: httpx.AsyncClient, db: Database, settings: Settings) -> None:
    update_id = await _published(db, settings)
    await settle(
        db,
        settings,
        f"update:{update_id}",
        [
            SendResult.delivered("250"),
            SendResult.delivered("250"),
            SendResult.retry("451", "try later"),
            SendResult.failed("550", "no such user"),
        ],
    )
    headers = await api_key_headers(db, Role.viewer)
    response = await client.get(f"/api/v1/updates/{update_id}/deliveries", headers=headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["update_id"] == update_id
    assert body["total"] == {"delivered": 2, "pending": 4, "retrying": 1, "failed": 1, "total": 8}
    assert set(body["channels"]) == {"email", "webhook"}
    assert body["channels"]["email"]["total"] == 6 and body["channels"]["webhook"]["total"] == 2
    summed = {k: sum(c[k] for c in body["channels"].values()) for k in body["total"]}
    assert summed == body["total"]


async def test_the_list_filters_pages_and_shows_attempts(
    client: httpx.AsyncClient, db: Database, settings: Settings
) -> None:
    update_id = await _published(db, settings)
    results = [SendResult.failed("550", "5.1.1 no such user"), SendResult.delivered("250")]
    ids = await settle(db, settings, f"update:{update_id}", results)
    headers = await api_key_headers(db, Role.viewer)
    url = f"/api/v1/updates/{update_id}/deliveries/list"

    everything = (await client.get(url, headers=headers)).json()
    assert everything["total"] == 8 and len(everything["items"]) == 8
    failed = (await client.get(url, params={"state": "failed"}, headers=headers)).json()
    assert [d["id"] for d in failed["items"]] == [ids[0]]
    (row,) = failed["items"]
    assert row["state"] == "failed" and row["attempts"] == 1 and row["failed_at"]
    assert row["message_id"].startswith("msg_")
    (attempt,) = row["attempt_rows"]
    assert (attempt["outcome"], attempt["code"], attempt["summary"]) == ("failed", "550", "5.1.1 no such user")
    assert attempt["duration_ms"] == 20

    pending = (await client.get(url, params={"state": "pending"}, headers=headers)).json()
    assert pending["total"] == 6, "pending counts rows waiting and rows being sent"
    hooks = (await client.get(url, params={"channel": "webhook"}, headers=headers)).json()
    assert hooks["total"] == 2 and {d["channel"] for d in hooks["items"]} == {"webhook"}
    assert not any("s3cret" in d["address"] for d in hooks["items"]), "a token in a webhook URL is not shown"

    first = (await client.get(url, params={"limit": 3, "offset": 0}, headers=headers)).json()
    second = (await client.get(url, params={"limit": 3, "offset": 3}, headers=headers)).json()
    assert first["total"] == second["total"] == 8
    assert len(first["items"]) == len(second["items"]) == 3
    assert {d["id"] for d in first["items"]}.isdisjoint({d["id"] for d in second["items"]})


async def test_bad_filters_and_unknown_updates_are_refused(
    client: httpx.AsyncClient, db: Database, settings: Settings
) -> None:
    update_id = await _published(db, settings)
    headers = await api_key_headers(db, Role.viewer)
    url = f"/api/v1/updates/{update_id}/deliveries/list"

    # A channel that does not exist.
    response = await client.get(url, params={"channel": "fax"}, headers=headers)
    assert response.status_code == 422 and response.json()["detail"][0]["loc"][-1] == "channel"
    assert "unknown channel 'fax'" in response.json()["detail"][0]["msg"]
    # A state that does not exist.
    response = await client.get(url, params={"state": "lost"}, headers=headers)
    assert response.status_code == 422 and response.json()["detail"][0]["loc"][-1] == "state"
    # A page size out of range.
    response = await client.get(url, params={"limit": 0}, headers=headers)
    assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["query", "limit"]
    # An offset past the database's integer used to overflow in the driver: a 500.
    for offset in (-1, 10**20):
        response = await client.get(url, params={"offset": offset}, headers=headers)
        assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["query", "offset"]
    # An update that does not exist.
    for path in ("/api/v1/updates/nope/deliveries", "/api/v1/updates/nope/deliveries/list"):
        response = await client.get(path, headers=headers)
        assert response.status_code == 404 and response.json()["detail"][0]["loc"][-1] == "update_id"
    # Nobody signed in.
    assert (await client.get(f"/api/v1/updates/{update_id}/deliveries")).status_code == 401
