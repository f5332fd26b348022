"""CSV import of subscribers: every line checked, refusals reported by line, duplicates skipped.

Rows are written in batches of :data:`IMPORT_BATCH` with one multi-row statement per table and
``ON CONFLICT DO NOTHING``, so a file of a hundred thousand addresses imports in seconds.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import JSON, select
from sqlalchemy.ext.asyncio import AsyncSession

from crisisdesk.catalog.models import Component
from crisisdesk.config import Settings
from crisisdesk.incident.models import Incident
from crisisdesk.kit.db import dialect_insert
from crisisdesk.kit.errors import InvalidInput
from crisisdesk.kit.time import utcnow
from crisisdesk.notify import addresses
from crisisdesk.notify.models import (
    Channel,
    Delivery,
    DeliveryState,
    Purpose,
    Subscriber,
    SubscriberComponent,
    SubscriberState,
)
from crisisdesk.notify.subscribers import (
    OPT_IN_CHANNELS,
    escape,
    new_token,
    new_webhook_secret,
    parse_channel,
    scope_of,
)

IMPORT_COLUMNS = ("channel", "address", "components", "incident")
IMPORT_BATCH = 1000
MAX_REPORTED_ERRORS = 1000


@dataclass
class ImportProblem:
    line: int
    message: str


@dataclass
class ImportReport:
    """What an import did: rows read, subscribers added, duplicates skipped, refused lines."""

    rows: int = 0
    imported: int = 0
    duplicates: int = 0
    error_count: int = 0
    # The first MAX_REPORTED_ERRORS refused lines; error_count counts them all.
    errors: list[ImportProblem] = field(default_factory=list)

    def refuse(self, line: int, message: str) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append(ImportProblem(line, message))


class _Lookup:
    """Components by id or name, open incidents by id or number: loaded once per import."""

    def __init__(self, components: Sequence[Component], incidents: Sequence[Incident]) -> None:
        self.components: dict[str, str | None] = {}
        for c in components:
            if c.is_group:
                continue
            self.components[c.id] = c.id
            name = c.name.strip().casefold()
            # A name two components share cannot say which one is meant: None marks it.
            self.components[name] = None if name in self.components else c.id
        self.incidents: dict[str, str] = {}
        for i in incidents:
            self.incidents[i.id] = i.id
            self.incidents[str(i.number)] = i.id
            self.incidents[f"inc-{i.number}"] = i.id

    def component(self, ref: str) -> str:
        key = ref.strip()
        found = self.components.get(key, self.components.get(key.casefold(), ""))
        if found is None:
            raise InvalidInput(f"several components are named {ref!r}; use its id", field="components")
        if not found:
            raise InvalidInput(f"no component {ref!r}", field="components")
        return found

    def incident(self, ref: str) -> str:
        found = self.incidents.get(ref.strip().casefold())
        if found is None:
            raise InvalidInput(f"no open incident {ref!r}", field="incident")
        return found


# A dot-atom local part of plain ASCII: email_validator keeps such a local part as it is, so
# for a domain it has already accepted, the normalised address is known without asking again.
_PLAIN_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*\Z")


class _EmailChecker:
    """Email checks for an import: the full check once per domain, plain local parts by pattern.

    The full check spends most of its time on the domain (IDNA rules), and a list of a hundred
    thousand addresses has few domains; it was two thirds of an import's time.
    """

    def __init__(self) -> None:
        self.domains: dict[str, str] = {}  # a domain as written (lower case) -> its normalised form

    def check(self, value: str) -> str:
        candidate = value.strip()
        local, at, domain = candidate.rpartition("@")
        known = self.domains.get(domain.lower()) if at else None
        if known is not None and len(local) <= 64 and len(candidate) <= 254 and _PLAIN_LOCAL.match(local):
            return f"{local.lower()}@{known}"
        normalized = addresses.normalize_email(candidate)
        self.domains[domain.lower()] = normalized.rpartition("@")[2]
        return normalized


class _UrlChecker:
    """Webhook URL checks for an import: the format of every URL, DNS once per host."""

    def __init__(self, allow_private: bool) -> None:
        self.allow_private = allow_private
        self.hosts: dict[tuple[str, str, int | None], str | None] = {}

    async def check(self, url: str) -> str:
        url = url.strip()
        if not url or len(url) > addresses.MAX_URL_LENGTH:
            raise InvalidInput("enter a URL of at most 2048 characters", field="address")
        try:
            parts = urlsplit(url)
            key = (parts.scheme.lower(), (parts.hostname or "").lower(), parts.port)
        except ValueError as exc:
            raise InvalidInput(f"{url!r} is not a valid URL: {exc}", field="address") from None
        if key[0] not in ("http", "https") or not key[1]:
            # The full check words the refusal (scheme, missing host) the same way as sign-up.
            return await addresses.check_webhook_url(url, allow_private=self.allow_private)
        if self.allow_private and key[0] in ("http", "https"):
            return url  # private hosts are allowed, so only the format matters; no DNS per row
        if key not in self.hosts:
            try:
                await addresses.check_webhook_url(url, allow_private=self.allow_private)
                self.hosts[key] = None
            except InvalidInput as exc:
                self.hosts[key] = exc.message
        problem = self.hosts[key]
        if problem is not None:
            raise InvalidInput(problem, field="address")
        return url


def _header(row: Sequence[str]) -> list[str]:
    names = [c.strip().lower().lstrip("\ufeff") for c in row]
    unknown = any(n not in IMPORT_COLUMNS for n in names) or len(set(names)) < len(names)
    if names[:2] != ["channel", "address"] or unknown:
        raise InvalidInput("the first line must be the header channel,address[,components][,incident]", field="file")
    return names


async def import_rows(
    session: AsyncSession,
    settings: Settings,
    rows: Iterable[Sequence[str]],
    *,
    confirmed: bool = True,
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Import CSV rows (the header first): bad lines are reported by number, duplicates skipped.

    ``confirmed`` imports email and SMS subscribers as active; otherwise they are pending and
    each is sent its confirmation. Rows are written in batches of :data:`IMPORT_BATCH`.
    ``progress`` is called with the number of data rows read after each batch.
    """
    report = ImportReport()
    lookup = _Lookup(
        list(await session.scalars(select(Component))),
        [i for i in await session.scalars(select(Incident).where(Incident.resolved_at.is_(None))) if i.is_open],
    )
    urls = _UrlChecker(settings.allow_private_webhooks)
    emails = _EmailChecker()
    writer = _BatchWriter(session, settings, confirmed=confirmed, report=report)
    seen: set[tuple[str, str]] = set()
    columns: list[str] | None = None
    for line, row in enumerate(rows, start=1):
        if not any(cell.strip() for cell in row):
            continue
        if columns is None:
            columns = _header(row)
            continue
        report.rows += 1
        values = dict(zip(columns, (cell.strip() for cell in row), strict=False))
        if len(row) > len(columns):
            report.refuse(line, f"{len(row)} fields where the header names {len(columns)}")
        else:
            try:
                item = await _import_item(values, lookup, urls, emails)
            except InvalidInput as exc:
                report.refuse(line, f"{exc.field}: {exc.message}" if exc.field else exc.message)
            else:
                if (item.channel, item.address) in seen:
                    report.duplicates += 1
                else:
                    seen.add((item.channel, item.address))
                    writer.items.append(item)
        if len(writer.items) >= IMPORT_BATCH:
            await writer.flush()
            if progress:
                progress(report.rows)
    if columns is None:
        raise InvalidInput("the file is empty; the first line must be the header channel,address", field="file")
    await writer.flush()
    if progress:
        progress(report.rows)
    return report


