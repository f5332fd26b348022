"""The alerts console: alert groups, declaring from one, integrations with their URL, rules with field errors."""

from __future__ import annotations

import html
import re

import httpx
from sqlalchemy import select

from crisisdesk.auth.models import Role
from crisisdesk.incident.models import Incident, TimelineEvent
from crisisdesk.kit.db import Database
from crisisdesk.signal.models import AlertGroup, AlertStatus, GroupingRule, Integration, RoutingRule
from tests.fixtures.alerts import make_group, make_integration
from tests.fixtures.api import count_rows
from tests.fixtures.comms import allow_free_text
from tests.fixtures.console import HTML, field_error, sign_in
from tests.fixtures.incident import make_component


def _selected(page: str, name: str) -> str | None:
    """The selected option of a select named ``name``."""
    select_html = re.search(rf'<select[^>]*name="{re.escape(name)}"[^>]*>(.*?)</select>', page, re.S)
    assert select_html, f"no select {name}"
    chosen = re.search(r'<option value="([^"]*)"\s+selected', select_html.group(1))
    return chosen.group(1) if chosen else None


async def test_the_nav_leads_to_alert_groups_open_first(client: httpx.AsyncClient, db: Database) -> None:
    _, _ = await sign_in(client, db, Role.viewer)
    async with db.session() as s:
        am = await make_integration(s)
        await make_group(s, am, title="Disk full on db-1", status=AlertStatus.resolved, minutes_ago=1)
        await make_group(s, am, title="Sign-in errors above 5%", alerts=3, suggested_severity="SEV2")

    console = await client.get("/console", headers=HTML)
    assert 'href="/console/alerts"' in console.text and ">Alerts<" in console.text
    page = await client.get("/console/alerts", headers=HTML)
    assert page.status_code == 200
    open_part, resolved_part = page.text.split('id="resolved-h"')
    assert "Sign-in errors above 5%" in open_part and "3 open / 3" in open_part
    assert "Disk full on db-1" in resolved_part and "Disk full on db-1" not in open_part
    # A viewer cannot declare, so no button for them.
    assert "/declare" not in page.text


async def test_group_page_shows_alerts_and_declares_prefilled(client: httpx.AsyncClient, db: Database) -> None:
    await allow_free_text(db)
    _, csrf = await sign_in(client, db, Role.responder)
    async with db.session() as s:
        signin = await make_component(s, "Sign-in")
        other = await make_component(s, "Billing")
        group = await make_group(
            s,
            await make_integration(s),
            title="IdP sign-in errors above 5%",
            suggested_severity="SEV2",
            component_ids=[signin.id],
            proposed=True,
        )

    page = await client.get(f"/console/alerts/groups/{group.id}", headers=HTML)
    assert page.status_code == 200
    text = html.unescape(page.text)
    assert "IdP sign-in errors above 5% on idp-1" in text and "team</b>=identity" in text
    assert "https://runbooks.example/signin" in text and "received 2×" in text
    assert f'href="/console/alerts/groups/{group.id}/declare"' in page.text

    form = await client.get(f"/console/alerts/groups/{group.id}/declare", headers=HTML)
    assert form.status_code == 200
    assert f'action="/console/alerts/groups/{group.id}/declare"' in form.text
    assert 'value="IdP sign-in errors above 5%"' in form.text
    assert _selected(form.text, "severity") == "SEV2"
    assert _selected(form.text, f"component:{signin.id}") == "major_outage"
    assert _selected(form.text, f"component:{other.id}") is None
    assert 'class="form-alert"' not in form.text  # prefilled, not refused

    # A refusal keeps the group unlinked and shows the message by the field.
    refused = await client.post(
        f"/console/alerts/groups/{group.id}/declare",
        data={"csrf_token": csrf, "name": "", "severity": "SEV2", "body": "Investigating."},
        headers=HTML,
    )
    assert refused.status_code == 422 and field_error(refused.text, "name")
    assert await count_rows(db, Incident) == 0

    done = await client.post(
        f"/console/alerts/groups/{group.id}/declare",
        data={
            "csrf_token": csrf,
            "name": "IdP sign-in errors above 5%",
            "severity": "SEV2",
            "body": "We are investigating failed sign-ins.",
            f"component:{signin.id}": "partial_outage",
            "alert_group_id": group.id,
        },
        headers=HTML,
    )
    assert done.status_code == 303, done.text
    incident_id = done.headers["location"].rsplit("/", 1)[1]
    async with db.session() as s:
        linked = await s.get(AlertGroup, group.id)
        assert linked is not None and linked.incident_id == incident_id and linked.proposed is False
        kinds = set(await s.scalars(select(TimelineEvent.kind).where(TimelineEvent.incident_id == incident_id)))
        assert {"declared", "alert_group_linked"} <= kinds
    incident_page = await client.get(done.headers["location"], headers=HTML)
    assert "declared from alert group" in html.unescape(incident_page.text)
    after = await client.get(f"/console/alerts/groups/{group.id}", headers=HTML)
    assert f'href="/console/incidents/{incident_id}"' in after.text and "/declare" not in after.text


