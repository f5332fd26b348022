"""Several server processes serve a new snapshot within a second of the commit.

Two real server processes (granian, one worker each, background workers on) run against one
fresh database. The test declares an incident in its own unit of work, publishes, and polls
both processes until each serves the incident in /api/v2/incidents/unresolved.json. On
PostgreSQL the processes learn of the snapshot through LISTEN/NOTIFY; on SQLite by polling the
change table (every 0.25 s by default).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx
import pytest

from crisisdesk.auth.models import Role
from crisisdesk.config import Settings
from crisisdesk.kit.db import Database
from crisisdesk.statuspage.publish import publish
from tests.fixtures.auth import make_actor
from tests.fixtures.databases import BACKENDS, own_database
from tests.fixtures.incident import make_component, make_incident
from tests.fixtures.ports import worker_ports

pytestmark = pytest.mark.slow

GRANIAN = Path(sys.executable).parent / "granian"
UNRESOLVED = "/api/v2/incidents/unresolved.json"
PORTS = worker_ports(18700, 18750)
VISIBLE_WITHIN = 1.0


def free_ports(count: int) -> list[int]:
    found = []
    for port in PORTS:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        found.append(port)
        if len(found) == count:
            return found
    pytest.fail(f"fewer than {count} free loopback ports in {PORTS.start}-{PORTS.stop - 1}")


@pytest.fixture(params=BACKENDS)
async def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A migrated database of its own: a SQLite file, or a new PostgreSQL database dropped after."""
    async with own_database(request.param, tmp_path, "mp") as url:
        yield url


@contextmanager
def servers(url: str, ports: list[int], logs: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    """One single-worker server process per port; all stopped (their whole group) on exit."""
    env = {
        **os.environ,
        "CRISISDESK_DEMO": "true",
        "CRISISDESK_DATABASE_URL": url,
        "CRISISDESK_RUN_WORKERS": "true",
        "CRISISDESK_POLL_INTERVAL": "0.25",
    }
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for port in ports:
            with (logs / f"server-{port}.log").open("wb") as out:
                procs.append(
                    subprocess.Popen(
                        [
                            str(GRANIAN),
                            "--interface",
                            "rsgi",
                            "--factory",
                            "--workers",
                            "1",
                            "--no-ws",
                            "--log-level",
                            "warning",
                            "--host",
                            "127.0.0.1",
                            "--port",
                            str(port),
                            "crisisdesk.server:create_rsgi_app",
                        ],
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        env=env,
                        start_new_session=True,
                    )
                )
        yield procs
    finally:
        for proc in procs:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)


def _log(logs: Path, port: int) -> str:
    return (logs / f"server-{port}.log").read_text(errors="replace")[-3000:]


async def wait_ready(
    client: httpx.AsyncClient, procs: list[subprocess.Popen[bytes]], ports: list[int], logs: Path
) -> None:
    deadline = time.monotonic() + 30
    pending = set(ports)
    while pending and time.monotonic() < deadline:
        for proc, port in zip(procs, ports, strict=True):
            assert proc.poll() is None, f"server on {port} exited:\n{_log(logs, port)}"
            if port in pending:
                with suppress(httpx.HTTPError):
                    if (await client.get(f"http://127.0.0.1:{port}{UNRESOLVED}")).status_code == 200:
                        pending.discard(port)
        await asyncio.sleep(0.1)
    assert not pending, f"not ready within 30 s: {sorted(pending)}\n" + "\n".join(_log(logs, p) for p in pending)


async def seconds_until_served(
    client: httpx.AsyncClient, ports: list[int], text: str, since: float, give_up: float
) -> dict[int, float | None]:
    """For each port, seconds from ``since`` until its unresolved.json names ``text`` (None: never)."""
    seen: dict[int, float | None] = dict.fromkeys(ports)
    while any(v is None for v in seen.values()) and time.perf_counter() - since < give_up:
        for port in [p for p, v in seen.items() if v is None]:
            response = await client.get(f"http://127.0.0.1:{port}{UNRESOLVED}")
            if response.status_code == 200 and any(i["name"] == text for i in response.json()["incidents"]):
                seen[port] = time.perf_counter() - since
        await asyncio.sleep(0.01)
    return seen


async def test_every_process_serves_the_new_snapshot_within_a_second(fresh_url: str, tmp_path: Path) -> None:
    settings = Settings(demo=True, database_url=fresh_url, run_workers=False)
    db = Database(fresh_url)
    try:
        _, who = await make_actor(db, Role.responder)
        async with db.session() as session:
            component = await make_component(session, name="Public API")
        await publish(db, settings)
        ports = free_ports(2)
        async with httpx.AsyncClient(timeout=5) as client:
            with servers(fresh_url, ports, tmp_path) as procs:
                await wait_ready(client, procs, ports, tmp_path)
                before = await client.get(f"http://127.0.0.1:{ports[1]}{UNRESOLVED}")
                assert before.json()["incidents"] == []

                name = f"Checkout errors {secrets.token_hex(3)}"
                async with db.session() as session:
                    await make_incident(session, who, name=name, components={component.id: "major_outage"})
                committed = time.perf_counter()
                await publish(db, settings)
                seen = await seconds_until_served(client, ports, name, committed, give_up=5.0)

                late = {port: s for port, s in seen.items() if s is None or s >= VISIBLE_WITHIN}
                assert not late, f"seconds from commit until served, per port: {seen}"
                for port in ports:
                    served = (await client.get(f"http://127.0.0.1:{port}{UNRESOLVED}")).json()
                    assert [i["name"] for i in served["incidents"]] == [name]
                    assert served["incidents"][0]["status"] == "investigating"
    finally:
        await db.dispose()
