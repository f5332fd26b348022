"""The Statuspage v2 public API: every endpoint's fields, types and enumerations, and its contents."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import httpx
import pytest

from crisisdesk.catalog.models import Component
from crisisdesk.kit.db import Database
from crisisdesk.kit.time import utcnow
from crisisdesk.statuspage.models import StatusPage
from crisisdesk.statuspage.public import PublicData
from crisisdesk.statuspage.v2 import overall
from tests.fixtures.statuspage import INTERNAL_NOTE, PublicWorld, make_public_world

# The field lists of REFERENCE.md §1, with the type each must have.
TS, OPT_TS, STR, OPT_STR = "timestamp", "optional timestamp", str, "optional str"
PAGE = {"id": STR, "name": STR, "url": STR, "time_zone": STR, "updated_at": TS}
COMPONENT = {"id": STR, "name": STR, "status": "component_status", "created_at": TS, "updated_at": TS,
             "position": int, "description": OPT_STR, "showcase": bool, "group_id": OPT_STR, "page_id": STR,
             "group": bool, "only_show_if_degraded": bool, "start_date": "optional date"}  # fmt: skip
INCIDENT = {"id": STR, "name": STR, "status": "incident_status", "created_at": TS, "updated_at": TS,
            "monitoring_at": OPT_TS, "resolved_at": OPT_TS, "impact": "impact", "shortlink": STR, "started_at": TS,
            "page_id": STR, "incident_updates": list, "components": list}  # fmt: skip
FULL = {"postmortem_body": OPT_STR, "postmortem_body_last_updated_at": OPT_TS}
MAINTENANCE = {"scheduled_for": TS, "scheduled_until": TS}
UPDATE = {"id": STR, "status": "update_status", "body": STR, "incident_id": STR, "created_at": TS, "updated_at": TS,
          "display_at": TS, "affected_components": list, "deliver_notifications": bool, "custom_tweet": OPT_STR,
          "tweet_id": OPT_STR}  # fmt: skip
AFFECTED = {"code": STR, "name": STR, "old_status": "component_status", "new_status": "component_status"}

ENUMS = {
    "component_status": {"operational", "degraded_performance", "partial_outage", "major_outage", "under_maintenance"},
    "indicator": {"none", "minor", "major", "critical"},
    "impact": {"none", "minor", "major", "critical", "maintenance"},
    "incident_status": {"investigating", "identified", "monitoring", "resolved", "postmortem"},
    "maintenance_status": {"scheduled", "in_progress", "verifying", "completed"},
}


def check_value(where: str, kind: object, value: Any, *, maintenance: bool = False) -> None:
    if kind in (TS, OPT_TS):
        if value is None and kind == OPT_TS:
            return
        assert isinstance(value, str), f"{where}: {value!r} is not a timestamp string"
        parsed = datetime.fromisoformat(value)
        assert parsed.tzinfo is not None, f"{where}: {value!r} has no offset"
    elif kind == OPT_STR:
        assert value is None or isinstance(value, str), f"{where}: {value!r}"
    elif kind == "optional date":
        assert value is None or date.fromisoformat(value), f"{where}: {value!r}"
    elif kind in ("incident_status", "update_status"):
        allowed = ENUMS["maintenance_status" if maintenance else "incident_status"]
        assert value in allowed, f"{where}: {value!r} not in {allowed}"
    elif isinstance(kind, str):
        assert value in ENUMS[kind], f"{where}: {value!r} not in {ENUMS[kind]}"
    else:
        assert type(value) is kind, f"{where}: {value!r} is not {kind}"


def check_object(where: str, obj: dict[str, Any], fields: dict[str, object], *, maintenance: bool = False) -> None:
    assert set(obj) == set(fields), f"{where}: fields {sorted(set(obj) ^ set(fields))} differ from the reference"
    for name, kind in fields.items():
        check_value(f"{where}.{name}", kind, obj[name], maintenance=maintenance)


def check_component(where: str, c: dict[str, Any]) -> None:
    fields = {**COMPONENT, "components": list} if c.get("group") else COMPONENT
    check_object(where, c, fields)
    if c["group"]:
        assert all(isinstance(i, str) for i in c["components"]) and c["group_id"] is None


def check_incident(where: str, i: dict[str, Any], *, full: bool, maintenance: bool) -> None:
    fields = {**INCIDENT, **(FULL if full else {}), **(MAINTENANCE if maintenance else {})}
    check_object(where, i, fields, maintenance=maintenance)
    assert (i["impact"] == "maintenance") == maintenance
    for n, update in enumerate(i["incident_updates"]):
        check_object(f"{where}.incident_updates[{n}]", update, UPDATE, maintenance=maintenance)
        assert update["incident_id"] == i["id"]
        for m, change in enumerate(update["affected_components"]):
            check_object(f"{where}.incident_updates[{n}].affected_components[{m}]", change, AFFECTED)
    for n, component in enumerate(i["components"]):
        check_component(f"{where}.components[{n}]", component)


ENDPOINTS = {
    "status.json": {"page", "status"},
    "summary.json": {"page", "components", "incidents", "scheduled_maintenances", "status"},
    "components.json": {"page", "components"},
    "incidents.json": {"page", "incidents"},
    "incidents/unresolved.json": {"page", "incidents"},
    "scheduled-maintenances.json": {"page", "scheduled_maintenances"},
    "scheduled-maintenances/upcoming.json": {"page", "scheduled_maintenances"},
    "scheduled-maintenances/active.json": {"page", "scheduled_maintenances"},
}


async def fetch_all(client: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    bodies = {}
    for name in ENDPOINTS:
        response = await client.get(f"/api/v2/{name}")
        assert response.status_code == 200, name
        assert response.headers["content-type"].startswith("application/json")
        bodies[name] = response.json()
    return bodies


@pytest.fixture
async def world(db: Database) -> PublicWorld:
    return await make_public_world(db)


async def test_every_endpoint_matches_the_reference_shapes(client: httpx.AsyncClient, world: PublicWorld) -> None:
    bodies = await fetch_all(client)
    for name, body in bodies.items():
        assert set(body) == ENDPOINTS[name], name
        check_object(f"{name}.page", body["page"], PAGE)
        assert body["page"]["url"] == "http://status.test"
        if "status" in body:
            check_object(f"{name}.status", body["status"], {"indicator": "indicator", "description": STR})
        for n, component in enumerate(body.get("components", [])):
            check_component(f"{name}.components[{n}]", component)
        full = name != "summary.json" and name != "incidents/unresolved.json"
        for n, incident in enumerate(body.get("incidents", [])):
            check_incident(f"{name}.incidents[{n}]", incident, full=full, maintenance=False)
        for n, m in enumerate(body.get("scheduled_maintenances", [])):
            check_incident(f"{name}.scheduled_maintenances[{n}]", m, full=full, maintenance=True)


async def test_endpoints_hold_the_right_incidents_and_maintenances(
    client: httpx.AsyncClient, world: PublicWorld
) -> None:
    bodies = await fetch_all(client)
    ids = {name: [i["id"] for i in body.get("incidents", body.get("scheduled_maintenances", []))]
           for name, body in bodies.items() if name not in ("status.json", "components.json")}  # fmt: skip
    assert ids["incidents/unresolved.json"] == [world.open_incident.id]
    assert ids["incidents.json"] == [world.open_incident.id, world.resolved_incident.id]
    assert ids["summary.json"] == [world.open_incident.id]
    assert ids["scheduled-maintenances/upcoming.json"] == [world.upcoming.id]
    assert ids["scheduled-maintenances/active.json"] == [world.in_progress.id]
    assert set(ids["scheduled-maintenances.json"]) == {world.upcoming.id, world.in_progress.id, world.completed.id,
                                                        world.cancelled.id}  # fmt: skip
    summary = bodies["summary.json"]
    assert [m["id"] for m in summary["scheduled_maintenances"]] == [world.in_progress.id, world.upcoming.id]
    # SEV1 is critical impact; the worst component is in a partial outage.
    assert summary["status"] == {"indicator": "critical", "description": "Major Service Outage"}
    assert bodies["status.json"]["status"] == summary["status"]

    components = {c["id"]: c for c in bodies["components.json"]["components"]}
    group = components[world.group.id]
    assert group["group"] is True and group["components"] == [world.sso.id, world.web.id]
    assert group["status"] == "partial_outage"  # the worst of its components
    assert components[world.sso.id]["group_id"] == world.group.id
    assert components[world.web.id]["status"] == "under_maintenance"
    assert components[world.billing.id]["group_id"] is None
    assert [c["id"] for c in bodies["components.json"]["components"]] == [
        world.group.id,
        world.sso.id,
        world.web.id,
        world.billing.id,
    ]

    incident = bodies["incidents/unresolved.json"]["incidents"][0]
    assert incident["status"] == "identified" and incident["impact"] == "critical"
    assert incident["shortlink"] == f"http://status.test/incidents/{world.open_incident.id}"
    assert [u["status"] for u in incident["incident_updates"]] == ["identified", "investigating"]
    newest = incident["incident_updates"][0]
    change = {"code": world.sso.id, "name": "Sign-in (SSO)", "old_status": "major_outage",
              "new_status": "partial_outage"}  # fmt: skip
    assert newest["affected_components"] == [change]
    assert [c["id"] for c in incident["components"]] == [world.sso.id]

    resolved = next(i for i in bodies["incidents.json"]["incidents"] if i["id"] == world.resolved_incident.id)
    assert resolved["status"] == "postmortem" and resolved["resolved_at"] is not None
    assert resolved["postmortem_body"] == "## What happened\nA **slow** query."
    cancelled = next(m for m in bodies["scheduled-maintenances.json"]["scheduled_maintenances"]
                     if m["id"] == world.cancelled.id)  # fmt: skip
    assert cancelled["status"] == "completed"


async def test_internal_notes_never_reach_the_public_site(app: Any, world: PublicWorld) -> None:
    store = app.state.site
    assert store.version > 0 and len(store.files) > 10
    for path, served in store.files.items():
        assert INTERNAL_NOTE.encode() not in served.body, path
        assert b"on-call DBA" not in served.body, path


def _component(status: str, *, group: bool = False) -> Component:
    now = utcnow()
    return Component(id=status, name=status, status=status, is_group=group, position=1, showcase=True,
                     only_show_if_degraded=False, created_at=now, updated_at=now)  # fmt: skip


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        ([], ("none", "All Systems Operational")),
        (["operational", "operational"], ("none", "All Systems Operational")),
        (["operational", "degraded_performance"], ("minor", "Minor Service Outage")),
        (["degraded_performance", "partial_outage"], ("major", "Partial System Outage")),
        (["partial_outage", "major_outage"], ("critical", "Major Service Outage")),
        (["operational", "under_maintenance"], ("none", "Service Under Maintenance")),
        (["under_maintenance", "partial_outage"], ("major", "Partial System Outage")),
    ],
)
def test_page_indicator_follows_the_worst_component(statuses: list[str], expected: tuple[str, str]) -> None:
    now = utcnow()
    page = StatusPage(id="p", name="Acme", url="http://x", time_zone="Etc/UTC", updated_at=now)
    data = PublicData(page=page, base_url="http://x", now=now, components=[_component(s) for s in statuses],
                      incidents=[], maintenances=[])  # fmt: skip
    assert overall(data)[:2] == expected
