"""Managing integrations and rules: what is accepted, what is refused (naming the field), who may."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from crisisdesk.auth.models import Role
from crisisdesk.incident.models import TimelineEvent
from crisisdesk.kit.db import Database
from crisisdesk.kit.errors import Conflict, DomainError, Forbidden, InvalidInput
from crisisdesk.oncall.models import EscalationPolicy
from crisisdesk.signal import service
from crisisdesk.signal.models import AlertStatus, GroupingRule, Integration, RoutingRule, SourceKind
from tests.fixtures.alerts import make_group, make_integration
from tests.fixtures.api import count_rows
from tests.fixtures.auth import make_actor
from tests.fixtures.comms import allow_free_text
from tests.fixtures.incident import make_component


async def test_admin_adds_each_kind_with_a_unique_token_and_rotates_it(db: Database) -> None:
    _, admin = await make_actor(db, Role.admin)
    async with db.session() as s:
        made = [
            await service.create_integration(s, admin, name=f"Source {kind}", kind=kind)
            for kind in ("alertmanager", "grafana", "events_v2", "generic")
        ]
    tokens = {i.token for i in made}
    assert len(tokens) == 4 and all(20 <= len(t) <= 64 for t in tokens)
    async with db.session() as s:
        am = await service.get_integration(s, made[0].id)
        old = am.token
        await service.rotate_token(s, admin, am)
        assert am.token != old and am.token not in tokens
    async with db.session() as s:
        assert (await service.get_integration(s, made[0].id)).token != old
        assert service.receiving_url("https://desk.example/", am) == f"https://desk.example/hooks/{am.token}"
        events = await service.get_integration(s, made[2].id)
        assert service.receiving_url("https://desk.example", events) == "https://desk.example/v2/enqueue"
        snippet = service.config_snippet("https://desk.example", am)
        assert "webhook_configs:" in snippet and "send_resolved: true" in snippet and am.token in snippet
        assert events.token in service.config_snippet("https://desk.example", events)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"kind": "check"}, "kind"),  # built in, not creatable
        ({"kind": "vendor"}, "kind"),
        ({"kind": "nagios"}, "kind"),
        ({"name": "  "}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"rate_limit_per_minute": -1}, "rate_limit_per_minute"),
        ({"kind": "generic", "mapping": {"colour": "a.b"}}, "mapping.colour"),  # unknown key
        ({"kind": "generic", "mapping": {"summary": "a..b"}}, "mapping.summary"),  # not a dotted path
        ({"kind": "generic", "mapping": {"summary": 3}}, "mapping.summary"),
        ({"kind": "generic", "mapping": {"resolved_values": "ok"}}, "mapping.resolved_values"),  # not a list
        ({"kind": "alertmanager", "mapping": {"summary": "title"}}, "mapping"),  # only generic maps
    ],
)
async def test_bad_integrations_are_refused_by_field(db: Database, fields: dict[str, Any], field: str) -> None:
    _, admin = await make_actor(db, Role.admin)
    with pytest.raises(InvalidInput) as refused:
        async with db.session() as s:
            await service.create_integration(s, admin, **{"name": "Source", "kind": "generic", **fields})
    assert refused.value.field == field
    assert await count_rows(db, Integration) == 0


async def test_generic_mapping_is_stored_as_plain_dotted_paths(db: Database) -> None:
    _, admin = await make_actor(db, Role.admin)
    async with db.session() as s:
        made = await service.create_integration(
            s,
            admin,
            name="Datadog",
            kind="generic",
            mapping={"dedup_key": "$.data.id", "summary": "title", "resolved_values": ["ok", " resolved "]},
        )
    assert made.mapping == {"dedup_key": "data.id", "summary": "title", "resolved_values": ["ok", "resolved"]}


async def test_responders_read_but_cannot_manage_integrations_or_rules(db: Database) -> None:
    _, admin = await make_actor(db, Role.admin)
    _, responder = await make_actor(db, Role.responder)
    async with db.session() as s:
        made = await service.create_integration(s, admin, name="AM", kind="alertmanager")
    attempts = [
        lambda s: service.create_integration(s, responder, name="Mine", kind="grafana"),
        lambda s: service.rotate_token(s, responder, made),
        lambda s: service.update_integration(s, responder, made, name="Renamed"),
        lambda s: service.delete_integration(s, responder, made),
        lambda s: service.create_grouping_rule(s, responder, name="G", by=["alertname"]),
        lambda s: service.create_routing_rule(s, responder, name="R"),
    ]
    for attempt in attempts:
        with pytest.raises(Forbidden):
            async with db.session() as s:
                await attempt(s)
    async with db.session() as s:
        assert [i.name for i in await service.list_integrations(s)] == ["AM"]
        assert (await service.get_integration(s, made.id)).token == made.token


async def test_builtin_sources_cannot_be_changed(db: Database) -> None:
    _, admin = await make_actor(db, Role.admin)
    async with db.session() as s:
        checks = await make_integration(s, kind=SourceKind.check, name="Synthetic checks")
    with pytest.raises(Conflict):
        async with db.session() as s:
            await service.rotate_token(s, admin, await service.get_integration(s, checks.id))


async def test_grouping_rules_are_ordered_and_validated(db: Database) -> None:
    _, admin = await make_actor(db, Role.admin)
    async with db.session() as s:
        first = await service.create_grouping_rule(
            s, admin, name="By alert", by=["alertname", " cluster ", "alertname"], window_minutes=30
        )
        second = await service.create_grouping_rule(
            s, admin, name="Identity", by=["team"], matchers={"team": "identity", "alertname": {"regex": "Sign.*"}}
        )
        assert first.by == ["alertname", "cluster"]
        assert second.position > first.position
        await service.update_grouping_rule(s, admin, second, position=0, window_minutes=1440)
        await service.update_grouping_rule(s, admin, first, position=5)
    async with db.session() as s:
        assert [r.name for r in await service.list_grouping_rules(s)] == ["Identity", "By alert"]

    bad: list[tuple[dict[str, Any], str]] = [
        ({"by": []}, "by"),
        ({"by": ["alertname", ""]}, "by.1"),
        ({"by": "alertname"}, "by"),
        ({"window_minutes": 0}, "window_minutes"),
        ({"window_minutes": 1441}, "window_minutes"),
        ({"matchers": {"team": {"regex": "(unclosed"}}}, "matchers.team.regex"),
        ({"matchers": {"team": 5}}, "matchers.team"),
        ({"matchers": {"team": {"pattern": "x"}}}, "matchers.team"),
        ({"integration_id": "no-such-integration"}, "integration_id"),
        ({"position": -1}, "position"),
        ({"name": ""}, "name"),
    ]
    for fields, field in bad:
        with pytest.raises(InvalidInput) as refused:
            async with db.session() as s:
                await service.create_grouping_rule(s, admin, **{"name": "Bad", "by": ["alertname"], **fields})
        assert refused.value.field == field, fields
    assert await count_rows(db, GroupingRule) == 2


async def test_routing_rules_check_every_reference(db: Database) -> None:
    _, admin = await make_actor(db, Role.admin)
    async with db.session() as s:
        web = await make_component(s, "Sign-in")
        policy = EscalationPolicy(name="Identity on-call", levels=[])
        s.add(policy)
        await s.flush()
        rule = await service.create_routing_rule(
            s,
            admin,
            name="Identity",
            matchers={"team": "identity"},
            component_ids=[web.id, web.id],
            component_status="partial_outage",
            severity="SEV2",
            escalation_policy_id=policy.id,
            action="propose",
        )
        assert rule.component_ids == [web.id] and rule.action == "propose"
        await service.update_routing_rule(s, admin, rule, severity=None, escalation_policy_id=None)
        assert rule.severity is None and rule.escalation_policy_id is None

    bad: list[tuple[dict[str, Any], str]] = [
        ({"component_ids": ["nope"]}, "component_ids.0"),
        ({"component_ids": [web.id, "nope"]}, "component_ids.1"),
        ({"component_status": "broken"}, "component_status"),
        ({"severity": "SEV5"}, "severity"),
        ({"escalation_policy_id": "nope"}, "escalation_policy_id"),
        ({"action": "page"}, "action"),
        ({"matchers": {"summary": {"regex": "*bad"}}}, "matchers.summary.regex"),
        ({"action": "declare"}, "action"),  # declaring needs components or a severity
    ]
    for fields, field in bad:
        with pytest.raises(InvalidInput) as refused:
            async with db.session() as s:
                await service.create_routing_rule(s, admin, **{"name": "Bad", **fields})
        assert refused.value.field == field, fields
    assert await count_rows(db, RoutingRule) == 1


async def test_groups_list_open_first_then_recent_resolved(db: Database) -> None:
    async with db.session() as s:
        source = await make_integration(s)
        await make_group(s, source, title="Old resolved", status=AlertStatus.resolved, minutes_ago=60)
        await make_group(s, source, title="New resolved", status=AlertStatus.resolved, minutes_ago=1)
        await make_group(s, source, title="Older open", minutes_ago=30)
        await make_group(s, source, title="Newer open", minutes_ago=2)
    async with db.session() as s:
        titles = [g.title for g in await service.list_groups(s)]
        assert titles == ["Newer open", "Older open", "New resolved", "Old resolved"]
        assert [g.title for g in await service.list_groups(s, state="resolved")] == ["New resolved", "Old resolved"]
        with pytest.raises(InvalidInput):
            await service.list_groups(s, state="closed")
        assert len(await service.list_alerts(s, status="open")) == 4
        assert len(await service.list_alerts(s, status="resolved", integration_id=source.id)) == 4


async def test_declaring_from_a_group_links_it_and_notes_it_on_the_timeline(db: Database) -> None:
    await allow_free_text(db)
    _, admin = await make_actor(db, Role.admin)
    _, responder = await make_actor(db, Role.responder)
    async with db.session() as s:
        signin = await make_component(s, "Sign-in")
        source = await make_integration(s)
        rule = await service.create_routing_rule(
            s, admin, name="Identity", component_ids=[signin.id], component_status="partial_outage", severity="SEV2"
        )
        group = await make_group(
            s,
            source,
            suggested_severity="SEV2",
            component_ids=[signin.id],
            routing_rule_id=rule.id,
            proposed=True,
        )
    async with db.session() as s:
        group = await service.get_group(s, group.id)
        defaults = await service.declare_defaults(s, group)
        assert defaults.name == group.title and defaults.severity == "SEV2"
        assert defaults.components == {signin.id: "partial_outage"}
        incident = await service.declare_from_group(s, responder, group)
    async with db.session() as s:
        group = await service.get_group(s, group.id)
        assert group.incident_id == incident.id and group.proposed is False
        events = list(await s.scalars(select(TimelineEvent).where(TimelineEvent.incident_id == incident.id)))
        linked = [e for e in events if e.kind == "alert_group_linked"]
        assert len(linked) == 1 and "declared from alert group" in linked[0].summary
        assert linked[0].data["alert_group_id"] == group.id
    with pytest.raises(Conflict):
        async with db.session() as s:
            await service.declare_from_group(s, responder, await service.get_group(s, group.id))


async def test_a_refused_declaration_leaves_the_group_unlinked(db: Database) -> None:
    await allow_free_text(db)
    _, responder = await make_actor(db, Role.responder)
    async with db.session() as s:
        group = await make_group(s, await make_integration(s), proposed=True)
    with pytest.raises(DomainError) as refused:
        async with db.session() as s:
            await service.declare_from_group(s, responder, await service.get_group(s, group.id), severity="SEV9")
    assert refused.value.field == "severity"
    async with db.session() as s:
        group = await service.get_group(s, group.id)
        assert group.incident_id is None and group.proposed is True
