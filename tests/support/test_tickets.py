"""Tickets: received, matched, linked and acknowledged, suggested, linked by agents, answered in bulk."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import func, select

from crisisdesk.auth.models import Role
from crisisdesk.config import Settings
from crisisdesk.incident import service as incidents
from crisisdesk.incident.models import TimelineEvent
from crisisdesk.kit.db import Database
from crisisdesk.kit.errors import Conflict, InvalidInput, NotFound
from crisisdesk.kit.jobs import Job
from crisisdesk.kit.time import utcnow
from crisisdesk.notify.models import Delivery, DeliveryState, Purpose
from crisisdesk.support import tasks, tickets
from crisisdesk.support.models import (
    LinkedBy,
    MacroKind,
    ReplyState,
    Ticket,
    TicketReply,
    TicketSource,
    TicketStatus,
)
from tests.fixtures.api import count_rows, error_locs, error_text
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
    make_account,
    make_helpdesk,
    make_macro,
    receive,
    replies,
    send_email_replies,
)

SSO_QUESTION = "I have a question about setting up SSO for a new team we are adding."
ACK = "Hi {{ requester_name or 'there' }}, we know: {{ incident.reference }} {{ incident.name }}. {{ latest_update }}"
RESOLVED = "Hi {{ requester_name or 'there' }}, {{ incident.reference }} is resolved. Ticket {{ ticket.number }}."


async def _sso_incident(db: Database, *, ack: bool = True, resolution: bool = False) -> tuple[str, int, str]:
    """An admin's SSO incident on the Sign-in component, with approved macros; returns (id, number, component)."""
    _, admin = await make_actor(db, Role.admin, name="Ada Admin")
    async with db.session() as session:
        sso = await make_component(session, "Sign-in (SSO)")
        await make_component(session, "Billing")
        incident = await make_incident(
            session, admin, name=SSO_INCIDENT, body=SSO_UPDATE, components={sso.id: "major_outage"}
        )
        if ack:
            await make_macro(session, admin, incident.id, MacroKind.acknowledge, ACK)
        if resolution:
            await make_macro(session, admin, incident.id, MacroKind.resolution, RESOLVED)
    return incident.id, incident.number, sso.id


async def _timeline(db: Database, incident_id: str, kind: str) -> list[TimelineEvent]:
    async with db.sessionmaker() as session:
        return [e for e in await incidents.timeline_of(session, incident_id) if e.kind == kind]


def _smtp(settings: Settings, port: int) -> Settings:
    return settings.model_copy(update={"smtp_host": "127.0.0.1", "smtp_port": port, "smtp_connections": 2})


# ---- receiving and matching -------------------------------------------------------------------


async def test_a_clear_ticket_is_linked_and_its_acknowledgement_reaches_the_requester_by_email(
    db: Database, settings: Settings
) -> None:
    """The whole path: email ticket → matched above the threshold → linked and tagged → the approved
    acknowledgement queued in the ledger → the delivery worker → the aiosmtpd sink, threaded."""
    incident_id, number, sso = await _sso_incident(db)
    async with db.session() as session:
        account = await make_account(session, external_id="acme", components=[sso], contacts=["ann@acme.example"])
    port = free_port()
    settings = _smtp(settings, port)
    ticket = await receive(
        db,
        settings,
        subject=SSO_TICKET[0],
        body=SSO_TICKET[1],
        requester_email="Ann@Acme.example",
        requester_name="Ann Lee",
        external_id="<CAF=xyz@mail.acme.example>",
    )
    assert ticket.account_id == account.id
    assert ticket.incident_id == incident_id and ticket.linked_by == LinkedBy.auto
    assert ticket.status == TicketStatus.pending and ticket.tags == [f"incident-{number}"]
    assert ticket.confidence is not None and ticket.confidence >= settings.match_threshold
    assert ticket.match_reasons and ticket.suggested_incident_id is None
    [reply] = await replies(db, ticket.id)
    assert (reply.kind, reply.via, reply.incident_id, reply.solve) == ("acknowledge", "email", incident_id, False)
    assert f"Hi Ann Lee, we know: INC-{number} {SSO_INCIDENT}. {SSO_UPDATE}" == reply.body
    [event] = await _timeline(db, incident_id, "tickets_linked")
    assert event.summary.startswith(f"First support ticket matched and linked: #{ticket.number}")

    async with SmtpSink(port) as sink:
        [delivery] = await send_email_replies(db, settings)
        await sink.wait_for(1)
        [mail] = sink.messages()
    assert delivery.state == DeliveryState.delivered and delivery.purpose == Purpose.ticket
    assert delivery.id == reply.delivery_id and delivery.incident_id == incident_id
    assert mail.rcpt_tos == ["ann@acme.example"]
    message = mail.message
    assert str(message["Subject"]) == f"Re: {SSO_TICKET[0]}"
    assert message["In-Reply-To"] == "<CAF=xyz@mail.acme.example>"
    # The ticket's own thread id first: the customer's answer carries it back (see test_inbound_email).
    assert message["References"] == f"<ticket.{ticket.id}@status.test> <CAF=xyz@mail.acme.example>"
    body = message.get_body(("plain",))
    assert body is not None and f"we know: INC-{number} {SSO_INCIDENT}" in body.get_content()
    async with db.sessionmaker() as session:
        states = await tasks.reply_states(session, await replies(db, ticket.id))
    assert states[reply.id] == ("sent", None)


