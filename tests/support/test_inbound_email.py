"""Support email: messages sent over SMTP to the built-in receiver become tickets, once each."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

import aiosmtplib
import pytest
from prometheus_client import REGISTRY

from crisisdesk.auth.models import Role
from crisisdesk.config import Settings
from crisisdesk.kit.db import Database
from crisisdesk.kit.runtime import Runtime
from crisisdesk.kit.time import utcnow
from crisisdesk.support import inbound
from crisisdesk.support import tickets as support_tickets
from crisisdesk.support.models import MacroKind, Ticket, TicketSource, TicketStatus
from crisisdesk.worker import work_forever
from tests.fixtures.api import count_rows
from tests.fixtures.auth import make_actor
from tests.fixtures.helpdesks import make_account, tickets
from tests.fixtures.incident import make_component, make_incident
from tests.fixtures.peers import SmtpSink
from tests.fixtures.server import free_port
from tests.fixtures.support import (
    SSO_INCIDENT,
    SSO_TICKET,
    SSO_UPDATE,
    load_ticket,
    make_macro,
    replies,
    send_email_replies,
)
from tests.fixtures.support import receive as receive_ticket
from tests.fixtures.workers import WorkerPool, wait_until

HOST = "127.0.0.1"


@pytest.fixture
async def smtp(db: Database, settings: Settings) -> AsyncIterator[int]:
    """The receiver on a free loopback port; yields the port."""
    port = free_port()
    server = await inbound.start_receiver(db, settings, host=HOST, port=port)
    try:
        yield port
    finally:
        server.close()
        await server.wait_closed()


def message(
    *,
    sender: str = "Jane Doe <jane.doe@initech.example>",
    subject: str = "Cannot sign in",
    text: str | None = "Every login fails since 09:40 with 'invalid session'.",
    html: str | None = None,
    message_id: str | None = "<CAF1234.5678@mail.initech.example>",
    at: datetime | None = None,
    **headers: str,
) -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = "support@acme.example"
    mail["Subject"] = subject
    mail["Date"] = format_datetime(at) if at is not None else "Fri, 20 Nov 2026 09:52:00 +0000"
    if message_id:
        mail["Message-ID"] = message_id
    for name, value in headers.items():
        mail[name.replace("_", "-")] = value
    if text is not None:
        mail.set_content(text)
        if html is not None:
            mail.add_alternative(html, subtype="html")
    elif html is not None:
        mail.set_content(html, subtype="html")
    return mail


async def send(port: int, mail: EmailMessage, *, sender: str | None = None) -> str:
    """Send over SMTP; returns the text of the 250 reply to DATA (a refusal raises)."""
    async with aiosmtplib.SMTP(hostname=HOST, port=port, timeout=10) as client:
        errors, reply = await client.send_message(mail, sender=sender)
    assert not errors
    return reply


async def test_a_message_becomes_a_ticket_of_the_senders_account(smtp: int, db: Database) -> None:
    account = await make_account(db, name="Initech", contacts=("jane.doe@initech.example",))
    reply = await send(smtp, message())
    [ticket] = await tickets(db)
    assert f"ticket #{ticket.number}" in reply
    assert (ticket.source, ticket.helpdesk_id) == (TicketSource.email, None)
    assert ticket.external_id == "<CAF1234.5678@mail.initech.example>"
    assert ticket.subject == "Cannot sign in"
    assert ticket.body == "Every login fails since 09:40 with 'invalid session'."
    assert (ticket.requester_email, ticket.requester_name) == ("jane.doe@initech.example", "Jane Doe")
    assert ticket.account_id == account.id


async def test_a_resent_message_is_one_ticket(smtp: int, db: Database) -> None:
    await send(smtp, message())
    reply = await send(smtp, message())
    assert "Already received" in reply
    assert await count_rows(db, Ticket) == 1
    # Without a Message-ID the message's own bytes are its key.
    bare = message(message_id=None, subject="Exports stuck")
    await send(smtp, bare)
    await send(smtp, bare)
    assert await count_rows(db, Ticket) == 2


async def test_html_mail_is_read_as_text_and_the_domain_finds_the_account(smtp: int, db: Database) -> None:
    account = await make_account(db, name="Hooli", domains=("hooli.example",))
    html = "<html><body><p>Webhooks stopped at <b>10:02</b>.</p><p>Regards,<br>Bob</p></body></html>"
    await send(smtp, message(sender="bob@hooli.example", subject="", text=None, html=html, message_id="<h1@hooli>"))
    [ticket] = await tickets(db)
    assert ticket.body == "Webhooks stopped at 10:02.\n\nRegards,\nBob"
    assert ticket.subject == "Webhooks stopped at 10:02."  # no subject: its first line
    assert ticket.account_id == account.id
    # The plain part wins when both are there; an unknown sender is fine.
    await send(
        smtp,
        message(sender="someone@elsewhere.example", text="Plain words.", html="<p>HTML words</p>", message_id="<m2@x>"),
    )
    second = (await tickets(db))[1]
    assert (second.body, second.account_id) == ("Plain words.", None)


async def test_oversize_mail_is_refused_with_552(db: Database, settings: Settings) -> None:
    small = settings.model_copy(update={"max_body_bytes": 2048})
    port = free_port()
    server = await inbound.start_receiver(db, small, host=HOST, port=port)
    try:
        with pytest.raises(aiosmtplib.SMTPResponseException) as refused:
            await send(port, message(text="word " * 2000))
        assert refused.value.code == 552
    finally:
        server.close()
        await server.wait_closed()
    assert await count_rows(db, Ticket) == 0


async def test_a_database_failure_is_a_temporary_451(tmp_path: Path, settings: Settings) -> None:
    deferred_before = REGISTRY.get_sample_value("crisisdesk_inbound_mail_total", {"code": "451"}) or 0.0
    broken = Database(f"sqlite+aiosqlite:///{tmp_path / 'missing' / 'nowhere.db'}")
    port = free_port()
    server = await inbound.start_receiver(broken, settings, host=HOST, port=port)
    try:
        with pytest.raises(aiosmtplib.SMTPResponseException) as deferred:
            await send(port, message())
        assert deferred.value.code == 451 and "try again" in deferred.value.message
        assert REGISTRY.get_sample_value("crisisdesk_inbound_mail_total", {"code": "451"}) == deferred_before + 1
    finally:
        server.close()
        await server.wait_closed()
        await broken.dispose()


async def test_automatic_mail_is_accepted_but_never_a_ticket(smtp: int, db: Database) -> None:
    reply = await send(smtp, message(Auto_Submitted="auto-replied", message_id="<ooo@x>"))
    assert "not made a ticket" in reply
    await send(smtp, message(Precedence="bulk", message_id="<bulk@x>"))
    await send(smtp, message(message_id="<bounce@x>"), sender="")  # a bounce: empty envelope sender
    assert await count_rows(db, Ticket) == 0
    await send(smtp, message(Auto_Submitted="no", message_id="<person@x>"))
    assert await count_rows(db, Ticket) == 1


def test_parsing_survives_odd_mail() -> None:
    raw = (
        b"From: =?utf-8?q?J=C3=BCrgen_M=C3=BCller?= <jm@example.de>\r\n"
        b"Subject: =?utf-8?b?U3TDtnJ1bmc/?=\r\n"
        b"Date: not a date\r\n"
        b"Content-Type: text/plain; charset=x-unknown-charset\r\n\r\n"
        b"Gr\xc3\xbc\xc3\x9fe, nothing works\x00\r\n"
    )
    mail = inbound.parse_mail(raw, envelope_from="jm@example.de")
    assert (mail.sender, mail.sender_name, mail.subject) == ("jm@example.de", "Jürgen Müller", "Störung?")
    assert mail.body.startswith("Gr") and "nothing works" in mail.body and "\x00" not in mail.body
    assert mail.sent_at is None and mail.message_id.endswith("@inbound.crisisdesk>")
    assert not mail.automatic


async def test_the_worker_receives_support_mail_when_its_port_is_set(db: Database, settings: Settings) -> None:
    port = free_port()
    runtime = Runtime.create(settings.model_copy(update={"inbound_smtp_port": port, "inbound_smtp_host": HOST}))
    worker = asyncio.create_task(work_forever(runtime, None, idle=0.05))
    try:
        for _ in range(100):
            try:
                await send(port, message())
                break
            except (aiosmtplib.SMTPConnectError, OSError):
                await asyncio.sleep(0.05)
        assert await count_rows(db, Ticket) == 1
    finally:
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
        await runtime.db.dispose()
    # Stopped with the worker: the port is free again.
    with pytest.raises((aiosmtplib.SMTPConnectError, OSError)):
        await send(port, message(message_id="<after@x>"))


@pytest.mark.slow
async def test_crisisdesk_workers_share_the_support_mail_port(tmp_path: Path, database_url: str, db: Database) -> None:
    port = free_port()
    with WorkerPool(tmp_path, database_url, env={"CRISISDESK_INBOUND_SMTP_PORT": str(port)}) as pool:
        first, second = pool.start(), pool.start()
        assert f"support email: SMTP on 127.0.0.1:{port}" in first.output()

        async def listening() -> bool:
            try:
                await send(port, message(message_id="<first@x>"))
            except (aiosmtplib.SMTPConnectError, OSError):
                return False
            return True

        await wait_until(listening, 20, "the workers to listen", describe=pool.outputs)
        for n in range(10):
            await send(port, message(subject=f"Outage {n}", message_id=f"<m{n}@x>"))
        first.stop()  # the other worker keeps receiving
        await wait_until(listening, 10, "the second worker to take the mail", describe=pool.outputs)
        await send(port, message(subject="After", message_id="<after@x>"))
        assert second.alive
    assert await count_rows(db, Ticket) == 12


# ---- a customer's answer ---------------------------------------------------------------------


async def _sso_incident(db: Database, *, resolution: bool = False) -> str:
    _, admin = await make_actor(db, Role.admin)
    async with db.session() as session:
        sso = await make_component(session, "Sign-in (SSO)")
        incident = await make_incident(
            session, admin, name=SSO_INCIDENT, body=SSO_UPDATE, components={sso.id: "major_outage"}
        )
        await make_macro(session, admin, incident.id, MacroKind.acknowledge, "We know: {{ incident.name }}.")
        if resolution:
            await make_macro(session, admin, incident.id, MacroKind.resolution, "Fixed: {{ incident.name }}.")
    return incident.id


ANSWER = (
    "Still can't log in with SSO, the SAML error is still there.\n\n"
    "On Fri, 20 Nov 2026 at 09:55, Acme Cloud Status <status@example.com> wrote:\n"
    "> We know: Sign-in failures for SSO users.\n"
)


async def test_an_answer_by_email_is_added_to_its_ticket_without_a_second_acknowledgement(
    smtp: int, db: Database
) -> None:
    incident_id = await _sso_incident(db)
    now = utcnow().replace(second=0, microsecond=0)
    first = await send(
        smtp, message(subject=SSO_TICKET[0], text=SSO_TICKET[1], message_id="<a1@initech.example>", at=now)
    )
    [ticket] = await tickets(db)
    assert f"Received as ticket #{ticket.number}" in first and ticket.incident_id == incident_id
    assert len(await replies(db, ticket.id)) == 1
    answer = message(
        subject=f"Re: {SSO_TICKET[0]}",
        text=ANSWER,
        message_id="<a2@initech.example>",
        In_Reply_To="<a1@initech.example>",
        References="<a1@initech.example>",
        at=now,
    )
    assert f"Added to ticket #{ticket.number}" in await send(smtp, answer)
    [ticket] = await tickets(db)
    assert ticket.body.startswith(SSO_TICKET[1])
    assert ticket.body.endswith(
        f"--- Answer from jane.doe@initech.example, {now:%d %b %Y %H:%M} UTC, Message-ID <a2@initech.example> ---\n"
        "Still can't log in with SSO, the SAML error is still there."
    )
    assert "> We know" not in ticket.body and "wrote:" not in ticket.body
    assert len(await replies(db, ticket.id)) == 1  # no second acknowledgement
    # Sent again (a lost answer to DATA): added once.
    assert "Already received" in await send(smtp, answer)
    [ticket] = await tickets(db)
    assert ticket.body.count("--- Answer from") == 1


async def test_an_answer_to_our_email_finds_the_ticket_and_reopens_it_when_solved(
    smtp: int, db: Database, settings: Settings
) -> None:
    incident_id = await _sso_incident(db, resolution=True)
    port = free_port()
    mail_settings = settings.model_copy(update={"smtp_host": HOST, "smtp_port": port, "smtp_connections": 1})
    ticket = await receive_ticket(
        db,
        settings,
        subject=SSO_TICKET[0],
        body=SSO_TICKET[1],
        source=TicketSource.api,
        requester_email="jane.doe@initech.example",
    )
    _, admin = await make_actor(db, Role.admin)
    async with db.session() as session:
        await support_tickets.resolve_all(session, settings, admin, incident_id=incident_id)
    assert (await load_ticket(db, ticket.id)).status == TicketStatus.solved
    async with SmtpSink(port) as sink:
        await send_email_replies(db, mail_settings)
        await sink.wait_for(2)
        ack, resolution = sink.messages()
    assert "Fixed" in str(resolution.message.get_body(("plain",)).get_content())  # type: ignore[union-attr]

    # A mail client that keeps only In-Reply-To: our own Message-ID finds the ticket.
    ours = str(resolution.message["Message-ID"])
    answer = message(subject="Re: fixed?", text="No, it still fails.", message_id="<b1@initech.example>")
    answer["In-Reply-To"] = ours
    assert f"Added to ticket #{ticket.number}" in await send(smtp, answer)
    reopened = await load_ticket(db, ticket.id)
    assert reopened.status == TicketStatus.open and reopened.solved_at is None
    assert reopened.body.endswith("No, it still fails.") and reopened.incident_id == incident_id
    # Answered with the resolution already: resolving again leaves it to an agent, and nobody gets it twice.
    async with db.session() as session:
        again = await support_tickets.resolve_all(session, settings, admin, incident_id=incident_id)
    assert (again.answered, again.skipped) == (0, 1)
    # One that keeps References: the ticket's thread id in them is enough.
    later = message(subject="Re: fixed?", text="Now it works, thanks.", message_id="<b2@initech.example>")
    later["References"] = str(ack.message["References"])
    assert f"Added to ticket #{ticket.number}" in await send(smtp, later)
    assert await count_rows(db, Ticket) == 1
    assert [r.kind for r in await replies(db, ticket.id)] == ["acknowledge", "resolution"]


async def test_only_the_requester_or_their_colleagues_continue_a_ticket(smtp: int, db: Database) -> None:
    await make_account(db, name="Initech", domains=("initech.example",))
    await send(smtp, message(message_id="<c1@initech.example>"))
    [ticket] = await tickets(db)
    colleague = message(sender="bob@initech.example", text="Same here.", message_id="<c2@initech.example>")
    colleague["In-Reply-To"] = "<c1@initech.example>"
    assert f"Added to ticket #{ticket.number}" in await send(smtp, colleague)
    stranger = message(sender="eve@elsewhere.example", text="Me too?", message_id="<c3@elsewhere.example>")
    stranger["In-Reply-To"] = "<c1@initech.example>"
    assert "Received as ticket #2" in await send(smtp, stranger)
    first, second = await tickets(db)
    assert "Same here." in first.body and "Me too?" not in first.body
    assert (second.requester_email, second.body) == ("eve@elsewhere.example", "Me too?")


@pytest.mark.parametrize("date", ["Fri, 31 Dec 9999 23:59:59 -0500", "Sun, 31 Dec 9000 23:59:59 -1200"])
async def test_a_date_at_the_ends_of_the_calendar_is_ignored_not_refused(smtp: int, db: Database, date: str) -> None:
    mail = message()
    mail.replace_header("Date", date)
    assert "Received as ticket" in await send(smtp, mail)
    [ticket] = await tickets(db)
    assert abs((ticket.created_at - utcnow()).total_seconds()) < 60


async def test_refusals_are_counted_by_their_smtp_code(
    smtp: int, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    def count(code: str) -> float:
        return REGISTRY.get_sample_value("crisisdesk_inbound_mail_total", {"code": code}) or 0.0

    accepted, refused = count("250"), count("554")
    await send(smtp, message())

    def unreadable(raw: bytes, *, envelope_from: str | None = None) -> inbound.Mail:
        raise ValueError("unreadable")

    monkeypatch.setattr(inbound, "parse_mail", unreadable)
    with pytest.raises(aiosmtplib.SMTPResponseException) as failed:
        await send(smtp, message(message_id="<other@x>"))
    assert failed.value.code == 554
    assert (count("250"), count("554")) == (accepted + 1, refused + 1)


def test_an_answer_keeps_its_own_words_without_the_quoted_thread() -> None:
    wrapped = (
        "No, still broken.\n\nOn Fri, 20 Nov 2026 at 09:55, Acme Cloud Status <\nstatus@example.com> wrote:\n> x\n>\n"
    )
    assert inbound.answer_text(wrapped) == "No, still broken."
    assert inbound.answer_text("Thanks!\n\n> Fixed: SSO.\n> Regards") == "Thanks!"
    # All quote and no words of its own: kept as it is rather than lost.
    assert inbound.answer_text("> Fixed: SSO.") == "> Fixed: SSO."
    # A ">" inside the answer's own words stays.
    assert inbound.answer_text("a > b is true\nsee below\n> quoted") == "a > b is true\nsee below"
