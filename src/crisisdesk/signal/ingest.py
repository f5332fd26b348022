"""Alert ingestion: dedup on the source's key, grouping, routing, paging and automatic declaration.

Every source (the webhooks, Events v2, checks, vendor watch) hands :func:`ingest` a batch of
:class:`AlertIn`. An alert is the same alert while it is open: a repeat of its key bumps
``received`` and ``last_seen_at`` (and takes a new summary, severity or labels); a resolve closes
it, and a later trigger with the same key opens a new one. Acknowledging and resolving a key that
has no open alert is accepted and ignored.

The batch costs a fixed number of statements, whatever its size: one SELECT for the open alerts
of its keys, one UPDATE for the pure repeats, one executemany for the alerts that changed, one
INSERT for the new ones, and a few statements for the groups they touch.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, cast

from sqlalchemy import ColumnElement, Integer, String, Table, any_, bindparam, func, select, true, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from crisisdesk.catalog.models import Component
from crisisdesk.incident import service as incidents
from crisisdesk.incident.models import Incident
from crisisdesk.kit.db import dialect_insert
from crisisdesk.kit.ids import new_id
from crisisdesk.kit.time import utcnow
from crisisdesk.oncall import paging
from crisisdesk.oncall.models import EscalationPolicy
from crisisdesk.signal import rules as rulebook
from crisisdesk.signal.models import (
    Alert,
    AlertGroup,
    AlertSeverity,
    AlertStatus,
    Integration,
    RuleAction,
    SourceKind,
)

log = logging.getLogger(__name__)

MAX_KEY = 255
MAX_SUMMARY = 1024
MAX_SOURCE = 255
MAX_LINK = 2048
OPEN_STATUSES = (AlertStatus.firing.value, AlertStatus.acknowledged.value)
LABEL_FINGERPRINTS = frozenset({SourceKind.alertmanager, SourceKind.grafana})
# Repeats move their group's last_alert_at forward at most this often (one cheap UPDATE).
GROUP_BUMP = timedelta(seconds=30)
# An integration's last_received_at is written at most this often per process.
RECEIVED_BUMP_SECONDS = 5.0
ALERT = cast(Table, Alert.__table__)
GROUP = cast(Table, AlertGroup.__table__)
INTEGRATION = cast(Table, Integration.__table__)

Action = Literal["trigger", "acknowledge", "resolve"]


def _open_alerts(session: AsyncSession, columns: list[Any], integration_id: str, keys: list[str]) -> Any:
    """The open alerts of these keys.

    On PostgreSQL one probe of the unique index per key (a lateral join over the keys): a
    plain ``open_key = ANY(...)`` is planned once per connection and, on a table whose statistics
    are stale (a new installation's first alert storm), that plan scans every alert of the
    integration.
    """
    if session.get_bind().dialect.name != "postgresql":
        return select(*columns).where(ALERT.c.integration_id == integration_id, ALERT.c.open_key.in_(keys))
    wanted = func.unnest(bindparam("keys", keys, type_=ARRAY(String()))).table_valued("key").render_derived("k")
    found = (
        select(*columns)
        .where(ALERT.c.integration_id == integration_id, ALERT.c.open_key == wanted.c.key)
        .lateral("found")
    )
    return select(*found.c).select_from(wanted.join(found, true()))


def _one_of(session: AsyncSession, column: Any, values: Sequence[Any]) -> ColumnElement[bool]:
    """``column IN values``; on PostgreSQL ``column = ANY(:array)``, one statement text whatever
    the number of values, so each connection prepares it once instead of once per list length."""
    if session.get_bind().dialect.name != "postgresql":
        return cast(ColumnElement[bool], column.in_(values))
    item = Integer() if isinstance(column.type, Integer) else String()
    return cast(ColumnElement[bool], column == any_(bindparam(None, list(values), type_=ARRAY(item))))


@dataclass(slots=True)
class AlertIn:
    """One alert, whatever the source, as :func:`ingest` takes it."""

    dedup_key: str  # fingerprint / dedup_key (≤255 chars)
    action: Action
    summary: str = ""
    severity: AlertSeverity = AlertSeverity.error
    source: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    link: str | None = None
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    component_ids: list[str] = field(default_factory=list)  # checks/vendors name components directly
    # The source's own grouping (Alertmanager's groupKey): alerts with the same hint share a
    # group when no grouping rule matches.
    group_hint: str | None = None


@dataclass
class IngestResult:
    """What one batch did."""

    accepted: int = 0  # alerts in the batch
    created: int = 0  # new alerts opened
    repeated: int = 0  # repeats of open alerts
    acknowledged: int = 0
    resolved: int = 0
    ignored: int = 0  # acknowledge/resolve of a key with no open alert
    groups_opened: list[str] = field(default_factory=list)
    incidents_declared: list[str] = field(default_factory=list)
    # What became of each alert, in the order given: created, repeated, acknowledged, resolved
    # or ignored. Requests that shared one call (group commit) take their own counts from it.
    outcomes: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {
            "accepted": self.accepted,
            "created": self.created,
            "repeated": self.repeated,
            "acknowledged": self.acknowledged,
            "resolved": self.resolved,
            "ignored": self.ignored,
        }

    def part(self, start: int, stop: int) -> IngestResult:
        """The counts of alerts ``start:stop`` of the batch (one request's share of a shared call)."""
        share = self.outcomes[start:stop]
        return IngestResult(
            accepted=len(share),
            created=share.count("created"),
            repeated=share.count("repeated"),
            acknowledged=share.count("acknowledged"),
            resolved=share.count("resolved"),
            ignored=share.count("ignored"),
            outcomes=share,
        )


@dataclass(slots=True)
class _Open:
    """An alert that was open before the batch, as the batch leaves it."""

    id: int
    key: str
    status: str
    summary: str
    severity: str
    labels: dict[str, Any] | None  # None: not compared (the key is a hash of the labels)
    group_id: str | None
    received: int = 0
    changed: bool = False
    acknowledged_at: datetime | None = None
    resolved_at: datetime | None = None
    ends_at: datetime | None = None


@dataclass(slots=True)
class _New:
    """An alert the batch opens (it may also resolve it)."""

    alert: AlertIn
    index: int  # the alert's place in the batch (its outcome)
    status: str = AlertStatus.firing.value
    received: int = 1
    acknowledged_at: datetime | None = None
    resolved_at: datetime | None = None
    ends_at: datetime | None = None
    group_id: str | None = None


@dataclass(slots=True)
class _GroupDelta:
    alerts: int = 0  # new alerts joining
    opened: int = 0  # of which still open
    closed: int = 0  # open alerts resolved
    acked: bool = False
    seen: bool = False  # a repeat arrived


async def ingest(
    session: AsyncSession, integration: Integration, alerts: Sequence[AlertIn], *, now: datetime | None = None
) -> IngestResult:
    """Store a batch of alerts from one integration: dedup, group, route, page, declare.

    The caller owns the transaction: the whole batch is stored or none of it.
    """
    now = now or utcnow()
    result = IngestResult(accepted=len(alerts))
    if not alerts:
        return result
    integration_id = integration.id
    keys = list(dict.fromkeys(a.dedup_key for a in alerts))
    state: dict[str, _Open | _New] = {}
    # Alertmanager's and Grafana's fingerprint is a hash of the label set: a repeat's labels
    # cannot differ, so they are neither read back nor compared.
    labelled = integration.kind not in LABEL_FINGERPRINTS
    columns = [ALERT.c.id, ALERT.c.open_key, ALERT.c.status, ALERT.c.summary, ALERT.c.severity, ALERT.c.group_id]
    if labelled:
        columns.append(ALERT.c.labels)
    connection = await session.connection()
    for start in range(0, len(keys), 500):
        rows = await connection.execute(_open_alerts(session, columns, integration_id, keys[start : start + 500]))
        for row in rows:
            labels = (row[6] or {}) if labelled else None
            state[row[1]] = _Open(row[0], row[1], row[2], row[3], row[4], labels, row[5])
    opens: list[_Open] = list(state.values())  # type: ignore[arg-type]
    news: list[_New] = []

    outcomes = result.outcomes
    for index, alert in enumerate(alerts):
        current = state.get(alert.dedup_key)
        if alert.action == "trigger":
            if current is None:
                new = _New(alert, index)
                state[alert.dedup_key] = new
                news.append(new)
                result.created += 1
                outcomes.append("created")
            elif isinstance(current, _Open):
                current.received += 1
                if alert.summary and alert.summary != current.summary:
                    current.summary, current.changed = alert.summary, True
                if alert.severity != current.severity:
                    current.severity, current.changed = alert.severity.value, True
                if current.labels is not None and alert.labels and alert.labels != current.labels:
                    current.labels, current.changed = alert.labels, True
                result.repeated += 1
                outcomes.append("repeated")
            else:
                current.received += 1
                current.alert = alert
                result.repeated += 1
                outcomes.append("repeated")
        elif current is None:
            result.ignored += 1
            outcomes.append("ignored")
        elif alert.action == "acknowledge":
            if current.status == AlertStatus.firing:
                current.status, current.acknowledged_at = AlertStatus.acknowledged.value, now
                if isinstance(current, _Open):
                    current.changed = True
                result.acknowledged += 1
                outcomes.append("acknowledged")
            else:
                result.ignored += 1
                outcomes.append("ignored")
        else:  # resolve
            current.status, current.resolved_at = AlertStatus.resolved.value, now
            current.ends_at = alert.ends_at or now
            if isinstance(current, _Open):
                current.changed = True
            del state[alert.dedup_key]
            result.resolved += 1
            outcomes.append("resolved")

    deltas: dict[str, _GroupDelta] = {}
    await _write_opens(session, opens, now, deltas)
    if news:
        await _write_news(session, integration, news, now, deltas, result)
    await _write_groups(session, deltas, now, result)
    await _bump_received(session, integration_id, now)
    return result


async def _write_opens(
    session: AsyncSession, opens: list[_Open], now: datetime, deltas: dict[str, _GroupDelta]
) -> None:
    """One UPDATE for pure repeats (by how many times each came), one executemany for the rest."""
    repeats: dict[int, list[int]] = {}
    changed: list[dict[str, Any]] = []
    relabelled: list[dict[str, Any]] = []
    for alert in sorted(opens, key=lambda a: a.id):
        if alert.group_id is not None:
            delta = deltas.setdefault(alert.group_id, _GroupDelta())
            if alert.received:
                delta.seen = True
            if alert.status == AlertStatus.resolved:
                delta.closed += 1
            elif alert.acknowledged_at is not None:
                delta.acked = True
        if alert.changed:
            resolved = alert.status == AlertStatus.resolved
            row = {
                "b_id": alert.id,
                "b_status": alert.status,
                "b_open_key": None if resolved else alert.key,
                "b_summary": alert.summary[:MAX_SUMMARY],
                "b_severity": alert.severity,
                "b_received": alert.received,
                "b_ack": alert.acknowledged_at,
                "b_resolved_at": alert.resolved_at,
                "b_ends_at": alert.ends_at,
            }
            if alert.labels is None:
                changed.append(row)
            else:
                relabelled.append(row | {"b_labels": alert.labels})
        elif alert.received:
            repeats.setdefault(alert.received, []).append(alert.id)
    for times, ids in repeats.items():
        await session.execute(
            update(ALERT)
            .where(_one_of(session, ALERT.c.id, ids))
            .values(received=ALERT.c.received + times, last_seen_at=now)
            .execution_options(synchronize_session=False)
        )
    values: dict[str, Any] = {
        "status": bindparam("b_status"),
        "open_key": bindparam("b_open_key"),
        "summary": bindparam("b_summary"),
        "severity": bindparam("b_severity"),
        "received": ALERT.c.received + bindparam("b_received"),
        "last_seen_at": now,
        "acknowledged_at": func.coalesce(ALERT.c.acknowledged_at, bindparam("b_ack", type_=ALERT.c.ends_at.type)),
        "resolved_at": bindparam("b_resolved_at", type_=ALERT.c.resolved_at.type),
        "ends_at": func.coalesce(bindparam("b_ends_at", type_=ALERT.c.ends_at.type), ALERT.c.ends_at),
    }
    for rows, more in ((changed, {}), (relabelled, {"labels": bindparam("b_labels", type_=ALERT.c.labels.type)})):
        if rows:
            statement = update(ALERT).where(ALERT.c.id == bindparam("b_id")).values(**values, **more)
            await session.execute(statement.execution_options(synchronize_session=False), rows)


async def _write_news(
    session: AsyncSession,
    integration: Integration,
    news: list[_New],
    now: datetime,
    deltas: dict[str, _GroupDelta],
    result: IngestResult,
) -> None:
    """Place new alerts in groups (opening the groups they need), then insert them in one statement."""
    rules = await rulebook.load(session)
    placed: dict[str, tuple[str | None, float]] = {}
    first_of: dict[str, AlertIn] = {}
    for new in news:
        rule_id, key, window = rulebook.group_for(rules, new.alert, integration.id)
        placed.setdefault(key, (rule_id, window))
        first_of.setdefault(key, new.alert)
        new.group_id = key  # the key until the group's id is known
    found: dict[str, tuple[str, str | None, datetime]] = {}
    if placed:
        rows = await session.execute(
            select(AlertGroup.group_key, AlertGroup.id, AlertGroup.incident_id, AlertGroup.last_alert_at)
            .where(AlertGroup.group_key.in_(list(placed)), AlertGroup.status.in_(OPEN_STATUSES))
            .order_by(AlertGroup.last_alert_at)
        )
        for key, group_id, incident_id, last in rows:
            if last >= now - timedelta(seconds=placed[key][1]):
                found[key] = (group_id, incident_id, last)
    opened: list[tuple[AlertGroup, rulebook.Route | None]] = []
    group_of: dict[str, str] = {}
    for key, (rule_id, _window) in placed.items():
        if key in found:
            group_of[key] = found[key][0]
            continue
        first = first_of[key]
        route = rulebook.route_for(rules, first, integration.id)
        group = AlertGroup(
            id=new_id(),
            group_key=key,
            title=(first.summary or first.dedup_key)[:MAX_SUMMARY],
            status=AlertStatus.firing.value,
            integration_id=integration.id,
            grouping_rule_id=rule_id,
            routing_rule_id=route.id if route else None,
            component_ids=list(route.component_ids) if route and route.component_ids else list(first.component_ids),
            suggested_severity=route.severity if route else None,
            escalation_policy_id=route.escalation_policy_id if route else None,
            proposed=bool(route and route.action == RuleAction.propose),
            alert_count=0,
            open_count=0,
            opened_at=now,
            last_alert_at=now,
        )
        session.add(group)
        opened.append((group, route))
        group_of[key] = group.id
        result.groups_opened.append(group.id)
    if opened:
        await session.flush()

    rows_in: list[dict[str, Any]] = []
    for new in sorted(news, key=lambda n: n.alert.dedup_key):
        new.group_id = group_of[new.group_id or ""]
        a = new.alert
        resolved = new.status == AlertStatus.resolved
        rows_in.append(
            {
                "integration_id": integration.id,
                "dedup_key": a.dedup_key,
                "open_key": None if resolved else a.dedup_key,
                "status": new.status,
                "summary": (a.summary or a.dedup_key)[:MAX_SUMMARY],
                "severity": a.severity.value,
                "source": a.source[:MAX_SOURCE] if a.source else None,
                "labels": a.labels,
                "annotations": a.annotations,
                "details": a.details,
                "link": a.link[:MAX_LINK] if a.link else None,
                "group_id": new.group_id,
                "starts_at": a.starts_at or now,
                "ends_at": new.ends_at,
                "first_seen_at": now,
                "last_seen_at": now,
                "acknowledged_at": new.acknowledged_at,
                "resolved_at": new.resolved_at,
                "received": new.received,
            }
        )
    insert = dialect_insert(session)
    statement = (
        insert(ALERT)
        .on_conflict_do_nothing(index_elements=["integration_id", "open_key"])
        .returning(ALERT.c.dedup_key, ALERT.c.open_key)
    )
    stored = {(k, o) for k, o in (await session.execute(statement, rows_in)).all()}
    lost: list[tuple[str, int]] = []
    for new, row in zip(sorted(news, key=lambda n: n.alert.dedup_key), rows_in, strict=True):
        if (row["dedup_key"], row["open_key"]) not in stored:
            # Another request opened the same key in between: this one is a repeat of it.
            lost.append((row["dedup_key"], new.received))
            result.outcomes[new.index] = "repeated"
            continue
        delta = deltas.setdefault(new.group_id or "", _GroupDelta())
        delta.alerts += 1
        if new.status != AlertStatus.resolved:
            delta.opened += 1
        if new.status == AlertStatus.acknowledged:
            delta.acked = True
    if lost:
        result.created -= len(lost)
        result.repeated += len(lost)
        by_times: dict[int, list[str]] = {}
        for key, times in lost:  # each counts as often as this batch sent it
            by_times.setdefault(times, []).append(key)
        for times, keys_lost in sorted(by_times.items()):
            await session.execute(
                update(ALERT)
                .where(ALERT.c.integration_id == integration.id, ALERT.c.open_key.in_(sorted(keys_lost)))
                .values(received=ALERT.c.received + times, last_seen_at=now)
            )
    for group, route in opened:
        if group.id not in deltas:  # every alert it was opened for was lost to a race
            await session.delete(group)
            result.groups_opened.remove(group.id)
            continue
        await _route_new_group(session, group, route, result)
    for key, (group_id, incident_id, _last) in found.items():
        joined = deltas.get(group_id)
        if incident_id is not None and joined is not None and joined.alerts:
            incident = await session.get(Incident, incident_id)
            if incident is not None:
                title = await session.scalar(select(AlertGroup.title).where(AlertGroup.id == group_id))
                await incidents.timeline(
                    session,
                    incident,
                    None,
                    "alerts_joined",
                    f"{_alerts(joined.alerts)} joined alert group “{title}”",
                    alert_group_id=group_id,
                    count=joined.alerts,
                )
        del key


async def _write_groups(
    session: AsyncSession, deltas: dict[str, _GroupDelta], now: datetime, result: IngestResult
) -> None:
    """Counts and last_alert_at of every group the batch touched; resolve those with nothing open."""
    counted = [
        {"g_id": gid, "g_alerts": d.alerts, "g_open": d.opened - d.closed}
        for gid, d in sorted(deltas.items())
        if d.alerts or d.closed or d.opened
    ]
    if counted:
        await session.execute(
            update(GROUP)
            .where(GROUP.c.id == bindparam("g_id"))
            .values(
                alert_count=GROUP.c.alert_count + bindparam("g_alerts"),
                open_count=GROUP.c.open_count + bindparam("g_open"),
                last_alert_at=now,
            )
            .execution_options(synchronize_session=False),
            counted,
        )
    seen_only = sorted(gid for gid, d in deltas.items() if d.seen and not d.alerts)
    if seen_only:
        await session.execute(
            update(GROUP)
            .where(GROUP.c.id.in_(seen_only), GROUP.c.last_alert_at < now - GROUP_BUMP)
            .values(last_alert_at=now)
            .execution_options(synchronize_session=False)
        )
    acked = sorted(gid for gid, d in deltas.items() if d.acked)
    if acked:
        await session.execute(
            update(GROUP)
            .where(GROUP.c.id.in_(acked), GROUP.c.status == AlertStatus.firing.value)
            .values(status=AlertStatus.acknowledged.value)
            .execution_options(synchronize_session=False)
        )
        for gid in acked:
            await acknowledge_pages(session, gid)
    closing = sorted(gid for gid, d in deltas.items() if d.closed or (d.alerts and not d.opened))
    if closing:
        done = await session.execute(
            update(GROUP)
            .where(GROUP.c.id.in_(closing), GROUP.c.open_count <= 0, GROUP.c.status != AlertStatus.resolved.value)
            .values(status=AlertStatus.resolved.value, resolved_at=now, open_count=0)
            .returning(GROUP.c.id, GROUP.c.title, GROUP.c.incident_id)
            .execution_options(synchronize_session=False)
        )
        for gid, title, incident_id in done.all():
            await resolve_pages(session, gid)
            if incident_id is not None:
                incident = await session.get(Incident, incident_id)
                if incident is not None:
                    await incidents.timeline(
                        session,
                        incident,
                        None,
                        "alert_group_resolved",
                        f"Alert group “{title}”: all alerts resolved",
                        alert_group_id=gid,
                    )
    if deltas:
        # The ORM copies of groups opened in this batch are stale after the bulk updates.
        for obj in list(session.identity_map.values()):
            if isinstance(obj, AlertGroup) and obj.id in deltas:
                session.expire(obj)


def _alerts(n: int) -> str:
    return "1 new alert" if n == 1 else f"{n} new alerts"


async def _route_new_group(
    session: AsyncSession, group: AlertGroup, route: rulebook.Route | None, result: IngestResult
) -> None:
    """A new group: declare when its rule says so, and page its escalation policy."""
    if route is not None and route.action == RuleAction.declare:
        incident = await declare_from_group(session, group, route)
        group.incident_id = incident.id
        result.incidents_declared.append(incident.id)
    if group.escalation_policy_id:
        await start_page(session, group)


async def declare_from_group(session: AsyncSession, group: AlertGroup, route: rulebook.Route) -> Incident:
    """Declare an incident for a new group as an admin-written rule asks (docs/decisions/0012)."""
    components = list(
        await session.execute(
            select(Component.id, Component.name).where(
                Component.id.in_(list(group.component_ids)), Component.is_group.is_(False)
            )
        )
    )
    by_id = {cid: name for cid, name in components}
    ordered = [cid for cid in group.component_ids if cid in by_id]
    names = ", ".join(by_id[cid] for cid in ordered)
    body = f"We are investigating an issue affecting {names}." if names else "We are investigating an issue."
    severity = route.severity if route.severity in ("SEV1", "SEV2", "SEV3", "SEV4") else "SEV3"
    status = route.component_status or "major_outage"
    declared = await incidents.declare(
        session,
        None,
        # The name is public (status page, feeds): the admin-written words, never the sender's.
        name=(f"Issue affecting {names}" if names else route.name)[: incidents.MAX_NAME].strip() or "Service issue",
        severity=severity,
        body=body,
        components={cid: status for cid in ordered},
        deliver_notifications=False,
        declared_from=group.title,
    )
    incident = declared.incident
    await incidents.timeline(
        session,
        incident,
        None,
        "alert_group_linked",
        f"Alert group “{group.title}” opened and linked (rule “{route.name}”)",
        alert_group_id=group.id,
        routing_rule_id=route.id,
    )
    return incident


async def start_page(session: AsyncSession, group: AlertGroup) -> None:
    """Page the group's escalation policy (skipped, with a warning, if the policy is gone)."""
    policy_id = group.escalation_policy_id
    if policy_id is None or await session.get(EscalationPolicy, policy_id) is None:
        log.warning("alert group %s names escalation policy %s, which does not exist", group.id, policy_id)
        return
    await paging.start_page(
        session,
        escalation_policy_id=policy_id,
        title=group.title[:200],
        alert_group_id=group.id,
        incident_id=group.incident_id,
    )


async def acknowledge_pages(session: AsyncSession, group_id: str) -> None:
    await paging.acknowledge_group(session, group_id, via="alert source")


async def resolve_pages(session: AsyncSession, group_id: str) -> None:
    await paging.resolve_pages(session, alert_group_id=group_id, via="alert source")


_received: dict[str, float] = {}


async def _bump_received(session: AsyncSession, integration_id: str, now: datetime) -> None:
    clock = time.monotonic()
    if _received.get(integration_id, 0.0) > clock:
        return
    _received[integration_id] = clock + RECEIVED_BUMP_SECONDS
    await session.execute(
        update(INTEGRATION)
        .where(INTEGRATION.c.id == integration_id)
        .values(last_received_at=now)
        .execution_options(synchronize_session=False)
    )


BUILTIN_NAMES = {SourceKind.check: "Synthetic checks", SourceKind.vendor: "Vendor watch"}


async def builtin_integration(session: AsyncSession, kind: SourceKind) -> Integration:
    """The integration crisisdesk's own checks or vendor watch raise their alerts through (get or create)."""
    if kind not in BUILTIN_NAMES:
        raise ValueError(f"{kind} is not a built-in source")
    found = await session.scalar(
        select(Integration).where(Integration.kind == kind.value).order_by(Integration.created_at)
    )
    if found is not None:
        return found
    token = f"builtin-{kind.value}"
    insert = dialect_insert(session)
    await session.execute(
        insert(Integration)
        .values(
            id=new_id(),
            name=BUILTIN_NAMES[kind],
            kind=kind.value,
            token=token,
            mapping={},
            rate_limit_per_minute=0,
            enabled=True,
            created_at=utcnow(),
        )
        .on_conflict_do_nothing(index_elements=["token"])
    )
    integration = await session.scalar(select(Integration).where(Integration.token == token))
    assert integration is not None
    return integration