async def test_below_the_threshold_the_best_incident_is_only_suggested(db: Database, settings: Settings) -> None:
    incident_id, _, _ = await _sso_incident(db)
    subject, body = "Question about SSO", SSO_QUESTION
    async with db.sessionmaker() as session:
        probe = await tickets.place(
            session, settings, subject=subject, body=body, component_ids=frozenset(), created_at=utcnow()
        )
    assert probe.incident_id == incident_id and probe.confidence is not None and 0.4 < probe.confidence < 1
    # A threshold just above this ticket's confidence: it is offered to an agent, not linked.
    strict = settings.model_copy(update={"match_threshold": (probe.confidence + 1) / 2})
    ticket = await receive(db, strict, subject=subject, body=body, requester_email="bo@nowhere.example")
    assert ticket.incident_id is None and ticket.linked_by is None and ticket.tags == []
    assert ticket.suggested_incident_id == incident_id and ticket.status == TicketStatus.open
    assert ticket.confidence == probe.confidence and ticket.match_reasons == probe.reasons
    assert await replies(db) == [] and await count_rows(db, Delivery) == 0
    async with db.sessionmaker() as session:
        assert await tickets.count_suggested(session, incident_id) == 1
        assert await tickets.count_linked(session, incident_id) == 0


async def test_an_unrelated_question_is_neither_linked_nor_suggested(db: Database, settings: Settings) -> None:
    await _sso_incident(db)
    ticket = await receive(
        db,
        settings,
        subject="Feature request: dark mode",
        body="Would you consider adding a dark theme to the reports page? Our team works nights.",
        requester_email="cy@acme.example",
    )
    assert ticket.incident_id is None and ticket.suggested_incident_id is None and ticket.tags == []


async def test_a_ticket_from_an_unknown_account_is_accepted_and_matched_on_its_text(
    db: Database, settings: Settings
) -> None:
    incident_id, number, _ = await _sso_incident(db)
    ticket = await receive(
        db,
        settings,
        subject=SSO_TICKET[0],
        body=SSO_TICKET[1],
        source=TicketSource.api,
        requester_email="x@unknown.example",
    )
    assert ticket.account_id is None
    assert ticket.incident_id == incident_id and ticket.tags == [f"incident-{number}"]


async def test_the_account_is_found_by_external_id_helpdesk_org_contact_then_domain(
    db: Database, settings: Settings
) -> None:
    async with db.session() as session:
        by_id = await make_account(session, external_id="crm-1")
        by_org = await make_account(session, external_id="crm-2", helpdesk_org_id="zd-org-9")
        by_contact = await make_account(session, external_id="crm-3", contacts=["pat@shared.example"])
        by_domain = await make_account(session, external_id="crm-4", domains=["globex.example"])
    cases = [
        ({"account_external_id": "crm-1", "org_id": "zd-org-9", "requester_email": "pat@shared.example"}, by_id.id),
        ({"account_external_id": "nope", "org_id": "zd-org-9", "requester_email": "pat@shared.example"}, by_org.id),
        ({"org_id": "other", "requester_email": "PAT@shared.example"}, by_contact.id),
        ({"requester_email": "lee@GLOBEX.example"}, by_domain.id),
        ({"requester_email": "lee@initech.example"}, None),
    ]
    for i, (given, expected) in enumerate(cases):
        ticket = await receive(db, settings, subject=f"Question {i}", body="How do I export a report?", **given)
        assert ticket.account_id == expected, given


