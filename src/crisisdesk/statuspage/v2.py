"""The Statuspage v2 public API: the eight read-only endpoints, with Atlassian's field names.

The page indicator follows Statuspage: the worse of the component statuses and the impact of
the unresolved incidents. A component in degraded performance makes it ``minor``, a partial
outage ``major``, a major outage ``critical``. Descriptions:

- none: "All Systems Operational" ("Service Under Maintenance" while a maintenance runs and
  nothing is worse; the indicator stays ``none``, as the v2 enumeration has no maintenance value)
- minor: "Minor Service Outage"
- major: "Partial System Outage"
- critical: "Major Service Outage"

``body`` carries the Markdown source, as Statuspage does. The JSON escapes ``<``, ``>`` and
``&`` as ``\\u003c`` etc., so no HTML can be read out of the bytes even by a sniffing client.
"""

from __future__ import annotations

from typing import Any

import orjson

from crisisdesk.catalog.models import Component, ComponentStatus
from crisisdesk.incident.models import Incident, IncidentStatus, Kind
from crisisdesk.kit.time import iso
from crisisdesk.statuspage.public import PublicData, public_updates, shortlink

JSON_TYPE = "application/json; charset=utf-8"
LISTING_LIMIT = 50

INDICATORS = ("none", "minor", "major", "critical")
DESCRIPTIONS = {
    "none": "All Systems Operational",
    "minor": "Minor Service Outage",
    "major": "Partial System Outage",
    "critical": "Major Service Outage",
}
MAINTENANCE_DESCRIPTION = "Service Under Maintenance"
COMPONENT_INDICATOR = {
    ComponentStatus.operational: "none",
    ComponentStatus.under_maintenance: "none",
    ComponentStatus.degraded_performance: "minor",
    ComponentStatus.partial_outage: "major",
    ComponentStatus.major_outage: "critical",
}
IMPACT_INDICATOR = {"none": "none", "minor": "minor", "major": "major", "critical": "critical", "maintenance": "none"}


def dump(value: object) -> bytes:
    """Compact JSON with the HTML-significant characters escaped (valid JSON all the same)."""
    raw = orjson.dumps(value)
    return raw.replace(b"<", b"\\u003c").replace(b">", b"\\u003e").replace(b"&", b"\\u0026")


def page_json(data: PublicData) -> dict[str, Any]:
    return {
        "id": data.page.id,
        "name": data.page.name,
        "url": data.base_url,
        "time_zone": data.page.time_zone,
        "updated_at": iso(data.updated_at()),
    }


def overall(data: PublicData) -> tuple[str, str, bool]:
    """(indicator, description, under maintenance) for the whole page."""
    rank = INDICATORS.index
    indicator = "none"
    for component in data.components:
        if not component.is_group:
            candidate = COMPONENT_INDICATOR[ComponentStatus(component.status)]
            indicator = max(indicator, candidate, key=rank)
    for incident in data.open_incidents():
        indicator = max(indicator, IMPACT_INDICATOR.get(incident.impact, "none"), key=rank)
    in_maintenance = bool(data.active_maintenances()) or any(
        c.status == ComponentStatus.under_maintenance for c in data.components if not c.is_group
    )
    if indicator == "none" and in_maintenance:
        return indicator, MAINTENANCE_DESCRIPTION, True
    return indicator, DESCRIPTIONS[indicator], in_maintenance


def status_json(data: PublicData) -> dict[str, str]:
    indicator, description, _ = overall(data)
    return {"indicator": indicator, "description": description}


def component_json(data: PublicData, component: Component) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": component.id,
        "name": component.name,
        "status": data.status_of(component).value,
        "created_at": iso(component.created_at),
        "updated_at": iso(data.updated_at_of(component)),
        "position": component.position,
        "description": component.description,
        "showcase": component.showcase,
        "start_date": component.start_date.isoformat() if component.start_date else None,
        "group_id": None if component.is_group else component.group_id,
        "page_id": data.page.id,
        "group": component.is_group,
        "only_show_if_degraded": component.only_show_if_degraded,
    }
    if component.is_group:
        body["components"] = [c.id for c in data.children(component)]
    return body


