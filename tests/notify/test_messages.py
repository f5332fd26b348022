"""Rendering deliveries into messages: each channel's words, the links, and rendering once per update."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import event, select

from crisisdesk.auth.models import Role
from crisisdesk.catalog import service as catalog
from crisisdesk.catalog.models import Component, ComponentStatus, ComponentStatusChange
from crisisdesk.config import Settings
from crisisdesk.incident import service as incidents
from crisisdesk.incident.models import Incident, IncidentUpdate
from crisisdesk.kit.db import Database
from crisisdesk.notify import ledger
from crisisdesk.notify.channels.base import Message
from crisisdesk.notify.messages import TOKEN, MessageBuilder
from crisisdesk.notify.models import Channel, Delivery, Purpose, Subscriber, UpdateMessage
from crisisdesk.notify.smstext import measure
from tests.fixtures.auth import make_actor
from tests.fixtures.comms import allow_free_text
from tests.fixtures.incident import make_component
from tests.fixtures.notify import make_subscriber

BODY = "We are investigating **failed sign-ins** for SSO users. <script>alert(1)</script>"
CHANNELS = (Channel.email, Channel.sms, Channel.webhook, Channel.slack, Channel.teams)


@dataclass
class World:
    incident: Incident
    update: IncidentUpdate
    component: Component
    subscribers: dict[Channel, Subscriber]


async def make_world(db: Database) -> World:
    await allow_free_text(db)
    _, actor = await make_actor(db, Role.admin)
    async with db.session() as session:
        component = await make_component(session, name="Web app")
        declared = await incidents.declare(
            session,
            actor,
            name="Sign-in failures",
            severity="SEV3",
            body=BODY,
            components={component.id: ComponentStatus.partial_outage},
        )
        subscribers = {channel: await make_subscriber(session, channel=channel) for channel in CHANNELS}
    return World(declared.incident, declared.first_update, component, subscribers)


async def enqueue_update(db: Database, world: World, channels: tuple[Channel, ...] = CHANNELS) -> list[Delivery]:
    async with db.session() as session:
        deliveries = []
        for channel in channels:
            subscriber = world.subscribers[channel]
            deliveries.append(
                await ledger.enqueue(
                    session,
                    subject=f"update:{world.update.id}",
                    purpose=Purpose.update,
                    channel=channel,
                    recipient=subscriber.id,
                    address=subscriber.address,
                    update_id=world.update.id,
                    incident_id=world.incident.id,
                    subscriber_id=subscriber.id,
                )
            )
        for channel in (Channel.mastodon, Channel.x):
            deliveries.append(
                await ledger.enqueue(
                    session,
                    subject=f"update:{world.update.id}",
                    purpose=Purpose.update,
                    channel=channel,
                    recipient="account",
                    address="account",
                    update_id=world.update.id,
                    incident_id=world.incident.id,
                )
            )
    return deliveries


async def build(db: Database, builder: MessageBuilder, deliveries: list[Delivery]) -> dict[Channel, Message]:
    async with db.session() as session:
        messages = await builder.build(session, deliveries)
    by_id = {d.id: d for d in deliveries}
    return {Channel(by_id[i].channel): m for i, m in messages.items()}


def no_placeholder(message: Message) -> None:
    for part in (message.subject, message.text, message.html or "", (message.body or b"").decode()):
        assert TOKEN not in part


async def test_free_text_update_on_every_channel(db: Database, settings: Settings) -> None:
    world = await make_world(db)
    messages = await build(db, MessageBuilder(settings), await enqueue_update(db, world))
    assert set(messages) == {*CHANNELS, Channel.mastodon, Channel.x}
    link = f"http://status.test/incidents/{world.incident.id}"
    for message in messages.values():
        no_placeholder(message)

    token = world.subscribers[Channel.email].token
    email = messages[Channel.email]
    assert email.subject == "[Acme Cloud] Sign-in failures: Investigating"
    assert email.headers == {
        "List-Unsubscribe": f"<http://status.test/subscriptions/{token}/unsubscribe>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
    assert email.html is not None
    assert "<strong>failed sign-ins</strong>" in email.html
    assert "<script>" not in email.html  # the body is sanitised
    assert "Web app — Partial outage" in email.html
    assert f'href="{link}"' in email.html
    assert f'href="http://status.test/subscriptions/{token}"' in email.html
    assert f'href="http://status.test/subscriptions/{token}/unsubscribe"' in email.html
    assert "Affected: Web app (partial outage)" in email.text
    assert f"Manage your subscription: http://status.test/subscriptions/{token}\n" in email.text
    assert f"Unsubscribe: http://status.test/subscriptions/{token}/unsubscribe" in email.text

    sms = messages[Channel.sms].text
    assert sms.startswith("[Acme Cloud] Sign-in failures: Investigating.")
    assert sms.endswith(f" {link}")
    assert measure(sms).segments == 1

    blocks = json.loads(messages[Channel.slack].body or b"")["blocks"]
    assert blocks[0]["text"]["text"] == "Sign-in failures: Investigating"
    assert "&lt;script&gt;" in blocks[1]["text"]["text"]
    context = [e["text"] for e in blocks[2]["elements"]]
    assert context[0] == "*Investigating*"
    assert context[-2] == f"<{link}|View on the status page>"
    slack_token = world.subscribers[Channel.slack].token
    assert context[-1] == f"<http://status.test/subscriptions/{slack_token}|Manage subscription>"

    card = json.loads(messages[Channel.teams].body or b"")["attachments"][0]["content"]
    assert card["body"][0]["text"] == "Sign-in failures"
    assert {"title": "Status", "value": "Investigating"} in card["body"][1]["facts"]
    assert card["actions"][0]["url"] == link

    for social in (Channel.mastodon, Channel.x):
        text = messages[social].text
        assert len(text) <= 280 and text.endswith(link) and text.startswith("Sign-in failures: Investigating.")


async def test_webhook_carries_the_statuspage_envelope(db: Database, settings: Settings) -> None:
    world = await make_world(db)
    messages = await build(db, MessageBuilder(settings), await enqueue_update(db, world, (Channel.webhook,)))
    subscriber = world.subscribers[Channel.webhook]
    webhook = messages[Channel.webhook]
    assert webhook.secret == subscriber.secret and webhook.secret.startswith("whsec_")
    envelope = json.loads(webhook.body or b"")
    assert set(envelope) == {"meta", "page", "incident"}
    assert envelope["meta"]["unsubscribe"] == f"http://status.test/subscriptions/{subscriber.token}/unsubscribe"
    assert envelope["meta"]["documentation"] and envelope["meta"]["generated_at"].endswith("Z")
    assert envelope["page"]["status_indicator"] == "major"  # a partial outage
    assert envelope["page"]["status_description"] == "Partial System Outage"
    incident = envelope["incident"]
    assert incident["id"] == world.incident.id
    assert incident["shortlink"] == f"http://status.test/incidents/{world.incident.id}"
    for key in ("name", "status", "impact", "created_at", "started_at", "page_id", "postmortem_body"):
        assert key in incident
    (update,) = incident["incident_updates"]
    assert update["body"] == BODY
    assert update["affected_components"][0]["new_status"] == "partial_outage"
    assert [c["name"] for c in incident["components"]] == ["Web app"]
    assert b"<script>" not in (webhook.body or b"")  # HTML-significant characters are escaped in the JSON


async def test_template_words_are_used_when_the_update_has_them(db: Database, settings: Settings) -> None:
    world = await make_world(db)
    async with db.session() as session:
        session.add_all(
            [
                UpdateMessage(
                    update_id=world.update.id,
                    channel="email",
                    subject="Investigating: sign-in failures",
                    text="Customers cannot sign in.",
                    html="<p>Customers cannot sign in.</p><img src=x onerror=alert(1)>",
                ),
                UpdateMessage(update_id=world.update.id, channel="sms", text="Sign-in failures. Next update 21:00."),
                UpdateMessage(update_id=world.update.id, channel="slack", text="*Sign-in failures* for SSO users"),
                UpdateMessage(update_id=world.update.id, channel="teams", text="Sign-in failures for SSO users"),
                UpdateMessage(update_id=world.update.id, channel="social", text="We're on it: sign-in failures."),
            ]
        )
    messages = await build(db, MessageBuilder(settings), await enqueue_update(db, world))
    email = messages[Channel.email]
    assert email.subject == "Investigating: sign-in failures"
    assert email.text.startswith("Customers cannot sign in.\n\n--\n")
    assert email.html is not None and "<p>Customers cannot sign in.</p>" in email.html
    assert "onerror" not in email.html
    assert "/unsubscribe" in email.html and "/unsubscribe" in email.text
    assert messages[Channel.sms].text == "Sign-in failures. Next update 21:00."
    blocks = json.loads(messages[Channel.slack].body or b"")["blocks"]
    assert blocks[1]["text"]["text"] == "*Sign-in failures* for SSO users"
    card = json.loads(messages[Channel.teams].body or b"")["attachments"][0]["content"]
    assert card["body"][2]["text"] == "Sign-in failures for SSO users"
    assert messages[Channel.x].text == "We're on it: sign-in failures."


async def test_an_update_is_rendered_once_for_many_batches(db: Database, settings: Settings) -> None:
    world = await make_world(db)
    deliveries = await enqueue_update(db, world)
    builder = MessageBuilder(settings)
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    event.listen(db.engine.sync_engine, "before_cursor_execute", count)
    try:
        first = await build(db, builder, deliveries[:3])
        queries_first = len(statements)
        statements.clear()
        second = await build(db, builder, deliveries[3:])
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", count)
    assert set(first) | set(second) == {*CHANNELS, Channel.mastodon, Channel.x}
    assert queries_first > 2
    # The second batch only looks up its subscribers' tokens.
    assert len(statements) == 1 and "FROM subscriber" in statements[0]


async def test_component_change_goes_to_webhooks_as_a_component_update(db: Database, settings: Settings) -> None:
    world = await make_world(db)
    async with db.session() as session:
        component = await session.get(Component, world.component.id)
        assert component is not None
        await catalog.set_status(session, component, ComponentStatus.major_outage)
        change = await session.scalar(select(ComponentStatusChange).order_by(ComponentStatusChange.id.desc()).limit(1))
        assert change is not None
        deliveries = [
            await ledger.enqueue(
                session,
                subject=f"component:{change.id}",
                purpose=Purpose.component,
                channel=channel,
                recipient=world.subscribers[channel].id,
                address=world.subscribers[channel].address,
                subscriber_id=world.subscribers[channel].id,
            )
            for channel in (Channel.webhook, Channel.email)
        ]
    messages = await build(db, MessageBuilder(settings), deliveries)
    assert set(messages) == {Channel.webhook}  # component changes are for webhook subscribers only
    envelope = json.loads(messages[Channel.webhook].body or b"")
    assert set(envelope) == {"meta", "page", "component_update", "component"}
    assert envelope["component_update"] == {
        "old_status": "partial_outage",
        "new_status": "major_outage",
        "created_at": envelope["component_update"]["created_at"],
        "component_type": "component",
        "id": str(change.id),
        "component_id": world.component.id,
    }
    assert envelope["component"]["id"] == world.component.id
    assert envelope["component"]["status"] == "major_outage"
    assert envelope["page"]["status_indicator"] == "critical"


async def test_confirmations_and_reminders_use_their_payload(db: Database, settings: Settings) -> None:
    world = await make_world(db)
    payload = {"subject": "Confirm your subscription", "text": "Open the link to confirm.", "html": "<p>Open</p>"}
    async with db.session() as session:
        deliveries = [
            await ledger.enqueue(
                session,
                subject=f"confirm:{world.subscribers[channel].id}:1",
                purpose=Purpose.confirm,
                channel=channel,
                recipient=world.subscribers[channel].id,
                address=world.subscribers[channel].address,
                subscriber_id=world.subscribers[channel].id,
                payload=payload,
            )
            for channel in (Channel.email, Channel.sms, Channel.slack, Channel.webhook)
        ]
    messages = await build(db, MessageBuilder(settings), deliveries)
    email = messages[Channel.email]
    assert (email.subject, email.text, email.html) == (payload["subject"], payload["text"], payload["html"])
    assert "List-Unsubscribe" in email.headers
    assert messages[Channel.sms].text == "Open the link to confirm."
    assert json.loads(messages[Channel.slack].body or b"") == {"text": "Open the link to confirm."}
    assert json.loads(messages[Channel.webhook].body or b"")["text"] == "Open the link to confirm."


async def test_a_delivery_whose_subscriber_is_gone_is_left_out(db: Database, settings: Settings) -> None:
    world = await make_world(db)
    deliveries = await enqueue_update(db, world, (Channel.email, Channel.sms))
    async with db.session() as session:
        subscriber = await session.get(Subscriber, world.subscribers[Channel.email].id)
        await session.delete(subscriber)
    async with db.session() as session:
        fresh = list(await session.scalars(select(Delivery).where(Delivery.id.in_([d.id for d in deliveries]))))
        messages = await MessageBuilder(settings).build(session, fresh)
    assert {m.channel for m in messages.values()} == {Channel.sms, Channel.mastodon, Channel.x}


@pytest.mark.parametrize("zone", ["Europe/Berlin"])
async def test_times_are_shown_in_the_page_time_zone(db: Database, settings: Settings, zone: str) -> None:
    world = await make_world(db)
    local = settings.model_copy(update={"page_time_zone": zone})
    messages = await build(db, MessageBuilder(local), await enqueue_update(db, world, (Channel.email,)))
    assert "CET" in messages[Channel.email].text or "CEST" in messages[Channel.email].text
