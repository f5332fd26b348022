"""The email channel against a real SMTP server (aiosmtpd on loopback)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from crisisdesk.config import Settings
from crisisdesk.notify.channels.base import Message
from crisisdesk.notify.channels.email import EmailChannel
from crisisdesk.notify.models import AttemptOutcome, Channel, message_id
from tests.fixtures.peers import SmtpSink
from tests.fixtures.ports import worker_port

PORT = worker_port(18220)
UNSUBSCRIBE = "<https://status.test/subscriptions/tok123/unsubscribe>"


def email_settings(**kw: object) -> Settings:
    values: dict[str, object] = {
        "demo": True,
        "base_url": "https://status.test",
        "smtp_host": "127.0.0.1",
        "smtp_port": PORT,
        "smtp_connections": 2,
        "smtp_timeout": 5,
        "smtp_from": "Acme Cloud Status <status@acme.test>",
    }
    return Settings(**(values | kw))  # type: ignore[arg-type]


def make_message(address: str = "alice@example.com", n: int = 1, **kw: object) -> Message:
    values: dict[str, object] = {
        "delivery_id": n,
        "message_id": message_id(f"update:u{n}", "email", f"sub{address}"),
        "channel": Channel.email,
        "address": address,
        "subject": "[Acme Cloud] Sign-in failures: Investigating",
        "text": "We are investigating failed sign-ins.\n\nManage: https://status.test/subscriptions/tok123",
        "html": "<p>We are investigating <strong>failed sign-ins</strong>.</p>",
        "headers": {"List-Unsubscribe": UNSUBSCRIBE, "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"},
    }
    return Message(**(values | kw))  # type: ignore[arg-type]


@pytest.fixture
async def sink() -> AsyncIterator[SmtpSink]:
    async with SmtpSink(PORT) as peer:
        yield peer


@pytest.fixture
async def channel() -> AsyncIterator[EmailChannel]:
    adapter = EmailChannel(email_settings())
    yield adapter
    await adapter.close()


async def test_delivered_mail_carries_message_id_unsubscribe_headers_and_both_parts(
    sink: SmtpSink, channel: EmailChannel
) -> None:
    message = make_message()
    result = await channel.send(message)
    assert result.outcome == AttemptOutcome.delivered
    assert result.code == "250"
    received = sink.messages()
    assert len(received) == 1
    assert received[0].mail_from == "status@acme.test"
    assert received[0].rcpt_tos == ["alice@example.com"]
    mail = received[0].message
    assert mail["Message-ID"] == f"<{message.message_id}@status.test>"
    assert mail["From"] == "Acme Cloud Status <status@acme.test>"
    assert mail["To"] == "alice@example.com"
    assert mail["Subject"] == "[Acme Cloud] Sign-in failures: Investigating"
    assert mail["List-Unsubscribe"] == UNSUBSCRIBE
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert mail["Date"]
    assert mail.get_content_type() == "multipart/alternative"
    text = mail.get_body(("plain",))
    html = mail.get_body(("html",))
    assert text is not None and html is not None
    assert text.get_content().replace("\r\n", "\n").rstrip("\n") == message.text
    assert "<strong>failed sign-ins</strong>" in html.get_content()


async def test_message_id_is_the_same_on_a_retry(sink: SmtpSink, channel: EmailChannel) -> None:
    message = make_message()
    await channel.send(message)
    await channel.send(message)
    ids = {m.message["Message-ID"] for m in sink.messages()}
    assert ids == {f"<{message.message_id}@status.test>"}


async def test_non_ascii_subject_and_body_survive_and_headers_cannot_be_injected(
    sink: SmtpSink, channel: EmailChannel
) -> None:
    message = make_message(
        subject="Störung: Anmeldung – “SSO”\r\nBcc: victim@example.com",
        text="Wir untersuchen die Störung. Emoji: 🔥. A line with = and a very long tail " + "x" * 200,
        html=None,
    )
    assert (await channel.send(message)).outcome == AttemptOutcome.delivered
    mail = sink.messages()[0].message
    assert mail["Subject"] == "Störung: Anmeldung – “SSO” Bcc: victim@example.com"
    assert mail["Bcc"] is None
    assert mail.get_content_type() == "text/plain"
    assert mail.get_content().rstrip("\r\n") == message.text


async def test_connections_are_reused(sink: SmtpSink, channel: EmailChannel) -> None:
    results = await asyncio.gather(*(channel.send(make_message(f"user{i}@example.com", i)) for i in range(40)))
    assert all(r.outcome == AttemptOutcome.delivered for r in results)
    assert sink.count == 40
    assert sink.connections <= 2  # smtp_connections


async def test_unknown_mailbox_is_unreachable_and_temporary_refusal_is_retried(
    sink: SmtpSink, channel: EmailChannel
) -> None:
    sink.replies = {
        "gone@example.com": "550 5.1.1 No such user",
        "moved@example.com": "551 5.1.6 User not local",
        "bad@example.com": "553 5.1.3 Bad destination mailbox address",
        "full@example.com": "552 5.2.2 Mailbox full",
        "busy@example.com": "451 4.3.0 Try again later",
    }
    gone = await channel.send(make_message("gone@example.com"))
    assert (gone.outcome, gone.code, gone.unreachable) == (AttemptOutcome.failed, "550", True)
    assert "No such user" in gone.summary
    for address in ("moved@example.com", "bad@example.com"):
        assert (await channel.send(make_message(address))).unreachable
    full = await channel.send(make_message("full@example.com"))
    assert (full.outcome, full.code, full.unreachable) == (AttemptOutcome.failed, "552", False)
    busy = await channel.send(make_message("busy@example.com"))
    assert (busy.outcome, busy.code) == (AttemptOutcome.retry, "451")
    # The connection stays usable after refusals.
    assert (await channel.send(make_message("ok@example.com"))).outcome == AttemptOutcome.delivered
    assert sink.count == 1


async def test_data_refusals(sink: SmtpSink, channel: EmailChannel) -> None:
    sink.data_reply = "452 4.3.1 Insufficient system storage"
    assert (await channel.send(make_message())).outcome == AttemptOutcome.retry
    sink.data_reply = "554 5.6.0 Message rejected as spam"
    rejected = await channel.send(make_message())
    assert (rejected.outcome, rejected.code, rejected.unreachable) == (AttemptOutcome.failed, "554", False)


async def test_server_down_means_retry_and_mail_flows_again_when_it_is_back(
    sink: SmtpSink, channel: EmailChannel
) -> None:
    assert (await channel.send(make_message(n=1))).outcome == AttemptOutcome.delivered
    sink.stop()
    down = await channel.send(make_message(n=2))
    assert down.outcome == AttemptOutcome.retry
    assert "127.0.0.1" in down.summary
    sink.start()
    # The pooled connection died with the server; the channel reconnects by itself.
    assert (await channel.send(make_message(n=2))).outcome == AttemptOutcome.delivered
    assert sink.count == 2


async def test_login_when_a_username_is_set() -> None:
    async with SmtpSink(PORT, auth={"mailer": "s3cret"}) as sink:
        good = EmailChannel(email_settings(smtp_username="mailer", smtp_password="s3cret"))
        bad = EmailChannel(email_settings(smtp_username="mailer", smtp_password="wrong"))
        try:
            assert (await good.send(make_message())).outcome == AttemptOutcome.delivered
            refused = await bad.send(make_message())
            # Wrong credentials are the operator's to fix: the message waits rather than fails.
            assert (refused.outcome, refused.code) == (AttemptOutcome.retry, "535")
            assert "s3cret" not in refused.summary and "wrong" not in refused.summary
        finally:
            await good.close()
            await bad.close()
        assert sink.count == 1


async def test_endpoint_is_the_smtp_server(channel: EmailChannel) -> None:
    assert channel.endpoint(make_message()) == f"smtp://127.0.0.1:{PORT}"
    assert channel.endpoint_concurrency == 2
