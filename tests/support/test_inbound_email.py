"""Support email: messages sent over SMTP to the built-in receiver become tickets, once each."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import pytest

from crisisdesk.config import Settings
from crisisdesk.kit.db import Database
from crisisdesk.kit.runtime import Runtime
from crisisdesk.support import inbound
from crisisdesk.support.models import Ticket, TicketSource
from crisisdesk.worker import work_forever
from tests.fixtures.api import count_rows
from tests.fixtures.helpdesks import make_account, tickets
from tests.fixtures.server import free_port
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
    **headers: str,
) -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = "support@acme.example"
    mail["Subject"] = subject
    mail["Date"] = "Fri, 20 Nov 2026 09:52:00 +0000"
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
    broken = Database(f"sqlite+aiosqlite:///{tmp_path / 'missing' / 'nowhere.db'}")
    port = free_port()
    server = await inbound.start_receiver(broken, settings, host=HOST, port=port)
    try:
        with pytest.raises(aiosmtplib.SMTPResponseException) as deferred:
            await send(port, message())
        assert deferred.value.code == 451 and "try again" in deferred.value.message
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
