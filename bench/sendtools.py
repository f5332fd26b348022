"""Send-side tools for the fan-out benchmark: counting peers, and bare clients with no ledger.

The peers run in their own processes (``python bench/sendtools.py smtp|http --port N``) and count
what arrives per message id (email Message-ID, ``webhook-id``), so a repeat shows:

- an aiosmtpd sink, its tally served as JSON on a separate ``--stats-port``;
- a minimal keep-alive HTTP/1.1 receiver answering every POST with 204, on 127.0.0.1 and
  127.0.0.2 … 127.0.0.33 (many webhook endpoints, as in production), its tally at ``/__stats``.

The bare clients send the same kind of messages as crisisdesk's channels: aiosmtplib with
connection reuse, aiohttp and httpx POSTing signed Statuspage envelopes. Every loop is bounded in
count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import hmac
import re
import secrets
import signal
import time
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

import orjson

HOST = "127.0.0.1"
CONCURRENCY = 50  # the bare clients' connections / requests in flight
WEBHOOK_HOSTS = 32  # 127.0.0.2 … 127.0.0.33: distinct endpoints for the per-endpoint limit
SENDER = "Acme Cloud Status <status@example.com>"
SENDER_ADDRESS = "status@example.com"


# ---------------------------------------------------------------- peers (run in their own processes)


class Tally:
    """What a peer received: per message id, so a repeat is visible, with first and last arrival."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.seen: dict[str, int] = {}
        self.total = 0
        self.bytes = 0
        self.first_at: float | None = None
        self.last_at: float | None = None

    def add(self, key: str, size: int) -> None:
        now = time.time()
        self.total += 1
        self.bytes += size
        self.seen[key] = self.seen.get(key, 0) + 1
        if self.first_at is None:
            self.first_at = now
        self.last_at = now

    def as_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "unique": len(self.seen),
            "duplicates": self.total - len(self.seen),
            "bytes": self.bytes,
            "first_at": self.first_at,
            "last_at": self.last_at,
        }


class HttpPeer(asyncio.Protocol):
    """A minimal HTTP/1.1 keep-alive receiver: every POST is counted by ``webhook-id`` and answered 204.

    ``GET /__stats`` answers the tally as JSON and ``POST /__reset`` clears it. Hand-written on
    asyncio so that the receiver, not the sender, is never the bottleneck being measured.
    """

    def __init__(self, tally: Tally) -> None:
        self.tally = tally
        self.buffer = bytearray()
        self.transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # uvloop's transports are not asyncio.Transport subclasses

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while self.transport is not None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
            headers = dict(line.split(":", 1) for line in head[1:] if ":" in line)
            headers = {k.strip().lower(): v.strip() for k, v in headers.items()}
            length = int(headers.get("content-length", "0"))
            if len(self.buffer) < end + 4 + length:
                return
            del self.buffer[: end + 4 + length]
            method, path = head[0].split(" ")[:2]
            self.transport.write(self.answer(method, path, headers, length))

    def answer(self, method: str, path: str, headers: dict[str, str], length: int) -> bytes:
        if path == "/__stats":
            body = orjson.dumps(self.tally.as_dict())
            return b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (
                len(body),
                body,
            )
        if path == "/__reset":
            self.tally.reset()
        elif method == "POST":
            self.tally.add(headers.get("webhook-id") or path, length)
        return b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n"


MESSAGE_ID = re.compile(rb"^message-id:\s*(\S+)", re.IGNORECASE | re.MULTILINE)


class SinkHandler:
    """aiosmtpd handler: counts each message by its Message-ID header (its recipient if none)."""

    def __init__(self, tally: Tally) -> None:
        self.tally = tally

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content: bytes = envelope.original_content or envelope.content
        found = MESSAGE_ID.search(content[:8192])
        key = found.group(1).decode() if found else ",".join(envelope.rcpt_tos)
        self.tally.add(key, len(content))
        return "250 Message accepted"


async def serve_peer(kind: str, port: int, stats_port: int, hosts: list[str]) -> None:
    tally = Tally()
    loop = asyncio.get_running_loop()
    servers = []
    if kind == "smtp":
        from aiosmtpd.smtp import SMTP

        handler = SinkHandler(tally)
        servers.append(await loop.create_server(lambda: SMTP(handler, hostname="sink"), HOST, port, backlog=1024))
        servers.append(await loop.create_server(lambda: HttpPeer(tally), HOST, stats_port))
    else:
        servers.append(await loop.create_server(lambda: HttpPeer(tally), hosts, port, backlog=1024))
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for server in servers:
        server.close()


