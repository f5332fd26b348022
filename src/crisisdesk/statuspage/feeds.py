"""RSS and Atom feeds of incidents (feedgen) and an iCalendar feed of maintenance (icalendar).

Entry content is the updates' sanitised HTML; feedgen escapes it into the XML, so a reader
gets HTML to display and never markup that the feed itself would interpret.
"""

from __future__ import annotations

from html import escape
from urllib.parse import urlsplit

import nh3
from feedgen.feed import FeedGenerator
from icalendar import Calendar, Event

from crisisdesk.incident.models import Incident, Kind
from crisisdesk.kit.render import plain_text
from crisisdesk.statuspage.public import STATUS_LABELS, PublicData, public_updates, shortlink

FEED_LIMIT = 50


def entry_html(incident: Incident) -> str:
    """The incident's public updates, newest first, as Statuspage formats a feed entry."""
    parts = []
    if incident.kind == Kind.maintenance and incident.scheduled_for and incident.scheduled_until:
        window = f"{incident.scheduled_for:%b %d, %H:%M} – {incident.scheduled_until:%b %d, %H:%M} UTC"
        parts.append(f"<p><strong>THIS IS A SCHEDULED EVENT {escape(window)}</strong></p>")
    for update in public_updates(incident):
        label = escape(STATUS_LABELS.get(update.status, update.status))
        parts.append(f"<p><small>{update.display_at:%b %d, %H:%M} UTC</small><br><strong>{label}</strong> - "
                     f"{nh3.clean(update.body_html)}</p>")  # fmt: skip
    return "".join(parts)


def _generator(data: PublicData, self_path: str) -> FeedGenerator:
    feed = FeedGenerator()
    feed.id(f"{data.base_url}/history")
    feed.title(f"{data.page.name} status - Incident history")
    feed.link(href=f"{data.base_url}/history", rel="alternate")
    feed.link(href=f"{data.base_url}{self_path}", rel="self")
    feed.description(f"Statuspage for {data.page.name}")
    feed.language("en")
    feed.updated(data.updated_at())
    feed.lastBuildDate(data.updated_at())
    feed.generator("crisisdesk")
    events = sorted(data.incidents + data.maintenances, key=lambda i: (i.created_at, i.id), reverse=True)
    for incident in events[:FEED_LIMIT]:
        link = shortlink(data.base_url, incident)
        entry = feed.add_entry(order="append")
        entry.id(link)
        entry.guid(link, permalink=True)
        entry.title(incident.name)
        entry.link(href=link)
        entry.published(incident.created_at)
        entry.updated(incident.updated_at)
        html = entry_html(incident)
        entry.content(html, type="html")
        entry.description(html)
    return feed


def rss(data: PublicData) -> bytes:
    """RSS 2.0 of the newest incidents and maintenances."""
    return bytes(_generator(data, "/history.rss").rss_str(pretty=True))


def atom(data: PublicData) -> bytes:
    """Atom 1.0 of the newest incidents and maintenances."""
    return bytes(_generator(data, "/history.atom").atom_str(pretty=True))


def calendar(data: PublicData) -> bytes:
    """iCalendar of maintenance windows, cancelled ones marked CANCELLED."""
    host = urlsplit(data.base_url).hostname or "crisisdesk"
    cal = Calendar()
    cal.add("prodid", "-//crisisdesk//status page//EN")
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("x-wr-calname", f"{data.page.name} scheduled maintenance")
    for m in data.maintenances:
        if m.scheduled_for is None or m.scheduled_until is None:
            continue
        updates = public_updates(m)
        event = Event()
        event.add("uid", f"{m.id}@{host}")
        event.add("dtstamp", m.updated_at)
        event.add("last-modified", m.updated_at)
        event.add("dtstart", m.scheduled_for)
        event.add("dtend", m.scheduled_until)
        event.add("summary", m.name)
        event.add("description", plain_text(updates[0].body_html) if updates else "")
        event.add("url", shortlink(data.base_url, m))
        event.add("sequence", len(updates))
        event.add("status", "CANCELLED" if m.cancelled_at else "CONFIRMED")
        cal.add_component(event)
    return bytes(cal.to_ical())
