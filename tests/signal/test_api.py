"""The alert API: integrations, rules, alert groups and alerts, declaring from a group; bad input by field."""

from __future__ import annotations

import httpx

from crisisdesk.auth.models import Role, Scope
from crisisdesk.kit.db import Database
from crisisdesk.signal.models import AlertGroup, AlertStatus, GroupingRule, Integration, RoutingRule
from tests.fixtures.alerts import make_group, make_integration
from tests.fixtures.api import count_rows, error_locs, error_text
from tests.fixtures.auth import api_key_headers
from tests.fixtures.comms import allow_free_text
from tests.fixtures.incident import make_component

API = "/api/v1"


async def test_admin_manages_an_integration_and_responders_see_it_without_its_secret(
    client: httpx.AsyncClient, db: Database
) -> None:
    admin = await api_key_headers(db, Role.admin)
    responder = await api_key_headers(db, Role.responder)

    created = await client.post(
        f"{API}/integrations", json={"name": "Production Alertmanager", "kind": "alertmanager"}, headers=admin
    )
    assert created.status_code == 201, created.text
    body = created.json()
    token = body["token"]
    assert body["url"] == f"http://status.test/hooks/{token}" and body["open_alerts"] == 0

    seen = (await client.get(f"{API}/integrations/{body['id']}", headers=responder)).json()
    assert seen["name"] == "Production Alertmanager" and seen["token"] is None and seen["url"] is None
    assert [i["id"] for i in (await client.get(f"{API}/integrations", headers=responder)).json()] == [body["id"]]

    # A responder may not add, change, rotate or delete.
    for method, path, payload in [
        ("POST", f"{API}/integrations", {"name": "Mine", "kind": "grafana"}),
        ("PATCH", f"{API}/integrations/{body['id']}", {"name": "Renamed"}),
        ("POST", f"{API}/integrations/{body['id']}/rotate", None),
        ("DELETE", f"{API}/integrations/{body['id']}", None),
    ]:
        refused = await client.request(method, path, json=payload, headers=responder)
        assert refused.status_code == 403, (method, path, refused.text)
    assert await count_rows(db, Integration) == 1

    patched = await client.patch(
        f"{API}/integrations/{body['id']}", json={"name": "Prod AM", "rate_limit_per_minute": 0}, headers=admin
    )
    assert patched.status_code == 200 and patched.json()["name"] == "Prod AM"
    assert patched.json()["rate_limit_per_minute"] == 0 and patched.json()["token"] == token

    rotated = await client.post(f"{API}/integrations/{body['id']}/rotate", headers=admin)
    assert rotated.status_code == 200 and rotated.json()["token"] != token
    assert rotated.json()["url"].endswith(rotated.json()["token"])

    events = await client.post(f"{API}/integrations", json={"name": "PD", "kind": "events_v2"}, headers=admin)
    assert events.json()["url"] == "http://status.test/v2/enqueue"

    gone = await client.delete(f"{API}/integrations/{body['id']}", headers=admin)
    assert gone.status_code == 204
    assert (await client.get(f"{API}/integrations/{body['id']}", headers=admin)).status_code == 404


async def test_bad_integrations_name_the_field(client: httpx.AsyncClient, db: Database) -> None:
    admin = await api_key_headers(db, Role.admin)
    cases = [
        ({"name": "Checks", "kind": "check"}, ["body", "kind"]),  # built in
        ({"name": "X", "kind": "nagios"}, ["body", "kind"]),  # no such kind (schema)
        ({"name": "", "kind": "grafana"}, ["body", "name"]),
        ({"name": "X", "kind": "grafana", "rate_limit_per_minute": -5}, ["body", "rate_limit_per_minute"]),
        ({"name": "X", "kind": "generic", "mapping": {"colour": "a"}}, ["body", "mapping", "colour"]),
        ({"name": "X", "kind": "generic", "mapping": {"summary": "a b"}}, ["body", "mapping", "summary"]),
        ({"name": "X", "kind": "grafana", "token": "mine"}, ["body", "token"]),  # the token is never chosen
    ]
    for payload, loc in cases:
        response = await client.post(f"{API}/integrations", json=payload, headers=admin)
        assert response.status_code == 422, (payload, response.text)
        assert loc in error_locs(response), (payload, response.text)
    assert await count_rows(db, Integration) == 0


