"""The public HTML pages, feeds, badge and widget: content, accessibility basics and sanitising."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import httpx
import pytest
from icalendar import Calendar

from crisisdesk.incident import service as incidents
from crisisdesk.kit.db import Database
from tests.fixtures.statuspage import INTERNAL_NOTE, PublicWorld, make_public_world

ATOM = "{http://www.w3.org/2005/Atom}"


class Page(HTMLParser):
    """Collects tags with their attributes, and the text inside chosen elements."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def find(self, tag: str | None = None, **attrs: str) -> list[dict[str, str]]:
        return [a for t, a in self.tags if (tag is None or t == tag)
                and all(a.get(k.replace("_", "-")) == v for k, v in attrs.items())]  # fmt: skip


def assert_nothing_executable(html: str, where: str) -> None:
    """No script that the content put there, no javascript: URL, no event-handler attribute."""
    assert "<script>alert" not in html, where
    for tag, attrs in Page(html).tags:
        for name, value in attrs.items():
            assert not name.startswith("on"), f"{where}: <{tag} {name}=…>"
            assert not value.strip().lower().startswith("javascript:"), f"{where}: <{tag} {name}={value!r}>"
        if tag == "script":
            assert attrs.get("src", "").startswith("/assets/"), f"{where}: a script that is not the page's own"
        assert tag not in ("img", "iframe", "object", "embed"), f"{where}: <{tag}>"


@pytest.fixture
async def world(db: Database) -> PublicWorld:
    return await make_public_world(db)


async def test_front_page_shows_status_incidents_maintenance_and_components(
    client: httpx.AsyncClient, world: PublicWorld
) -> None:
    html = (await client.get("/")).text
    page = Page(html)
    overall = page.find(id="overall-status")
    assert overall and overall[0]["data-indicator"] == "critical"
    assert "Major Service Outage" in html
    incident = page.find("article", data_incident_id=world.open_incident.id)
    assert incident and "incident" in incident[0]["class"].split()
    # Updates newest first; the internal note is nowhere.
    first, second = html.index("The IdP certificate expired."), html.index("We are investigating failed sign-ins.")
    assert first < second
    assert INTERNAL_NOTE not in html
    assert len([a for t, a in page.tags if "incident-update" in a.get("class", "").split()]) >= 2
    # Maintenance in progress and upcoming; completed and cancelled ones are history.
    for m in (world.in_progress, world.upcoming):
        assert page.find("article", data_incident_id=m.id)
    for m in (world.completed, world.cancelled):
        assert not page.find("article", data_incident_id=m.id)
    # Components carry their status as data and as text; groups collapse with <details>.
    sso = page.find("li", data_component_id=world.sso.id)
    assert sso and sso[0]["data-status"] == "partial_outage"
    assert page.find("details", data_component_id=world.group.id)
    assert "Partial outage" in html and "Under maintenance" in html
    bars = [a for t, a in page.tags if t == "i"]
    assert len(bars) == 3 * 90
    # A clean day is a bare bar; a day with trouble names its date, uptime and what happened.
    troubled = [a for a in bars if a.get("class")]
    assert troubled and all(a.get("title") for a in troubled)
    assert any("uptime" in a["title"] for a in troubled if a["class"] != "n")
    assert all(a.get("class") in {"d", "p", "m", "u", "n"} for a in troubled)
    assert page.find("a", href="/history") and page.find("a", href=f"/incidents/{world.resolved_incident.id}")


async def test_pages_meet_the_accessibility_basics(client: httpx.AsyncClient, world: PublicWorld) -> None:
    paths = ["/", "/history", f"/incidents/{world.open_incident.id}", f"/incidents/{world.in_progress.id}"]
    for path in paths:
        html = (await client.get(path)).text
        page = Page(html)
        assert page.find("html")[0].get("lang") == "en", path
        assert len(page.find("h1")) == 1, path
        for landmark in ("header", "nav", "main", "footer"):
            assert page.find(landmark), f"{path}: no <{landmark}>"
        assert page.find("meta", name="viewport"), path
        assert page.find("a", href="#main"), f"{path}: no skip link"
        times = page.find("time")
        assert times and all(t.get("datetime", "").endswith("Z") for t in times), path
    front = (await client.get("/")).text
    # Every coloured status also says what it is in words.
    for chunk in front.split('class="status-text ')[1:]:
        label = chunk.split("</span>", 2)[1].strip()
        assert label in {"Operational", "Degraded performance", "Partial outage", "Major outage", "Under maintenance"}
    # The bars are hidden from screen readers; each component says its uptime and trouble days in words.
    assert front.count("uptime over the past 90 days.") == 3
    assert "Days with trouble:" in front


