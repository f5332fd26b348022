"""Synthetic checks against real peers on loopback: HTTP, TCP and DNS; alerts after N failures."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any, cast

import dns.flags
import dns.message
import dns.rcode
import dns.rrset
import httpx
import pytest
from sqlalchemy import select, update

from crisisdesk.auth.models import Role
from crisisdesk.config import Settings
from crisisdesk.kit.db import Database
from crisisdesk.kit.jobs import Job, JobRunner
from crisisdesk.kit.runtime import Runtime
from crisisdesk.kit.time import utcnow
from crisisdesk.kit.watch import ChangeWatcher
from crisisdesk.signal import checks
from crisisdesk.signal.models import Alert, AlertStatus, Check, CheckResult, CheckState
from crisisdesk.signal.tasks import PROBE_KINDS
from crisisdesk.worker import register_tasks
from tests.fixtures.api import count_rows, error_locs, error_text
from tests.fixtures.auth import api_key_headers
from tests.fixtures.console import HTML, field_error, sign_in
from tests.fixtures.incident import make_component
from tests.fixtures.peers import HttpReceiver


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def runner_for(db: Database, settings: Settings) -> JobRunner:
    runner = JobRunner(db)
    register_tasks(Runtime(settings, db, ChangeWatcher(db, interval=1.0), runner))
    return runner


async def run_probes(db: Database, settings: Settings) -> int:
    """One pass of the probe lane, as the worker runs it."""
    return await runner_for(db, settings).run_due(kinds=PROBE_KINDS, concurrency=5)


async def make_due(db: Database, key: str) -> None:
    async with db.session() as session:
        await session.execute(update(Job).where(Job.key == key).values(due_at=utcnow() - timedelta(seconds=1)))


async def create(db: Database, **values: Any) -> Check:
    async with db.session() as session:
        return await checks.create_check(session, **values)


async def state_of(db: Database, check_id: str) -> Check:
    async with db.sessionmaker() as session:
        check = await session.get(Check, check_id)
        assert check is not None
        return check


async def alerts_of(db: Database, key: str) -> list[Alert]:
    async with db.sessionmaker() as session:
        return list(await session.scalars(select(Alert).where(Alert.dedup_key == key).order_by(Alert.id)))


async def results_of(db: Database, check_id: str) -> list[CheckResult]:
    async with db.sessionmaker() as session:
        return await checks.recent_results(session, check_id, limit=100)


async def run_once(db: Database, settings: Settings, check_id: str) -> CheckResult:
    await make_due(db, checks.job_key(check_id))
    assert await run_probes(db, settings) == 1
    return (await results_of(db, check_id))[0]


@pytest.fixture
async def receiver() -> AsyncIterator[HttpReceiver]:
    async with HttpReceiver(free_port(), status=200, body="all systems go") as peer:
        yield peer


# --- HTTP ----------------------------------------------------------------------------------


async def test_http_check_alerts_after_n_failures_and_resolves_on_recovery(
    db: Database, settings: Settings, receiver: HttpReceiver
) -> None:
    async with db.session() as session:
        component = await make_component(session, "Sign-in")
    check = await create(
        db,
        name="Sign-in page",
        kind="http",
        target=f"http://127.0.0.1:{receiver.port}/login",
        keyword="systems go",
        failures_to_alert=3,
        interval_seconds=30,
        timeout_seconds=2,
        component_id=component.id,
    )
    # Created enabled: due at once.
    assert await run_probes(db, settings) == 1
    first = (await results_of(db, check.id))[0]
    assert first.ok and first.latency_ms is not None and "HTTP 200" in first.detail
    assert (await state_of(db, check.id)).state == CheckState.up
    async with db.sessionmaker() as session:
        job = await session.scalar(select(Job).where(Job.key == checks.job_key(check.id)))
        assert job is not None and job.finished_at is None
        assert job.due_at > utcnow() + timedelta(seconds=25), "the next run is one interval away"

    receiver.behave(status=503, body="down")
    for n in (1, 2):
        result = await run_once(db, settings, check.id)
        assert not result.ok and "HTTP 503, expected 2xx" in result.detail
        assert (await state_of(db, check.id)).consecutive_failures == n
        assert await alerts_of(db, "check:" + check.id) == [], "no alert before the third failure"
    await run_once(db, settings, check.id)
    state = await state_of(db, check.id)
    assert state.state == CheckState.down and state.consecutive_failures == 3
    [alert] = await alerts_of(db, "check:" + check.id)
    assert alert.status == AlertStatus.firing
    assert alert.summary == "Sign-in page failing: HTTP 503, expected 2xx"
    assert alert.details["target"].endswith("/login")
    # More failures do not open another alert.
    await run_once(db, settings, check.id)
    assert len(await alerts_of(db, "check:" + check.id)) == 1

    receiver.behave(status=200, body="all systems go")
    result = await run_once(db, settings, check.id)
    assert result.ok
    [alert] = await alerts_of(db, "check:" + check.id)
    assert alert.status == AlertStatus.resolved
    state = await state_of(db, check.id)
    assert state.state == CheckState.up and state.consecutive_failures == 0
    assert receiver.requests[0].path == "/login" and receiver.requests[0].method == "GET"


async def test_http_keyword_missing_slow_answer_and_expected_status(
    db: Database, settings: Settings, receiver: HttpReceiver
) -> None:
    url = f"http://127.0.0.1:{receiver.port}/"
    keyword = await create(db, name="Keyword", kind="http", target=url, keyword="healthy", timeout_seconds=2)
    slow = await create(
        db, name="Slow", kind="http", target=url + "slow", latency_threshold_ms=100, timeout_seconds=2, enabled=False
    )
    redirect = await create(db, name="Redirect", kind="http", target=url + "old", expected_status=301, enabled=False)
    receiver.behave(path="/slow", status=200, hang_seconds=0.3)
    receiver.behave(path="/old", status=301, headers={"location": "/new"})
    assert await run_probes(db, settings) == 1
    result = (await results_of(db, keyword.id))[0]
    assert not result.ok and "without the keyword 'healthy'" in result.detail

    async with db.session() as session:
        await checks.update_check(session, await checks.get_check(session, slow.id), settings, enabled=True)
        await checks.update_check(session, await checks.get_check(session, redirect.id), settings, enabled=True)
    assert await run_probes(db, settings) == 2
    result = (await results_of(db, slow.id))[0]
    assert not result.ok and result.latency_ms is not None and result.latency_ms >= 300
    assert "slower than 100 ms" in result.detail
    # A redirect is judged, never followed: the receiver saw no request for /new.
    result = (await results_of(db, redirect.id))[0]
    assert result.ok and "HTTP 301" in result.detail
    assert "/new" not in receiver.per_path


async def test_a_timeout_and_a_refused_connection_are_failures(db: Database, settings: Settings) -> None:
    async with HttpReceiver(free_port(), status=200, hang_seconds=3) as hanging:
        hung = await create(
            db, name="Hangs", kind="http", target=f"http://127.0.0.1:{hanging.port}/", timeout_seconds=0.3
        )
        closed = await create(db, name="Closed", kind="http", target=f"http://127.0.0.1:{free_port()}/")
        assert await run_probes(db, settings) == 2
    [result] = await results_of(db, hung.id)
    assert not result.ok and result.latency_ms is None and "no answer within 0.3 s" in result.detail
    [result] = await results_of(db, closed.id)
    assert not result.ok and "cannot connect" in result.detail


# --- TCP and DNS ---------------------------------------------------------------------------


async def test_tcp_check_against_a_listening_and_a_closed_port(db: Database, settings: Settings) -> None:
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        listening = await create(db, name="Database", kind="tcp", target=f"127.0.0.1:{port}")
        closed = await create(db, name="Nothing", kind="tcp", target=f"127.0.0.1:{free_port()}", failures_to_alert=1)
        assert await run_probes(db, settings) == 2
    finally:
        server.close()
        await server.wait_closed()
    [result] = await results_of(db, listening.id)
    assert result.ok and result.detail.startswith("connected in")
    [result] = await results_of(db, closed.id)
    assert not result.ok and "cannot connect to 127.0.0.1:" in result.detail
    [alert] = await alerts_of(db, "check:" + closed.id)
    assert alert.status == AlertStatus.firing and alert.summary.startswith("Nothing failing: cannot connect")


class _DnsServer(asyncio.DatagramProtocol):
    """A tiny authoritative server: answers from ``records`` ({(name, type): [values]}), else NXDOMAIN."""

    def __init__(self, records: dict[tuple[str, str], list[str]]) -> None:
        self.records = records
        self.queries: list[tuple[str, str]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        query = dns.message.from_wire(data)
        question = query.question[0]
        name, rtype = question.name.to_text().rstrip(".").lower(), dns.rdatatype.to_text(question.rdtype)
        self.queries.append((name, rtype))
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        values = self.records.get((name, rtype))
        if values:
            response.answer.append(dns.rrset.from_text_list(question.name, 60, "IN", rtype, values))
        elif not any(n == name for n, _ in self.records):
            response.set_rcode(dns.rcode.NXDOMAIN)
        self.transport.sendto(response.to_wire(), addr)


async def test_dns_checks_against_a_local_dns_server(db: Database, settings: Settings) -> None:
    records = {
        ("api.example.test", "A"): ["10.1.2.3"],
        ("example.test", "MX"): ["10 mail.example.test."],
        ("example.test", "TXT"): ['"v=spf1 -all"'],
    }
    server = _DnsServer(records)
    port = free_port(socket.SOCK_DGRAM)
    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: server, local_addr=("127.0.0.1", port)
    )
    dns_settings = settings.model_copy(update={"check_dns_resolver": f"127.0.0.1:{port}"})
    try:
        a = await create(
            db, name="API address", kind="dns", target="api.example.test", keyword="10.1.2.3", timeout_seconds=2
        )
        mx = await create(
            db,
            name="Mail",
            kind="dns",
            target="example.test",
            record_type="mx",
            keyword="mail.example.test",
            timeout_seconds=2,
        )
        txt = await create(
            db,
            name="SPF",
            kind="dns",
            target="example.test",
            record_type="TXT",
            keyword="v=spf1 -all",
            timeout_seconds=2,
        )
        wrong = await create(
            db, name="Moved", kind="dns", target="api.example.test", keyword="10.9.9.9", timeout_seconds=2
        )
        missing = await create(db, name="Gone", kind="dns", target="old.example.test", timeout_seconds=2)
        no_record = await create(
            db, name="No v6", kind="dns", target="api.example.test", record_type="AAAA", timeout_seconds=2
        )
        assert await run_probes(db, dns_settings) == 6
    finally:
        transport.close()
    assert ("example.test", "MX") in server.queries
    ok = {c.name: (await results_of(db, c.id))[0] for c in (a, mx, txt, wrong, missing, no_record)}
    assert ok["API address"].ok and "A 10.1.2.3" in ok["API address"].detail
    assert ok["Mail"].ok and "MX 10 mail.example.test" in ok["Mail"].detail
    assert ok["SPF"].ok
    assert not ok["Moved"].ok and "expected '10.9.9.9'" in ok["Moved"].detail
    assert not ok["Gone"].ok and "NXDOMAIN" in ok["Gone"].detail
    assert not ok["No v6"].ok and "no AAAA record" in ok["No v6"].detail


# --- Jobs, stats, pruning ------------------------------------------------------------------


async def test_a_check_runs_once_when_two_runners_claim_at_once(
    db: Database, settings: Settings, receiver: HttpReceiver
) -> None:
    check = await create(db, name="Once", kind="http", target=f"http://127.0.0.1:{receiver.port}/")
    first, second = runner_for(db, settings), runner_for(db, settings)
    ran = await asyncio.gather(
        first.run_due(kinds=PROBE_KINDS, concurrency=5), second.run_due(kinds=PROBE_KINDS, concurrency=5)
    )
    assert sorted(ran) == [0, 1]
    assert len(await results_of(db, check.id)) == 1 and receiver.count == 1


async def test_disabling_cancels_the_job_and_resolves_a_failing_checks_alert(db: Database, settings: Settings) -> None:
    check = await create(db, name="Dead", kind="tcp", target=f"127.0.0.1:{free_port()}", failures_to_alert=1)
    assert await run_probes(db, settings) == 1
    [alert] = await alerts_of(db, "check:" + check.id)
    assert alert.status == AlertStatus.firing
    async with db.session() as session:
        await checks.update_check(session, await checks.get_check(session, check.id), settings, enabled=False)
    [alert] = await alerts_of(db, "check:" + check.id)
    assert alert.status == AlertStatus.resolved
    assert await count_rows(db, Job) == 0 or await run_probes(db, settings) == 0
    async with db.session() as session:
        await checks.delete_check(session, await checks.get_check(session, check.id), settings)
    assert await count_rows(db, CheckResult) == 0 and await count_rows(db, Check) == 0


async def test_stats_give_percentiles_and_uptime_and_old_results_are_pruned(
    db: Database, settings: Settings, receiver: HttpReceiver
) -> None:
    check = await create(db, name="Stats", kind="http", target=f"http://127.0.0.1:{receiver.port}/")
    now = utcnow()
    async with db.session() as session:
        # 100 results in the last day: latencies 1..100 ms, every tenth a failure.
        for i in range(1, 101):
            session.add(
                CheckResult(check_id=check.id, at=now - timedelta(minutes=i), ok=i % 10 != 0, latency_ms=float(i))
            )
        session.add(CheckResult(check_id=check.id, at=now - timedelta(days=2), ok=False, latency_ms=9999.0))
        session.add(CheckResult(check_id=check.id, at=now - timedelta(days=8), ok=False, latency_ms=9999.0))
    async with db.sessionmaker() as session:
        stats = (await checks.stats(session, [check.id]))[check.id]
    assert (stats.runs, stats.ok, stats.uptime_percent) == (100, 90, 90.0)
    assert (stats.p50_ms, stats.p95_ms, stats.p99_ms) == (50.0, 95.0, 99.0)
    assert checks.percentile([], 50) is None
    # A run deletes its results older than 7 days, and only those.
    assert await run_probes(db, settings) == 1
    assert await count_rows(db, CheckResult) == 102


# --- Validation ----------------------------------------------------------------------------


BAD_CHECKS: list[tuple[dict[str, Any], str, str]] = [
    ({"kind": "http", "target": "ftp://example.com/"}, "target", "http:// or https://"),
    ({"kind": "http", "target": "https://"}, "target", "no valid host"),
    ({"kind": "tcp", "target": "db.internal"}, "target", "host:port"),
    ({"kind": "tcp", "target": "db.internal:70000"}, "target", "1-65535"),
    ({"kind": "dns", "target": "bad!name.test"}, "target", "host name"),
    ({"kind": "dns", "target": "example.com", "record_type": "SRV"}, "record_type", "A, AAAA"),
    ({"kind": "http", "target": "http://x.test/", "record_type": "A"}, "record_type", "DNS checks only"),
    ({"kind": "icmp", "target": "x"}, "kind", "http, tcp or dns"),
    ({"interval_seconds": 0}, "interval_seconds", "1-86400"),
    ({"interval_seconds": 86401}, "interval_seconds", "1-86400"),
    ({"interval_seconds": 10, "timeout_seconds": 10}, "timeout_seconds", "shorter than the interval"),
    ({"timeout_seconds": 0}, "timeout_seconds", "over 0"),
    ({"failures_to_alert": 0}, "failures_to_alert", "1-20"),
    ({"failures_to_alert": 21}, "failures_to_alert", "1-20"),
    ({"expected_status": 99}, "expected_status", "100-599"),
    ({"kind": "tcp", "target": "a.test:1", "keyword": "x"}, "keyword", "HTTP (body) and DNS"),
    ({"latency_threshold_ms": 0}, "latency_threshold_ms", "1-60000"),
    ({"name": ""}, "name", "1-200"),
    ({"kind": "http", "target": "http://a.test/x y"}, "target", "spaces"),
    ({"component_id": "nope"}, "component_id", "no component"),
]


async def test_the_api_refuses_each_bad_field_by_name_and_stores_nothing(
    client: httpx.AsyncClient, db: Database
) -> None:
    headers = await api_key_headers(db, Role.admin)
    for values, field, words in BAD_CHECKS:
        body = {"name": "Site", "kind": "http", "target": "https://example.com/", **values}
        response = await client.post("/api/v1/checks", json=body, headers=headers)
        assert response.status_code in (404, 422), f"tried {values}: {response.text}"
        assert ["body", field] in error_locs(response), f"tried {values}: {response.text}"
        assert words in error_text(response), f"tried {values}: {response.text}"
    assert await count_rows(db, Check) == 0 and await count_rows(db, Job) == 0


# --- API and console -----------------------------------------------------------------------


async def test_checks_api_crud_results_and_stats(
    client: httpx.AsyncClient, db: Database, settings: Settings, receiver: HttpReceiver
) -> None:
    admin = await api_key_headers(db, Role.admin)
    reader = await api_key_headers(db, Role.viewer)
    body = {"name": "Home", "kind": "http", "target": f"http://127.0.0.1:{receiver.port}/", "interval_seconds": 30}
    assert (await client.post("/api/v1/checks", json=body, headers=reader)).status_code == 403
    created = await client.post("/api/v1/checks", json=body, headers=admin)
    assert created.status_code == 201, created.text
    check = created.json()
    assert check["state"] == "unknown" and check["timeout_seconds"] == 10 and check["failures_to_alert"] == 3
    assert await run_probes(db, settings) == 1

    listed = (await client.get("/api/v1/checks", headers=reader)).json()
    assert [c["id"] for c in listed] == [check["id"]]
    assert listed[0]["state"] == "up" and listed[0]["stats"]["runs"] == 1
    assert listed[0]["stats"]["uptime_percent"] == 100.0 and listed[0]["stats"]["p50_ms"] is not None
    results = (await client.get(f"/api/v1/checks/{check['id']}/results", headers=reader)).json()
    assert len(results) == 1 and results[0]["ok"] is True
    stats = (await client.get(f"/api/v1/checks/{check['id']}/stats", headers=reader)).json()
    assert stats["runs"] == 1

    patched = await client.patch(
        f"/api/v1/checks/{check['id']}", json={"interval_seconds": 5, "timeout_seconds": 6}, headers=admin
    )
    assert patched.status_code == 422 and ["body", "timeout_seconds"] in error_locs(patched)
    patched = await client.patch(f"/api/v1/checks/{check['id']}", json={"enabled": False}, headers=admin)
    assert patched.status_code == 200 and patched.json()["enabled"] is False
    assert (await client.get("/api/v1/checks/nope", headers=reader)).status_code == 404
    deleted = await client.delete(f"/api/v1/checks/{check['id']}", headers=admin)
    assert deleted.status_code == 200 and deleted.json()["id"] == check["id"]
    assert await count_rows(db, Check) == 0


async def test_console_lists_checks_by_component_and_admins_add_them(
    client: httpx.AsyncClient, db: Database, settings: Settings, receiver: HttpReceiver
) -> None:
    async with db.session() as session:
        component = await make_component(session, "Payments API")
    _, csrf = await sign_in(client, db, Role.admin)
    form = {
        "csrf_token": csrf,
        "name": "Payments health",
        "kind": "http",
        "target": "gopher://x",
        "interval_seconds": "60",
        "timeout_seconds": "5",
        "failures_to_alert": "2",
        "component_id": component.id,
    }
    refused = await client.post("/console/checks", data=form, headers=HTML)
    assert refused.status_code == 422
    assert "http:// or https://" in (field_error(refused.text, "target") or "")
    assert await count_rows(db, Check) == 0
    form["target"] = f"http://127.0.0.1:{receiver.port}/health"
    added = await client.post("/console/checks", data=form, headers=HTML)
    assert added.status_code == 303, added.text
    assert await run_probes(db, settings) == 1
    page = await client.get("/console/checks", headers=HTML)
    assert page.status_code == 200
    assert "Payments API" in page.text and "Payments health" in page.text and "100%" in page.text
    [check] = await checks_in(db)
    detail = await client.get(f"/console/checks/{check.id}", headers=HTML)
    assert detail.status_code == 200 and "HTTP 200" in detail.text and "p95" in detail.text
    disabled = await client.post(f"/console/checks/{check.id}/enabled", data={"csrf_token": csrf}, headers=HTML)
    assert disabled.status_code == 303
    assert not (await state_of(db, check.id)).enabled
    deleted = await client.post(f"/console/checks/{check.id}/delete", data={"csrf_token": csrf}, headers=HTML)
    assert deleted.status_code == 303 and await count_rows(db, Check) == 0


async def checks_in(db: Database) -> list[Check]:
    async with db.sessionmaker() as session:
        return await checks.list_checks(session)
