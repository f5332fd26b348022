"""Vendor watch: poll third-party status pages and alert the components that depend on them.

A vendor is a Statuspage v2 ``summary.json`` or an RSS/Atom feed, polled by its own recurring
job (kind ``VENDOR_POLL``, key ``vendor:<id>``) with conditional requests: the ``ETag`` and
``Last-Modified`` of the last answer that parsed go back as ``If-None-Match`` and
``If-Modified-Since``, and a 304 changes nothing but the time of the poll.

- summary.json: every component becomes a VendorComponent (``external_id`` = its id), with the
  page's indicator, and on each component the latest update of the unresolved incidents that
  name it (the vendor's own words).
- A feed stands as one VendorComponent (``external_id`` "feed"). It is degraded
  (``degraded_performance``) while its newest entry is not a resolution: the entry's title and
  text hold neither the word "resolved" nor "completed", and it is under 7 days old (an older
  entry is history). Its message is the entry's title and text, HTML stripped.
- Each of our components that depends on a vendor component gets its own alert (dedup key
  ``vendor:<vendor component id>:<component id>``) when that vendor component is anything but
  operational, renewed with the vendor's words when they change, and resolved when it is
  operational again (or the dependency or vendor is removed).
- A failed fetch or an answer that does not parse is kept as ``last_error`` and shown in the
  console; polling goes on, and our own fetch failures never raise an alert.
"""

from __future__ import annotations

import html
import json
import re
import time
from calendar import timegm
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp
import feedparser
import nh3
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from crisisdesk.catalog import service as catalog
from crisisdesk.config import Settings
from crisisdesk.kit import jobs
from crisisdesk.kit.errors import InvalidInput, NotFound
from crisisdesk.kit.ids import new_id
from crisisdesk.kit.time import utcnow
from crisisdesk.notify import addresses
from crisisdesk.signal.ingest import AlertIn, builtin_integration, ingest
from crisisdesk.signal.models import (
    AlertSeverity,
    SourceKind,
    Vendor,
    VendorComponent,
    VendorDependency,
    VendorKind,
)

VENDOR_POLL = "signal.vendor"  # a job kind of the probe lane (signal.tasks.PROBE_KINDS)
MIN_INTERVAL = 30
MAX_INTERVAL = 86_400
FETCH_TIMEOUT = 20.0
MAX_BODY = 5 << 20
MAX_REDIRECTS = 5
REDIRECTS = frozenset({301, 302, 303, 307, 308})
FEED_ENTRY_MAX_AGE = timedelta(days=7)
OPERATIONAL = "operational"
STATUSES = ("operational", "degraded_performance", "partial_outage", "major_outage", "under_maintenance")
SEVERITY_OF_STATUS = {
    "major_outage": "critical",
    "partial_outage": "error",
    "degraded_performance": "warning",
    "under_maintenance": "info",
}
USER_AGENT = "crisisdesk-vendor-watch/1"
_RESOLUTION = re.compile(r"\b(resolved|completed)\b", re.IGNORECASE)
FIELDS = ("name", "kind", "url", "interval_seconds", "enabled")


def job_key(vendor_id: str) -> str:
    return f"vendor:{vendor_id}"


def alert_key(vendor_component_id: str, component_id: str) -> str:
    return f"vendor:{vendor_component_id}:{component_id}"


def status_words(status: str) -> str:
    return status.replace("_", " ")


# --- Validation and service ----------------------------------------------------------------


def _validate(values: dict[str, Any]) -> dict[str, Any]:
    out = dict(values)
    name = str(values.get("name") or "").strip()
    if not name or len(name) > 200 or "\x00" in name:
        raise InvalidInput("the name must be 1-200 characters", field="name")
    out["name"] = name
    try:
        out["kind"] = VendorKind(str(values.get("kind")))
    except ValueError:
        raise InvalidInput(
            "the kind must be statuspage (a summary.json URL) or feed (RSS/Atom)", field="kind"
        ) from None
    url = str(values.get("url") or "").strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidInput("the URL must start with http:// or https:// and name a host", field="url")
    if len(url) > 2048 or any(c.isspace() or ord(c) < 32 for c in url):
        raise InvalidInput("the URL is longer than 2,048 characters or holds spaces", field="url")
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise InvalidInput("the URL's port is not a number in 1-65535", field="url") from None
    out["url"] = url
    interval = values.get("interval_seconds")
    if not isinstance(interval, int) or isinstance(interval, bool) or not MIN_INTERVAL <= interval <= MAX_INTERVAL:
        raise InvalidInput(f"the interval must be {MIN_INTERVAL}-{MAX_INTERVAL} seconds", field="interval_seconds")
    if not isinstance(values.get("enabled"), bool):
        raise InvalidInput("enabled must be true or false", field="enabled")
    return out