def run_peer(args: argparse.Namespace) -> int:
    import uvloop

    hosts = [HOST, *webhook_hosts()] if args.peer == "http" else [HOST]
    uvloop.run(serve_peer(args.peer, args.port, args.stats_port, hosts))
    return 0


def webhook_hosts() -> list[str]:
    return [f"127.0.0.{2 + i}" for i in range(WEBHOOK_HOSTS)]


# ---------------------------------------------------------------- asking a peer


async def stats(port: int, host: str = HOST) -> dict[str, Any]:
    """A peer's tally, over a plain socket (no client library in the measured processes' way)."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
    try:
        writer.write(b"GET /__stats HTTP/1.1\r\nhost: peer\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        length = int(re.search(rb"content-length: (\d+)", head).group(1))  # type: ignore[union-attr]
        return orjson.loads(await asyncio.wait_for(reader.readexactly(length), 5))  # type: ignore[no-any-return]
    finally:
        writer.close()


async def reset(port: int) -> None:
    reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), 5)
    try:
        writer.write(b"POST /__reset HTTP/1.1\r\nhost: peer\r\ncontent-length: 0\r\n\r\n")
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    finally:
        writer.close()


# ---------------------------------------------------------------- the same messages, sent bare


def email_template() -> bytes:
    """An update email as the email channel sends one: text + HTML, unsubscribe headers, a stable id.

    Built once with the email package; each recipient's copy is the template with its address,
    Message-ID and unsubscribe token put in (building an EmailMessage per recipient costs ~3 ms
    here, more than the send itself).
    """
    msg = EmailMessage()
    msg["From"] = SENDER
    msg["To"] = "recipient-xxto"
    msg["Subject"] = "[Acme Cloud] Investigating: Elevated error rates on the Public API"
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = "<xxid@status.example.com>"
    unsubscribe = "https://status.example.com/subscriptions/xxtoken/unsubscribe"
    msg["List-Unsubscribe"] = f"<{unsubscribe}>"
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    text = (
        "Investigating: Some requests to the Public API fail with 503. We are investigating.\n\n"
        "Affected: Public API (partial outage)\nNext update by 21:30 UTC.\n\n"
        f"https://status.example.com/incidents/inc123\n\nUnsubscribe: {unsubscribe}\n"
    )
    msg.set_content(text, cte="7bit")
    msg.add_alternative(
        "<!doctype html><html><body><h1>Elevated error rates on the Public API</h1>"
        "<p><strong>Investigating</strong> Some requests to the Public API fail with 503. "
        "We are investigating.</p><ul><li>Public API: partial outage</li></ul>"
        "<p>Next update by 21:30 UTC.</p>"
        '<p><a href="https://status.example.com/incidents/inc123">View the incident</a> | '
        f'<a href="{unsubscribe}">Unsubscribe</a></p></body></html>',
        subtype="html",
        cte="7bit",
    )
    return msg.as_bytes()


EMAIL_TEMPLATE = email_template()


def email_bytes(n: int) -> bytes:
    token = secrets.token_urlsafe(24).encode()
    return (
        EMAIL_TEMPLATE.replace(b"recipient-xxto", b"bare%d@example.com" % n)
        .replace(b"<xxid@", b"<bare%d.%s@" % (n, token[:12]))
        .replace(b"xxtoken", token)
    )


def webhook_body(n: int) -> bytes:
    """A Statuspage incident envelope of the size the webhook channel sends."""
    now = datetime.now(UTC).isoformat()
    update = {
        "id": f"upd{n % 7}",
        "status": "investigating",
        "body": "Some requests to the Public API fail with 503. We are investigating.",
        "incident_id": "inc123",
        "created_at": now,
        "updated_at": now,
        "display_at": now,
        "affected_components": [
            {"code": "cmp1", "name": "Public API", "old_status": "operational", "new_status": "partial_outage"}
        ],
        "deliver_notifications": True,
        "custom_tweet": None,
        "tweet_id": None,
    }
    envelope = {
        "meta": {
            "unsubscribe": f"https://status.example.com/subscriptions/{secrets.token_urlsafe(24)}/unsubscribe",
            "documentation": "https://status.example.com/docs/webhooks",
            "generated_at": now,
        },
        "page": {"id": "page1", "status_indicator": "minor", "status_description": "Partial System Outage"},
        "incident": {
            "id": "inc123",
            "name": "Elevated error rates on the Public API",
            "status": "investigating",
            "impact": "minor",
            "created_at": now,
            "updated_at": now,
            "started_at": now,
            "monitoring_at": None,
            "resolved_at": None,
            "shortlink": "https://status.example.com/incidents/inc123",
            "page_id": "page1",
            "incident_updates": [update],
            "components": [{"id": "cmp1", "name": "Public API", "status": "partial_outage"}],
        },
    }
    return orjson.dumps(envelope)


def signed_headers(message_id: str, body: bytes, key: bytes) -> dict[str, str]:
    timestamp = str(int(time.time()))
    digest = hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return {
        "content-type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": timestamp,
        "webhook-signature": "v1," + base64.b64encode(digest).decode(),
    }


async def bare_smtp(port: int, count: int, seconds: float) -> dict[str, Any]:
    """aiosmtplib, 50 connections each reused for many messages, as fast as the sink accepts."""
    import aiosmtplib

    numbers = iter(range(count))
    sent = errors = 0
    started = time.perf_counter()
    deadline = started + seconds

    async def connection() -> None:
        nonlocal sent, errors
        client = aiosmtplib.SMTP(hostname=HOST, port=port, timeout=30)
        await client.connect()
        try:
            for n in numbers:
                if time.perf_counter() > deadline:
                    break
                try:
                    await client.sendmail(SENDER_ADDRESS, [f"bare{n}@example.com"], email_bytes(n))
                    sent += 1
                except aiosmtplib.SMTPException:
                    errors += 1
        finally:
            with contextlib.suppress(aiosmtplib.SMTPException):
                await client.quit()

    await asyncio.gather(*(connection() for _ in range(CONCURRENCY)))
    elapsed = time.perf_counter() - started
    return {"client": "aiosmtplib", "concurrency": CONCURRENCY, "sent": sent, "errors": errors, "seconds": elapsed}


async def bare_http(library: str, port: int, count: int, seconds: float) -> dict[str, Any]:
    """aiohttp or httpx POSTing signed webhook bodies at concurrency 50 to the receiver's hosts."""
    hosts = webhook_hosts()
    key = secrets.token_bytes(24)
    numbers = iter(range(count))
    sent = errors = 0
    started = time.perf_counter()
    deadline = started + seconds

    def request(n: int) -> tuple[str, bytes, dict[str, str]]:
        body = webhook_body(n)
        return f"http://{hosts[n % len(hosts)]}:{port}/hooks/{n}", body, signed_headers(f"msg_bare{n}", body, key)

    if library == "aiohttp":
        import aiohttp

        connector = aiohttp.TCPConnector(limit=CONCURRENCY, limit_per_host=0)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:

            async def loop_aiohttp() -> None:
                nonlocal sent, errors
                for n in numbers:
                    if time.perf_counter() > deadline:
                        break
                    url, body, headers = request(n)
                    async with session.post(url, data=body, headers=headers) as response:
                        await response.read()
                        sent += response.status < 300
                        errors += response.status >= 300

            await asyncio.gather(*(loop_aiohttp() for _ in range(CONCURRENCY)))
    else:
        import httpx

        limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
        async with httpx.AsyncClient(limits=limits, timeout=30) as client:

            async def loop_httpx() -> None:
                nonlocal sent, errors
                for n in numbers:
                    if time.perf_counter() > deadline:
                        break
                    url, body, headers = request(n)
                    response = await client.post(url, content=body, headers=headers)
                    sent += response.status_code < 300
                    errors += response.status_code >= 300

            await asyncio.gather(*(loop_httpx() for _ in range(CONCURRENCY)))
    elapsed = time.perf_counter() - started
    return {"client": library, "concurrency": CONCURRENCY, "sent": sent, "errors": errors, "seconds": elapsed}


def main() -> int:
    parser = argparse.ArgumentParser(description="a counting peer for bench/fanout.py")
    parser.add_argument("peer", choices=["smtp", "http"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--stats-port", type=int, default=0, help="the SMTP sink's tally (HTTP)")
    return run_peer(parser.parse_args())


if __name__ == "__main__":
    raise SystemExit(main())