async def test_a_ticket_received_twice_is_stored_once(db: Database, settings: Settings) -> None:
    async with db.session() as session:
        helpdesk = await make_helpdesk(session, api_base_url="https://acme.zendesk.example")
    first = await receive(
        db, settings, subject="A", body="b", source=TicketSource.zendesk, helpdesk_id=helpdesk.id, external_id="981"
    )
    again = await receive(
        db,
        settings,
        subject="A edited",
        body="b",
        source=TicketSource.zendesk,
        helpdesk_id=helpdesk.id,
        external_id="981",
    )
    mail = await receive(db, settings, subject="A", body="b", external_id="<m1@mail.example>")
    mail_again = await receive(db, settings, subject="A", body="b", external_id="<m1@mail.example>")
    # The same id from another source is another ticket.
    api = await receive(db, settings, subject="A", body="b", source=TicketSource.api, external_id="<m1@mail.example>")
    assert first.id == again.id and again.subject == "A"
    assert mail.id == mail_again.id and api.id not in (first.id, mail.id)
    assert await count_rows(db, Ticket) == 3
    assert sorted([first.number, mail.number, api.number]) == [1, 2, 3]


async def test_tickets_received_at_once_get_distinct_numbers(db: Database, settings: Settings) -> None:
    # The first tickets ever race to create the counter row, too.
    async def one(i: int) -> int:
        ticket = await receive(db, settings, subject=f"Ticket {i}", body="Where is the export button?")
        return ticket.number

    numbers = await asyncio.gather(*(one(i) for i in range(8)))
    assert sorted(numbers) == list(range(1, 9))


async def test_bad_input_names_the_field_and_stores_nothing(db: Database, settings: Settings) -> None:
    with pytest.raises(InvalidInput) as empty:
        await receive(db, settings, subject="  ", body="")
    assert empty.value.field == "body"
    with pytest.raises(InvalidInput) as address:
        await receive(db, settings, subject="Hi", body="x", requester_email="not an address")
    assert address.value.field == "requester_email"
    with pytest.raises(InvalidInput) as future:
        await receive(db, settings, subject="Hi", body="x", created_at=utcnow() + timedelta(hours=1))
    assert future.value.field == "created_at"
    assert await count_rows(db, Ticket) == 0
    # Text from outside is stored as it can be: NUL replaced, the body cut at its limit.
    ticket = await receive(db, settings, subject="a\x00b", body="y" * (tickets.MAX_BODY + 10))
    assert ticket.subject == "a\ufffdb" and len(ticket.body) == tickets.MAX_BODY


# ---- macros and what is sent ------------------------------------------------------------------


async def test_an_unapproved_macro_is_never_sent(db: Database, settings: Settings) -> None:
    incident_id, number, _ = await _sso_incident(db, ack=False)
    _, admin = await make_actor(db, Role.admin)
    async with db.session() as session:
        await make_macro(session, admin, incident_id, MacroKind.acknowledge, "Unapproved words", approved=False)
        await make_macro(session, admin, incident_id, MacroKind.resolution, "Unapproved resolution", approved=False)
    ticket = await receive(db, settings, subject=SSO_TICKET[0], body=SSO_TICKET[1], requester_email="ann@acme.example")
    assert ticket.incident_id == incident_id and ticket.tags == [f"incident-{number}"]
    assert await replies(db) == []
    with pytest.raises(Conflict) as refused:
        async with db.session() as session:
            await tickets.resolve_all(session, settings, admin, incident_id=incident_id)
    assert refused.value.field == "macro" and "approved resolution macro" in refused.value.message
    # Approved, then changed: the change withdraws the approval, so nothing goes out again.
    async with db.session() as session:
        await make_macro(session, admin, incident_id, MacroKind.resolution, "Approved resolution")
        await make_macro(session, admin, incident_id, MacroKind.resolution, "Edited, not approved", approved=False)
    with pytest.raises(Conflict):
        async with db.session() as session:
            await tickets.resolve_all(session, settings, admin, incident_id=incident_id)
    assert await replies(db) == [] and await count_rows(db, Delivery) == 0
    assert (await load_ticket(db, ticket.id)).status == TicketStatus.pending