async def test_rules_crud_with_ordering_and_field_errors(client: httpx.AsyncClient, db: Database) -> None:
    admin = await api_key_headers(db, Role.admin)
    reader = await api_key_headers(db, Role.responder, scopes=[Scope.read])
    async with db.session() as s:
        signin = (await make_component(s, "Sign-in")).id

    g1 = await client.post(
        f"{API}/grouping-rules", json={"name": "By alert", "by": ["alertname"], "window_minutes": 15}, headers=admin
    )
    assert g1.status_code == 201, g1.text
    g2 = await client.post(
        f"{API}/grouping-rules",
        json={"name": "Identity", "by": ["team"], "matchers": {"team": {"regex": "ident.*"}}},
        headers=admin,
    )
    assert g2.json()["position"] > g1.json()["position"]
    moved = await client.patch(f"{API}/grouping-rules/{g2.json()['id']}", json={"position": -0}, headers=admin)
    assert moved.status_code == 200
    listed = (await client.get(f"{API}/grouping-rules", headers=reader)).json()
    assert [r["name"] for r in listed] == ["Identity", "By alert"]

    r1 = await client.post(
        f"{API}/routing-rules",
        json={
            "name": "Identity",
            "matchers": {"team": "identity"},
            "component_ids": [signin],
            "severity": "SEV2",
            "action": "propose",
        },
        headers=admin,
    )
    assert r1.status_code == 201, r1.text
    assert r1.json()["component_status"] == "major_outage" and r1.json()["action"] == "propose"
    cleared = await client.patch(f"{API}/routing-rules/{r1.json()['id']}", json={"severity": None}, headers=admin)
    assert cleared.status_code == 200 and cleared.json()["severity"] is None
    assert cleared.json()["component_ids"] == [signin]

    bad = [
        ("grouping-rules", {"name": "X", "by": []}, ["body", "by"]),
        ("grouping-rules", {"name": "X", "by": ["a", " "]}, ["body", "by", "1"]),
        ("grouping-rules", {"name": "X", "by": ["a"], "window_minutes": 0}, ["body", "window_minutes"]),
        ("grouping-rules", {"name": "X", "by": ["a"], "window_minutes": 1441}, ["body", "window_minutes"]),
        (
            "grouping-rules",
            {"name": "X", "by": ["a"], "matchers": {"job": {"regex": "["}}},
            ["body", "matchers", "job", "regex"],
        ),
        ("routing-rules", {"name": "X", "component_ids": ["nope"]}, ["body", "component_ids", "0"]),
        ("routing-rules", {"name": "X", "component_status": "down"}, ["body", "component_status"]),
        ("routing-rules", {"name": "X", "severity": "sev1"}, ["body", "severity"]),
        ("routing-rules", {"name": "X", "escalation_policy_id": "nope"}, ["body", "escalation_policy_id"]),
        ("routing-rules", {"name": "X", "action": "shout"}, ["body", "action"]),
        ("routing-rules", {"name": "X", "integration_id": "nope"}, ["body", "integration_id"]),
        # A field a rule does not have is refused, not ignored.
        ("routing-rules", {"name": "X", "template_id": "t1"}, ["body", "template_id"]),
    ]
    for path, payload, loc in bad:
        response = await client.post(f"{API}/{path}", json=payload, headers=admin)
        assert response.status_code == 422, (payload, response.text)
        assert loc in error_locs(response), (payload, response.text)
    assert await count_rows(db, GroupingRule) == 2 and await count_rows(db, RoutingRule) == 1

    assert (await client.post(f"{API}/routing-rules", json={"name": "R"}, headers=reader)).status_code == 403
    assert (await client.delete(f"{API}/grouping-rules/{g1.json()['id']}", headers=admin)).status_code == 204
    assert (await client.delete(f"{API}/routing-rules/{r1.json()['id']}", headers=admin)).status_code == 204
    assert (await client.get(f"{API}/routing-rules/{r1.json()['id']}", headers=admin)).status_code == 404


async def test_alert_groups_and_alerts_are_listed_with_filters(client: httpx.AsyncClient, db: Database) -> None:
    reader = await api_key_headers(db, Role.viewer)
    async with db.session() as s:
        am = await make_integration(s)
        other = await make_integration(s, name="Grafana")
        firing = await make_group(s, am, title="Sign-in errors", alerts=3)
        resolved = await make_group(s, other, title="Disk full", status=AlertStatus.resolved, alerts=1)

    groups = (await client.get(f"{API}/alert-groups", headers=reader)).json()
    assert [g["id"] for g in groups] == [firing.id, resolved.id]
    assert (await client.get(f"{API}/alert-groups?status=resolved", headers=reader)).json()[0]["id"] == resolved.id

    one = (await client.get(f"{API}/alert-groups/{firing.id}", headers=reader)).json()
    assert one["open_count"] == 3 and len(one["alerts"]) == 3
    assert one["alerts"][0]["labels"]["team"] == "identity" and "runbook" in one["alerts"][0]["annotations"]

    by_source = (await client.get(f"{API}/alerts?integration_id={other.id}", headers=reader)).json()
    assert [a["summary"] for a in by_source] == ["Disk full on idp-0"]
    assert len((await client.get(f"{API}/alerts?status=open", headers=reader)).json()) == 3
    assert len((await client.get(f"{API}/alerts?status=resolved", headers=reader)).json()) == 1
    assert (await client.get(f"{API}/alerts?status=closed", headers=reader)).status_code == 422
    assert (await client.get(f"{API}/alerts?integration_id=nope", headers=reader)).status_code == 404
    assert (await client.get(f"{API}/alert-groups/nope", headers=reader)).status_code == 404
    assert (await client.get(f"{API}/alert-groups")).status_code == 401


