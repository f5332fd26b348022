"""Replies to tickets: a helpdesk reply is posted once whatever fails after it, a macro that cannot be
written for a ticket loses nothing, and email answers carry the ticket's thread and Reply-To."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest
from aiosmtpd.smtp import Envelope
from prometheus_client import REGISTRY
from sqlalchemy import select

from crisisdesk.auth.models import Role
from crisisdesk.config import Settings
from crisisdesk.incident import service as incidents
from crisisdesk.kit.db import Database
from crisisdesk.kit.jobs import Job
from crisisdesk.kit.time import utcnow
from crisisdesk.support import inbound, tasks, tickets
from crisisdesk.support.models import (
    HelpdeskKind,
    Macro,
    MacroKind,
    ReplyState,
    Ticket,
    TicketReply,
    TicketSource,
    TicketStatus,
)
from tests.fixtures.api import count_rows
from tests.fixtures.auth import api_key_headers, make_actor
from tests.fixtures.console import HTML, sign_in
from tests.fixtures.incident import make_component, make_incident
from tests.fixtures.notify import run_jobs
from tests.fixtures.peers import HttpReceiver, SmtpSink
from tests.fixtures.support import (
    SSO_INCIDENT,
    SSO_TICKET,
    SSO_UPDATE,
    free_port,
    load_ticket,
    make_helpdesk,
    make_macro,
    receive,
    replies,
    send_email_replies,
)

ACK = "We know: {{ incident.name }}."
# Saved fine (the trial renders have a two-word name, or none), but fails for a one-word name.
BY_SURNAME = "Dear {{ requester_name.split()[1] if requester_name else 'customer' }}, we know: {{ incident.name }}."


async def _incident(db: Database, *, ack: str | None = ACK, resolution: str | None = None) -> tuple[str, int]:
    _, admin = await make_actor(db, Role.admin)
    async with db.session() as session:
        sso = await make_component(session, "Sign-in (SSO)")
        incident = await make_incident(
            session, admin, name=SSO_INCIDENT, body=SSO_UPDATE, components={sso.id: "major_outage"}
        )
        if ack is not None:
            await make_macro(session, admin, incident.id, MacroKind.acknowledge, ack)
        if resolution is not None:
            await make_macro(session, admin, incident.id, MacroKind.resolution, resolution)
    return incident.id, incident.number


def _count(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def _due_now(db: Database, reply_id: int) -> None:
    async with db.session() as session:
        job = await session.scalar(select(Job).where(Job.key == tasks.reply_key(reply_id)))
        assert job is not None and job.finished_at is None and job.due_at > utcnow()
        job.due_at = utcnow()


def _allow_loopback(settings: Settings) -> Settings:
    return settings.model_copy(update={"allow_private_webhooks": True})


# ---- a helpdesk reply is posted once ---------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "reply_path", "failing_path", "answer"),
    [
        # Freshdesk: the reply, then the ticket read for its tags (fails once), then the update.
        (HelpdeskKind.freshdesk, "/api/v2/tickets/501/reply", "/api/v2/tickets/501", '{"id": 501, "tags": ["vip"]}'),
        # Intercom: the reply, then the incident's tag found by name (fails once), then put on it.
        (HelpdeskKind.intercom, "/conversations/501/reply", "/tags", '{"type": "tag", "id": "17513"}'),
    ],
)
async def test_a_reply_is_posted_once_when_the_call_after_it_fails(
    db: Database, settings: Settings, kind: HelpdeskKind, reply_path: str, failing_path: str, answer: str
) -> None:
    incident_id, number = await _incident(db)
    settings = _allow_loopback(settings)
    retries = _count("crisisdesk_ticket_replies_total", via="helpdesk", outcome="retry")
    async with HttpReceiver(free_port()) as desk:
        desk.behave(path=failing_path, sequence=[503], body=answer)
        async with db.session() as session:
            helpdesk = await make_helpdesk(session, api_base_url=desk.url("").rstrip("/"), kind=kind)
        ticket = await receive(
            db,
            settings,
            subject=SSO_TICKET[0],
            body=SSO_TICKET[1],
            source=TicketSource(kind.value),
            helpdesk_id=helpdesk.id,
            external_id="501",
        )
        assert ticket.incident_id == incident_id
        await run_jobs(db, settings)
        [reply] = await replies(db, ticket.id)
        # Posted; the call after it failed and waits for its retry, which must not post again.
        assert reply.state == ReplyState.pending and reply.sent_at is not None
        assert reply.last_error is not None and reply.last_error.startswith("the reply was posted, but")
        assert "503" in reply.last_error
        assert _count("crisisdesk_ticket_replies_total", via="helpdesk", outcome="retry") == retries + 1
        await _due_now(db, reply.id)
        await run_jobs(db, settings)
        [reply] = await replies(db, ticket.id)
        assert (reply.state, reply.last_error) == (ReplyState.sent, None)
        posts = [r for r in desk.received() if r.path == reply_path]
        assert len(posts) == 1 and SSO_INCIDENT in posts[0].json()["body"]
        tag = f"incident-{number}"
        if kind == HelpdeskKind.freshdesk:
            [update] = [r for r in desk.received() if r.method == "PUT"]
            assert update.json() == {"tags": ["vip", tag]}
        else:
            assert [r.json() for r in desk.received() if r.path == "/tags"] == [{"name": tag}] * 2
            [tagged] = [r for r in desk.received() if r.path == "/conversations/501/tags"]
            assert tagged.json() == {"id": "17513", "admin_id": "agent@example.com"}


async def test_a_follow_up_failing_for_good_never_posts_again(
    db: Database, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tasks, "MAX_ATTEMPTS", 2)
    incident_id, _ = await _incident(db)
    settings = _allow_loopback(settings)
    _, admin = await make_actor(db, Role.admin)
    async with HttpReceiver(free_port()) as desk:
        desk.behave(path="/api/v2/tickets/77", status=503, body="maintenance")
        async with db.session() as session:
            helpdesk = await make_helpdesk(session, api_base_url=desk.url("").rstrip("/"), kind=HelpdeskKind.freshdesk)
        ticket = await receive(
            db,
            settings,
            subject=SSO_TICKET[0],
            body=SSO_TICKET[1],
            source=TicketSource.freshdesk,
            helpdesk_id=helpdesk.id,
            external_id="77",
        )
        await run_jobs(db, settings)
        [reply] = await replies(db, ticket.id)
        # Unlinking now cannot unsay what the customer has read: the reply is not marked "not sent".
        async with db.session() as session:
            await tickets.unlink(session, admin, ticket_id=ticket.id)
            await tickets.link(session, settings, admin, ticket_id=ticket.id, incident_id=incident_id)
        await _due_now(db, reply.id)
        await run_jobs(db, settings)
        [reply] = await replies(db, ticket.id)
        assert reply.state == ReplyState.failed and reply.sent_at is not None
        assert (reply.last_error or "").startswith("the reply was posted, but tagging or solving the ticket failed")
        # It reached the customer: acknowledging the unanswered ones leaves it alone.
        async with db.session() as session:
            assert await tickets.unacknowledged_count(session, incident_id) == 0
            again = await tickets.acknowledge_all(session, settings, admin, incident_id=incident_id)
        assert again.answered == 0
        await run_jobs(db, settings)
        assert len([r for r in desk.received() if r.path == "/api/v2/tickets/77/reply"]) == 1
        assert len(await replies(db, ticket.id)) == 1


# ---- a macro that cannot be written for a ticket ---------------------------------------------


async def test_a_macro_failing_for_one_ticket_loses_no_ticket_and_says_why(
    client: httpx.AsyncClient, db: Database, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    incident_id, number = await _incident(db, ack=BY_SURNAME)
    not_rendered = _count("crisisdesk_ticket_replies_total", via="email", outcome="not_rendered")
    raw = (
        f"From: Jane <jane@initech.example>\r\nTo: support@acme.example\r\nSubject: {SSO_TICKET[0]}\r\n"
        f"Message-ID: <z1@initech.example>\r\n\r\n{SSO_TICKET[1]}\r\n"
    ).encode()
    envelope = Envelope()
    envelope.original_content, envelope.mail_from = raw, "jane@initech.example"
    with caplog.at_level(logging.WARNING, logger="crisisdesk.support.tasks"):
        answer = await inbound.InboundHandler(db, settings).handle_DATA(None, None, envelope)  # type: ignore[arg-type]
    assert answer.startswith("250 ") and "Received as ticket #1" in answer
    writer = await api_key_headers(db, Role.responder)
    created = await client.post(
        "/api/v1/tickets",
        headers=writer,
        json={
            "subject": SSO_TICKET[0],
            "body": SSO_TICKET[1],
            "requester_email": "joe@initech.example",
            "requester_name": "Joe",
        },
    )
    assert created.status_code == 201, created.text
    [reply_read] = created.json()["replies"]
    assert reply_read["state"] == "failed" and "has no element" in reply_read["last_error"]
    assert await count_rows(db, Ticket) == 2
    for ticket in await _tickets(db):
        assert ticket.incident_id == incident_id and f"incident-{number}" in ticket.tags
        [reply] = await replies(db, ticket.id)
        assert (reply.state, reply.body, reply.delivery_id) == (ReplyState.failed, "", None)
        assert reply.last_error == "not sent: the acknowledge macro cannot be rendered: list object has no element 1"
    assert "cannot be rendered for ticket #1" in caplog.text and f"INC-{number}" in caplog.text
    assert _count("crisisdesk_ticket_replies_total", via="email", outcome="not_rendered") == not_rendered + 2

    # Seen on the ticket's page and the incident's panel.
    await sign_in(client, db, Role.responder)
    first = (await _tickets(db))[0]
    page = await client.get(f"/console/tickets/{first.id}", headers=HTML)
    assert 'data-state="failed"' in page.text and "has no element" in page.text
    panel = await client.get(f"/console/incidents/{incident_id}", headers=HTML)
    assert "2 replies failed" in panel.text

    # Once the macro is mended, acknowledging the unanswered tickets answers both.
    _, admin = await make_actor(db, Role.admin)
    async with db.session() as session:
        await make_macro(session, admin, incident_id, MacroKind.acknowledge, "Dear {{ requester_name or 'you' }}.")
        assert await tickets.unacknowledged_count(session, incident_id) == 2
        result = await tickets.acknowledge_all(session, settings, admin, incident_id=incident_id)
    assert (result.answered, result.failed) == (2, 0)
    bodies = sorted(r.body for r in await replies(db) if r.state == ReplyState.pending)
    assert bodies == ["Dear Jane.", "Dear Joe."]


async def test_resolving_in_bulk_answers_the_others_when_one_ticket_fails(
    client: httpx.AsyncClient, db: Database, settings: Settings
) -> None:
    incident_id, _ = await _incident(db, ack=None)
    _, admin = await make_actor(db, Role.admin)
    names = {"ann@acme.example": "Ann Lee", "bob@acme.example": "Bob", "cy@acme.example": None}
    made = {}
    for address, name in names.items():
        made[address] = await receive(
            db, settings, subject=SSO_TICKET[0], body=SSO_TICKET[1], requester_email=address, requester_name=name
        )
    async with db.session() as session:
        await make_macro(
            session,
            admin,
            incident_id,
            MacroKind.resolution,
            "Dear {{ requester_name.split()[1] if requester_name else 'customer' }}: fixed.",
        )
    writer = await api_key_headers(db, Role.responder)
    response = await client.post(f"/api/v1/incidents/{incident_id}/tickets/resolve", headers=writer)
    assert response.status_code == 200 and response.json() == {
        "answered": 2,
        "replies": 2,
        "skipped": 0,
        "solved_without_reply": 0,
        "failed": 1,
    }
    bob = await load_ticket(db, made["bob@acme.example"].id)
    assert bob.status == TicketStatus.pending and bob.solved_at is None
    [failed] = [r for r in await replies(db, bob.id)]
    assert failed.state == ReplyState.failed and "has no element" in (failed.last_error or "")
    for address in ("ann@acme.example", "cy@acme.example"):
        assert (await load_ticket(db, made[address].id)).status == TicketStatus.solved
    bodies = sorted(r.body for r in await replies(db) if r.state == ReplyState.pending)
    assert bodies == ["Dear Lee: fixed.", "Dear customer: fixed."]
    async with db.sessionmaker() as session:
        [event] = [e for e in await incidents.timeline_of(session, incident_id) if e.kind == "tickets_resolved"]
    assert "the macro could not be written for 1 ticket, left unsolved" in event.summary

    # Mended, the resolution goes to the one left, and to nobody twice.
    async with db.session() as session:
        await make_macro(session, admin, incident_id, MacroKind.resolution, "Dear {{ requester_name }}: fixed.")
        again = await tickets.resolve_all(session, settings, admin, incident_id=incident_id)
    assert (again.answered, again.skipped, again.failed) == (1, 2, 0)
    assert (await load_ticket(db, bob.id)).status == TicketStatus.solved
    assert len([r for r in await replies(db) if r.state == ReplyState.pending]) == 3


async def _tickets(db: Database) -> list[Ticket]:
    async with db.sessionmaker() as session:
        return list(await session.scalars(select(Ticket).order_by(Ticket.number)))


# ---- email answers ---------------------------------------------------------------------------


async def test_email_answers_thread_under_the_ticket_and_reply_to_the_support_inbox(
    db: Database, settings: Settings
) -> None:
    await _incident(db)
    port = free_port()
    inbox = "Acme Support <support@acme.example>"
    settings = settings.model_copy(
        update={"smtp_host": "127.0.0.1", "smtp_port": port, "smtp_connections": 1, "support_email": inbox}
    )
    by_api = await receive(
        db, settings, subject=SSO_TICKET[0], body=SSO_TICKET[1], source=TicketSource.api, requester_email="a@x.example"
    )
    async with SmtpSink(port) as sink:
        await send_email_replies(db, settings)
        await sink.wait_for(1)
        [mail] = sink.messages()
    message = mail.message
    assert message["Reply-To"] == inbox
    # No customer's message to answer: threaded under the ticket's own id, which an answer carries back.
    assert message["References"] == f"<ticket.{by_api.id}@status.test>" and message["In-Reply-To"] is None
    assert tasks.ticket_id_in(message["References"]) == by_api.id


async def test_without_a_support_inbox_answers_have_no_reply_to(db: Database, settings: Settings) -> None:
    await _incident(db)
    ticket = await receive(db, settings, subject=SSO_TICKET[0], body=SSO_TICKET[1], requester_email="a@x.example")
    [reply] = await replies(db, ticket.id)
    async with db.sessionmaker() as session:
        from crisisdesk.notify.models import Delivery

        delivery = await session.get(Delivery, reply.delivery_id)
    assert delivery is not None
    headers: dict[str, Any] = (delivery.payload or {})["headers"]
    assert "Reply-To" not in headers and headers["References"] == f"<ticket.{ticket.id}@status.test>"


async def test_a_stored_macro_row_is_what_the_reply_renders(db: Database, settings: Settings) -> None:
    """A macro approved before the save-time checks existed still cannot lose a ticket."""
    incident_id, _ = await _incident(db)
    async with db.session() as session:
        macro = await session.scalar(select(Macro).where(Macro.incident_id == incident_id))
        assert macro is not None
        macro.body = "Hi {{ requester_name.split()[0] }}"
    ticket = await receive(db, settings, subject=SSO_TICKET[0], body=SSO_TICKET[1], requester_email="a@x.example")
    assert (await load_ticket(db, ticket.id)).incident_id == incident_id
    [reply] = await replies(db, ticket.id)
    assert reply.state == ReplyState.failed and "has no element" in (reply.last_error or "")
    assert await count_rows(db, TicketReply) == 1
