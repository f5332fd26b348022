"""A real Prometheus Alertmanager sends its webhook to a real crisisdesk server.

crisisdesk runs as ``crisisdesk serve`` (granian, background workers on) on a fresh database
with an Alertmanager integration, a grouping rule by alertname and service (as Alertmanager's
route groups), and a routing rule that declares an incident for ``service="identity"`` and marks
the Identity component as a major outage. Alertmanager (``$CRISISDESK_TEST_ALERTMANAGER`` or the
Debian package's binary) is started on loopback with one webhook receiver pointing at the
integration's URL. The test posts three alerts to Alertmanager's ``POST /api/v2/alerts`` (two of
one group, one of another), waits until crisisdesk holds two groups and an incident, then posts
the same alerts again, ended, and waits until crisisdesk has resolved every alert and both groups
because Alertmanager said so. A second test points Alertmanager's own PagerDuty receiver
(``pagerduty_configs`` with ``url`` and ``routing_key``, as README.md shows) at ``/v2/enqueue``:
Alertmanager sends one Events v2 event per group, triggered and then resolved. Every wait is
bounded.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
from sqlalchemy import func, select

from crisisdesk.catalog.models import Component
from crisisdesk.incident.models import Incident
from crisisdesk.kit.db import Database
from crisisdesk.signal.models import (
    Alert,
    AlertGroup,
    AlertStatus,
    GroupingRule,
    Integration,
    RoutingRule,
    RuleAction,
    SourceKind,
)
from tests.fixtures.alertmanager import (
    alert,
    alertmanager_binary,
    free_port,
    resolved,
    running_alertmanager,
    start_alertmanager,
    stop_alertmanager,
)
from tests.fixtures.databases import BACKENDS, own_database

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        alertmanager_binary() is None,
        reason="no Alertmanager: set CRISISDESK_TEST_ALERTMANAGER or install prometheus-alertmanager",
    ),
]

T = TypeVar("T")
# Alertmanager waits group_wait (1 s) before its first notification and group_interval (1 s)
# between a group's notifications; crisisdesk commits each webhook before answering it.
SEEN_WITHIN = 15.0


@pytest.fixture(params=BACKENDS)
async def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A migrated database of its own: a SQLite file, or a new PostgreSQL database dropped after."""
    async with own_database(request.param, tmp_path, "am") as url:
        yield url


@dataclass
class Setup:
    token: str
    integration_id: str
    component_id: str


async def configure(db: Database) -> Setup:
    """What an admin sets up: the integration, a grouping rule and an auto-declaring routing rule."""
    async with db.session() as session:
        component = Component(name="Identity")
        integration = Integration(name="Prometheus", kind=SourceKind.alertmanager, token=secrets.token_urlsafe(24))
        session.add_all([component, integration])
        await session.flush()
        session.add(
            GroupingRule(
                name="As Alertmanager groups",
                position=0,
                integration_id=integration.id,
                by=["alertname", "service"],
                window_minutes=60,
            )
        )
        session.add(
            RoutingRule(
                name="Identity is down",
                position=0,
                integration_id=integration.id,
                matchers={"service": "identity"},
                component_ids=[component.id],
                component_status="major_outage",
                severity="SEV2",
                action=RuleAction.declare,
            )
        )
        return Setup(integration.token, integration.id, component.id)


@contextmanager
def crisisdesk_server(url: str, port: int, logs: Path) -> Iterator[str]:
    """``crisisdesk serve`` on a free loopback port, its workers on; stopped (its group) on exit."""
    base = f"http://127.0.0.1:{port}"
    env = os.environ | {
        "CRISISDESK_DEMO": "true",
        "CRISISDESK_DATABASE_URL": url,
        "CRISISDESK_BASE_URL": base,
        "CRISISDESK_RUN_WORKERS": "true",
    }
    log_path = logs / "server.log"
    command = [str(Path(sys.executable).parent / "crisisdesk"), "serve", "--port", str(port), "--workers", "1"]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            with suppress(httpx.HTTPError):
                if httpx.get(base + "/api/v2/status.json", timeout=1).status_code == 200:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("server did not start:\n" + log_path.read_text())
            time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


