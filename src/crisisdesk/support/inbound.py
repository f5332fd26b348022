"""Support email: a built-in SMTP receiver that turns each message into a ticket.

It listens on ``CRISISDESK_INBOUND_SMTP_HOST:CRISISDESK_INBOUND_SMTP_PORT`` inside every worker
(``crisisdesk worker``, and ``crisisdesk serve`` unless ``CRISISDESK_RUN_WORKERS=false``); the
port is shared between processes (SO_REUSEPORT), so several workers on one machine split the
mail. Put it behind the MX that receives your support address: it accepts mail for any
recipient and relays nothing.

Each message is parsed with the standard library (``policy.default``): From (the requester),
Subject, the text/plain part (or the HTML part as text), and the Message-ID, which makes the
ticket idempotent, so a sender retrying after a lost answer creates no second ticket. A message
whose In-Reply-To or References name a ticket (see :func:`tickets.find_thread`) is the customer's
answer on it: its words, without the quoted thread, are added to that ticket, which a solved
ticket reopens, and no new ticket or acknowledgement is made. The reply to DATA says what
happened, and a message is never accepted unless its ticket is committed:

- 250 when the ticket is stored (or was already);
- 552 when the message is larger than ``CRISISDESK_MAX_BODY_BYTES`` (aiosmtpd's size limit);
- 451 when the database cannot store it now: the sender keeps it and tries again;
- 554 when crisisdesk refuses its content for good.

Automatic mail (``Auto-Submitted`` other than ``no``, ``Precedence: bulk/junk/list``, or an
empty envelope sender, as bounces have) is accepted and dropped, so an out-of-office answer to
a ticket's acknowledgement cannot start a mail loop (RFC 3834).
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.message
import email.policy
import hashlib
import logging
import re
import socket
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime

from aiosmtpd.smtp import SMTP, Envelope, Session

from crisisdesk.config import Settings
from crisisdesk.kit import metrics
from crisisdesk.kit.db import Database
from crisisdesk.kit.errors import DomainError, InvalidInput
from crisisdesk.kit.time import utc_time, utcnow
from crisisdesk.support import tickets
from crisisdesk.support.checks import check_email
from crisisdesk.support.models import TicketSource
from crisisdesk.support.plaintext import html_to_text

log = logging.getLogger(__name__)

MAX_ID = 200
MAX_SUBJECT = 1000
DERIVED_SUBJECT = 120
RETRY_LISTEN_SECONDS = 30.0
HOSTNAME = "crisisdesk"
_MESSAGE_ID = re.compile(r"<[^<>\s]{1,250}>")
# "On Mon, 20 Nov 2026 at 09:52, Jane <jane@…> wrote:" above a quoted message, in the usual languages.
_ATTRIBUTION = re.compile(r"^(On|Am|Le|El|Il|Op) .{0,300}(wrote|schrieb|a écrit|escribió|ha scritto|schreef)\s*:\s*$")


@dataclass(frozen=True, slots=True)
class Mail:
    """What a ticket takes from one message."""

    message_id: str
    subject: str
    body: str
    sender: str | None
    sender_name: str | None
    automatic: bool
    sent_at: datetime | None
    references: tuple[str, ...] = ()  # In-Reply-To and References, oldest first


def _header(message: email.message.EmailMessage, name: str) -> str:
    try:
        value: object = message.get(name)
    except (ValueError, IndexError, TypeError, AttributeError):
        # A header the parser cannot make sense of: its raw text is better than nothing.
        value = next((v for k, v in message.raw_items() if k.lower() == name.lower()), "")
    return " ".join(str(value or "").split())


def _sender(message: email.message.EmailMessage, envelope_from: str | None) -> tuple[str | None, str | None]:
    candidates: list[tuple[str, str | None]] = []
    try:
        header = message.get("From")
        for address in getattr(header, "addresses", ()):
            candidates.append((address.addr_spec, address.display_name or None))
    except (ValueError, IndexError, TypeError):
        pass
    if envelope_from:
        candidates.append((envelope_from, None))
    for raw, name in candidates:
        try:
            address = check_email(raw)
        except InvalidInput:
            continue
        if address is not None:
            return address, name
    return None, None


def _references(message: email.message.EmailMessage) -> tuple[str, ...]:
    """The Message-IDs this message answers, oldest first (References, then In-Reply-To)."""
    found: list[str] = []
    for name in ("References", "In-Reply-To"):
        for ref in _MESSAGE_ID.findall(_header(message, name)):
            if ref in found:
                found.remove(ref)
            found.append(ref)
    return tuple(found)


def answer_text(body: str) -> str:
    """An answer's own words: the quoted thread below it (``>`` lines, and the line introducing them) cut."""
    lines = body.splitlines()
    while lines and (not lines[-1].strip() or lines[-1].lstrip().startswith(">")):
        lines.pop()
    # Mail clients wrap a long attribution line: it may take the last two lines.
    for size in (1, 2):
        if len(lines) >= size and _ATTRIBUTION.match(" ".join(line.strip() for line in lines[-size:])):
            del lines[-size:]
            break
    return "\n".join(lines).strip() or body.strip()


