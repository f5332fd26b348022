"""The production server (`crisisdesk serve`: granian RSGI, lean public path, ASGI adapter) over real HTTP."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from crisisdesk.auth import service as auth
from crisisdesk.auth.models import Scope
from crisisdesk.kit.db import Database
from crisisdesk.seed import ADMIN_EMAIL
from tests.fixtures.server import LiveServer, live_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with live_server(tmp_path_factory.mktemp("server"), CRISISDESK_MAX_BODY_BYTES="20000") as running:
        yield running


@pytest.fixture(scope="module")
def api_key(server: LiveServer) -> str:
    async def make() -> str:
        db = Database(server.database_url)
        async with db.session() as session:
            admin = await auth.authenticate(session, email=ADMIN_EMAIL, password="crisisdesk-demo")
            assert admin is not None
            _, secret = await auth.create_api_key(
                session, auth.actor_for(admin), name="server test", scopes=[Scope.read, Scope.write]
            )
        await db.dispose()
        return secret

    return asyncio.run(make())


def test_public_json_is_served_from_memory_with_cache_headers(server: LiveServer) -> None:
    first = httpx.get(server.url + "/api/v2/summary.json")
    assert first.status_code == 200
    assert first.headers["content-type"].startswith("application/json")
    assert first.headers["access-control-allow-origin"] == "*"
    assert first.headers["cache-control"] == "public, max-age=30, stale-while-revalidate=60"
    etag = first.headers["etag"]
    assert first.json()["page"]["name"]

    again = httpx.get(server.url + "/api/v2/summary.json", headers={"if-none-match": etag})
    assert again.status_code == 304 and again.content == b""

    zipped = httpx.get(server.url + "/", headers={"accept-encoding": "gzip"})
    assert zipped.headers["content-encoding"] == "gzip"
    raw = httpx.get(server.url + "/", headers={"accept-encoding": "identity"})
    assert "content-encoding" not in raw.headers
    assert zipped.content == raw.content  # httpx decoded the gzip body to the same bytes

    head = httpx.head(server.url + "/", headers={"accept-encoding": "identity"})
    assert head.status_code == 200 and head.content == b""
    assert int(head.headers["content-length"]) == len(raw.content)


def test_api_write_through_the_adapter_reaches_the_public_snapshot(server: LiveServer, api_key: str) -> None:
    headers = {"authorization": f"Bearer {api_key}"}
    created = httpx.post(
        server.url + "/api/v1/incidents",
        headers=headers,
        json={"name": "Adapter probe incident", "severity": "SEV3", "body": "Checking the server path."},
    )
    assert created.status_code == 201, created.text
    unresolved = httpx.get(server.url + "/api/v2/incidents/unresolved.json").json()
    assert "Adapter probe incident" in [incident["name"] for incident in unresolved["incidents"]]


def test_bad_requests_get_clear_errors_through_the_adapter(server: LiveServer, api_key: str) -> None:
    headers = {"authorization": f"Bearer {api_key}", "content-type": "application/json"}
    malformed = httpx.post(server.url + "/api/v1/incidents", headers=headers, content=b'{"name": ')
    assert malformed.status_code == 422 and malformed.json()["detail"][0]["loc"][0] == "body"
    too_big = httpx.post(server.url + "/api/v1/incidents", headers=headers, content=b"x" * 30_000)
    assert too_big.status_code == 413 and "at most 20000" in too_big.json()["detail"][0]["msg"]
    anonymous = httpx.get(server.url + "/api/v1/incidents")
    assert anonymous.status_code == 401
    console = httpx.get(server.url + "/console")
    assert console.status_code == 303 and console.headers["location"].startswith("/login")


def test_live_stream_announces_a_new_snapshot(server: LiveServer, api_key: str) -> None:
    """Server-Sent Events stream through the adapter until the client goes away."""
    lines: list[str] = []

    def listen() -> None:
        with httpx.stream("GET", server.url + "/status/live", timeout=10) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            for line in response.iter_lines():
                lines.append(line)
                if line.startswith("event: snapshot") and len(lines) > 1:
                    return

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    time.sleep(0.5)
    response = httpx.post(
        server.url + "/api/v1/incidents",
        headers={"authorization": f"Bearer {api_key}"},
        json={"name": "Live stream probe", "severity": "SEV4", "body": "Watching the stream."},
    )
    assert response.status_code == 201
    thread.join(8)
    assert any(line.startswith("event: snapshot") for line in lines), lines


def test_console_sign_in_sets_a_session_cookie(server: LiveServer, tmp_path: Path) -> None:
    with httpx.Client(base_url=server.url) as client:
        page = client.get("/login")
        token = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        signed_in = client.post(
            "/login", data={"email": ADMIN_EMAIL, "password": "crisisdesk-demo", "csrf_token": token}
        )
        assert signed_in.status_code == 303
        assert "crisisdesk_session" in client.cookies
        assert client.get("/console").status_code == 200


@pytest.fixture(scope="module")
def alert_tokens(server: LiveServer) -> tuple[str, str]:
    from crisisdesk.signal.models import Integration, SourceKind

    async def make() -> tuple[str, str]:
        db = Database(server.database_url)
        async with db.session() as session:
            session.add(Integration(name="Prometheus", kind=SourceKind.alertmanager, token="am-live-token-1"))
            session.add(Integration(name="Events", kind=SourceKind.events_v2, token="ev-live-token-1"))
        await db.dispose()
        return "am-live-token-1", "ev-live-token-1"

    return asyncio.run(make())


def _webhook(fingerprint: str, status: str = "firing") -> dict[str, object]:
    alert = {
        "status": status,
        "labels": {"alertname": "HighErrorRate", "service": "identity"},
        "annotations": {"summary": "Sign-in errors above 5%"},
        "startsAt": "2026-11-24T10:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus.example/graph",
        "fingerprint": fingerprint,
    }
    return {"version": "4", "groupKey": '{}:{alertname="HighErrorRate"}', "status": status, "alerts": [alert]}


def test_alert_sources_are_answered_on_the_lean_path_with_the_same_answers(
    server: LiveServer, alert_tokens: tuple[str, str]
) -> None:
    hook_token, routing_key = alert_tokens
    first = httpx.post(f"{server.url}/hooks/{hook_token}", json=_webhook("a1b2c3"))
    assert first.status_code == 200, first.text
    assert first.headers["content-type"] == "application/json"
    assert first.json()["status"] == "ok" and first.json()["created"] == 1
    again = httpx.post(f"{server.url}/hooks/{hook_token}", json=_webhook("a1b2c3"))
    assert again.json()["created"] == 0 and again.json()["repeated"] == 1
    # Tried: an unknown token, a body that is not JSON, a bad alert status.
    unknown = httpx.post(f"{server.url}/hooks/not-a-token", json=_webhook("x"))
    assert unknown.status_code == 404 and unknown.json()["detail"][0]["type"] == "not_found"
    broken = httpx.post(
        f"{server.url}/hooks/{hook_token}", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert broken.status_code == 400 and broken.json()["detail"][0]["type"] == "invalid_json"
    wrong = httpx.post(f"{server.url}/hooks/{hook_token}", json=_webhook("a1", status="burning"))
    assert wrong.status_code == 400 and wrong.json()["detail"][0]["loc"] == ["body", "alerts", 0, "status"]
    # Over CRISISDESK_MAX_BODY_BYTES (20,000 here): announced by content-length, or streamed without one.
    big = b'{"alerts": [' + b" " * 30_000 + b"]}"
    announced = httpx.post(
        f"{server.url}/hooks/{hook_token}", content=big, headers={"content-type": "application/json"}
    )
    assert announced.status_code == 413 and announced.json()["detail"][0]["type"] == "too_large"
    streamed = httpx.post(
        f"{server.url}/hooks/{hook_token}",
        content=iter([big[:15_000], big[15_000:]]),
        headers={"content-type": "application/json"},
    )
    assert streamed.status_code == 413
    event = {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": "disk-full-db-1",
        "payload": {"summary": "Disk full on db-1", "source": "db-1", "severity": "critical"},
    }
    accepted = httpx.post(f"{server.url}/v2/enqueue", json=event)
    assert accepted.status_code == 202 and accepted.json() == {
        "status": "success",
        "message": "Event processed",
        "dedup_key": "disk-full-db-1",
    }
    invalid = httpx.post(f"{server.url}/v2/enqueue", json=event | {"payload": {"summary": "x", "severity": "Critical"}})
    assert invalid.status_code == 400 and invalid.json()["status"] == "invalid event" and invalid.json()["errors"]
    foreign = httpx.post(f"{server.url}/v2/enqueue", json=event | {"routing_key": hook_token})
    assert foreign.status_code == 401
    # Paths the lean path does not own still reach the application.
    assert httpx.post(f"{server.url}/hooks/{hook_token}/extra", json={}).status_code in (404, 405)