async def eventually(probe: Callable[[], Awaitable[T | None]], what: str, timeout: float = SEEN_WITHIN) -> T:
    """Poll ``probe`` until it returns something, at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = await probe()
        if last is not None:
            return last
        await asyncio.sleep(0.2)
    raise AssertionError(f"not seen within {timeout:.0f} s: {what}")


async def test_alertmanager_groups_declare_and_resolve(fresh_url: str, tmp_path: Path) -> None:
    db = Database(fresh_url)
    try:
        setup = await configure(db)
        port = free_port()
        identity = [
            alert("HighErrorRate", service="identity", instance="idp-1:9100", severity="critical"),
            alert("HighErrorRate", service="identity", instance="idp-2:9100", severity="critical"),
        ]
        billing = [alert("DiskWillFillIn4Hours", service="billing", instance="db-1:9100", severity="warning")]
        with (
            crisisdesk_server(fresh_url, port, tmp_path) as base,
            running_alertmanager(tmp_path / "am", f"{base}/hooks/{setup.token}") as manager,
        ):
            await asyncio.to_thread(manager.post_alerts, identity + billing)

            async def grouped() -> list[AlertGroup] | None:
                async with db.session() as session:
                    groups = list(
                        await session.scalars(
                            select(AlertGroup).where(AlertGroup.integration_id == setup.integration_id)
                        )
                    )
                    counts = sorted(g.alert_count for g in groups)
                    linked = [g for g in groups if g.incident_id]
                    return groups if counts == [1, 2] and linked else None

            groups = await eventually(grouped, "two groups (2 + 1 alerts) and an incident for identity")
            identity_group = next(g for g in groups if g.alert_count == 2)
            billing_group = next(g for g in groups if g.alert_count == 1)
            assert identity_group.open_count == 2 and identity_group.status == AlertStatus.firing
            assert billing_group.incident_id is None, "only the identity rule declares"
            async with db.session() as session:
                alerts = list(await session.scalars(select(Alert).where(Alert.integration_id == setup.integration_id)))
                incident = await session.get(Incident, identity_group.incident_id)
                component = await session.get(Component, setup.component_id)
            assert len(alerts) == 3, "one alert per fingerprint"
            assert {a.group_id for a in alerts if a.labels.get("service") == "identity"} == {identity_group.id}
            assert all(a.status == AlertStatus.firing and a.open_key == a.dedup_key for a in alerts)
            assert incident is not None and incident.severity == "SEV2"
            assert component is not None and component.status == "major_outage"

            # Alertmanager learns the alerts ended and sends them as resolved.
            await asyncio.to_thread(manager.post_alerts, resolved(identity + billing))

            async def all_resolved() -> list[Alert] | None:
                async with db.session() as session:
                    rows = list(
                        await session.scalars(select(Alert).where(Alert.integration_id == setup.integration_id))
                    )
                    groups = list(
                        await session.scalars(
                            select(AlertGroup).where(AlertGroup.integration_id == setup.integration_id)
                        )
                    )
                done = all(a.status == AlertStatus.resolved for a in rows) and all(
                    g.status == AlertStatus.resolved for g in groups
                )
                return rows if done else None

            rows = await eventually(all_resolved, "every alert and both groups resolved")
        assert len(rows) == 3, "the resolved notifications matched the open alerts, none was added"
        assert all(a.open_key is None and a.resolved_at is not None for a in rows)
        async with db.session() as session:
            groups_after = list(
                await session.scalars(select(AlertGroup).where(AlertGroup.integration_id == setup.integration_id))
            )
        assert sorted(g.open_count for g in groups_after) == [0, 0]
        assert all(g.resolved_at is not None for g in groups_after)
    finally:
        await db.dispose()


def pagerduty_config(url: str, routing_key: str) -> str:
    """alertmanager.yml with README's Events v2 receiver: Alertmanager's own PagerDuty integration."""
    return "\n".join(
        [
            "route:",
            "  receiver: crisisdesk-events",
            "  group_by: ['alertname', 'service']",
            "  group_wait: 1s",
            "  group_interval: 1s",
            "  repeat_interval: 1h",
            "receivers:",
            "  - name: crisisdesk-events",
            "    pagerduty_configs:",
            f"      - url: {url}",
            f"        routing_key: {routing_key}",
            "        send_resolved: true",
            "",
        ]
    )


async def test_alertmanager_pagerduty_receiver_to_events_v2(fresh_url: str, tmp_path: Path) -> None:
    db = Database(fresh_url)
    try:
        async with db.session() as session:
            integration = Integration(
                name="Alertmanager via Events v2", kind=SourceKind.events_v2, token=secrets.token_hex(16)
            )
            session.add(integration)
            await session.flush()
            integration_id, routing_key = integration.id, integration.token
        port = free_port()
        firing = [
            alert("HighErrorRate", service="identity", instance="idp-1:9100", severity="critical"),
            alert("HighErrorRate", service="identity", instance="idp-2:9100", severity="critical"),
        ]
        with crisisdesk_server(fresh_url, port, tmp_path) as base:
            manager = await asyncio.to_thread(
                start_alertmanager, tmp_path / "am", pagerduty_config(f"{base}/v2/enqueue", routing_key)
            )
            try:
                await asyncio.to_thread(manager.post_alerts, firing)

                async def opened() -> list[Alert] | None:
                    async with db.session() as session:
                        rows = list(await session.scalars(select(Alert).where(Alert.integration_id == integration_id)))
                    return rows if rows else None

                rows = await eventually(opened, "the group's Events v2 trigger stored as an alert")
                assert len(rows) == 1, "Alertmanager sends one event per group: one alert on its dedup_key"
                assert rows[0].status == AlertStatus.firing and rows[0].summary

                await asyncio.to_thread(manager.post_alerts, resolved(firing))

                async def closed() -> Alert | None:
                    async with db.session() as session:
                        row = await session.scalar(select(Alert).where(Alert.integration_id == integration_id))
                    return row if row is not None and row.status == AlertStatus.resolved else None

                done = await eventually(closed, "the Events v2 resolve closing the alert")
            finally:
                await asyncio.to_thread(stop_alertmanager, manager)
        assert done.dedup_key == rows[0].dedup_key and done.open_key is None
        async with db.session() as session:
            count = await session.scalar(
                select(func.count()).select_from(Alert).where(Alert.integration_id == integration_id)
            )
        assert count == 1, "the resolve closed the open alert instead of opening another"
    finally:
        await db.dispose()