async def test_admin_adds_an_integration_sees_its_config_and_rotates_it(
    client: httpx.AsyncClient, db: Database
) -> None:
    _, csrf = await sign_in(client, db, Role.admin)
    refused = await client.post(
        "/console/alerts/integrations",
        data={"csrf_token": csrf, "name": "AM", "kind": "check", "rate_limit_per_minute": "600"},
        headers=HTML,
    )
    assert refused.status_code == 422 and field_error(refused.text, "kind")
    bad_mapping = await client.post(
        "/console/alerts/integrations",
        data={"csrf_token": csrf, "name": "Datadog", "kind": "generic", "mapping": "dedup_key=id\ncolour=red"},
        headers=HTML,
    )
    assert bad_mapping.status_code == 422 and "colour" in (field_error(bad_mapping.text, "mapping") or "")
    assert await count_rows(db, Integration) == 0

    made = await client.post(
        "/console/alerts/integrations",
        data={"csrf_token": csrf, "name": "Production Alertmanager", "kind": "alertmanager"},
        headers=HTML,
    )
    assert made.status_code == 303, made.text
    page = await client.get(made.headers["location"], headers=HTML)
    async with db.session() as s:
        integration = (await s.scalars(select(Integration))).one()
    old_url = f"http://status.test/hooks/{integration.token}"
    assert old_url in page.text
    assert "webhook_configs:" in page.text and "send_resolved: true" in page.text

    rotated = await client.post(
        f"/console/alerts/integrations/{integration.id}/rotate", data={"csrf_token": csrf}, headers=HTML
    )
    assert rotated.status_code == 303
    page = await client.get(made.headers["location"], headers=HTML)
    assert old_url not in page.text and "http://status.test/hooks/" in page.text

    saved = await client.post(
        f"/console/alerts/integrations/{integration.id}",
        data={"csrf_token": csrf, "name": "Prod AM", "rate_limit_per_minute": "lots"},
        headers=HTML,
    )
    assert saved.status_code == 422 and field_error(saved.text, "rate_limit_per_minute")
    saved = await client.post(
        f"/console/alerts/integrations/{integration.id}",
        data={"csrf_token": csrf, "name": "Prod AM", "rate_limit_per_minute": "60"},
        headers=HTML,
    )
    assert saved.status_code == 303
    async with db.session() as s:
        stored = await s.get(Integration, integration.id)
        assert stored is not None and stored.name == "Prod AM" and stored.rate_limit_per_minute == 60
        assert stored.enabled is False  # the box was not ticked