@dataclass
class _Item:
    channel: str
    address: str
    components: list[str]
    incident_id: str | None


async def _import_item(values: dict[str, str], lookup: _Lookup, urls: _UrlChecker, emails: _EmailChecker) -> _Item:
    kind = parse_channel(values.get("channel", ""))
    raw = values.get("address", "")
    if kind == Channel.email:
        address = emails.check(raw)
    elif kind == Channel.sms:
        address = addresses.normalize_phone(raw)
    else:
        address = await urls.check(raw)
    refs = [r for r in values.get("components", "").split(";") if r.strip()]
    found = list(dict.fromkeys(lookup.component(r) for r in refs))
    incident = lookup.incident(values["incident"]) if values.get("incident") else None
    if incident and found:
        raise InvalidInput("follow one incident or chosen components, not both", field="components")
    return _Item(kind.value, address, found, incident)


_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
# Random bytes mapped onto the id alphabet in one call: kit.ids.new_id draws each character
# separately, which was a fifth of an import's time. The slight bias (256 is not a multiple
# of 36) does not matter for row ids, which need to be unique, not secret.
_ID_TABLE = bytes((_ALPHABET * 8)[:256], "ascii")


def _new_ids(count: int, length: int = 12) -> list[str]:
    raw = secrets.token_bytes(count * length).translate(_ID_TABLE).decode("ascii")
    return [raw[i : i + length] for i in range(0, count * length, length)]


