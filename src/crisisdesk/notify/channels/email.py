"""Email over SMTP (aiosmtplib) through a pool of reused connections.

Throughput comes from two things: connections stay open across messages (at most
``smtp_connections`` of them, opened on demand, replaced when dropped), and the MIME text is
written directly as bytes (quoted-printable parts, RFC 2047 subject) rather than through the
``email`` package's object model, which costs more than the SMTP exchange itself.
"""

from __future__ import annotations

import asyncio
import binascii
import email.utils
import logging
import time
from collections.abc import Mapping
from email.header import Header
from urllib.parse import urlsplit

import aiosmtplib

from crisisdesk.config import Settings
from crisisdesk.notify.channels.base import ChannelAdapter, Message, SendResult
from crisisdesk.notify.models import Channel

log = logging.getLogger(__name__)

# Recipient refusals that mean the mailbox does not exist or cannot receive: quarantine it.
UNREACHABLE_CODES = frozenset({550, 551, 553})
SUMMARY_CHARS = 300


def _header_value(value: str) -> str:
    """One header line's value: no line breaks (header injection), RFC 2047 when not ASCII."""
    flat = " ".join(value.split())
    if flat.isascii():
        return flat
    return Header(flat, "utf-8").encode(maxlinelen=76)


def _qp(text: str) -> bytes:
    return binascii.b2a_qp(text.encode("utf-8"), istext=True)


def _address_header(value: str) -> str:
    name, address = email.utils.parseaddr(value)
    if not name or name.isascii():
        return " ".join(value.split())
    return email.utils.formataddr((name, address), charset="utf-8")


def _envelope_address(address: str) -> tuple[str, bool]:
    """The address for RCPT TO (IDNA domain), and whether it needs SMTPUTF8 (a non-ASCII local part)."""
    if address.isascii():
        return address, False
    local, _, domain = address.rpartition("@")
    try:
        domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        return address, True
    joined = f"{local}@{domain}"
    return joined, not joined.isascii()


class _DateCache:
    """``Date:`` header text, computed once a second rather than per message."""

    def __init__(self) -> None:
        self._second = -1
        self._text = ""

    def now(self) -> str:
        second = int(time.time())
        if second != self._second:
            self._second, self._text = second, email.utils.formatdate(second, localtime=False)
        return self._text


def build_mime(
    message: Message, *, sender: str, message_id_host: str, date: str, extra: Mapping[str, str] | None = None
) -> bytes:
    """The RFC 5322 message: text, or multipart/alternative text + HTML, with the message's own headers."""
    lines = [
        f"From: {sender}",
        f"To: {message.address}",
        f"Subject: {_header_value(message.subject)}",
        f"Date: {date}",
        f"Message-ID: <{message.message_id}@{message_id_host}>",
        "MIME-Version: 1.0",
    ]
    for name, value in {**(extra or {}), **message.headers}.items():
        lines.append(f"{name}: {_header_value(value)}")
    text_part = b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
    if message.html is None:
        lines.append("Content-Type: text/plain; charset=utf-8")
        lines.append("Content-Transfer-Encoding: quoted-printable")
        return "\r\n".join(lines).encode() + b"\r\n\r\n" + _qp(message.text) + b"\r\n"
    # The message id is unique and never appears in quoted-printable text (no "=_" run there).
    boundary = f"=_{message.message_id}"
    lines.append(f'Content-Type: multipart/alternative; boundary="{boundary}"')
    delimiter = f"\r\n--{boundary}\r\n".encode()
    return b"".join(
        [
            "\r\n".join(lines).encode(),
            b"\r\n\r\nThis is a multipart message in MIME format.\r\n",
            delimiter,
            text_part,
            _qp(message.text),
            delimiter,
            b"Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n",
            _qp(message.html),
            f"\r\n--{boundary}--\r\n".encode(),
        ]
    )