async def test_resolve_all_answers_every_linked_ticket_by_email_and_helpdesk_and_solves_them(
    db: Database, settings: Settings
) -> None:
    incident_id, number, _ = await _sso_incident(db, resolution=True)
    _, admin = await make_actor(db, Role.admin, name="Rita Resolver")
    smtp_port, http_port = free_port(), free_port()
    settings = _smtp(settings, smtp_port).model_copy(update={"allow_private_webhooks": True})
    async with SmtpSink(smtp_port) as sink, HttpReceiver(http_port) as zendesk:
        async with db.session() as session:
            helpdesk = await make_helpdesk(session, api_base_url=zendesk.url("").rstrip("/"))
        by_mail = await receive(
            db,
            settings,
            subject=SSO_TICKET[0],
            body=SSO_TICKET[1],
            requester_email="ann@acme.example",
            requester_name="Ann",
        )
        by_desk = await receive(
            db,
            settings,
            subject="SSO login broken",
            body=SSO_TICKET[1],
            source=TicketSource.zendesk,
            helpdesk_id=helpdesk.id,
            external_id="4711",
            requester_email="bob@acme.example",
        )
        no_way = await receive(db, settings, subject=SSO_TICKET[0], body=SSO_TICKET[1], source=TicketSource.api)
        solved_before = await receive(
            db, settings, subject=SSO_TICKET[0], body=SSO_TICKET[1], requester_email="cy@acme.example"
        )
        for t in (by_mail, by_desk, no_way, solved_before):
            assert t.incident_id == incident_id
        async with db.session() as session:
            await session.execute(
                Ticket.__table__.update().where(Ticket.id == solved_before.id).values(status=TicketStatus.solved)
            )
        # The acknowledgements (email for two, the helpdesk for one) go out first.
        await run_jobs(db, settings)
        await send_email_replies(db, settings)
        await zendesk.wait_for(1)

        async with db.session() as session:
            result = await tickets.resolve_all(session, settings, admin, incident_id=incident_id)
        # The ticket with neither a helpdesk nor an address is solved, but nobody was answered.
        assert (result.answered, result.replies, result.skipped) == (2, 2, 1)
        assert (result.solved_without_reply, result.failed) == (1, 0)
        await run_jobs(db, settings)
        await send_email_replies(db, settings)
        await zendesk.wait_for(2)
        await sink.wait_for(3)

        for t in (by_mail, by_desk, no_way, solved_before):
            assert (await load_ticket(db, t.id)).status == TicketStatus.solved
        resolution = [r for r in await replies(db) if r.kind == "resolution"]
        assert {(r.ticket_id, r.via, r.solve) for r in resolution} == {
            (by_mail.id, "email", True),
            (by_desk.id, "helpdesk", True),
        }
        desk_reply = next(r for r in resolution if r.via == "helpdesk")
        assert desk_reply.state == ReplyState.sent and desk_reply.attempts == 1
        put = zendesk.received()[-1]
        assert (put.method, put.path) == ("PUT", "/api/v2/tickets/4711.json")
        sent = put.json()["ticket"]
        assert sent["status"] == "solved" and f"incident-{number}" in sent["additional_tags"]
        assert sent["comment"]["body"] == f"Hi there, INC-{number} is resolved. Ticket {by_desk.number}."
        mails = [m for m in sink.messages() if "is resolved" in str(m.message.get_body(("plain",)).get_content())]
        assert [m.rcpt_tos for m in mails] == [["ann@acme.example"]]

        # Again: everything is solved, nobody is answered twice.
        async with db.session() as session:
            again = await tickets.resolve_all(session, settings, admin, incident_id=incident_id)
        assert (again.answered, again.replies, again.skipped) == (0, 0, 4)
    assert len([r for r in await replies(db) if r.kind == "resolution"]) == 2
    [event] = await _timeline(db, incident_id, "tickets_resolved")
    assert event.summary == (
        "Rita Resolver answered 2 linked tickets with the resolution macro and marked them solved; "
        "1 ticket with no helpdesk or address marked solved without a reply"
    )


async def test_a_failing_helpdesk_reply_is_retried_then_marked_failed_with_its_error(
    db: Database, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tasks, "MAX_ATTEMPTS", 2)
    incident_id, _, _ = await _sso_incident(db)
    settings = settings.model_copy(update={"allow_private_webhooks": True})
    async with HttpReceiver(free_port(), status=503, body="maintenance") as zendesk:
        async with db.session() as session:
            helpdesk = await make_helpdesk(session, api_base_url=zendesk.url("").rstrip("/"))
        ticket = await receive(
            db,
            settings,
            subject=SSO_TICKET[0],
            body=SSO_TICKET[1],
            source=TicketSource.zendesk,
            helpdesk_id=helpdesk.id,
            external_id="77",
        )
        assert ticket.incident_id == incident_id
        await run_jobs(db, settings)
        [reply] = await replies(db, ticket.id)
        assert (reply.state, reply.attempts) == (ReplyState.pending, 1)
        assert reply.last_error is not None and "503" in reply.last_error
        async with db.session() as session:
            job = await session.scalar(select(Job).where(Job.key == tasks.reply_key(reply.id)))
            assert job is not None and job.finished_at is None and job.due_at > utcnow() + timedelta(seconds=20)
            job.due_at = utcnow()
        await run_jobs(db, settings)
        [reply] = await replies(db, ticket.id)
        assert (reply.state, reply.attempts) == (ReplyState.failed, 2) and "503" in (reply.last_error or "")
        assert len(zendesk.received()) == 2