class _BatchWriter:
    """Writes a batch with one statement per table, skipping addresses already there.

    On PostgreSQL (asyncpg) each table gets one ``INSERT … SELECT FROM unnest(<arrays>) ON
    CONFLICT DO NOTHING RETURNING id``: the database skips the duplicates and says which rows
    it added. Elsewhere the batch is checked against existing addresses, then inserted with an
    executemany (SQLite's is fast).
    """

    def __init__(self, session: AsyncSession, settings: Settings, *, confirmed: bool, report: ImportReport) -> None:
        self.session, self.settings, self.confirmed, self.report = session, settings, confirmed, report
        self.items: list[_Item] = []
        self.dialect = session.get_bind().dialect.name

    async def _asyncpg(self) -> Any | None:
        if self.dialect != "postgresql":
            return None
        connection = await self.session.connection()
        driver = (await connection.get_raw_connection()).driver_connection
        return driver if driver is not None and type(driver).__module__.startswith("asyncpg") else None

    async def _insert(self, table: Any, rows: list[dict[str, Any]]) -> set[str] | None:
        """Insert rows, skipping conflicts; on PostgreSQL, answers the ids it inserted."""
        driver = await self._asyncpg()
        if driver is None:
            await self.session.execute(dialect_insert(self.session)(table).on_conflict_do_nothing(), rows)
            return None
        # One array per column, one statement per batch: SQLAlchemy's executemany, a multi-row
        # VALUES statement (its compiling) and asyncpg's executemany were each several times
        # slower here, and a pre-check SELECT … IN grew slow as the table grew in the transaction.
        columns = list(rows[0])
        dialect = self.session.get_bind().dialect
        types = {c.name: c.type.compile(dialect=dialect) for c in table.columns}
        as_json = {c.name for c in table.columns if isinstance(c.type, JSON)}
        arrays = [
            [json.dumps(row[c]) if c in as_json and row[c] is not None else row[c] for row in rows] for c in columns
        ]
        names = ", ".join(f'"{c}"' for c in columns)
        unnest = ", ".join(f"${n}::{types[c]}[]" for n, c in enumerate(columns, start=1))
        returning = " RETURNING id" if "id" in columns else ""
        statement = (
            f'INSERT INTO "{table.name}" ({names}) SELECT * FROM unnest({unnest}) ON CONFLICT DO NOTHING{returning}'  # noqa: S608 - names from the model
        )
        records = await driver.fetch(statement, *arrays)
        return {r["id"] for r in records} if returning else set()

    async def _existing(self, items: list[_Item]) -> set[tuple[str, str]]:
        existing: set[tuple[str, str]] = set()
        by_channel: dict[str, list[str]] = {}
        for item in items:
            by_channel.setdefault(item.channel, []).append(item.address)
        for channel, batch in by_channel.items():
            found = await self.session.scalars(
                select(Subscriber.address).where(Subscriber.channel == channel, Subscriber.address.in_(batch))
            )
            existing.update((channel, a) for a in found)
        return existing

    async def flush(self) -> None:
        items, self.items = self.items, []
        if not items:
            return
        if await self._asyncpg() is None:
            existing = await self._existing(items)
            items = [i for i in items if (i.channel, i.address) not in existing]
            self.report.duplicates += len(existing)
            if not items:
                return
        now = utcnow()
        rows: list[dict[str, Any]] = []
        for item, row_id in zip(items, _new_ids(len(items)), strict=True):
            opt_in = item.channel in OPT_IN_CHANNELS and not self.confirmed
            rows.append(
                {
                    "id": row_id,
                    "channel": item.channel,
                    "address": item.address,
                    "state": (SubscriberState.pending if opt_in else SubscriberState.active).value,
                    "scope": scope_of(item.components, item.incident_id).value,
                    "incident_id": item.incident_id,
                    "secret": new_webhook_secret() if item.channel == Channel.webhook else None,
                    "token": new_token(),
                    "confirm_code": None,
                    "source": "import",
                    "created_ip": None,
                    "created_at": now,
                    "confirmed_at": None if opt_in else now,
                }
            )
        inserted = await self._insert(Subscriber.__table__, rows)
        if inserted is not None:
            self.report.duplicates += len(rows) - len(inserted)
            pairs = [(row, item) for row, item in zip(rows, items, strict=True) if row["id"] in inserted]
        else:
            pairs = list(zip(rows, items, strict=True))
        links = [{"subscriber_id": row["id"], "component_id": c} for row, item in pairs for c in item.components]
        if links:
            await self._insert(SubscriberComponent.__table__, links)
        confirmations = [self._confirmation(row, now) for row, _ in pairs if row["confirmed_at"] is None]
        if confirmations:
            await self._insert(Delivery.__table__, confirmations)
        self.report.imported += len(pairs)

    def _confirmation(self, row: dict[str, Any], now: datetime) -> dict[str, Any]:
        # Nobody typed these addresses into our page, so each gets a link to confirm with (SMS
        # too: there is no page waiting for a code).
        page = self.settings.page_name
        link = f"{self.settings.base_url.rstrip('/')}/subscriptions/{row['token']}/confirm"
        if row["channel"] == Channel.sms:
            payload = {"subject": "", "text": f"{page} status updates by SMS? Confirm: {link}", "html": None}
        else:
            payload = {
                "subject": f"Confirm your subscription to {page} status",
                "text": f"You were signed up for {page} status updates.\n\nConfirm the subscription: {link}\n\n"
                "Nothing will be sent to you without confirmation.",
                "html": f"<p>You were signed up for {escape(page)} status updates.</p>"
                f'<p><a href="{escape(link)}">Confirm the subscription</a></p>'
                "<p>Nothing will be sent to you without confirmation.</p>",
            }
        return {
            "subject": f"confirm:{row['id']}:1",
            "purpose": Purpose.confirm.value,
            "update_id": None,
            "incident_id": None,
            "channel": row["channel"],
            "recipient": row["id"],
            "subscriber_id": row["id"],
            "address": row["address"],
            "state": DeliveryState.pending.value,
            "attempts": 0,
            "due_at": now,
            "created_at": now,
            "payload": payload,
        }
