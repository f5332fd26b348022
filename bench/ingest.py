"""Benchmark of alert ingestion against a real Prometheus Alertmanager taking the same alerts.

    .venv/bin/python bench/ingest.py [--quick] [--postgres URL] [--sqlite-only]

One run, one machine. The alerts: a fixed set of alert groups (alertname × service), each batch
of 100 alerts from one group, of which 10 are new fingerprints and 90 repeat ones already sent;
every target first gets each group's first 100 alerts (not measured), then the same sequence of
measured batches, bounded by count and by time.

First a real Alertmanager (``prometheus-alertmanager``, clustering off) is started on loopback
and the batches are posted to its ``POST /api/v2/alerts``: its accepted alerts/s is the yardstick.
Then, on a fresh SQLite database and (with ``--postgres``) a new PostgreSQL database created
next to the one the URL names and dropped afterwards, crisisdesk is started as README.md
recommends for production (``crisisdesk serve --workers 2``: granian, background workers on),
with an Alertmanager and an Events v2 integration (no rate limit) and one grouping rule by
alertname and service. The batches go to ``POST /hooks/{token}`` as Alertmanager webhook (version
4) bodies, then the same alerts to ``POST /v2/enqueue`` as Events v2 triggers, one event per
request as PagerDuty senders post them. Clients are aiohttp with a bounded number of
connections; each request's latency is timed from send to the end of the answer.

Escalation under load: before the webhook load, an escalation policy is created and a page is
started on it, and the page's escalation job is moved to the middle of the load; how late the
page's "escalated" event is, against that due time, is the figure. Resident memory of the
server's process tree is sampled throughout; the peak is reported.

It prints a table, writes bench/results/ingest.json, and prints the figures as one JSON object on
its last line. Every server listens on 127.0.0.1 only and every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import platform
import random
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.fixtures.alertmanager import (
    alertmanager_binary,
    config_text,
    free_port,
    start_alertmanager,
    stop_alertmanager,
)

from loadtools import HOST, cpu_seconds, idle_percent, percentile, rss_mib, stop_group, workspace

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
BATCH = 100
NEW_PER_BATCH = 10
TARGET_ALERTS_PER_S = 5000.0
TARGET_RATIO = 0.3
TARGET_P99_MS = 100.0
TARGET_ESCALATION_S = 2.0
# As README.md deploys them: SQLite is the embedded, one-process deployment (one writer);
# PostgreSQL runs several web processes.
SERVER_WORKERS = {"sqlite": 1, "postgresql": 2}
ZERO_TIME = "0001-01-01T00:00:00Z"


@dataclass
class Profile:
    seconds: float  # each measured load stops after this long (or when its batches run out)
    batches: int  # measured batches of 100 alerts in the sequence
    groups: int  # alert groups (alertname × service)
    concurrency: int  # connections the webhook loads keep busy (Alertmanager's and ours alike)
    event_concurrency: int  # connections the Events v2 load keeps busy (one event a request)
    # Events v2 takes one alert a request: its sequence has the same mix over fewer groups, so
    # that sending each group's first 100 alerts (not measured) stays short.
    event_groups: int


# Six webhooks in flight is an Alertmanager flushing six alert groups at once; far more and the
# latency measures the queue in front of the server rather than the ingestion (32 connections of
# 100 alerts each wait behind 3,100 others). The same load goes to Alertmanager.
FULL = Profile(seconds=15.0, batches=3000, groups=40, concurrency=6, event_concurrency=16, event_groups=4)
QUICK = Profile(seconds=4.0, batches=800, groups=16, concurrency=6, event_concurrency=16, event_groups=2)


# ---------------------------------------------------------------- the alerts


ALERTNAMES = ["HighErrorRate", "HighLatency", "PodCrashLooping", "DiskWillFillIn4Hours", "CertificateExpiry"]
SERVICES = ["identity", "billing", "search", "checkout", "api-gateway", "notifications", "storage", "reporting"]


class Workload:
    """A deterministic sequence of batches: each group's first batch all new, then 10 new + 90 repeats."""

    def __init__(self, groups: int, batches: int, seed: int = 4) -> None:
        rng = random.Random(seed)
        pairs = [(a, s) for s in SERVICES for a in ALERTNAMES]
        self.groups = pairs[:groups]
        self.members: list[list[int]] = [[] for _ in self.groups]
        self.alerts: list[tuple[int, int]] = []  # alert id -> (group, instance number)
        self.starts_at = (datetime.now(UTC) - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        self.prime = [(g, [self._new(g) for _ in range(BATCH)]) for g in range(len(self.groups))]
        self.measured: list[tuple[int, list[int]]] = []
        for i in range(batches):
            g = i % len(self.groups)
            repeats = rng.sample(self.members[g], BATCH - NEW_PER_BATCH)
            ids = repeats + [self._new(g) for _ in range(NEW_PER_BATCH)]
            rng.shuffle(ids)
            self.measured.append((g, ids))
        self._labels = [self._make_labels(i) for i in range(len(self.alerts))]
        self._fingerprints = [
            hashlib.blake2b(orjson.dumps(labels, option=orjson.OPT_SORT_KEYS), digest_size=8).hexdigest()
            for labels in self._labels
        ]

    def _new(self, group: int) -> int:
        alert_id = len(self.alerts)
        self.alerts.append((group, len(self.members[group])))
        self.members[group].append(alert_id)
        return alert_id

    def _make_labels(self, alert_id: int) -> dict[str, str]:
        group, number = self.alerts[alert_id]
        alertname, service = self.groups[group]
        return {
            "alertname": alertname,
            "service": service,
            "instance": f"{service}-{number:05d}.prod.internal:9100",
            "job": service,
            "severity": "critical" if alertname == "HighErrorRate" else "warning",
        }

    def distinct(self, batches: list[tuple[int, list[int]]]) -> int:
        return len({i for _, ids in batches for i in ids})

    # Alertmanager's own API (POST /api/v2/alerts), as Prometheus sends it.
    def am_api_body(self, ids: list[int]) -> bytes:
        return orjson.dumps(
            [
                {
                    "labels": self._labels[i],
                    "annotations": {"summary": f"{self._labels[i]['alertname']} on {self._labels[i]['instance']}"},
                    "startsAt": self.starts_at,
                    "generatorURL": "http://prometheus.example:9090/graph?g0.expr=up",
                }
                for i in ids
            ]
        )

    # Alertmanager's webhook_config (version 4), as it would send the group to crisisdesk.
    def webhook_body(self, group: int, ids: list[int]) -> bytes:
        alertname, service = self.groups[group]
        common = {"alertname": alertname, "service": service, "job": service}
        return orjson.dumps(
            {
                "version": "4",
                "groupKey": f'{{}}:{{alertname="{alertname}", service="{service}"}}',
                "truncatedAlerts": 0,
                "status": "firing",
                "receiver": "crisisdesk",
                "groupLabels": {"alertname": alertname, "service": service},
                "commonLabels": common,
                "commonAnnotations": {},
                "externalURL": "http://alertmanager.example:9093",
                "alerts": [
                    {
                        "status": "firing",
                        "labels": self._labels[i],
                        "annotations": {"summary": f"{alertname} on {self._labels[i]['instance']}"},
                        "startsAt": self.starts_at,
                        "endsAt": ZERO_TIME,
                        "generatorURL": "http://prometheus.example:9090/graph?g0.expr=up",
                        "fingerprint": self._fingerprints[i],
                    }
                    for i in ids
                ],
            }
        )

    # PagerDuty Events API v2: one trigger per request.
    def event_body(self, routing_key: str, alert_id: int) -> bytes:
        labels = self._labels[alert_id]
        return orjson.dumps(
            {
                "routing_key": routing_key,
                "event_action": "trigger",
                "dedup_key": self._fingerprints[alert_id],
                "payload": {
                    "summary": f"{labels['alertname']} on {labels['instance']}",
                    "source": labels["instance"],
                    "severity": "critical" if labels["severity"] == "critical" else "warning",
                    "component": labels["service"],
                    "group": labels["alertname"],
                    "class": "prometheus",
                    "custom_details": labels,
                },
                "client": "bench",
            }
        )


# ---------------------------------------------------------------- load


@dataclass
class LoadResult:
    target: str
    endpoint: str
    requests: int
    alerts: int  # alerts in requests answered 2xx
    seconds: float
    alerts_per_s: float
    requests_per_s: float
    latency_p50_ms: float
    latency_p99_ms: float
    latency_max_ms: float
    statuses: dict[str, int]
    failed: int  # requests not answered 2xx (or not answered at all)
    concurrency: int
    server_cpu_us_per_alert: float | None = None
    stopped_by: str = "count"  # "count": every batch was sent; "time": the time bound came first


async def drive(
    target: str,
    endpoint: str,
    url: str,
    bodies: Iterator[tuple[bytes, int]],
    *,
    concurrency: int,
    seconds: float,
    pid: int | None = None,
) -> LoadResult:
    """POST every body (each carrying n alerts) with ``concurrency`` connections, until done or time."""
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    accepted = 0
    stopped_by = "count"
    headers = {"content-type": "application/json"}
    timeout = aiohttp.ClientTimeout(total=30)
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    cpu_before = cpu_seconds(pid) if pid else 0.0
    started = time.perf_counter()
    deadline = started + seconds

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal accepted, stopped_by
        while True:
            if time.perf_counter() >= deadline:
                stopped_by = "time"
                return
            try:
                body, count = next(bodies)
            except StopIteration:
                return
            t0 = time.perf_counter()
            try:
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    status = response.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                statuses[type(exc).__name__] += 1
                continue
            latencies.append(time.perf_counter() - t0)
            statuses[str(status)] += 1
            if 200 <= status < 300:
                accepted += count

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await asyncio.gather(*(client(session) for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    requests = sum(statuses.values())
    ok = sum(n for code, n in statuses.items() if code.isdigit() and 200 <= int(code) < 300)
    cpu = (cpu_seconds(pid) - cpu_before) if pid else 0.0
    ms = [x * 1000 for x in latencies] or [0.0]
    return LoadResult(
        target=target,
        endpoint=endpoint,
        requests=requests,
        alerts=accepted,
        seconds=round(elapsed, 2),
        alerts_per_s=round(accepted / elapsed, 1) if elapsed else 0.0,
        requests_per_s=round(requests / elapsed, 1) if elapsed else 0.0,
        latency_p50_ms=round(percentile(ms, 50), 2),
        latency_p99_ms=round(percentile(ms, 99), 2),
        latency_max_ms=round(max(ms), 2),
        statuses=dict(statuses),
        failed=requests - ok,
        concurrency=concurrency,
        server_cpu_us_per_alert=round(cpu / accepted * 1e6, 1) if pid and accepted else None,
        stopped_by=stopped_by,
    )


def batches_of(work: Workload, batches: list[tuple[int, list[int]]], kind: str) -> Iterator[tuple[bytes, int]]:
    for group, ids in batches:
        yield (work.am_api_body(ids) if kind == "api" else work.webhook_body(group, ids)), len(ids)


def events_of(work: Workload, batches: list[tuple[int, list[int]]], routing_key: str) -> Iterator[tuple[bytes, int]]:
    for _, ids in batches:
        for alert_id in ids:
            yield work.event_body(routing_key, alert_id), 1


class RssSampler:
    """The peak resident memory of a process tree, sampled four times a second in a thread."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_mib = 0.0
        self.processes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            mib, count = rss_mib(self.pid)
            if mib > self.peak_mib:
                self.peak_mib, self.processes = mib, count
            self._stop.wait(0.25)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


# ---------------------------------------------------------------- Alertmanager


async def measure_alertmanager(work: Workload, profile: Profile, tmp: Path, notes: list[str]) -> dict[str, Any]:
    binary = alertmanager_binary()
    if binary is None:
        notes.append("no Alertmanager found (install prometheus-alertmanager): no ratio to it")
        return {}
    version = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False, timeout=30)
    # Its notifications go nowhere (a closed port) and only after the load: it is measured taking alerts.
    config = config_text(f"http://{HOST}:9/unused", group_wait="10m", group_interval="10m")
    manager = await asyncio.to_thread(start_alertmanager, tmp / "alertmanager", config, binary=binary)
    try:
        url = f"{manager.url}/api/v2/alerts"
        await drive(
            "alertmanager",
            "/api/v2/alerts",
            url,
            batches_of(work, work.prime, "api"),
            concurrency=profile.concurrency,
            seconds=60,
        )
        with RssSampler(manager.process.pid) as rss:
            result = await drive(
                "alertmanager",
                "/api/v2/alerts",
                url,
                batches_of(work, work.measured, "api"),
                concurrency=profile.concurrency,
                seconds=profile.seconds,
                pid=manager.process.pid,
            )
        held = len(await asyncio.to_thread(manager.alerts))
    finally:
        await asyncio.to_thread(stop_alertmanager, manager)
    return {
        "version": (version.stdout or version.stderr).splitlines()[0] if (version.stdout or version.stderr) else binary,
        "api_v2_alerts": asdict(result),
        "alerts_held": held,
        "peak_rss_mib": rss.peak_mib,
    }


# ---------------------------------------------------------------- crisisdesk


@dataclass
class Prepared:
    hook_token: str
    routing_key: str
    user_id: str


async def prepare(url: str) -> Prepared:
    """A user (the escalation's target), the two integrations and one grouping rule."""
    from crisisdesk.auth import service as auth
    from crisisdesk.auth.models import Role
    from crisisdesk.kit.db import Database
    from crisisdesk.signal.models import GroupingRule, Integration, SourceKind

    db = Database(url)
    try:
        async with db.session() as session:
            user = await auth.create_user(
                session, email="oncall@example.com", name="Olu On-call", role=Role.responder, password=None
            )
            webhook = Integration(
                name="Prometheus", kind=SourceKind.alertmanager, token=os.urandom(18).hex(), rate_limit_per_minute=0
            )
            events = Integration(
                name="Events v2 sender", kind=SourceKind.events_v2, token=os.urandom(16).hex(), rate_limit_per_minute=0
            )
            session.add_all([webhook, events])
            session.add(GroupingRule(name="By alert and service", position=0, by=["alertname", "service"]))
            await session.flush()
            return Prepared(webhook.token, events.token, user.id)
    finally:
        await db.dispose()


async def arm_escalation(url: str, user_id: str, due_at: datetime, notes: list[str]) -> str | None:
    """Start a page on a two-level policy and move its escalation job to ``due_at``; its id."""
    try:
        from crisisdesk.oncall import paging
    except ImportError:
        notes.append("crisisdesk.oncall.paging is not there: escalation under load not measured")
        return None
    from sqlalchemy import select

    from crisisdesk.kit.db import Database
    from crisisdesk.kit.jobs import Job
    from crisisdesk.oncall.models import EscalationPolicy, Page

    target = {"type": "user", "id": user_id}
    db = Database(url)
    try:
        async with db.session() as session:
            policy = EscalationPolicy(
                name=f"Bench policy {os.urandom(3).hex()}",
                levels=[{"timeout_minutes": 30, "targets": [target]}, {"timeout_minutes": 30, "targets": [target]}],
            )
            session.add(policy)
            await session.flush()
            page = await paging.start_page(
                session, escalation_policy_id=policy.id, title="Bench: escalation under load"
            )
            page_id = page.id
        async with db.session() as session:
            job = await session.scalar(select(Job).where(Job.key == paging.escalate_key(page_id)))
            if job is None or job.finished_at is not None:
                notes.append("the page has no pending escalation job: escalation not measured")
                return None
            job.due_at = due_at
            stored = await session.get(Page, page_id)
            if stored is not None:
                stored.next_escalation_at = due_at
        return page_id
    finally:
        await db.dispose()


async def escalation_lateness(url: str, page_id: str, due_at: datetime, timeout: float) -> float | None:
    """Seconds from the due time to the page's "escalated" event (None: it did not happen in time)."""
    from sqlalchemy import select

    from crisisdesk.kit.db import Database
    from crisisdesk.kit.time import as_utc
    from crisisdesk.oncall.models import PageEvent

    db = Database(url)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            async with db.session() as session:
                at = await session.scalar(
                    select(PageEvent.at)
                    .where(PageEvent.page_id == page_id, PageEvent.kind == "escalated")
                    .order_by(PageEvent.at)
                    .limit(1)
                )
            if at is not None:
                return round((as_utc(at) - due_at).total_seconds(), 3)
            await asyncio.sleep(0.2)
        return None
    finally:
        await db.dispose()


async def counts(url: str) -> dict[str, int]:
    from sqlalchemy import func, select

    from crisisdesk.kit.db import Database
    from crisisdesk.signal.models import Alert, AlertGroup

    db = Database(url)
    try:
        async with db.session() as session:
            return {
                "alerts": int(await session.scalar(select(func.count()).select_from(Alert)) or 0),
                "alert_groups": int(await session.scalar(select(func.count()).select_from(AlertGroup)) or 0),
                "received": int(await session.scalar(select(func.sum(Alert.received))) or 0),
            }
    finally:
        await db.dispose()


def start_process(tmp: Path, name: str, command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    with (tmp / f"{name}.log").open("wb") as out:
        # Its own session, so stopping it reaches every worker it forked and nothing else.
        return subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT, start_new_session=True
        )


def log_tail(tmp: Path, name: str, lines: int = 30) -> str:
    with contextlib.suppress(OSError):
        return "\n".join((tmp / f"{name}.log").read_text(errors="replace").splitlines()[-lines:])
    return ""


async def wait_ready(proc: subprocess.Popen[bytes], port: int, tmp: Path, name: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{log_tail(tmp, name)}")
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.get(f"http://{HOST}:{port}/api/v2/status.json") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{name} was not ready within {timeout:.0f}s:\n{log_tail(tmp, name)}")


async def measure_crisisdesk(
    backend: str,
    url: str,
    work: Workload,
    events: Workload,
    profile: Profile,
    tmp: Path,
    smtp_port: int,
    notes: list[str],
) -> dict[str, Any]:
    from crisisdesk.kit import migrate

    await asyncio.to_thread(migrate.upgrade, url)
    prepared = await prepare(url)
    port = free_port()
    base = f"http://{HOST}:{port}"
    env = os.environ | {
        "CRISISDESK_DEMO": "true",
        "CRISISDESK_DATABASE_URL": url,
        "CRISISDESK_BASE_URL": base,
        "CRISISDESK_RUN_WORKERS": "true",
        "CRISISDESK_SMTP_HOST": HOST,
        "CRISISDESK_SMTP_PORT": str(smtp_port),
    }
    name = f"crisisdesk-{backend}"
    workers = SERVER_WORKERS[backend]
    command = [str(BIN / "crisisdesk"), "serve", "--host", HOST, "--port", str(port), "--workers", str(workers)]
    proc = start_process(tmp, name, command, env)
    result: dict[str, Any] = {"backend": backend, "server_workers": workers}
    try:
        await wait_ready(proc, port, tmp, name)
        with RssSampler(proc.pid) as rss:
            hook = f"{base}/hooks/{prepared.hook_token}"
            prime = await drive(
                name,
                "/hooks/{token}",
                hook,
                batches_of(work, work.prime, "webhook"),
                concurrency=profile.concurrency,
                seconds=60,
            )
            if prime.alerts == 0:
                notes.append(f"{backend}: /hooks/{{token}} accepted nothing: {prime.statuses}")
            due_at = datetime.now(UTC) + timedelta(seconds=profile.seconds / 2)
            page_id = await arm_escalation(url, prepared.user_id, due_at, notes)
            result["webhook"] = asdict(
                await drive(
                    name,
                    "/hooks/{token}",
                    hook,
                    batches_of(work, work.measured, "webhook"),
                    concurrency=profile.concurrency,
                    seconds=profile.seconds,
                    pid=proc.pid,
                )
            )
            result["escalation_late_s"] = (
                await escalation_lateness(url, page_id, due_at, timeout=profile.seconds + 10) if page_id else None
            )
            enqueue = f"{base}/v2/enqueue"
            await drive(
                name,
                "/v2/enqueue",
                enqueue,
                events_of(events, events.prime, prepared.routing_key),
                concurrency=profile.event_concurrency,
                seconds=60,
            )
            result["events_v2"] = asdict(
                await drive(
                    name,
                    "/v2/enqueue",
                    enqueue,
                    events_of(events, events.measured, prepared.routing_key),
                    concurrency=profile.event_concurrency,
                    seconds=profile.seconds,
                    pid=proc.pid,
                )
            )
        result["peak_rss_mib"] = rss.peak_mib
        result["server_processes"] = rss.processes
        with contextlib.suppress(Exception):
            result["stored"] = await counts(url)
    finally:
        stop_group(proc)
    return result


# ---------------------------------------------------------------- report


def targets(result: dict[str, Any]) -> dict[str, Any]:
    am_rate = (result.get("alertmanager") or {}).get("api_v2_alerts", {}).get("alerts_per_s")
    checks: dict[str, Any] = {}
    for run in result["runs"]:
        backend = run["backend"]
        for endpoint in ("webhook", "events_v2"):
            load = run.get(endpoint)
            if not load:
                continue
            rate = load["alerts_per_s"]
            entry: dict[str, Any] = {
                "alerts_per_s": rate,
                "p99_ms": load["latency_p99_ms"],
                "p99_met": load["latency_p99_ms"] < TARGET_P99_MS and load["alerts"] > 0,
                "rate_met": rate >= TARGET_ALERTS_PER_S,
            }
            if am_rate:
                entry["ratio_to_alertmanager"] = round(rate / am_rate, 3)
                entry["ratio_met"] = rate / am_rate >= TARGET_RATIO
            checks[f"{backend}.{endpoint}"] = entry
        late = run.get("escalation_late_s")
        checks[f"{backend}.escalation"] = {
            "late_s": late,
            "met": late is not None and abs(late) <= TARGET_ESCALATION_S,
        }
    return checks


def print_table(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(120, shutil.get_terminal_size().columns))
    table = Table(title=f"Alert ingestion ({result['profile']}; {result['machine']['cpus']} CPUs)")
    for column in ("target", "endpoint", "alerts/s", "req/s", "p50 ms", "p99 ms", "failed", "vs AM", "CPU µs/alert"):
        table.add_column(column, justify="left" if column in ("target", "endpoint") else "right")
    am = (result.get("alertmanager") or {}).get("api_v2_alerts")
    am_rate = am["alerts_per_s"] if am else None
    rows = []
    if am:
        rows.append(("alertmanager", "/api/v2/alerts", am))
    for run in result["runs"]:
        for endpoint, path in (("webhook", "/hooks/{token}"), ("events_v2", "/v2/enqueue")):
            if run.get(endpoint):
                rows.append((f"crisisdesk {run['backend']}", path, run[endpoint]))
    for target, path, load in rows:
        ratio = f"{load['alerts_per_s'] / am_rate:.2f}" if am_rate and not target.startswith("alertmanager") else ""
        table.add_row(
            target,
            path,
            f"{load['alerts_per_s']:,.0f}",
            f"{load['requests_per_s']:,.0f}",
            f"{load['latency_p50_ms']:.1f}",
            f"{load['latency_p99_ms']:.1f}",
            str(load["failed"]),
            ratio,
            "" if load.get("server_cpu_us_per_alert") is None else f"{load['server_cpu_us_per_alert']:.0f}",
        )
    console.print(table)
    for run in result["runs"]:
        late = run.get("escalation_late_s")
        console.print(
            f"{run['backend']}: escalation {'not measured' if late is None else f'{late:+.2f} s from due'}; "
            f"peak RSS {run.get('peak_rss_mib', 0):.0f} MiB over {run.get('server_processes', 0)} processes; "
            f"stored {run.get('stored', {})}"
        )
    for note in result["notes"]:
        console.print(f"[yellow]note:[/] {note}")


async def run(args: argparse.Namespace, tmp: Path, notes: list[str]) -> dict[str, Any]:
    from statuspage import create_postgres_database, drop_postgres_database

    profile = QUICK if args.quick else FULL
    if args.concurrency:
        profile = replace(profile, concurrency=args.concurrency)
    work = Workload(profile.groups, profile.batches)
    events = Workload(profile.event_groups, profile.batches, seed=5)
    result: dict[str, Any] = {
        "profile": "quick" if args.quick else "full",
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "idle_percent_before": idle_percent(0.5),
        },
        "workload": {
            "batch": BATCH,
            "new_per_batch": NEW_PER_BATCH,
            "groups": len(work.groups),
            "prime_alerts": BATCH * len(work.prime),
            "measured_batches": len(work.measured),
            "distinct_alerts": len(work.alerts),
            "event_groups": len(events.groups),
            "event_prime_alerts": BATCH * len(events.prime),
            "concurrency": profile.concurrency,
            "event_concurrency": profile.event_concurrency,
            "seconds_per_load": profile.seconds,
        },
        "runs": [],
        "notes": notes,
    }
    result["alertmanager"] = await measure_alertmanager(work, profile, tmp, notes)
    smtp_port = free_port()
    smtp = start_process(
        tmp,
        "smtp-sink",
        [sys.executable, str(ROOT / "bench" / "sendtools.py"), "smtp", "--port", str(smtp_port)],
        dict(os.environ),
    )
    try:
        result["runs"].append(
            await measure_crisisdesk(
                "sqlite", f"sqlite+aiosqlite:///{tmp / 'ingest.db'}", work, events, profile, tmp, smtp_port, notes
            )
        )
        if args.postgres:
            url, name = await create_postgres_database(args.postgres)
            try:
                result["runs"].append(
                    await measure_crisisdesk("postgresql", url, work, events, profile, tmp, smtp_port, notes)
                )
            finally:
                await drop_postgres_database(args.postgres, name)
        else:
            notes.append("PostgreSQL not measured: pass --postgres URL")
    finally:
        stop_group(smtp)
    result["targets"] = targets(result)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="4 s per load, under a minute")
    parser.add_argument(
        "--postgres",
        metavar="URL",
        help="also run on a new database on this PostgreSQL server (postgresql+asyncpg://user@host/db; "
        "the database is created next to db and dropped at the end)",
    )
    parser.add_argument(
        "--concurrency", type=int, help="connections each load keeps busy (default: 8 with --quick and without)"
    )
    parser.add_argument("--output", type=Path, help="default bench/results/ingest.json")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (databases, logs)")
    args = parser.parse_args()
    from statuspage import raise_open_files

    raise_open_files()
    output = args.output or ROOT / "bench" / "results" / "ingest.json"
    notes: list[str] = []
    started = time.monotonic()
    with workspace(args.keep, prefix="crisisdesk-ingest-") as tmp:
        result = asyncio.run(run(args, tmp, notes))
        if args.keep:
            result["workspace"] = str(tmp)
    result["wall_s"] = round(time.monotonic() - started, 1)
    print_table(result)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