# ---- agents ----------------------------------------------------------------------------------


async def test_an_agent_links_and_unlinks_and_an_unsent_reply_is_stopped(db: Database, settings: Settings) -> None:
    incident_id, number, _ = await _sso_incident(db)
    _, agent = await make_actor(db, Role.responder, name="Sam Support")
    ticket = await receive(
        db, settings, subject="Question", body="How do I change my invoice address?", requester_email="ann@acme.example"
    )
    assert ticket.incident_id is None
    async with db.session() as session:
        linked = await tickets.link(session, settings, agent, ticket_id=ticket.id, incident_id=incident_id)
        assert linked.linked_by == LinkedBy.agent and linked.tags == [f"incident-{number}"]
        assert linked.status == TicketStatus.pending
    [reply] = await replies(db, ticket.id)
    assert reply.kind == "acknowledge" and reply.delivery_id is not None
    async with db.session() as session:
        # Linking again changes nothing and sends nothing twice.
        await tickets.link(session, settings, agent, ticket_id=ticket.id, incident_id=incident_id)
    assert len(await replies(db, ticket.id)) == 1
    async with db.session() as session:
        unlinked = await tickets.unlink(session, agent, ticket_id=ticket.id)
    assert unlinked.incident_id is None and unlinked.tags == [] and unlinked.status == TicketStatus.open
    [reply] = await replies(db, ticket.id)
    assert reply.state == ReplyState.failed and "unlinked" in (reply.last_error or "")
    async with db.sessionmaker() as session:
        delivery = await session.get(Delivery, reply.delivery_id)
        assert delivery is not None and delivery.state == DeliveryState.failed
    with pytest.raises(Conflict):
        async with db.session() as session:
            await tickets.unlink(session, agent, ticket_id=ticket.id)
    with pytest.raises(NotFound) as missing:
        async with db.session() as session:
            await tickets.link(session, settings, agent, ticket_id=ticket.id, incident_id="nope")
    assert missing.value.field == "incident_id"


async def test_moving_a_ticket_to_another_incident_swaps_its_tag(db: Database, settings: Settings) -> None:
    _, number, _ = await _sso_incident(db)
    _, admin = await make_actor(db, Role.admin)
    async with db.session() as session:
        other = await make_incident(session, admin, name="Invoices fail to load", body="The billing page errors.")
    ticket = await receive(db, settings, subject=SSO_TICKET[0], body=SSO_TICKET[1])
    assert ticket.tags == [f"incident-{number}"]
    async with db.session() as session:
        moved = await tickets.link(session, settings, admin, ticket_id=ticket.id, incident_id=other.id)
        assert moved.incident_id == other.id and moved.tags == [f"incident-{other.number}"]


async def test_the_timeline_notes_the_first_linked_ticket_and_each_tenfold_not_every_one(
    db: Database, settings: Settings
) -> None:
    assert [n for n in range(1, 1001) if tickets.is_milestone(n)] == [1, 10, 100, 1000]
    incident_id, _, _ = await _sso_incident(db, ack=False)
    _, agent = await make_actor(db, Role.responder)
    for i in range(12):
        ticket = await receive(db, settings, subject=f"Export question {i}", body="Where is the CSV export?")
        async with db.session() as session:
            await tickets.link(session, settings, agent, ticket_id=ticket.id, incident_id=incident_id)
    events = await _timeline(db, incident_id, "tickets_linked")
    assert [e.data["count"] for e in reversed(events)] == [1, 10]
    assert events[0].summary == "10 support tickets linked"


async def test_acknowledge_all_answers_tickets_linked_before_the_macro_was_approved(
    db: Database, settings: Settings
) -> None:
    incident_id, _, _ = await _sso_incident(db, ack=False)
    _, admin = await make_actor(db, Role.admin)
    first = await receive(db, settings, subject=SSO_TICKET[0], body=SSO_TICKET[1], requester_email="a@acme.example")
    second = await receive(db, settings, subject=SSO_TICKET[0], body=SSO_TICKET[1], requester_email="b@acme.example")
    assert await replies(db) == []
    async with db.session() as session:
        assert await tickets.unacknowledged_count(session, incident_id) == 2
        await make_macro(session, admin, incident_id, MacroKind.acknowledge, ACK)
        result = await tickets.acknowledge_all(session, settings, admin, incident_id=incident_id)
    assert (result.answered, result.replies) == (2, 2)
    assert {r.ticket_id for r in await replies(db)} == {first.id, second.id}
    async with db.session() as session:
        assert await tickets.unacknowledged_count(session, incident_id) == 0
        again = await tickets.acknowledge_all(session, settings, admin, incident_id=incident_id)
    assert again.answered == 0 and len(await replies(db)) == 2