async def test_responders_see_integrations_without_secrets_and_cannot_add_one(
    client: httpx.AsyncClient, db: Database
) -> None:
    async with db.session() as s:
        integration = await make_integration(s, name="Production Alertmanager")
    _, csrf = await sign_in(client, db, Role.responder)
    listing = await client.get("/console/alerts/integrations", headers=HTML)
    assert "Production Alertmanager" in listing.text and 'id="integration-form"' not in listing.text
    page = await client.get(f"/console/alerts/integrations/{integration.id}", headers=HTML)
    assert page.status_code == 200 and integration.token not in page.text
    refused = await client.post(
        "/console/alerts/integrations", data={"csrf_token": csrf, "name": "Mine", "kind": "grafana"}, headers=HTML
    )
    assert refused.status_code == 403
    rotate = await client.post(
        f"/console/alerts/integrations/{integration.id}/rotate", data={"csrf_token": csrf}, headers=HTML
    )
    assert rotate.status_code == 403
    assert await count_rows(db, Integration) == 1


async def test_rules_are_added_changed_and_refused_by_field(client: httpx.AsyncClient, db: Database) -> None:
    _, csrf = await sign_in(client, db, Role.admin)
    async with db.session() as s:
        signin = await make_component(s, "Sign-in")

    bad_regex = await client.post(
        "/console/alerts/grouping-rules",
        data={"csrf_token": csrf, "name": "Identity", "by": "alertname", "matchers": "team=~(identity"},
        headers=HTML,
    )
    assert bad_regex.status_code == 422 and field_error(bad_regex.text, "matchers")
    bad_window = await client.post(
        "/console/alerts/grouping-rules",
        data={"csrf_token": csrf, "name": "Identity", "by": "alertname", "window_minutes": "0"},
        headers=HTML,
    )
    assert bad_window.status_code == 422 and field_error(bad_window.text, "window_minutes")
    added = await client.post(
        "/console/alerts/grouping-rules",
        data={
            "csrf_token": csrf,
            "name": "Identity",
            "by": "alertname, cluster",
            "matchers": "team=identity\nalertname=~SignIn.*",
            "window_minutes": "30",
        },
        headers=HTML,
    )
    assert added.status_code == 303
    async with db.session() as s:
        rule = (await s.scalars(select(GroupingRule))).one()
        assert rule.by == ["alertname", "cluster"] and rule.window_minutes == 30
        assert rule.matchers == {"team": "identity", "alertname": {"regex": "SignIn.*"}}

    bad_severity = await client.post(
        "/console/alerts/routing-rules",
        data={"csrf_token": csrf, "name": "Identity", "severity": "SEV9", "component_ids": signin.id},
        headers=HTML,
    )
    assert bad_severity.status_code == 422 and field_error(bad_severity.text, "severity")
    # The ticked component stays ticked on the refused form.
    assert re.search(rf'value="{signin.id}"\s+checked', bad_severity.text)
    routed = await client.post(
        "/console/alerts/routing-rules",
        data={
            "csrf_token": csrf,
            "name": "Identity",
            "matchers": "team=identity",
            "component_ids": signin.id,
            "component_status": "partial_outage",
            "severity": "SEV2",
            "action": "propose",
            "enabled": "1",
        },
        headers=HTML,
    )
    assert routed.status_code == 303
    async with db.session() as s:
        routing = (await s.scalars(select(RoutingRule))).one()
        assert routing.component_ids == [signin.id] and routing.action == "propose" and routing.enabled

    rules = await client.get("/console/alerts/rules", headers=HTML)
    assert "team=identity" in rules.text and f'/console/alerts/routing-rules/{routing.id}"' in rules.text
    edit = await client.get(f"/console/alerts/routing-rules/{routing.id}", headers=HTML)
    assert _selected(edit.text, "severity") == "SEV2" and _selected(edit.text, "action") == "propose"
    changed = await client.post(
        f"/console/alerts/routing-rules/{routing.id}",
        data={"csrf_token": csrf, "name": "Identity", "severity": "", "action": "none", "enabled": "1"},
        headers=HTML,
    )
    assert changed.status_code == 303
    deleted = await client.post(f"/console/alerts/grouping-rules/{rule.id}/delete", data={"csrf_token": csrf})
    assert deleted.status_code == 303
    async with db.session() as s:
        routing_now = await s.get(RoutingRule, routing.id)
        assert routing_now is not None and routing_now.severity is None and routing_now.action == "none"
    assert await count_rows(db, GroupingRule) == 0
