"""ingest(): dedup among open alerts, resolve and re-open, grouping windows, routing, declaring."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from crisisdesk.catalog.models import Component
from crisisdesk.incident.models import Incident, IncidentUpdate, TimelineEvent
from crisisdesk.kit.db import Database
from crisisdesk.kit.time import utcnow
from crisisdesk.oncall.models import Page, PageStatus
from crisisdesk.signal import ingest as ingestion
from crisisdesk.signal import rules as rulebook
from crisisdesk.signal.ingest import AlertIn, ingest
from crisisdesk.signal.models import (
    Alert,
    AlertGroup,
    AlertSeverity,
    AlertStatus,
    GroupingRule,
    Integration,
    RoutingRule,
    RuleAction,
    SourceKind,
)
from tests.fixtures.auth import make_actor
from tests.fixtures.incident import make_component
from tests.fixtures.paging import level, make_policy


@pytest.fixture(autouse=True)
def _fresh_rules() -> None:
    rulebook.invalidate()


async def _integration(db: Database, kind: SourceKind = SourceKind.events_v2, **kw: object) -> Integration:
    async with db.session() as s:
        integration = Integration(name=f"{kind} source", kind=kind, token=f"tok-{kind}-{utcnow().timestamp()}", **kw)
        s.add(integration)
    return integration


async def _ingest(db: Database, integration: Integration, *alerts: AlertIn, **kw: object) -> ingestion.IngestResult:
    async with db.session() as s:
        return await ingest(s, integration, list(alerts), **kw)  # type: ignore[arg-type]


async def _alerts(db: Database) -> list[Alert]:
    async with db.sessionmaker() as s:
        return list(await s.scalars(select(Alert).order_by(Alert.id)))


async def _groups(db: Database) -> list[AlertGroup]:
    async with db.sessionmaker() as s:
        return list(await s.scalars(select(AlertGroup).order_by(AlertGroup.opened_at, AlertGroup.id)))


def trigger(key: str, summary: str = "Login errors above 5%", **kw: object) -> AlertIn:
    return AlertIn(dedup_key=key, action="trigger", summary=summary, **kw)  # type: ignore[arg-type]


async def test_a_repeat_joins_the_open_alert_and_counts(db: Database) -> None:
    source = await _integration(db)
    first = await _ingest(db, source, trigger("db-1", labels={"team": "identity"}))
    again = await _ingest(db, source, trigger("db-1", labels={"team": "identity"}))
    assert (first.created, again.created, again.repeated) == (1, 0, 1)
    [alert] = await _alerts(db)
    assert alert.received == 2 and alert.status == AlertStatus.firing and alert.open_key == "db-1"
    assert alert.last_seen_at >= alert.first_seen_at
    [group] = await _groups(db)
    assert (group.alert_count, group.open_count) == (1, 1)


async def test_a_repeat_takes_the_new_summary_severity_and_labels(db: Database) -> None:
    source = await _integration(db)
    await _ingest(db, source, trigger("db-1", labels={"a": "1"}))
    await _ingest(
        db, source, trigger("db-1", "Login errors above 20%", severity=AlertSeverity.critical, labels={"a": "2"})
    )
    [alert] = await _alerts(db)
    assert (alert.summary, alert.severity, alert.labels, alert.received) == (
        "Login errors above 20%",
        "critical",
        {"a": "2"},
        2,
    )


async def test_resolve_closes_and_a_later_trigger_opens_a_new_alert(db: Database) -> None:
    source = await _integration(db)
    await _ingest(db, source, trigger("k"))
    resolved = await _ingest(db, source, AlertIn("k", "resolve"))
    assert resolved.resolved == 1
    [alert] = await _alerts(db)
    assert alert.status == AlertStatus.resolved and alert.open_key is None
    assert alert.resolved_at is not None and alert.ends_at is not None
    [group] = await _groups(db)
    assert group.status == AlertStatus.resolved and group.open_count == 0 and group.resolved_at is not None

    again = await _ingest(db, source, trigger("k"))
    assert again.created == 1
    first, second = await _alerts(db)
    assert (first.status, second.status, second.open_key, second.received) == ("resolved", "firing", "k", 1)
    groups = await _groups(db)
    assert len(groups) == 2 and groups[1].status == AlertStatus.firing, "a resolved group takes no new alert"


async def test_acknowledge_and_resolve_of_unknown_keys_are_ignored(db: Database) -> None:
    source = await _integration(db)
    result = await _ingest(db, source, AlertIn("nope", "resolve"), AlertIn("nada", "acknowledge"))
    assert (result.accepted, result.ignored, result.created) == (2, 2, 0)
    assert await _alerts(db) == []


async def test_acknowledge_keeps_the_alert_open(db: Database) -> None:
    source = await _integration(db)
    await _ingest(db, source, trigger("k"))
    result = await _ingest(db, source, AlertIn("k", "acknowledge"))
    assert result.acknowledged == 1
    [alert] = await _alerts(db)
    assert alert.status == AlertStatus.acknowledged and alert.acknowledged_at is not None and alert.open_key == "k"
    [group] = await _groups(db)
    assert group.status == AlertStatus.acknowledged
    repeat = await _ingest(db, source, trigger("k"))
    assert repeat.repeated == 1
    [alert] = await _alerts(db)
    assert alert.status == AlertStatus.acknowledged and alert.received == 2


async def test_one_batch_with_trigger_repeat_and_resolve_of_one_key(db: Database) -> None:
    source = await _integration(db)
    result = await _ingest(db, source, trigger("k"), trigger("k"), AlertIn("k", "resolve"), trigger("k"))
    assert (result.created, result.repeated, result.resolved) == (2, 1, 1)
    first, second = await _alerts(db)
    assert (first.status, first.received, first.open_key) == ("resolved", 2, None)
    assert (second.status, second.open_key) == ("firing", "k")


async def test_same_key_on_two_integrations_are_two_alerts(db: Database) -> None:
    one, two = await _integration(db), await _integration(db)
    await _ingest(db, one, trigger("k"))
    await _ingest(db, two, trigger("k"))
    assert len(await _alerts(db)) == 2


async def test_the_source_group_hint_groups_by_default(db: Database) -> None:
    source = await _integration(db, SourceKind.alertmanager)
    await _ingest(
        db, source, trigger("a", group_hint='{}:{alertname="Login"}'), trigger("b", group_hint='{}:{alertname="Login"}')
    )
    await _ingest(db, source, trigger("c", group_hint="other"), trigger("d"))
    groups = await _groups(db)
    assert sorted(g.alert_count for g in groups) == [1, 1, 2]


async def test_grouping_rule_by_label_within_its_window(db: Database) -> None:
    source = await _integration(db)
    async with db.session() as s:
        s.add(GroupingRule(name="by team", position=1, matchers={"env": "prod"}, by=["team"], window_minutes=10))
    now = utcnow()
    await _ingest(db, source, trigger("a", labels={"env": "prod", "team": "id"}), now=now)
    await _ingest(db, source, trigger("b", labels={"env": "prod", "team": "id"}), now=now + timedelta(minutes=9))
    await _ingest(db, source, trigger("c", labels={"env": "prod", "team": "db"}), now=now + timedelta(minutes=9))
    await _ingest(db, source, trigger("d", labels={"env": "prod", "team": "id"}), now=now + timedelta(minutes=25))
    await _ingest(db, source, trigger("e", labels={"env": "dev", "team": "id"}), now=now + timedelta(minutes=25))
    groups = await _groups(db)
    counts = {(g.grouping_rule_id is not None, g.alert_count) for g in groups}
    assert len(groups) == 4, [(g.title, g.alert_count) for g in groups]
    assert (True, 2) in counts and (False, 1) in counts
    alerts = {a.dedup_key: a.group_id for a in await _alerts(db)}
    assert alerts["a"] == alerts["b"] != alerts["c"]
    assert alerts["d"] not in (alerts["a"], alerts["c"]), "after the window a new group opens"


async def test_routing_first_match_by_position_and_propose(db: Database) -> None:
    source = await _integration(db)
    async with db.session() as s:
        web = await make_component(s, "Sign-in")
        s.add_all(
            [
                RoutingRule(name="disabled", position=0, matchers={}, enabled=False, severity="SEV1"),
                RoutingRule(
                    name="identity",
                    position=1,
                    matchers={"team": "identity", "summary": {"regex": "Login.*"}},
                    component_ids=[web.id],
                    severity="SEV2",
                    action=RuleAction.propose,
                ),
                RoutingRule(name="catch-all", position=2, matchers={}, severity="SEV4"),
            ]
        )
    await _ingest(db, source, trigger("a", labels={"team": "identity"}))
    await _ingest(db, source, trigger("b", "Disk full", labels={"team": "identity"}))
    await _ingest(db, source, trigger("c", "Not a Login error", labels={"team": "identity"}))
    by_title = {g.title: g for g in await _groups(db)}
    login = by_title["Login errors above 5%"]
    assert (login.suggested_severity, login.component_ids, login.proposed) == ("SEV2", [web.id], True)
    assert by_title["Disk full"].suggested_severity == "SEV4" and not by_title["Disk full"].proposed
    assert by_title["Not a Login error"].suggested_severity == "SEV4", "regexes match the whole value"


async def test_declare_rule_opens_an_incident_sets_components_and_writes_the_timeline(db: Database) -> None:
    source = await _integration(db)
    async with db.session() as s:
        web = await make_component(s, "Sign-in")
        api = await make_component(s, "API")
        s.add(
            RoutingRule(
                name="page identity",
                position=1,
                matchers={"team": "identity"},
                component_ids=[web.id, api.id, "gone"],
                component_status="partial_outage",
                severity="SEV2",
                action=RuleAction.declare,
            )
        )
    first = await _ingest(db, source, trigger("a", labels={"team": "identity"}, group_hint="g"))
    assert len(first.incidents_declared) == 1
    await _ingest(db, source, trigger("a", labels={"team": "identity"}, group_hint="g"))
    await _ingest(
        db,
        source,
        trigger("b", labels={"team": "identity"}, group_hint="g"),
        trigger("c", labels={"team": "identity"}, group_hint="g"),
    )
    await _ingest(db, source, AlertIn("a", "resolve"), AlertIn("b", "resolve"))
    await _ingest(db, source, AlertIn("c", "resolve"))

    async with db.sessionmaker() as s:
        incident = await s.scalar(select(Incident))
        assert incident is not None
        assert (incident.severity, incident.created_by_id, incident.status) == ("SEV2", None, "investigating")
        # Public words only: the alert's own text ("Login errors above 5%") stays internal.
        assert incident.name == "Issue affecting Sign-in, API"
        statuses = {c.name: c.status for c in await s.scalars(select(Component))}
        assert statuses == {"Sign-in": "partial_outage", "API": "partial_outage"}
        update = await s.scalar(select(IncidentUpdate).where(IncidentUpdate.incident_id == incident.id))
        assert update is not None
        assert update.body == "We are investigating an issue affecting Sign-in, API."
        assert update.deliver_notifications is False
        events = list(
            await s.scalars(
                select(TimelineEvent).where(TimelineEvent.incident_id == incident.id).order_by(TimelineEvent.id)
            )
        )
        group = await s.scalar(select(AlertGroup))
        assert group is not None and group.incident_id == incident.id and group.status == AlertStatus.resolved
    kinds = [e.kind for e in events]
    assert "declared" in kinds and "alert_group_linked" in kinds
    declared = next(e for e in events if e.kind == "declared")
    assert declared.actor_id is None and "from alert group" in declared.summary
    joined = [e for e in events if e.kind == "alerts_joined"]
    assert [e.summary for e in joined] == ["2 new alerts joined alert group “Login errors above 5%”"], (
        "one event per batch, none for a repeat"
    )
    assert [e.summary for e in events if e.kind == "alert_group_resolved"] == [
        "Alert group “Login errors above 5%”: all alerts resolved"
    ]
    assert incident.resolved_at is None, "the incident stays open for people to resolve"


async def test_builtin_integration_is_made_once(db: Database) -> None:
    async with db.session() as s:
        one = await ingestion.builtin_integration(s, SourceKind.check)
    async with db.session() as s:
        two = await ingestion.builtin_integration(s, SourceKind.check)
        vendor = await ingestion.builtin_integration(s, SourceKind.vendor)
    assert one.id == two.id != vendor.id and one.kind == SourceKind.check


async def test_a_routed_group_pages_its_policy_and_the_source_acknowledges_and_resolves(db: Database) -> None:
    source = await _integration(db)
    user, _ = await make_actor(db)
    async with db.session() as s:
        policy = await make_policy(s, level(("user", user.id)))
        s.add(RoutingRule(name="db pages", position=1, matchers={"source": "db-1"}, escalation_policy_id=policy.id))
        s.add(RoutingRule(name="no pages", position=2, matchers={}))
    await _ingest(db, source, trigger("k", source="db-1"))
    await _ingest(db, source, trigger("k", source="db-1"))
    async with db.sessionmaker() as s:
        [page] = list(await s.scalars(select(Page)))
        group = await s.scalar(select(AlertGroup))
    assert group is not None and page.alert_group_id == group.id and page.status == PageStatus.triggered
    assert page.escalation_policy_id == policy.id and page.title == "Login errors above 5%"

    await _ingest(db, source, AlertIn("k", "acknowledge"))
    async with db.sessionmaker() as s:
        assert (await s.scalar(select(Page.status))) == PageStatus.acknowledged
    await _ingest(db, source, AlertIn("k", "resolve"))
    async with db.sessionmaker() as s:
        assert (await s.scalar(select(Page.status))) == PageStatus.resolved

    other = await _ingest(db, source, trigger("other", source="web-1"))
    assert other.created == 1, "a rule without a policy stores the alert and pages nobody"
    async with db.sessionmaker() as s:
        assert len(list(await s.scalars(select(Page)))) == 1