# ---- API --------------------------------------------------------------------------------------


async def test_api_creates_lists_links_and_resolves_tickets(client: httpx.AsyncClient, db: Database) -> None:
    incident_id, number, _ = await _sso_incident(db)
    writer = await api_key_headers(db, Role.responder)
    reader = await api_key_headers(db, Role.viewer)
    body = {
        "subject": SSO_TICKET[0],
        "body": SSO_TICKET[1],
        "requester_email": "ann@acme.example",
        "external_id": "form-1",
    }
    created = await client.post("/api/v1/tickets", json=body, headers=writer)
    assert created.status_code == 201, created.text
    ticket = created.json()
    assert ticket["incident_id"] == incident_id and ticket["tags"] == [f"incident-{number}"]
    assert ticket["source"] == "api" and ticket["status"] == "pending"
    assert [r["kind"] for r in ticket["replies"]] == ["acknowledge"] and ticket["replies"][0]["state"] == "pending"
    again = await client.post("/api/v1/tickets", json=body, headers=writer)
    assert again.status_code == 200 and again.json()["id"] == ticket["id"]
    vague = await client.post(
        "/api/v1/tickets", json={"subject": "Hello", "body": "Where is the export?"}, headers=writer
    )
    assert vague.status_code == 201 and vague.json()["incident_id"] is None

    listed = await client.get(f"/api/v1/tickets?incident_id={incident_id}", headers=reader)
    assert listed.status_code == 200 and [t["id"] for t in listed.json()["items"]] == [ticket["id"]]
    assert listed.json()["total"] == 1
    every = (await client.get("/api/v1/tickets?limit=1", headers=reader)).json()
    assert every["total"] == 2 and len(every["items"]) == 1
    pending = (await client.get("/api/v1/tickets?status=open", headers=reader)).json()
    assert [t["id"] for t in pending["items"]] == [vague.json()["id"]]
    one = await client.get(f"/api/v1/tickets/{ticket['id']}", headers=reader)
    assert one.status_code == 200 and one.json()["number"] == ticket["number"]

    linked = await client.post(
        f"/api/v1/tickets/{vague.json()['id']}/link", json={"incident_id": incident_id}, headers=writer
    )
    assert linked.status_code == 200 and linked.json()["linked_by"] == "agent"
    unlinked = await client.post(f"/api/v1/tickets/{vague.json()['id']}/unlink", headers=writer)
    assert unlinked.status_code == 200 and unlinked.json()["tags"] == []
    twice = await client.post(f"/api/v1/tickets/{vague.json()['id']}/unlink", headers=writer)
    assert twice.status_code == 409
    assert (
        await client.post(f"/api/v1/tickets/{ticket['id']}/link", json={"incident_id": incident_id}, headers=reader)
    ).status_code == 403

    refused = await client.post(f"/api/v1/incidents/{incident_id}/tickets/resolve", headers=writer)
    assert refused.status_code == 409 and error_locs(refused) == [["body", "macro"]]
    admin = await api_key_headers(db, Role.admin)
    put = await client.put(f"/api/v1/incidents/{incident_id}/macros/resolution", json={"body": RESOLVED}, headers=admin)
    assert put.status_code == 200 and put.json()["approved_at"] is None
    approved = await client.post(
        f"/api/v1/incidents/{incident_id}/macros/resolution/approve",
        json={"updated_at": put.json()["updated_at"]},
        headers=admin,
    )
    assert approved.status_code == 200 and approved.json()["approved_at"]
    resolved = await client.post(f"/api/v1/incidents/{incident_id}/tickets/resolve", headers=writer)
    assert resolved.status_code == 200 and resolved.json() == {
        "answered": 1,
        "replies": 1,
        "skipped": 0,
        "solved_without_reply": 0,
        "failed": 0,
    }
    after = (await client.get(f"/api/v1/tickets/{ticket['id']}", headers=reader)).json()
    assert after["status"] == "solved" and [r["kind"] for r in after["replies"]] == ["acknowledge", "resolution"]