def _text_of(part: email.message.Message) -> str:
    try:
        content = part.get_content()  # type: ignore[attr-defined]
    except (LookupError, UnicodeError, ValueError, AssertionError):
        payload = part.get_payload(decode=True)
        content = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else str(payload or "")
    return content if isinstance(content, str) else ""


def _body(message: email.message.EmailMessage) -> str:
    try:
        part = message.get_body(preferencelist=("plain", "html"))
    except (KeyError, ValueError, TypeError):
        part = None
    if part is None:
        return ""
    text = _text_of(part)
    if part.get_content_type() == "text/html":
        text = html_to_text(text)
    return text.replace("\r\n", "\n").replace("\x00", "\ufffd").strip()


def _automatic(message: email.message.EmailMessage, envelope_from: str | None) -> bool:
    auto = _header(message, "Auto-Submitted").lower()
    precedence = _header(message, "Precedence").lower()
    return (
        envelope_from in ("", "<>")
        or (bool(auto) and auto != "no")
        or precedence in ("bulk", "junk", "list")
        or bool(_header(message, "X-Autoreply"))
    )


def parse_mail(raw: bytes, *, envelope_from: str | None = None) -> Mail:
    """A message's requester, subject, text and id (a digest of the message when it has no Message-ID)."""
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, email.message.EmailMessage)
    message_id = _header(message, "Message-ID")
    if not message_id or len(message_id) > MAX_ID:
        message_id = f"<{hashlib.sha256(raw).hexdigest()}@inbound.crisisdesk>"
    sender, name = _sender(message, envelope_from)
    subject = _header(message, "Subject").replace("\x00", "\ufffd")
    body = _body(message)
    if not subject and body:
        first = body.splitlines()[0].strip()
        subject = first if len(first) <= DERIVED_SUBJECT else first[: DERIVED_SUBJECT - 1] + "…"
    try:
        sent_at = utc_time(parsedate_to_datetime(_header(message, "Date")))
    except (TypeError, ValueError, IndexError, OverflowError):
        sent_at = None
    if sent_at is not None and sent_at > utcnow():
        sent_at = utcnow()
    return Mail(
        message_id=message_id,
        subject=subject[:MAX_SUBJECT] or "(no subject)",
        body=body,
        sender=sender,
        sender_name=(name or "").replace("\x00", "")[:300] or None,
        automatic=_automatic(message, envelope_from),
        sent_at=sent_at,
        references=_references(message),
    )