async def test_permalink_shows_updates_components_and_the_published_postmortem(
    client: httpx.AsyncClient, world: PublicWorld
) -> None:
    html = (await client.get(f"/incidents/{world.resolved_incident.id}")).text
    assert "Slow exports" in html and "Postmortem" in html and "<strong>slow</strong>" in html
    assert "Web app" in html and "Exports are fast again." in html
    assert html.index("Exports are fast again.") < html.index("We are investigating failed sign-ins.")
    history = (await client.get("/history")).text
    for event in (world.open_incident, world.resolved_incident, world.completed, world.cancelled):
        assert f'href="/incidents/{event.id}"' in history
    cancelled = (await client.get(f"/incidents/{world.cancelled.id}")).text
    assert "Cancelled" in cancelled and "was cancelled" in cancelled
    assert (await client.get("/incidents/nope")).status_code == 404


async def test_feeds_calendar_badge_and_widget(client: httpx.AsyncClient, world: PublicWorld) -> None:
    rss = await client.get("/history.rss")
    assert rss.headers["content-type"].startswith("application/rss+xml")
    items = ET.fromstring(rss.content).findall("./channel/item")
    links = [i.findtext("link") for i in items]
    assert f"http://status.test/incidents/{world.open_incident.id}" in links
    assert all(link and link.startswith("http://status.test/incidents/") for link in links)
    atom = ET.fromstring((await client.get("/history.atom")).content)
    entries = atom.findall(f"{ATOM}entry")
    assert len(entries) == len(items) == 6
    content = next(e for e in entries if e.findtext(f"{ATOM}title") == "Sign-in failures for SSO users")
    assert "The IdP certificate expired." in (content.findtext(f"{ATOM}content") or "")
    assert INTERNAL_NOTE.encode() not in rss.content

    ics = await client.get("/maintenance.ics")
    assert ics.headers["content-type"].startswith("text/calendar")
    events = {str(e["summary"]): e for e in Calendar.from_ical(ics.content).walk("VEVENT")}
    assert set(events) == {"Billing database upgrade", "Web app rollout", "Invoice run migration", "Cancelled window"}
    assert str(events["Cancelled window"]["status"]) == "CANCELLED"
    assert events["Web app rollout"]["dtstart"].dt.tzinfo is not None

    badge = await client.get("/badge.svg")
    assert badge.headers["content-type"].startswith("image/svg+xml")
    svg = ET.fromstring(badge.content)
    assert svg.get("aria-label") == "status: Major Service Outage" and b"#b91c1c" in badge.content

    widget = await client.get("/widget.js")
    assert widget.headers["content-type"].startswith("application/javascript")
    assert b"/api/v2/status.json" in widget.content and b'"http://status.test"' in widget.content
    assert b"__CRISISDESK_BASE_URL__" not in widget.content
    css = await client.get("/assets/status.css")
    assert css.headers["content-type"].startswith("text/css") and b".component" in css.content
    assert b"EventSource" in (await client.get("/assets/status.js")).content


HOSTILE = "Look: <script>alert(1)</script> and [x](javascript:alert(1)) and <img src=x onerror=alert(1)>"


async def test_hostile_markdown_cannot_run_anywhere_public(client: httpx.AsyncClient, db: Database,
                                                           world: PublicWorld) -> None:  # fmt: skip
    async with db.session() as s:
        incident = await incidents.get_incident(s, world.open_incident.id)
        await incidents.post_update(s, world.actor, incident, status="monitoring", body=HOSTILE)
    for path in ("/", f"/incidents/{incident.id}", "/history"):
        html = (await client.get(path)).text
        assert "Look:" in html, path
        assert_nothing_executable(html, path)
    for path, tag in (("/history.rss", "./channel/item/description"), ("/history.atom", f"{ATOM}entry/{ATOM}content")):
        raw = (await client.get(path)).content
        assert b"<script" not in raw and b"<img" not in raw, path
        bodies = [e.text or "" for e in ET.fromstring(raw).findall(tag)]
        assert any("Look:" in b for b in bodies), path
        for body in bodies:  # what a feed reader will render as HTML
            assert_nothing_executable(body, path)
    for path in ("/api/v2/incidents/unresolved.json", "/api/v2/summary.json", "/api/v2/incidents.json"):
        response = await client.get(path)
        assert b"<script" not in response.content.lower() and b"<img" not in response.content, path
        assert response.headers["x-content-type-options"] == "nosniff"
        bodies = [u["body"] for i in response.json()["incidents"] for u in i["incident_updates"]]
        assert HOSTILE in bodies, path  # the source survives intact for API clients, as Statuspage serves it


def test_page_parser_catches_what_it_should() -> None:
    with pytest.raises(AssertionError):
        assert_nothing_executable('<p><a href="javascript:alert(1)">x</a></p>', "probe")
    with pytest.raises(AssertionError):
        assert_nothing_executable('<p onclick="x()">x</p>', "probe")
    assert_nothing_executable("<p>&lt;script&gt;alert(1)&lt;/script&gt; javascript: is text here</p>", "probe")