async def test_api_refuses_bad_tickets_naming_the_field(client: httpx.AsyncClient, db: Database) -> None:
    writer = await api_key_headers(db, Role.responder)
    cases = [
        ({"subject": "", "body": ""}, ["body", "body"]),
        ({"subject": "x", "requester_email": "nobody"}, ["body", "requester_email"]),
        ({"subject": "x", "colour": "red"}, ["body", "colour"]),
        ({"subject": "x" * 1001}, ["body", "subject"]),
        ({"subject": "x", "created_at": "yesterday"}, ["body", "created_at"]),
    ]
    for payload, loc in cases:
        response = await client.post("/api/v1/tickets", json=payload, headers=writer)
        assert response.status_code == 422, (payload, response.text)
        assert loc in error_locs(response), (payload, error_locs(response))
    assert await count_rows(db, Ticket) == 0
    bad_status = await client.get("/api/v1/tickets?status=closed", headers=writer)
    assert bad_status.status_code == 422 and "status" in error_text(bad_status)
    assert (await client.get("/api/v1/tickets/nope", headers=writer)).status_code == 404
    assert (await client.post("/api/v1/tickets", json={"subject": "x"})).status_code == 401
    viewer = await api_key_headers(db, Role.viewer)
    assert (await client.post("/api/v1/tickets", json={"subject": "x"}, headers=viewer)).status_code == 403
    assert await count_rows(db, Ticket) == 0 and await count_rows(db, TicketReply) == 0


# ---- console ----------------------------------------------------------------------------------


async def test_console_lists_suggestions_and_an_agent_accepts_one(
    client: httpx.AsyncClient, db: Database, app: object
) -> None:
    from tests.fixtures.auth import login, make_user

    incident_id, number, _ = await _sso_incident(db)
    settings: Settings = app.state.runtime.settings  # type: ignore[attr-defined]
    strict = settings.model_copy(update={"match_threshold": 1.0})
    suggested = await receive(
        db, strict, subject="Question about SSO", body=SSO_QUESTION, requester_email="ann@acme.example"
    )
    assert suggested.suggested_incident_id == incident_id
    async with db.session() as session:
        await make_user(session, role=Role.responder, email="sam@example.com")
    csrf = await login(client, "sam@example.com")
    page = await client.get("/console/tickets")
    assert page.status_code == 200
    assert f'data-ticket-id="{suggested.id}"' in page.text and f"Accept INC-{number}" in page.text
    incident_page = await client.get(f"/console/incidents/{incident_id}")
    assert 'id="tickets"' in incident_page.text and 'data-suggested="1"' in incident_page.text
    assert 'data-kind="resolution" data-state="none"' in incident_page.text
    accepted = await client.post(
        f"/console/tickets/{suggested.id}/link",
        data={"csrf_token": csrf, "incident_id": incident_id, "next": "/console/tickets?view=suggested"},
    )
    assert accepted.status_code == 303 and accepted.headers["location"] == "/console/tickets?view=suggested"
    ticket = await load_ticket(db, suggested.id)
    assert ticket.incident_id == incident_id and ticket.linked_by == LinkedBy.agent
    # A form pointing elsewhere comes back to the console.
    moved = await client.post(
        f"/console/tickets/{suggested.id}/unlink", data={"csrf_token": csrf, "next": "https://evil.example/"}
    )
    assert moved.status_code == 303 and moved.headers["location"] == "/console/tickets"
    detail = await client.get(f"/console/tickets/{suggested.id}")
    assert detail.status_code == 200 and "acknowledge" in detail.text and "unlinked" in detail.text
    refused = await client.post(f"/console/incidents/{incident_id}/tickets/resolve", data={"csrf_token": csrf})
    assert refused.status_code == 409 and "approved resolution macro" in refused.text
    async with db.sessionmaker() as session:
        total = await session.scalar(
            select(func.count()).select_from(Ticket).where(Ticket.status == TicketStatus.solved)
        )
    assert total == 0