async def get_vendor(session: AsyncSession, vendor_id: str) -> Vendor:
    """One vendor, or NotFound naming ``vendor_id``."""
    vendor = await session.get(Vendor, vendor_id) if "\x00" not in vendor_id else None
    if vendor is None:
        raise NotFound(f"no vendor with id {vendor_id!r}", field="vendor_id")
    return vendor


async def list_vendors(session: AsyncSession) -> list[Vendor]:
    """Every vendor, by name."""
    return list(await session.scalars(select(Vendor).order_by(Vendor.name, Vendor.id)))


async def components_of(session: AsyncSession, vendor_id: str) -> list[VendorComponent]:
    """A vendor's components, by name."""
    rows = await session.scalars(
        select(VendorComponent).where(VendorComponent.vendor_id == vendor_id).order_by(VendorComponent.name)
    )
    return list(rows)


async def get_vendor_component(session: AsyncSession, vendor: Vendor, vendor_component_id: str) -> VendorComponent:
    """One component of this vendor, or NotFound naming ``vendor_component_id``."""
    row = await session.get(VendorComponent, vendor_component_id) if "\x00" not in vendor_component_id else None
    if row is None or row.vendor_id != vendor.id:
        raise NotFound(f"no component {vendor_component_id!r} on this vendor", field="vendor_component_id")
    return row


async def dependents(session: AsyncSession, vendor_component_ids: list[str]) -> dict[str, list[str]]:
    """Our component ids that depend on each vendor component."""
    out: dict[str, list[str]] = {vc: [] for vc in vendor_component_ids}
    if vendor_component_ids:
        rows = await session.execute(
            select(VendorDependency.vendor_component_id, VendorDependency.component_id).where(
                VendorDependency.vendor_component_id.in_(vendor_component_ids)
            )
        )
        for vc, component_id in rows:
            out[vc].append(component_id)
    return out


async def create_vendor(session: AsyncSession, **values: Any) -> Vendor:
    """Register a vendor's status page; an enabled one is polled at once and then every interval."""
    fields = _validate({"interval_seconds": 120, "enabled": True, **values})
    vendor = Vendor(id=new_id(), **fields)
    session.add(vendor)
    await session.flush()
    if vendor.enabled:
        await poll_soon(session, vendor)
    return vendor


async def poll_soon(session: AsyncSession, vendor: Vendor) -> None:
    """Poll the vendor now (and then every interval)."""
    await jobs.schedule(session, VENDOR_POLL, utcnow(), key=job_key(vendor.id), payload={"vendor_id": vendor.id})


async def update_vendor(session: AsyncSession, vendor: Vendor, **changes: Any) -> Vendor:
    """Change a vendor; a new URL or kind forgets the validators so the next poll reads it whole."""
    unknown = set(changes) - set(FIELDS)
    if unknown:
        raise InvalidInput(f"unknown field {sorted(unknown)[0]!r}", field=sorted(unknown)[0])
    current = {name: getattr(vendor, name) for name in FIELDS}
    fields = _validate({**current, **changes})
    if fields["url"] != vendor.url or fields["kind"] != vendor.kind:
        vendor.etag = vendor.last_modified = None
    for name, value in fields.items():
        setattr(vendor, name, value)
    if vendor.enabled:
        await poll_soon(session, vendor)
    else:
        await jobs.cancel(session, job_key(vendor.id))
    return vendor


async def delete_vendor(session: AsyncSession, vendor: Vendor, settings: Settings) -> None:
    """Remove a vendor with its components and dependencies; alerts it raised are resolved."""
    for row in await components_of(session, vendor.id):
        if row.status != OPERATIONAL:
            for component_id in (await dependents(session, [row.id]))[row.id]:
                await _alert(session, vendor, row, component_id, settings, resolve=True)
    await jobs.cancel(session, job_key(vendor.id))
    await session.delete(vendor)
    await session.flush()


