"""Rendering claimed deliveries into messages, each update once however many recipients it has.

A fan-out to 100,000 subscribers is claimed in batches of a few hundred; rendering the update
(its email HTML, the Slack and Teams payloads, the Statuspage webhook envelope) for every one
would cost more than sending it. So each update is rendered once per worker (kept for
``CACHE_SECONDS``), with a placeholder where the subscriber's token goes; per recipient only
the token is put in (``str.replace`` / ``bytes.replace``) and a :class:`Message` is made.

Template-based updates carry their per-channel words in ``UpdateMessage`` rows (written by
comms); a free-text update is rendered here from its record.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from crisisdesk.catalog.models import Component, ComponentStatus, ComponentStatusChange
from crisisdesk.config import Settings
from crisisdesk.incident.models import Incident, IncidentUpdate, Kind
from crisisdesk.kit.pages import templates
from crisisdesk.kit.render import markdown_to_html
from crisisdesk.kit.time import as_utc, iso, utcnow
from crisisdesk.notify.channels import slack, teams
from crisisdesk.notify.channels.base import Message
from crisisdesk.notify.channels.social import fit_post
from crisisdesk.notify.models import Channel, Delivery, Purpose, Subscriber, UpdateMessage
from crisisdesk.notify.smstext import fit, plain
from crisisdesk.statuspage import v2
from crisisdesk.statuspage.models import StatusPage
from crisisdesk.statuspage.public import (
    ACTIVE_MAINTENANCE,
    COMPONENT_LABELS,
    OPEN_INCIDENT,
    STATUS_LABELS,
    PublicData,
    shortlink,
)
from crisisdesk.statuspage.render import clean

CACHE_SECONDS = 30.0  # an edited update reaches later batches within this
CACHE_SIZE = 64  # updates kept rendered
# Stands for the subscriber's token in rendered text; URL-, HTML- and JSON-safe.
TOKEN = "T0KENxCRISISDESKxPLACEHOLDER"  # noqa: S105 - not a secret
TOKEN_BYTES = TOKEN.encode()
# Stands for the installation's base URL in messages written before it is known (pages' ack links).
BASE_URL_MARK = "BASExCRISISDESKxURL"
# Headers a payload message may set on its email (a ticket reply's In-Reply-To and References,
# and Reply-To the support inbox).
THREADING_HEADERS = frozenset({"In-Reply-To", "References", "Reply-To"})
SUBSCRIBER_CHANNELS = frozenset({Channel.email, Channel.sms, Channel.webhook, Channel.slack, Channel.teams})
STATUS_COLOURS = {
    "investigating": "#de350b",
    "identified": "#ff8b00",
    "monitoring": "#0065ff",
    "resolved": "#00875a",
    "postmortem": "#00875a",
    "scheduled": "#6554c0",
    "in_progress": "#0065ff",
    "verifying": "#0065ff",
    "completed": "#00875a",
}


@dataclass(frozen=True)
class _Recipient:
    token: str
    secret: str | None


@dataclass
class _Rendered:
    """One update (or component change) for every channel, with :data:`TOKEN` for the token."""

    made_at: float
    email_subject: str = ""
    email_text: str = ""
    email_html: str = ""
    sms: str = ""
    slack: bytes = b""
    teams: bytes = b""
    social: str = ""
    webhook: bytes = b""


def _flat(text: str) -> str:
    return " ".join(text.split())


class MessageBuilder:
    """Turns claimed deliveries into messages; one instance per worker, it keeps renderings."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.base_url = settings.base_url.rstrip("/")
        self.page_name = settings.page_name
        self.zone = ZoneInfo(settings.page_time_zone)
        self._updates: OrderedDict[str, _Rendered] = OrderedDict()
        self._changes: OrderedDict[int, _Rendered] = OrderedDict()
        self._email_template = templates.env.get_template("email/update.html")

    # ------------------------------------------------------------------------------ links

    def manage_url(self, token: str) -> str:
        return f"{self.base_url}/subscriptions/{token}"

    def unsubscribe_url(self, token: str) -> str:
        return f"{self.base_url}/subscriptions/{token}/unsubscribe"

    def _email_headers(self, token: str) -> dict[str, str]:
        # RFC 8058: a mail client may unsubscribe with one POST, without opening a page.
        return {
            "List-Unsubscribe": f"<{self.unsubscribe_url(token)}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        }

    # ------------------------------------------------------------------------------ build

    async def build(self, session: AsyncSession, deliveries: Sequence[Delivery]) -> dict[int, Message]:
        """A message per delivery; a delivery that cannot be rendered (its update or subscriber gone) is left out."""
        recipients = await self._recipients(session, {d.subscriber_id for d in deliveries if d.subscriber_id})
        update_ids = {d.update_id for d in deliveries if d.purpose == Purpose.update and d.update_id}
        change_ids = {cid for d in deliveries if d.purpose == Purpose.component and (cid := _change_id(d.subject))}
        await self._ensure_updates(session, update_ids)
        await self._ensure_changes(session, change_ids)
        messages: dict[int, Message] = {}
        for delivery in deliveries:
            recipient = recipients.get(delivery.subscriber_id) if delivery.subscriber_id else None
            message = self._message(delivery, recipient)
            if message is not None:
                messages[delivery.id] = message
        return messages

    async def _recipients(self, session: AsyncSession, ids: set[str]) -> dict[str, _Recipient]:
        if not ids:
            return {}
        rows = await session.execute(
            select(Subscriber.id, Subscriber.token, Subscriber.secret).where(Subscriber.id.in_(ids))
        )
        return {row.id: _Recipient(row.token, row.secret) for row in rows}

    def _message(self, delivery: Delivery, recipient: _Recipient | None) -> Message | None:
        channel = Channel(delivery.channel)
        if delivery.purpose in (Purpose.update, Purpose.component):
            if channel in SUBSCRIBER_CHANNELS and recipient is None:
                return None  # the subscriber is gone: nobody to send to, no link to unsubscribe with
            if delivery.purpose == Purpose.update:
                rendered = self._updates.get(delivery.update_id or "")
            else:
                rendered = self._changes.get(_change_id(delivery.subject) or -1)
            if rendered is None:
                return None
            return self._from_rendered(delivery, channel, rendered, recipient)
        return self._from_payload(delivery, channel, recipient)

    def _from_rendered(
        self, delivery: Delivery, channel: Channel, r: _Rendered, recipient: _Recipient | None
    ) -> Message | None:
        token = recipient.token if recipient else ""
        base = _message(delivery, channel)
        if delivery.purpose == Purpose.component and channel != Channel.webhook:
            return None  # component changes go to webhook subscribers only
        match channel:
            case Channel.email:
                return replace(
                    base,
                    subject=r.email_subject,
                    text=r.email_text.replace(TOKEN, token),
                    html=r.email_html.replace(TOKEN, token),
                    headers=self._email_headers(token),
                )
            case Channel.sms:
                return replace(base, text=r.sms)
            case Channel.webhook:
                body = r.webhook.replace(TOKEN_BYTES, token.encode())
                return replace(base, body=body, secret=recipient.secret if recipient else None)
            case Channel.slack:
                return replace(base, text=r.email_subject, body=r.slack.replace(TOKEN_BYTES, token.encode()))
            case Channel.teams:
                return replace(base, text=r.email_subject, body=r.teams.replace(TOKEN_BYTES, token.encode()))
            case Channel.mastodon | Channel.x:
                return replace(base, text=r.social)
        return None

    def _from_payload(self, delivery: Delivery, channel: Channel, recipient: _Recipient | None) -> Message:
        """Confirmations and reminders: the words are in the delivery's payload."""
        payload: dict[str, Any] = delivery.payload or {}
        if delivery.purpose == Purpose.page:
            return self._page(delivery, channel, payload)
        subject = str(payload.get("subject") or "")
        text = str(payload.get("text") or subject)
        html = payload.get("html")
        base = replace(_message(delivery, channel), subject=subject, text=text)
        match channel:
            case Channel.email:
                headers = self._email_headers(recipient.token) if recipient else {}
                # A reply to a support ticket threads under the customer's message.
                asked = payload.get("headers") or {}
                headers |= {k: str(v) for k, v in asked.items() if k in THREADING_HEADERS}
                return replace(base, html=str(html) if html else None, headers=headers)
            case Channel.slack:
                return replace(base, body=slack.encode({"text": text}))
            case Channel.teams:
                card = teams.payload(title=subject or text[:80], text=text if subject else "", facts=[])
                return replace(base, body=teams.encode(card))
            case Channel.webhook:
                body = payload.get("body") or {"type": delivery.purpose, "subject": subject, "text": text}
                return replace(base, body=v2.dump(body), secret=recipient.secret if recipient else None)
            case Channel.sms:
                return replace(base, text=fit(plain(text)))
            case _:
                return replace(base, text=fit_post(text))

    def _page(self, delivery: Delivery, channel: Channel, payload: dict[str, Any]) -> Message:
        """An on-call page: its words are in the payload, with the base URL still to put in its links."""

        def fill(value: str) -> str:
            return value.replace(BASE_URL_MARK, self.base_url)

        subject = fill(str(payload.get("subject") or ""))
        text = fill(str(payload.get("text") or subject))
        base = replace(_message(delivery, channel), subject=subject, text=text)
        match channel:
            case Channel.sms:
                return replace(base, text=fit(plain(text), tail=fill(str(payload.get("tail") or ""))))
            case Channel.slack_dm:
                body = {
                    "channel": delivery.address,
                    "text": text,
                    "blocks": payload.get("blocks") or [],
                    "unfurl_links": False,
                }
                return replace(base, body=fill_bytes(slack.encode(body), self.base_url))
            case Channel.webhook:
                # A push gateway is no subscriber: its signing secret travels with the delivery.
                document = payload.get("body") or {"type": "page", "subject": subject, "text": text}
                secret = payload.get("secret")
                return replace(
                    base, body=fill_bytes(v2.dump(document), self.base_url), secret=str(secret) if secret else None
                )
            case _:
                return base

    # ------------------------------------------------------------------------------ caching

    def _fresh(self, cache: OrderedDict[Any, _Rendered], key: Any) -> bool:
        rendered = cache.get(key)
        if rendered is None or time.monotonic() - rendered.made_at > CACHE_SECONDS:
            return False
        cache.move_to_end(key)
        return True

    @staticmethod
    def _keep(cache: OrderedDict[Any, _Rendered], key: Any, rendered: _Rendered) -> None:
        cache[key] = rendered
        cache.move_to_end(key)
        while len(cache) > CACHE_SIZE:
            cache.popitem(last=False)

    async def _ensure_updates(self, session: AsyncSession, ids: set[str]) -> None:
        missing = {i for i in ids if not self._fresh(self._updates, i)}
        if not missing:
            return
        updates = list(
            await session.scalars(
                select(IncidentUpdate)
                .where(IncidentUpdate.id.in_(missing))
                .options(
                    selectinload(IncidentUpdate.affected),
                    selectinload(IncidentUpdate.incident)
                    .selectinload(Incident.updates)
                    .selectinload(IncidentUpdate.affected),
                    selectinload(IncidentUpdate.incident).selectinload(Incident.components),
                )
            )
        )
        rows = await session.scalars(select(UpdateMessage).where(UpdateMessage.update_id.in_(missing)))
        words: dict[str, dict[str, UpdateMessage]] = {}
        for row in rows:
            words.setdefault(row.update_id, {})[row.channel] = row
        data = await self._page_data(session, [u.incident for u in updates])
        for update in updates:
            self._keep(self._updates, update.id, self._render_update(data, update, words.get(update.id, {})))

    async def _ensure_changes(self, session: AsyncSession, ids: set[int]) -> None:
        missing = {i for i in ids if not self._fresh(self._changes, i)}
        if not missing:
            return
        changes = list(
            await session.scalars(select(ComponentStatusChange).where(ComponentStatusChange.id.in_(missing)))
        )
        data = await self._page_data(session, [])
        for change in changes:
            component = data.by_id.get(change.component_id)
            if component is not None:
                self._keep(self._changes, change.id, self._render_change(data, change, component))

    async def _page_data(self, session: AsyncSession, incidents: list[Incident]) -> PublicData:
        """What the webhook envelope needs of the page: components, open incidents, running maintenances."""
        page = await session.scalar(select(StatusPage).limit(1))
        if page is None:  # nothing published yet; the envelope still needs a page
            now = utcnow()
            page = StatusPage(id="page", name=self.page_name, url=self.base_url, time_zone=self.settings.page_time_zone)
            page.updated_at = now
        components = list(await session.scalars(select(Component).order_by(Component.position, Component.name)))
        open_incidents = list(
            await session.scalars(
                select(Incident).where(Incident.kind == Kind.incident, Incident.status.in_(OPEN_INCIDENT))
            )
        )
        running = list(
            await session.scalars(
                select(Incident).where(
                    Incident.kind == Kind.maintenance,
                    Incident.status.in_(ACTIVE_MAINTENANCE),
                    Incident.cancelled_at.is_(None),
                )
            )
        )
        chosen = list({i.id: i for i in [*incidents, *open_incidents, *running]}.values())
        return PublicData(
            page=page,
            base_url=self.base_url,
            now=utcnow(),
            components=components,
            incidents=[i for i in chosen if i.kind == Kind.incident],
            maintenances=[i for i in chosen if i.kind == Kind.maintenance],
        )

    # ------------------------------------------------------------------------------ rendering

    def _posted(self, at: datetime) -> str:
        return as_utc(at).astimezone(self.zone).strftime("%b %d, %H:%M %Z")

    def _envelope(self, data: PublicData) -> dict[str, Any]:
        indicator, description, in_maintenance = v2.overall(data)
        return {
            "meta": {
                "unsubscribe": self.unsubscribe_url(TOKEN),
                "documentation": f"{self.base_url}/api/docs",
                "generated_at": iso(utcnow()),
            },
            "page": {
                "id": data.page.id,
                "status_indicator": "maintenance" if in_maintenance and indicator == "none" else indicator,
                "status_description": description,
            },
        }

    def _render_update(self, data: PublicData, update: IncidentUpdate, words: dict[str, UpdateMessage]) -> _Rendered:
        incident = update.incident
        names = data.by_id
        label = STATUS_LABELS.get(update.status, update.status.replace("_", " ").capitalize())
        link = shortlink(self.base_url, incident)
        posted = self._posted(update.display_at)
        affected = [
            (names[c.component_id].name, COMPONENT_LABELS[ComponentStatus(c.new_status)])
            for c in sorted(update.affected, key=lambda c: c.id)
            if c.component_id in names
        ] or [
            (names[c.component_id].name, COMPONENT_LABELS[ComponentStatus(c.status)])
            for c in incident.components
            if c.component_id in names
        ]
        affected_text = ", ".join(f"{name} ({status.lower()})" for name, status in affected)
        body = update.body.strip()
        manage, unsubscribe = self.manage_url(TOKEN), self.unsubscribe_url(TOKEN)
        footer = (
            f"\n\n--\nYou receive this because you subscribed to {self.page_name} status updates.\n"
            f"Manage your subscription: {manage}\nUnsubscribe: {unsubscribe}\n"
        )
        rendered = _Rendered(made_at=time.monotonic())

        # Email.
        row = words.get("email")
        default_subject = f"[{self.page_name}] {incident.name}: {label}"
        context: dict[str, Any] = {
            "page_name": self.page_name,
            "manage_url": manage,
            "unsubscribe_url": unsubscribe,
        }
        if row is not None:
            rendered.email_subject = _flat(row.subject or default_subject)
            rendered.email_text = row.text.strip() + footer
            # Template output may carry variables typed by responders: sanitised like any update body.
            content = clean(row.html) if row.html else clean(markdown_to_html(row.text))
            rendered.email_html = self._email_template.render(
                subject=rendered.email_subject, body_html=content, **context
            )
        else:
            rendered.email_subject = _flat(default_subject)
            lines = [f"{incident.name} — {label}", "", body, ""]
            if affected:
                lines.append(f"Affected: {affected_text}")
            lines += [f"Posted {posted}", f"Details: {link}"]
            rendered.email_text = "\n".join(lines) + footer
            rendered.email_html = self._email_template.render(
                subject=rendered.email_subject,
                title=incident.name,
                status_label=label,
                status_colour=STATUS_COLOURS.get(update.status, "#42526e"),
                posted=posted,
                body_html=clean(update.body_html),
                components=affected,
                link=link,
                **context,
            )

        # SMS: one segment, with the link when it fits.
        row = words.get("sms")
        if row is not None:
            rendered.sms = fit(plain(_flat(row.text)))
        else:
            rendered.sms = fit(plain(_flat(f"[{self.page_name}] {incident.name}: {label}. {body}")), tail=f" {link}")

        # Slack and Teams.
        manage_link = [("Manage subscription", manage)]
        row = words.get("slack")
        slack_context = [f"*{label}*"]
        if affected:
            slack_context.append(slack.escape(f"Affected: {affected_text}"))
        stamp = int(as_utc(update.display_at).timestamp())
        slack_context.append(f"<!date^{stamp}^{{date_short_pretty}} {{time}}|{slack.escape(posted)}>")
        rendered.slack = slack.encode(
            slack.payload(
                title=f"{incident.name}: {label}",
                text=row.text if row is not None else slack.escape(body),
                context=slack_context,
                link=link,
                extra_links=manage_link,
            )
        )
        row = words.get("teams")
        facts = [("Status", label)]
        if affected:
            facts.append(("Affected", affected_text))
        facts.append(("Posted", posted))
        rendered.teams = teams.encode(
            teams.payload(
                title=incident.name,
                text=row.text if row is not None else body,
                facts=facts,
                link=link,
                extra_links=manage_link,
            )
        )

        # The installation's social accounts.
        row = words.get("social")
        rendered.social = fit_post(row.text) if row is not None else fit_post(f"{incident.name}: {label}. {body}", link)

        # Webhooks: the Statuspage envelope.
        envelope = self._envelope(data)
        envelope["incident"] = v2.incident_json(data, incident, full=True)
        rendered.webhook = v2.dump(envelope)
        return rendered

    def _render_change(self, data: PublicData, change: ComponentStatusChange, component: Component) -> _Rendered:
        envelope = self._envelope(data)
        envelope["component_update"] = {
            "old_status": change.old_status,
            "new_status": change.new_status,
            "created_at": iso(change.at),
            "component_type": "component",
            "id": str(change.id),
            "component_id": change.component_id,
        }
        envelope["component"] = v2.component_json(data, component)
        subject = f"[{self.page_name}] {component.name}: {COMPONENT_LABELS[ComponentStatus(change.new_status)]}"
        return _Rendered(made_at=time.monotonic(), email_subject=subject, webhook=v2.dump(envelope))


def _message(delivery: Delivery, channel: Channel) -> Message:
    return Message(delivery_id=delivery.id, message_id=delivery.message_id, channel=channel, address=delivery.address)


def fill_bytes(body: bytes, base_url: str) -> bytes:
    return body.replace(BASE_URL_MARK.encode(), base_url.encode())


def _change_id(subject: str) -> int | None:
    """The component status change a ``component:<id>`` subject names."""
    kind, _, rest = subject.partition(":")
    if kind != "component":
        return None
    head = rest.split(":", 1)[0]
    return int(head) if head.isdecimal() else None