async def test_the_incident_page_offers_the_resolution_once_the_incident_is_resolved(
    client: httpx.AsyncClient, db: Database, app: object
) -> None:
    from tests.fixtures.auth import login, make_user

    incident_id, _, _ = await _sso_incident(db)
    settings: Settings = app.state.runtime.settings  # type: ignore[attr-defined]
    for i in range(2):
        await receive(db, settings, subject=SSO_TICKET[0], body=SSO_TICKET[1], requester_email=f"u{i}@acme.example")
    async with db.session() as session:
        await make_user(session, role=Role.admin, email="ada@example.com")
    csrf = await login(client, "ada@example.com")
    page = (await client.get(f"/console/incidents/{incident_id}")).text
    form = page.split('id="resolve-all-form"')[1].split("</form>")[0]
    assert "Send resolution to 2 tickets" in form and "disabled" in form and "btn-primary" not in form
    _, admin = await make_actor(db, Role.admin)
    async with db.session() as session:
        await make_macro(session, admin, incident_id, MacroKind.resolution, RESOLVED)
        incident = await incidents.get_incident(session, incident_id)
        await incidents.post_update(session, admin, incident, status="resolved", body="Sign-ins work again.")
    page = (await client.get(f"/console/incidents/{incident_id}")).text
    form = page.split('id="resolve-all-form"')[1].split("</form>")[0]
    assert "The incident is resolved" in form and "btn-primary" in form and "disabled" not in form
    sent = await client.post(f"/console/incidents/{incident_id}/tickets/resolve", data={"csrf_token": csrf})
    assert sent.status_code == 303 and sent.headers["location"].endswith("#tickets")
    page = (await client.get(f"/console/incidents/{incident_id}")).text
    assert 'id="resolve-all-form"' not in page and "(2 unsolved)" not in page
    assert len([r for r in await replies(db) if r.kind == "resolution"]) == 2


# ---- after the incident is resolved ------------------------------------------------------------


async def _resolve(db: Database, incident_id: str) -> None:
    _, admin = await make_actor(db, Role.admin)
    async with db.session() as session:
        incident = await incidents.get_incident(session, incident_id)
        await incidents.post_update(session, admin, incident, status="resolved", body="Fixed; SSO sign-in works again.")


async def test_a_ticket_after_the_resolution_gets_the_resolution_and_is_solved(
    db: Database, settings: Settings
) -> None:
    incident_id, number, _ = await _sso_incident(db, resolution=True)
    await _resolve(db, incident_id)
    late = await receive(
        db,
        settings,
        subject=SSO_TICKET[0],
        body=SSO_TICKET[1],
        requester_email="late@acme.example",
        requester_name="Al",
    )
    ticket = await load_ticket(db, late.id)
    assert ticket.incident_id == incident_id and ticket.tags == [f"incident-{number}"]
    assert ticket.status == TicketStatus.solved and ticket.solved_at is not None
    [reply] = await replies(db, ticket.id)
    assert (reply.kind, reply.solve) == ("resolution", True)
    assert reply.body == f"Hi Al, INC-{number} is resolved. Ticket {ticket.number}."


async def test_a_ticket_after_the_resolution_without_a_resolution_macro_is_only_suggested(
    db: Database, settings: Settings
) -> None:
    incident_id, _, _ = await _sso_incident(db)
    await _resolve(db, incident_id)
    late = await receive(db, settings, subject=SSO_TICKET[0], body=SSO_TICKET[1], requester_email="late@acme.example")
    ticket = await load_ticket(db, late.id)
    assert (ticket.incident_id, ticket.suggested_incident_id) == (None, incident_id)
    assert ticket.status == TicketStatus.open and ticket.confidence is not None
    assert ticket.confidence >= settings.match_threshold
    assert await replies(db) == []
    # An agent may still link it: tagged, and nothing that says "we are working on it".
    _, agent = await make_actor(db, Role.responder)
    async with db.session() as session:
        linked = await tickets.link(session, settings, agent, ticket_id=ticket.id, incident_id=incident_id)
        assert linked.incident_id == incident_id and linked.status == TicketStatus.open
    assert await replies(db) == []


# ---- times, pages ------------------------------------------------------------------------------


@pytest.mark.parametrize("created_at", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-05:00"])
async def test_a_created_at_at_the_ends_of_the_calendar_is_422_naming_it(
    client: httpx.AsyncClient, db: Database, created_at: str
) -> None:
    writer = await api_key_headers(db, Role.responder)
    response = await client.post("/api/v1/tickets", json={"subject": "x", "created_at": created_at}, headers=writer)
    assert response.status_code == 422, response.text
    assert error_locs(response) == [["body", "created_at"]] and "between the years 1970 and 9000" in response.text
    assert await count_rows(db, Ticket) == 0


@pytest.mark.parametrize("page", ["%C2%B2", "%D9%A3", "0", "1000000"])
async def test_the_tickets_list_refuses_a_page_that_is_not_a_number_naming_it(
    client: httpx.AsyncClient, db: Database, page: str
) -> None:
    await sign_in(client, db, Role.responder)
    response = await client.get(f"/console/tickets?view=all&page={page}", headers=HTML)
    assert response.status_code == 422, response.text
    assert "page must be a whole number" in response.text