async def set_dependents(
    session: AsyncSession, vendor: Vendor, row: VendorComponent, component_ids: list[str], settings: Settings
) -> list[str]:
    """Make exactly these components of ours depend on the vendor component; returns them.

    A component added while the vendor component is down gets its alert now; one removed has
    its alert resolved.
    """
    wanted: list[str] = []
    for i, component_id in enumerate(component_ids):
        if "\x00" in component_id:
            raise InvalidInput("no such component", field=f"component_ids.{i}")
        component = await catalog.get_component(session, component_id, field=f"component_ids.{i}")
        if component.id not in wanted:
            wanted.append(component.id)
    current = (await dependents(session, [row.id]))[row.id]
    for component_id in current:
        if component_id not in wanted:
            await session.execute(
                delete(VendorDependency).where(
                    VendorDependency.vendor_component_id == row.id, VendorDependency.component_id == component_id
                )
            )
            if row.status != OPERATIONAL:
                await _alert(session, vendor, row, component_id, settings, resolve=True)
    for component_id in wanted:
        if component_id not in current:
            session.add(VendorDependency(component_id=component_id, vendor_component_id=row.id))
            if row.status != OPERATIONAL:
                await _alert(session, vendor, row, component_id, settings, resolve=False)
    await session.flush()
    return wanted


# --- Parsing -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SeenComponent:
    external_id: str
    name: str
    status: str
    message: str | None


@dataclass(frozen=True)
class SeenPage:
    """What one answer of a vendor says."""

    indicator: str
    description: str | None
    link: str | None
    components: list[SeenComponent] = field(default_factory=list)


class Unreadable(ValueError):
    """The answer is not the format the vendor's kind promises."""


def plain_text(value: str) -> str:
    """HTML reduced to its text, whitespace collapsed."""
    return " ".join(html.unescape(nh3.clean(value, tags=set())).split())