def ordered_components(data: PublicData) -> list[Component]:
    """Page order, each group followed by its components."""
    result: list[Component] = []
    for item in data.top_level():
        result.append(item)
        if item.is_group:
            result.extend(data.children(item))
    return result


def incident_json(data: PublicData, incident: Incident, *, full: bool) -> dict[str, Any]:
    names = data.by_id
    updates = []
    for update in public_updates(incident):
        affected = [
            {
                "code": change.component_id,
                "name": names[change.component_id].name if change.component_id in names else "",
                "old_status": change.old_status,
                "new_status": change.new_status,
            }
            for change in sorted(update.affected, key=lambda c: c.id)
        ]
        updates.append({
            "id": update.id,
            "status": update.status,
            "body": update.body,
            "incident_id": incident.id,
            "created_at": iso(update.created_at),
            "updated_at": iso(update.updated_at),
            "display_at": iso(update.display_at),
            "affected_components": affected,
            "deliver_notifications": update.deliver_notifications,
            "custom_tweet": None,
            "tweet_id": None,
        })  # fmt: skip
    linked = {link.component_id for link in incident.components}
    body: dict[str, Any] = {
        "id": incident.id,
        "name": incident.name,
        "status": incident.status,
        "created_at": iso(incident.created_at),
        "updated_at": iso(incident.updated_at),
        "monitoring_at": iso(incident.monitoring_at),
        "resolved_at": iso(incident.resolved_at),
        "impact": incident.impact,
        "shortlink": shortlink(data.base_url, incident),
        "started_at": iso(incident.started_at),
        "page_id": data.page.id,
        "incident_updates": updates,
        "components": [component_json(data, c) for c in data.components if c.id in linked],
    }
    if full:
        published = incident.postmortem_published_at is not None
        body["postmortem_body"] = incident.postmortem_body if published else None
        body["postmortem_body_last_updated_at"] = iso(incident.postmortem_updated_at) if published else None
    if incident.kind == Kind.maintenance:
        body["scheduled_for"] = iso(incident.scheduled_for)
        body["scheduled_until"] = iso(incident.scheduled_until)
    return body


def endpoints(data: PublicData) -> dict[str, bytes]:
    """Every v2 path and its JSON bytes."""
    page = page_json(data)
    status = status_json(data)
    components = [component_json(data, c) for c in ordered_components(data)]
    unresolved = [incident_json(data, i, full=False) for i in data.open_incidents()]
    recent = [incident_json(data, i, full=True) for i in data.incidents[:LISTING_LIMIT]]
    maintenances = [incident_json(data, m, full=True) for m in data.maintenances[:LISTING_LIMIT]]
    upcoming = [incident_json(data, m, full=True) for m in data.upcoming_maintenances()]
    active = [incident_json(data, m, full=True) for m in data.active_maintenances()]
    summary_maintenances = [incident_json(data, m, full=False)
                            for m in data.active_maintenances() + data.upcoming_maintenances()]  # fmt: skip
    prefix = "/api/v2"
    return {
        f"{prefix}/status.json": dump({"page": page, "status": status}),
        f"{prefix}/summary.json": dump({"page": page, "components": components, "incidents": unresolved,
                                        "scheduled_maintenances": summary_maintenances, "status": status}),
        f"{prefix}/components.json": dump({"page": page, "components": components}),
        f"{prefix}/incidents.json": dump({"page": page, "incidents": recent}),
        f"{prefix}/incidents/unresolved.json": dump({"page": page, "incidents": unresolved}),
        f"{prefix}/scheduled-maintenances.json": dump({"page": page, "scheduled_maintenances": maintenances}),
        f"{prefix}/scheduled-maintenances/upcoming.json": dump({"page": page, "scheduled_maintenances": upcoming}),
        f"{prefix}/scheduled-maintenances/active.json": dump({"page": page, "scheduled_maintenances": active}),
    }  # fmt: skip


def is_resolved(status: str) -> bool:
    return status in (IncidentStatus.resolved, IncidentStatus.postmortem)
