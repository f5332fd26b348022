"""Serving the snapshot: cache headers, publishing through the services, surviving a database outage, SSE."""

from __future__ import annotations

import asyncio
import gzip
import logging
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from crisisdesk.config import Settings
from crisisdesk.kit.db import Database
from crisisdesk.statuspage import publish as publishing
from crisisdesk.statuspage import views
from tests.fixtures.auth import login, make_actor
from tests.fixtures.incident import make_component, make_incident


async def test_etag_304_gzip_cache_control_and_cors(client: httpx.AsyncClient, db: Database) -> None:
    async with db.session() as s:
        await make_component(s, "Web app")
    first = await client.get("/")
    assert first.status_code == 200 and first.headers["content-type"] == "text/html; charset=utf-8"
    etag = first.headers["etag"]
    assert etag.startswith('"') and etag.endswith('"')
    assert first.headers["cache-control"] == "public, max-age=30, stale-while-revalidate=60"
    assert first.headers["x-content-type-options"] == "nosniff"
    assert "access-control-allow-origin" not in first.headers

    again = await client.get("/", headers={"if-none-match": etag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag

    # httpx would decompress silently; read the raw bytes to prove they are gzip.
    async with client.stream("GET", "/api/v2/summary.json", headers={"accept-encoding": "gzip"}) as raw:
        assert raw.headers["content-encoding"] == "gzip" and raw.headers["vary"] == "accept-encoding"
        compressed = b"".join([chunk async for chunk in raw.aiter_raw()])
    plain = await client.get("/api/v2/summary.json", headers={"accept-encoding": "identity"})
    assert "content-encoding" not in plain.headers
    assert gzip.decompress(compressed) == plain.content
    assert plain.headers["access-control-allow-origin"] == "*"
    assert plain.headers["content-type"] == "application/json; charset=utf-8"

    trailing = await client.get("/history/")
    assert trailing.status_code == 200 and trailing.headers["etag"] == (await client.get("/history")).headers["etag"]
    for path in ("/widget.js", "/badge.svg"):
        assert (await client.get(path)).headers["access-control-allow-origin"] == "*"


async def test_declaring_an_incident_publishes_a_new_snapshot(
    app: Any, client: httpx.AsyncClient, db: Database
) -> None:
    _, actor = await make_actor(db)
    async with db.session() as s:
        web = await make_component(s, "Web app")
    store = app.state.site
    before = store.version
    etag = (await client.get("/api/v2/incidents/unresolved.json")).headers["etag"]
    async with db.session() as s:
        incident = await make_incident(s, actor, name="Checkout errors", components={web.id: "major_outage"})
    # The after-commit hook has rendered and installed the new snapshot by now.
    assert store.version > before
    response = await client.get("/api/v2/incidents/unresolved.json", headers={"if-none-match": etag})
    assert response.status_code == 200
    assert [i["id"] for i in response.json()["incidents"]] == [incident.id]
    status = (await client.get("/api/v2/status.json")).json()["status"]
    assert status == {"indicator": "critical", "description": "Major Service Outage"}  # a component is down
    page = (await client.get("/")).text
    assert "Checkout errors" in page and f'data-incident-id="{incident.id}"' in page


@asynccontextmanager
async def _unreachable(db: Database, settings: Settings) -> AsyncIterator[None]:
    """Make the database unreachable for this process, as when its host or volume goes away.

    Every new connection fails the way the driver fails then: SQLite's "unable to open database
    file", asyncpg's refused connection. The original engine is put back afterwards, so the
    test's teardown closes its connections as usual.
    """

    async def refuse() -> Any:
        if settings.is_sqlite:
            raise sqlite3.OperationalError("unable to open database file")
        raise ConnectionRefusedError(111, "Connect call failed ('10.0.0.1', 5432)")

    engine, sessionmaker = db.engine, db.sessionmaker
    url = "sqlite+aiosqlite://" if settings.is_sqlite else "postgresql+asyncpg://postgres@10.0.0.1/gone"
    db.engine = create_async_engine(url, async_creator=refuse)
    db.sessionmaker = async_sessionmaker(db.engine, expire_on_commit=False)
    try:
        yield
    finally:
        await db.engine.dispose()
        db.engine, db.sessionmaker = engine, sessionmaker


async def test_the_public_site_keeps_serving_when_the_database_is_unreachable(
    app: Any, client: httpx.AsyncClient, db: Database, settings: Settings
) -> None:
    user, actor = await make_actor(db)
    async with db.session() as s:
        web = await make_component(s, "Web app")
        await make_incident(s, actor, name="Database trouble ahead", components={web.id: "partial_outage"})
    await login(client, user.email)
    page = await client.get("/")
    summary = await client.get("/api/v2/summary.json")
    version = app.state.site.version

    async with _unreachable(db, settings):
        await _check_outage(app, client, db, settings, page, summary, version)
        # The console says what is wrong instead of failing obscurely, and the watcher notices.
        console = await client.get("/console", headers={"accept": "text/html"})
        assert console.status_code == 503
        assert "database is unreachable" in console.text and "last published snapshot" in console.text
        api = await client.get("/api/v1/incidents")
        assert api.status_code == 503 and api.json()["detail"][0]["type"] == "DatabaseUnavailable"
        watcher = app.state.runtime.watcher
        await _eventually(lambda: not watcher.healthy)
        assert watcher.error
    await _eventually(lambda: watcher.healthy)


async def _eventually(condition: Any, timeout: float = 5.0) -> None:
    """Wait for the background watcher (polling every 50 ms in tests) to reach a state."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "the watcher never got there"
        await asyncio.sleep(0.02)


async def _check_outage(
    app: Any,
    client: httpx.AsyncClient,
    db: Database,
    settings: Settings,
    page: httpx.Response,
    summary: httpx.Response,
    version: int,
) -> None:
    with pytest.raises((OperationalError, DBAPIError, OSError)):
        await publishing.publish(db, settings, app.state.site)
    with pytest.raises((OperationalError, DBAPIError, OSError)):
        async with db.session() as s:
            await make_component(s, "Never stored")

    for _ in range(3):
        again = await client.get("/")
        assert again.status_code == 200 and again.content == page.content
        assert "Database trouble ahead" in again.text
        json_again = await client.get("/api/v2/summary.json")
        assert json_again.status_code == 200 and json_again.content == summary.content
        assert (await client.get("/", headers={"if-none-match": page.headers["etag"]})).status_code == 304
    assert app.state.site.version == version


class _Connection:
    """Drives the application as an ASGI server would, for a response that never ends by itself."""

    def __init__(self, app: Any, path: str) -> None:
        self.app, self.path = app, path
        self.sent: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.gone = asyncio.Event()

    async def receive(self) -> dict[str, Any]:
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        await self.sent.put(message)

    def start(self) -> asyncio.Task[None]:
        scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
                 "method": "GET", "scheme": "http", "path": self.path, "raw_path": self.path.encode(),
                 "query_string": b"", "root_path": "", "headers": [(b"host", b"status.test")],
                 "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 80)}  # fmt: skip
        return asyncio.create_task(self.app(scope, self.receive, self.send))

    async def chunk(self) -> str:
        while True:
            message = await asyncio.wait_for(self.sent.get(), 5)
            if message["type"] == "http.response.body" and message.get("body"):
                return bytes(message["body"]).decode()


async def test_live_stream_announces_each_new_snapshot(app: Any, db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(views, "PING_SECONDS", 0.2)
    store = app.state.site
    connection = _Connection(app, "/status/live")
    task = connection.start()
    start = await asyncio.wait_for(connection.sent.get(), 5)
    assert start["status"] == 200
    assert dict(start["headers"])[b"content-type"].startswith(b"text/event-stream")
    first = await connection.chunk()
    assert f"event: snapshot\ndata: {store.version}\n\n" in first

    assert (await connection.chunk()) == ": ping\n\n"  # idle: a comment keeps proxies from closing it

    async with db.session() as s:
        await make_component(s, "Reporting")
    newer = store.version
    chunk = await connection.chunk()
    while chunk.startswith(":"):
        chunk = await connection.chunk()
    assert chunk == f"event: snapshot\ndata: {newer}\n\n"

    connection.gone.set()
    await asyncio.wait_for(task, 5)  # the stream ends when the client leaves


async def test_an_outage_while_alerts_arrive_is_a_503_that_never_logs_the_hook_token(
    app: Any, client: httpx.AsyncClient, db: Database, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    from crisisdesk.signal.models import Integration, SourceKind

    async with db.session() as s:
        s.add(Integration(name="Prometheus", kind=SourceKind.alertmanager, token="secret-hook-token-42"))
    body = {"version": "4", "status": "firing", "alerts": [{"status": "firing", "labels": {"alertname": "Down"}}]}
    async with _unreachable(db, settings):
        with caplog.at_level(logging.WARNING):
            response = await client.post("/hooks/secret-hook-token-42", json=body)
    assert response.status_code == 503 and response.json()["detail"][0]["type"] == "DatabaseUnavailable"
    assert "/hooks/{token}" in caplog.text
    assert "secret-hook-token-42" not in caplog.text
    # The change watcher reconnects once the database is back, before the app stops.
    await _eventually(lambda: app.state.runtime.watcher.healthy)
