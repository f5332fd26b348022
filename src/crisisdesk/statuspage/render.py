"""Renders the whole public site from the database into a :class:`Site` (write time).

Every path is a file: the HTML pages, the eight Statuspage v2 endpoints, the feeds, the badge,
the widget and the page's own CSS and JavaScript. Nothing here runs per request.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import nh3
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from sqlalchemy.ext.asyncio import AsyncSession

from crisisdesk.catalog.models import Component, ComponentStatus
from crisisdesk.config import Settings
from crisisdesk.incident.models import Incident, Kind
from crisisdesk.kit.pages import TEMPLATES_DIR
from crisisdesk.kit.render import plain_text
from crisisdesk.kit.time import iso
from crisisdesk.statuspage import badge, feeds, v2, widget
from crisisdesk.statuspage.models import StatusPage
from crisisdesk.statuspage.public import (
    COMPONENT_LABELS,
    IMPACT_LABELS,
    STATUS_LABELS,
    PublicData,
    load,
    public_updates,
)
from crisisdesk.statuspage.store import Site
from crisisdesk.statuspage.uptime import Day, daily_uptime, format_duration, format_percent

HTML = "text/html; charset=utf-8"
RECENT_DAYS = 14
EXCERPT = 240

# Defence in depth: bodies were sanitised when written, but a row written some other way
# (an import, a script) passes through the same allowlist again before it reaches a page.
_TAGS = {
    "p", "br", "strong", "em", "del", "s", "code", "pre", "blockquote", "ul", "ol", "li", "a",
    "h1", "h2", "h3", "h4", "h5", "h6", "hr", "table", "thead", "tbody", "tr", "th", "td",
}  # fmt: skip


def clean(html: str | None) -> Markup:
    """Sanitised HTML, safe to place in a page."""
    safe = nh3.clean(html or "", tags=_TAGS, attributes={"a": {"href", "title"}, "th": {"align"}, "td": {"align"}},
                     url_schemes={"http", "https", "mailto"}, link_rel="noopener noreferrer nofollow")  # fmt: skip
    return Markup(safe)  # noqa: S704 - nh3 has just sanitised it


def when(value: datetime | None) -> str:
    """An absolute UTC time for people: Mar 05, 2026 · 14:30 UTC."""
    return value.strftime("%b %d, %Y · %H:%M UTC") if value else ""


def excerpt(html: str) -> str:
    text = plain_text(html)
    return text if len(text) <= EXCERPT else text[: EXCERPT - 1].rsplit(" ", 1)[0] + "…"


def affected_names(data: PublicData) -> Callable[[Incident], list[str]]:
    def names(incident: Incident) -> list[str]:
        by_id = data.by_id
        linked = {link.component_id for link in incident.components}
        return [by_id[i].name for i in sorted(linked, key=lambda i: (by_id[i].position, by_id[i].name)) if i in by_id]

    return names


def _environment() -> Environment:
    env = Environment(loader=FileSystemLoader(str(TEMPLATES_DIR)), autoescape=select_autoescape(["html"]),
                      trim_blocks=True, lstrip_blocks=True)  # fmt: skip
    env.filters.update(iso=iso, when=when, clean=clean)
    env.globals.update(
        updates=public_updates,
        status_label=lambda s: STATUS_LABELS.get(s, str(s).replace("_", " ").capitalize()),
        impact_label=lambda s: IMPACT_LABELS.get(s, s),
        excerpt=excerpt,
    )
    return env


ENV = _environment()
# One letter per status keeps 90 bars per component small; a clean day has no class at all.
BAR_CLASS = {
    ComponentStatus.operational: "",
    ComponentStatus.degraded_performance: "d",
    ComponentStatus.partial_outage: "p",
    ComponentStatus.major_outage: "m",
    ComponentStatus.under_maintenance: "u",
}


def bar(day: Day) -> dict[str, str]:
    """One uptime bar: its colour class and the text of its tooltip (empty on a clean day)."""
    date = day.day.strftime("%b %d, %Y")
    if day.percent is None or day.worst is None:
        return {"cls": "n", "label": f"{date}: no data"}
    problems = [
        f"{COMPONENT_LABELS[s].lower()} {format_duration(t)}"
        for s, t in sorted(day.seconds.items(), key=lambda st: -st[1])
        if s != ComponentStatus.operational and t > 0
    ]
    if not problems:
        return {"cls": "", "label": ""}
    label = f"{date}: {format_percent(day.percent)} uptime, {'; '.join(problems)}"
    return {"cls": BAR_CLASS[day.worst] or "d", "label": label}


def component_view(data: PublicData, component: Component) -> dict[str, Any]:
    status = data.status_of(component)
    view: dict[str, Any] = {
        "id": component.id,
        "name": component.name,
        "description": component.description,
        "status": status.value,
        "label": COMPONENT_LABELS[status],
        "group": component.is_group,
    }
    if component.is_group:
        view["children"] = [component_view(data, c) for c in data.children(component) if _visible(data, c)]
    else:
        history = data.history.get(component.id, [])
        uptime = daily_uptime(history, now=data.now)
        view["bars"] = [bar(day) for day in uptime.days]
        view["last_day"] = uptime.days[-1].day.isoformat() if uptime.days else ""
        view["trouble_days"] = [b["label"] for b in view["bars"] if b["label"] and b["cls"] != "n"]
        view["percent"] = format_percent(uptime.percent)
        view["percent_30"] = format_percent(daily_uptime(history, now=data.now, days=30).percent)
    return view


def _visible(data: PublicData, component: Component) -> bool:
    if not component.showcase:
        return False
    if component.only_show_if_degraded and data.status_of(component) == ComponentStatus.operational:
        return False
    return True


def component_tree(data: PublicData) -> list[dict[str, Any]]:
    """Groups (with their visible components) and ungrouped components, in page order."""
    tree = []
    for item in data.top_level():
        if not _visible(data, item):
            continue
        view = component_view(data, item)
        if item.is_group and not view["children"]:
            continue
        tree.append(view)
    return tree


@dataclass
class Month:
    key: str
    title: str
    events: list[Incident]


def months(data: PublicData) -> list[Month]:
    """Incidents and past or running maintenance, grouped by the month they started."""
    shown = data.incidents + [m for m in data.maintenances if m.status != "scheduled"]
    shown.sort(key=lambda e: (e.started_at, e.id), reverse=True)
    result: list[Month] = []
    for event in shown:
        key = event.started_at.strftime("%Y-%m")
        if not result or result[-1].key != key:
            result.append(Month(key, event.started_at.strftime("%B %Y"), []))
        result[-1].events.append(event)
    return result


def _common(data: PublicData, css: bytes, js: bytes) -> dict[str, Any]:
    return {
        "page_name": data.page.name,
        "base_url": data.base_url,
        "updated_at": data.updated_at(),
        "css_version": widget.fingerprint(css),
        "js_version": widget.fingerprint(js),
        "affected_names": affected_names(data),
        "guidance_of": data.guidance.get,
    }


def render_pages(data: PublicData, css: bytes, js: bytes) -> dict[str, str]:
    """The HTML pages: the front page, the history, and one permalink per event."""
    indicator, description, maintenance = v2.overall(data)
    tone = "maintenance" if maintenance and indicator == "none" else indicator
    common = _common(data, css, js)
    names = common["affected_names"]
    recent_since = data.now - timedelta(days=RECENT_DAYS)
    open_ids = {i.id for i in data.open_incidents()}
    recent = [i for i in data.incidents if i.id not in open_ids and (i.resolved_at or i.updated_at) >= recent_since]
    pages = {
        "/": ENV.get_template("status/index.html").render(
            **common, active="home", canonical="/", indicator=indicator, description=description, tone=tone,
            open_incidents=data.open_incidents(), active_maintenances=data.active_maintenances(),
            upcoming_maintenances=data.upcoming_maintenances(), tree=component_tree(data),
            recent=recent, recent_days=RECENT_DAYS,
        ),
        "/history": ENV.get_template("status/history.html").render(
            **common, active="history", canonical="/history", months=months(data)),
    }  # fmt: skip
    template = ENV.get_template("status/incident.html")
    for event in data.incidents + data.maintenances:
        postmortem = event.postmortem_html if event.postmortem_published_at else None
        pages[f"/incidents/{event.id}"] = template.render(
            **common, active="event", canonical=f"/incidents/{event.id}", event=event,
            is_maintenance=event.kind == Kind.maintenance, names=names(event), postmortem=postmortem,
        )  # fmt: skip
    return pages


def render_site(data: PublicData) -> Site:
    """Every public file for this state of the database."""
    site = Site()
    css, js = widget.asset("status.css"), widget.asset("status.js")
    for path, body in v2.endpoints(data).items():
        site.add(path, v2.JSON_TYPE, body)
    for path, html in render_pages(data, css, js).items():
        site.add(path, HTML, html)
    indicator, description, maintenance = v2.overall(data)
    tone = "maintenance" if maintenance and indicator == "none" else indicator
    site.add("/history.rss", "application/rss+xml; charset=utf-8", feeds.rss(data))
    site.add("/history.atom", "application/atom+xml; charset=utf-8", feeds.atom(data))
    site.add("/maintenance.ics", "text/calendar; charset=utf-8", feeds.calendar(data))
    site.add("/badge.svg", "image/svg+xml; charset=utf-8", badge.render_badge("status", description, tone))
    site.add("/widget.js", "application/javascript; charset=utf-8", widget.widget_script(data.base_url))
    site.add("/assets/status.css", "text/css; charset=utf-8", css)
    site.add("/assets/status.js", "application/javascript; charset=utf-8", js)
    return site


async def build_site(session: AsyncSession, settings: Settings, page: StatusPage) -> Site:
    """Read the database and render the public site."""
    return render_site(await load(session, settings, page))