async def store_mail(db: Database, settings: Settings, mail: Mail) -> tickets.Stored:
    """The message's ticket, stored and committed: a new one, one stored before, or the one it answers."""
    if mail.references and mail.sender:
        async with db.session() as session:
            ticket = await tickets.find_thread(session, references=mail.references, sender=mail.sender)
            if ticket is not None:
                added = await tickets.add_answer(
                    session,
                    ticket,
                    message_id=mail.message_id,
                    sender=mail.sender,
                    text=answer_text(mail.body),
                    sent_at=mail.sent_at,
                )
                return tickets.Stored(ticket, new=False, answer=added)
    return await tickets.store(
        db,
        settings,
        source=TicketSource.email,
        external_id=mail.message_id,
        subject=mail.subject,
        body=mail.body,
        requester_email=mail.sender,
        requester_name=mail.sender_name,
        created_at=mail.sent_at,
    )


class InboundHandler:
    """aiosmtpd's handler: every accepted recipient, each message a ticket."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        answer = await self._answer(envelope)
        metrics.INBOUND_MAIL.labels(code=answer[:3]).inc()
        return answer

    async def _answer(self, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        try:
            mail = parse_mail(raw, envelope_from=envelope.mail_from)
        except Exception:
            log.exception("an inbound message could not be parsed")
            return "554 5.6.0 The message could not be read as email"
        if mail.automatic:
            log.info("dropped an automatic message (%s) so tickets cannot loop", mail.message_id)
            return "250 2.0.0 Automatic message accepted and not made a ticket"
        try:
            stored = await store_mail(self.db, self.settings, mail)
        except DomainError as exc:
            log.warning("refused an inbound message %s from %s: %s", mail.message_id, mail.sender, exc.message)
            return f"554 5.6.0 {' '.join(exc.message.split())[:200]}"
        except Exception:
            # The database is down or something broke: the sender keeps the message and retries.
            log.exception(
                "inbound message %s from %s could not be stored; answered 451 so the sender retries",
                mail.message_id,
                mail.sender,
            )
            return "451 4.3.0 The message cannot be stored right now; please try again later"
        number = stored.ticket.number
        if stored.answer:
            log.info("inbound message %s is an answer on ticket #%s", mail.message_id, number)
            return f"250 2.0.0 Added to ticket #{number}"
        if not stored.new:
            return f"250 2.0.0 Already received as ticket #{number}"
        log.info("inbound message %s became ticket #%s", mail.message_id, number)
        return f"250 2.0.0 Received as ticket #{number}"


async def start_receiver(
    db: Database, settings: Settings, *, host: str | None = None, port: int | None = None
) -> asyncio.Server:
    """Listen for support email on this loop; the caller closes the returned server."""
    loop = asyncio.get_running_loop()
    handler = InboundHandler(db, settings)

    def protocol() -> SMTP:
        return SMTP(
            handler,
            data_size_limit=settings.max_body_bytes,
            enable_SMTPUTF8=True,
            hostname=HOSTNAME,
            ident="crisisdesk support mail",
            loop=loop,
        )

    listen_port = port if port is not None else settings.inbound_smtp_port
    if listen_port is None:
        raise ValueError("CRISISDESK_INBOUND_SMTP_PORT is not set")
    return await loop.create_server(
        protocol,
        host or settings.inbound_smtp_host,
        listen_port,
        reuse_address=True,
        reuse_port=hasattr(socket, "SO_REUSEPORT"),
    )


async def receive_forever(db: Database, settings: Settings) -> None:
    """The worker's mail lane: listen until cancelled; a port in use is logged and tried again."""
    while True:
        try:
            server = await start_receiver(db, settings)
        except OSError as exc:
            log.error(
                "the support email receiver cannot listen on %s:%s (%s); trying again in %.0f s",
                settings.inbound_smtp_host,
                settings.inbound_smtp_port,
                exc,
                RETRY_LISTEN_SECONDS,
            )
            await asyncio.sleep(RETRY_LISTEN_SECONDS)
            continue
        log.info("support email: listening on %s:%s", settings.inbound_smtp_host, settings.inbound_smtp_port)
        try:
            await asyncio.Event().wait()
        finally:
            server.close()
            with contextlib.suppress(Exception):
                await server.wait_closed()