class EmailChannel(ChannelAdapter):
    """Sends through at most ``smtp_connections`` open SMTP connections."""

    channel = Channel.email

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.sender_header = _address_header(settings.smtp_from)
        self.envelope_from = email.utils.parseaddr(settings.smtp_from)[1]
        self.message_id_host = urlsplit(settings.base_url).hostname or "crisisdesk.invalid"
        self.server = f"smtp://{settings.smtp_host}:{settings.smtp_port}"
        # The pool bounds concurrency itself, so the worker may send this many at once.
        self.endpoint_concurrency = settings.smtp_connections
        self._idle: list[aiosmtplib.SMTP] = []
        self._slots: asyncio.Semaphore | None = None
        self._dates = _DateCache()
        self._closed = False

    def endpoint(self, message: Message) -> str:
        return self.server

    def _client(self) -> aiosmtplib.SMTP:
        s = self.settings
        return aiosmtplib.SMTP(
            hostname=s.smtp_host,
            port=s.smtp_port,
            username=s.smtp_username or None,
            password=s.smtp_password or None,
            use_tls=s.smtp_security == "tls",
            start_tls=True if s.smtp_security == "starttls" else False,
            timeout=s.smtp_timeout,
            local_hostname=self.message_id_host,
        )

    async def send(self, message: Message) -> SendResult:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.settings.smtp_connections)
        raw = build_mime(
            message, sender=self.sender_header, message_id_host=self.message_id_host, date=self._dates.now()
        )
        recipient, utf8 = _envelope_address(message.address)
        options = ["SMTPUTF8"] if utf8 else None
        async with self._slots:
            client = self._idle.pop() if self._idle else self._client()
            reused = client.is_connected
            result = await self._send_on(client, recipient, raw, options)
            if result is None and reused:
                # An idle connection the server had closed: one more try on a fresh one.
                client = self._client()
                result = await self._send_on(client, recipient, raw, options)
            if result is None:
                result = SendResult.retry("connection", f"{self.server}: connection lost")
            if client.is_connected and not self._closed:
                self._idle.append(client)
            return result

    async def _send_on(
        self, client: aiosmtplib.SMTP, recipient: str, raw: bytes, options: list[str] | None
    ) -> SendResult | None:
        """One try on ``client``; None when the connection dropped before an answer came."""
        try:
            if not client.is_connected:
                await client.connect()
            _, reply = await client.sendmail(self.envelope_from, [recipient], raw, mail_options=options)
            return SendResult.delivered("250", reply[:SUMMARY_CHARS])
        except aiosmtplib.SMTPRecipientsRefused as exc:
            refusal = exc.recipients[0]
            return _by_code(refusal.code, refusal.message, recipient=True)
        except aiosmtplib.SMTPNotSupported as exc:
            return SendResult.failed("unsupported", f"{exc}"[:SUMMARY_CHARS])
        except aiosmtplib.SMTPAuthenticationError as exc:
            # Our credentials, not the message: wait for the operator to fix them rather than give up.
            _drop(client)
            return SendResult.retry(str(exc.code), f"{self.server} refused the login: {exc.message}"[:SUMMARY_CHARS])
        except aiosmtplib.SMTPServerDisconnected:
            _drop(client)
            return None
        except (aiosmtplib.SMTPConnectError, aiosmtplib.SMTPTimeoutError, TimeoutError, OSError) as exc:
            _drop(client)
            return SendResult.retry("connection", f"{self.server}: {type(exc).__name__}: {exc}"[:SUMMARY_CHARS])
        except aiosmtplib.SMTPResponseException as exc:
            if exc.code == -1 or not client.is_connected:
                _drop(client)
            return _by_code(exc.code, exc.message, recipient=False)
        except aiosmtplib.SMTPException as exc:
            _drop(client)
            return SendResult.retry("smtp", f"{type(exc).__name__}: {exc}"[:SUMMARY_CHARS])

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for client in idle:
            try:
                await asyncio.wait_for(client.quit(), 2)
            except (aiosmtplib.SMTPException, OSError, TimeoutError):
                _drop(client)


def _drop(client: aiosmtplib.SMTP) -> None:
    if client.is_connected:
        client.close()


def _by_code(code: int, reply: str, *, recipient: bool) -> SendResult:
    """4xx: try again later; 550/551/553 for a recipient: the mailbox is unreachable; other 5xx: failed."""
    summary = f"{code} {reply}"[:SUMMARY_CHARS]
    if 400 <= code < 500:
        return SendResult.retry(str(code), summary)
    if recipient and code in UNREACHABLE_CODES:
        return SendResult.failed(str(code), summary, unreachable=True)
    if 500 <= code < 600:
        return SendResult.failed(str(code), summary)
    return SendResult.retry(str(code), summary)