def _when(value: Any) -> float:
    if not isinstance(value, str):
        return 0.0
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def parse_summary(body: bytes) -> SeenPage:
    """A Statuspage v2 summary.json: components, the indicator, unresolved incidents' latest words."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise Unreadable("the answer is not JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("components"), list):
        raise Unreadable("the answer is not a Statuspage summary.json (no components list)")
    status: dict[str, Any] = data["status"] if isinstance(data.get("status"), dict) else {}
    page: dict[str, Any] = data["page"] if isinstance(data.get("page"), dict) else {}
    words: dict[str, str] = {}
    incidents = [i for i in data.get("incidents") or [] if isinstance(i, dict)]
    incidents.sort(key=lambda i: _when(i.get("updated_at") or i.get("created_at")), reverse=True)
    for incident in incidents:
        if incident.get("status") in ("resolved", "postmortem", "completed"):
            continue
        updates = [u for u in incident.get("incident_updates") or [] if isinstance(u, dict)]
        updates.sort(key=lambda u: _when(u.get("created_at") or u.get("updated_at")), reverse=True)
        latest = plain_text(str(updates[0].get("body") or "")) if updates else ""
        name = plain_text(str(incident.get("name") or "Incident"))
        text = f"{name}: {latest}" if latest else name
        for named in incident.get("components") or []:
            component_id = named.get("id") if isinstance(named, dict) else None
            if isinstance(component_id, str) and component_id not in words:
                words[component_id] = text[:4000]
    components = []
    for item in data["components"]:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str) or not item["id"]:
            continue
        external_id = item["id"][:200]
        components.append(
            SeenComponent(
                external_id=external_id,
                name=str(item.get("name") or external_id)[:300],
                status=str(item.get("status") or OPERATIONAL)[:30],
                message=words.get(item["id"]),
            )
        )
    indicator = str(status.get("indicator") or "none")[:20]
    description = str(status["description"]) if status.get("description") else None
    link = str(page["url"]) if isinstance(page.get("url"), str) else None
    return SeenPage(indicator, description, link, components)


def parse_feed(body: bytes, *, now: datetime | None = None) -> SeenPage:
    """An RSS or Atom feed: degraded while its newest entry is recent and not a resolution."""
    parsed = feedparser.parse(body)
    if parsed.bozo and not parsed.entries and not parsed.feed:
        raise Unreadable("the answer is not an RSS or Atom feed")
    if not parsed.entries and not parsed.feed.get("title"):
        raise Unreadable("the answer is not an RSS or Atom feed")
    feed_link = parsed.feed.get("link")
    entries = list(parsed.entries)

    def stamp(entry: Any) -> float | None:
        when = entry.get("updated_parsed") or entry.get("published_parsed")
        return float(timegm(when)) if when else None

    newest = None
    if entries:
        stamped = [(stamp(e), i, e) for i, e in enumerate(entries)]
        if all(s is not None for s, _, _ in stamped):
            newest = max(stamped, key=lambda t: (t[0], -t[1]))[2]
        else:
            newest = entries[0]
    status, message, description = OPERATIONAL, None, None
    if newest is not None:
        title = plain_text(str(newest.get("title") or ""))
        text = plain_text(str(newest.get("summary") or newest.get("description") or ""))
        description = title or None
        when = stamp(newest)
        current = now or utcnow()
        recent = when is None or current.timestamp() - when <= FEED_ENTRY_MAX_AGE.total_seconds()
        if recent and not _RESOLUTION.search(f"{title} {text}"):
            status = "degraded_performance"
            message = (f"{title} — {text}" if title and text else title or text)[:4000]
        link = newest.get("link") or feed_link
    else:
        link = feed_link
    name = plain_text(str(parsed.feed.get("title") or "Status feed"))[:300] or "Status feed"
    indicator = "none" if status == OPERATIONAL else "minor"
    return SeenPage(indicator, description, str(link) if link else None, [SeenComponent("feed", name, status, message)])


# --- Fetching and the job ------------------------------------------------------------------


@dataclass(frozen=True)
class Fetched:
    not_modified: bool = False
    page: SeenPage | None = None
    etag: str | None = None
    last_modified: str | None = None
    error: str | None = None


async def fetch(
    kind: VendorKind, url: str, *, etag: str | None, last_modified: str | None, allow_private: bool = False
) -> Fetched:
    """GET the vendor's page conditionally and parse it.

    A vendor's page is a third party's server: it is reached, and each redirect it answers is
    followed, only on public addresses unless CRISISDESK_ALLOW_PRIVATE_WEBHOOKS says otherwise
    (the same guard as webhooks), so it cannot point crisisdesk at the internal network.
    """
    headers = {"user-agent": USER_AGENT}
    headers["accept"] = (
        "application/json" if kind is VendorKind.statuspage else "application/atom+xml, application/rss+xml, */*;q=0.5"
    )
    if etag:
        headers["if-none-match"] = etag
    if last_modified:
        headers["if-modified-since"] = last_modified
    timeout = aiohttp.ClientTimeout(total=FETCH_TIMEOUT)
    try:
        async with addresses.http_session(allow_private=allow_private, timeout=timeout) as http:
            for _hop in range(MAX_REDIRECTS + 1):
                try:
                    await addresses.check_webhook_url(url, allow_private=allow_private, field="url")
                except InvalidInput as exc:
                    return Fetched(error=f"refused {url[:200]}: {exc.message}")
                async with http.get(url, headers=headers, allow_redirects=False) as response:
                    location = response.headers.get("location")
                    if response.status in REDIRECTS and location:
                        url = urljoin(url, location)
                        continue
                    if response.status == 304:
                        return Fetched(not_modified=True)
                    if response.status != 200:
                        return Fetched(error=f"HTTP {response.status} from the vendor")
                    body = await response.content.read(MAX_BODY + 1)
                    new_etag, new_modified = response.headers.get("etag"), response.headers.get("last-modified")
                    break
            else:
                return Fetched(error=f"more than {MAX_REDIRECTS} redirects")
    except TimeoutError:
        return Fetched(error=f"no answer within {FETCH_TIMEOUT:g} s")
    except aiohttp.ClientConnectorError as exc:
        if isinstance(exc.os_error, addresses.PrivateAddressRefused):
            return Fetched(error=f"refused: {exc.os_error}")
        return Fetched(error=f"cannot connect to {exc.host}:{exc.port} ({exc.os_error.strerror or 'refused'})")
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        return Fetched(error=f"fetch failed: {type(exc).__name__}")
    if len(body) > MAX_BODY:
        return Fetched(error="the answer is larger than 5 MiB")
    try:
        page = parse_summary(body) if kind is VendorKind.statuspage else parse_feed(body)
    except Unreadable as exc:
        return Fetched(error=str(exc))
    return Fetched(
        page=page,
        etag=new_etag[:500] if new_etag else None,
        last_modified=new_modified[:100] if new_modified else None,
    )


async def poll_vendor(session: AsyncSession, payload: dict[str, Any], settings: Settings) -> None:
    """The VENDOR_POLL handler: fetch (outside any transaction), apply, alert, poll again later."""
    vendor_id = str(payload.get("vendor_id", ""))
    vendor = await session.get(Vendor, vendor_id)
    if vendor is None or not vendor.enabled:
        return
    kind, url = VendorKind(vendor.kind), vendor.url
    etag, last_modified = vendor.etag, vendor.last_modified
    await session.rollback()  # hold no connection or lock while the vendor answers
    started = time.monotonic()
    fetched = await fetch(
        kind, url, etag=etag, last_modified=last_modified, allow_private=settings.allow_private_webhooks
    )
    session.expunge_all()
    vendor = await session.get(Vendor, vendor_id)
    if vendor is None or not vendor.enabled or vendor.url != url or vendor.kind != kind:
        return  # removed, disabled or changed meanwhile: the edit scheduled what comes next
    now = utcnow()
    vendor.last_polled_at = now
    if fetched.error is not None:
        vendor.last_error = f"{fetched.error} (after {time.monotonic() - started:.1f} s)"
    elif fetched.page is not None:
        vendor.last_error = None
        await apply(session, vendor, fetched.page, settings)
        vendor.etag, vendor.last_modified = fetched.etag, fetched.last_modified
    else:
        vendor.last_error = None  # 304: nothing changed
    await jobs.schedule(
        session, VENDOR_POLL, now + timedelta(seconds=vendor.interval_seconds), key=job_key(vendor.id), payload=payload
    )


async def apply(session: AsyncSession, vendor: Vendor, page: SeenPage, settings: Settings) -> list[VendorComponent]:
    """Upsert what the page says; alert or resolve the dependents of components that changed."""
    now = utcnow()
    existing = {row.external_id: row for row in await components_of(session, vendor.id)}
    changed: list[VendorComponent] = []
    for seen in page.components:
        row = existing.get(seen.external_id)
        if row is None:
            row = VendorComponent(
                id=new_id(),
                vendor_id=vendor.id,
                external_id=seen.external_id,
                name=seen.name,
                status=seen.status,
                message=seen.message,
                updated_at=now,
            )
            session.add(row)
            existing[seen.external_id] = row
            continue  # nothing depends on a component first seen now
        if (row.status, row.message, row.name) == (seen.status, seen.message, seen.name):
            continue
        if row.status != seen.status or (seen.status != OPERATIONAL and row.message != seen.message):
            changed.append(row)
        row.status, row.message, row.name, row.updated_at = seen.status, seen.message, seen.name, now
    if (vendor.indicator, vendor.description) != (page.indicator, page.description) or changed:
        vendor.last_changed_at = now
    vendor.indicator, vendor.description = page.indicator, page.description
    if page.link and page.link.startswith(("http://", "https://")):
        vendor_link = page.link
    else:
        vendor_link = None
    await session.flush()
    links = await dependents(session, [row.id for row in changed])
    for row in changed:
        for component_id in links[row.id]:
            await _alert(
                session, vendor, row, component_id, settings, resolve=row.status == OPERATIONAL, link=vendor_link
            )
    return changed


async def _alert(
    session: AsyncSession,
    vendor: Vendor,
    row: VendorComponent,
    component_id: str,
    settings: Settings,
    *,
    resolve: bool,
    link: str | None = None,
) -> None:
    """Trigger or resolve one dependent component's alert through the built-in vendor integration."""
    integration = await builtin_integration(session, SourceKind.vendor)
    words = row.message or vendor.description or ""
    alert = AlertIn(
        dedup_key=alert_key(row.id, component_id),
        action="resolve" if resolve else "trigger",
        summary=f"{vendor.name}: {row.name} is {status_words(row.status)}",
        severity=AlertSeverity(SEVERITY_OF_STATUS.get(row.status, "warning")),
        source=vendor.name[:255],
        details={
            "vendor": vendor.name,
            "vendor_id": vendor.id,
            "vendor_component": row.name,
            "vendor_component_id": row.id,
            "status": row.status,
            "indicator": vendor.indicator,
            "vendor_says": words,
        },
        link=link or vendor_page(vendor),
        component_ids=[component_id],
    )
    await ingest(session, integration, [alert])


def vendor_page(vendor: Vendor) -> str:
    """The page a person reads: a summary.json's status page, or the feed itself."""
    suffix = "/api/v2/summary.json"
    if vendor.kind == VendorKind.statuspage and vendor.url.endswith(suffix):
        return vendor.url[: -len(suffix)] + "/"
    return vendor.url