async def test_declare_from_an_alert_group_over_the_api(client: httpx.AsyncClient, db: Database) -> None:
    await allow_free_text(db)
    writer = await api_key_headers(db, Role.responder)
    reader = await api_key_headers(db, Role.viewer)
    async with db.session() as s:
        signin = await make_component(s, "Sign-in")
        group = await make_group(
            s, await make_integration(s), suggested_severity="SEV2", component_ids=[signin.id], proposed=True
        )

    assert (await client.post(f"{API}/alert-groups/{group.id}/declare", json={}, headers=reader)).status_code == 403
    bad = await client.post(f"{API}/alert-groups/{group.id}/declare", json={"severity": "SEV7"}, headers=writer)
    assert bad.status_code == 422 and ["body", "severity"] in error_locs(bad)

    declared = await client.post(f"{API}/alert-groups/{group.id}/declare", json={}, headers=writer)
    assert declared.status_code == 201, declared.text
    incident = declared.json()
    assert incident["name"] == group.title and incident["severity"] == "SEV2"
    assert [(c["component_id"], c["status"]) for c in incident["components"]] == [(signin.id, "major_outage")]

    linked = (await client.get(f"{API}/alert-groups/{group.id}", headers=reader)).json()
    assert linked["incident_id"] == incident["id"] and linked["proposed"] is False
    timeline = (await client.get(f"{API}/incidents/{incident['id']}/timeline", headers=reader)).json()
    assert any(e["kind"] == "alert_group_linked" and group.title in e["summary"] for e in timeline)

    again = await client.post(f"{API}/alert-groups/{group.id}/declare", json={}, headers=writer)
    assert again.status_code == 409, again.text
    assert "already" in error_text(again)
    assert await count_rows(db, AlertGroup) == 1


def _alertmanager_body(fingerprint: str) -> dict[str, object]:
    return {
        "version": "4",
        "groupKey": '{}:{alertname="SignInErrors"}',
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "crisisdesk",
        "groupLabels": {"alertname": "SignInErrors"},
        "commonLabels": {"alertname": "SignInErrors"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.test",
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": "SignInErrors", "instance": "idp-1"},
                "annotations": {"summary": "Sign-in errors above 5%"},
                "startsAt": "2026-11-20T10:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus.test/graph",
                "fingerprint": fingerprint,
            }
        ],
    }


async def test_rotating_the_token_retires_the_old_url(client: httpx.AsyncClient, db: Database) -> None:
    admin = await api_key_headers(db, Role.admin)
    made = (await client.post(f"{API}/integrations", json={"name": "AM", "kind": "alertmanager"}, headers=admin)).json()
    old_path = made["url"].removeprefix("http://status.test")
    assert (await client.post(old_path, json=_alertmanager_body("aa01"))).status_code == 200

    rotated = (await client.post(f"{API}/integrations/{made['id']}/rotate", headers=admin)).json()
    assert (await client.post(old_path, json=_alertmanager_body("aa02"))).status_code == 404
    new_path = rotated["url"].removeprefix("http://status.test")
    assert (await client.post(new_path, json=_alertmanager_body("aa03"))).status_code == 200

    seen = (await client.get(f"{API}/integrations/{made['id']}", headers=admin)).json()
    assert seen["open_alerts"] == 2 and seen["last_received_at"] is not None
    keys = {
        a["dedup_key"] for a in (await client.get(f"{API}/alerts?integration_id={made['id']}", headers=admin)).json()
    }
    assert keys == {"aa01", "aa03"}


async def test_an_offset_past_any_database_integer_is_refused_by_name(client: httpx.AsyncClient, db: Database) -> None:
    reader = await api_key_headers(db, Role.viewer)
    for path in ("alert-groups", "alerts"):
        # Tried: an offset of 2**63, one past the largest 64-bit integer a database stores.
        response = await client.get(f"{API}/{path}", params={"offset": str(2**63)}, headers=reader)
        assert response.status_code == 422, f"{path}: {response.text}"
        assert ["query", "offset"] in error_locs(response), path
