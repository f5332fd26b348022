"""Twilio SMS, Mastodon and X against a local HTTP receiver standing in for their APIs; the registry."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest

from crisisdesk.config import Settings
from crisisdesk.notify.addresses import http_session
from crisisdesk.notify.channels.base import Message
from crisisdesk.notify.channels.registry import build_adapters
from crisisdesk.notify.channels.sms import SmsChannel
from crisisdesk.notify.channels.social import MastodonChannel, XChannel, fit_post
from crisisdesk.notify.models import AttemptOutcome, Channel, message_id
from crisisdesk.notify.smstext import measure
from tests.fixtures.peers import HttpReceiver
from tests.fixtures.ports import worker_port

PORT = worker_port(18250)
BASE = f"http://127.0.0.1:{PORT}"
SID = "AC0123456789abcdef0123456789abcdef"
TWILIO_PATH = f"/2010-04-01/Accounts/{SID}/Messages.json"


@pytest.fixture
async def receiver() -> AsyncIterator[HttpReceiver]:
    async with HttpReceiver(PORT) as peer:
        yield peer


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with http_session(allow_private=True) as session:
        yield session


def sms_channel(http: aiohttp.ClientSession, sender: str = "+15005550006") -> SmsChannel:
    return SmsChannel(
        http, base_url=BASE, account_sid=SID, auth_token="tok-secret", sender=sender, timeout=2, allow_private=True
    )


def message(channel: Channel, text: str, address: str = "+14155552671") -> Message:
    return Message(
        delivery_id=1, message_id=message_id("update:u1", channel, "r1"), channel=channel, address=address, text=text
    )


async def test_twilio_gets_the_form_and_basic_auth(receiver: HttpReceiver, http: aiohttp.ClientSession) -> None:
    receiver.behave(status=201, body=json.dumps({"sid": "SM123", "status": "queued"}))
    text = "[Acme Cloud] Sign-in failures: investigating. https://status.test/incidents/inc1"
    result = await sms_channel(http).send(message(Channel.sms, text))
    assert (result.outcome, result.code, result.summary) == (AttemptOutcome.delivered, "HTTP 201", "SM123")
    (request,) = receiver.received(TWILIO_PATH)
    assert request.form() == {"To": "+14155552671", "From": "+15005550006", "Body": text}
    expected = base64.b64encode(f"{SID}:tok-secret".encode()).decode()
    assert request.headers["authorization"] == f"Basic {expected}"


async def test_twilio_messaging_service_and_one_segment(receiver: HttpReceiver, http: aiohttp.ClientSession) -> None:
    receiver.behave(status=201, body="{}")
    await sms_channel(http, sender="MG0123").send(message(Channel.sms, "We’re investigating… " * 20))
    form = receiver.received(TWILIO_PATH)[0].form()
    assert form["MessagingServiceSid"] == "MG0123" and "From" not in form
    info = measure(form["Body"])
    assert (info.encoding, info.segments) == ("GSM-7", 1)  # typography made GSM-7, then shortened


@pytest.mark.parametrize(
    ("status", "code", "outcome", "unreachable"),
    [
        (400, 21211, AttemptOutcome.failed, True),  # invalid To
        (400, 21614, AttemptOutcome.failed, True),  # not a mobile number
        (400, 21610, AttemptOutcome.failed, True),  # recipient replied STOP
        (400, 21602, AttemptOutcome.failed, False),  # body required: our fault, not the number's
        (401, 20003, AttemptOutcome.failed, False),
        (429, 20429, AttemptOutcome.retry, False),
        (500, None, AttemptOutcome.retry, False),
        (503, None, AttemptOutcome.retry, False),
    ],
)
async def test_twilio_outcomes(
    receiver: HttpReceiver,
    http: aiohttp.ClientSession,
    status: int,
    code: int | None,
    outcome: AttemptOutcome,
    unreachable: bool,
) -> None:
    body = json.dumps({"code": code, "message": "explained", "status": status}) if code else "upstream trouble"
    receiver.behave(status=status, body=body, headers={"Retry-After": "30"} if status == 429 else {})
    result = await sms_channel(http).send(message(Channel.sms, "hello"))
    assert (result.outcome, result.unreachable) == (outcome, unreachable)
    if code:
        assert result.summary == f"Twilio {code}: explained"
    if status == 429:
        assert result.retry_after == 30.0
    assert "tok-secret" not in result.summary


async def test_mastodon_status_with_idempotency_key(receiver: HttpReceiver, http: aiohttp.ClientSession) -> None:
    receiver.behave(body=json.dumps({"id": "1100", "content": "<p>x</p>"}))
    channel = MastodonChannel(http, base_url=BASE, token="masto-token", timeout=2)
    sent = message(Channel.mastodon, "Sign-in failures: investigating " * 20, address="account")
    result = await channel.send(sent)
    assert (result.outcome, result.summary) == (AttemptOutcome.delivered, "posted 1100")
    (request,) = receiver.received("/api/v1/statuses")
    assert request.headers["authorization"] == "Bearer masto-token"
    assert request.headers["idempotency-key"] == sent.message_id
    assert len(request.form()["status"]) <= 280
    receiver.behave(status=422, body='{"error": "Validation failed"}')
    assert (await channel.send(sent)).outcome == AttemptOutcome.failed
    receiver.behave(status=503)
    assert (await channel.send(sent)).outcome == AttemptOutcome.retry


async def test_x_post(receiver: HttpReceiver, http: aiohttp.ClientSession) -> None:
    receiver.behave(status=201, body=json.dumps({"data": {"id": "1850", "text": "x"}}))
    channel = XChannel(http, base_url=BASE, token="x-token", timeout=2)
    result = await channel.send(message(Channel.x, "Resolved: sign-in failures. " * 20, address="account"))
    assert (result.outcome, result.summary) == (AttemptOutcome.delivered, "posted 1850")
    (request,) = receiver.received("/2/tweets")
    assert request.headers["authorization"] == "Bearer x-token"
    assert request.headers["content-type"] == "application/json"
    assert len(request.json()["text"]) <= 280
    # A re-send after a crash: X refuses the duplicate, which means the first one was posted.
    receiver.behave(status=403, body='{"detail": "You are not allowed to create a Tweet with duplicate content."}')
    assert (await channel.send(message(Channel.x, "Resolved."))).outcome == AttemptOutcome.delivered
    receiver.behave(status=403, body='{"detail": "Forbidden"}')
    assert (await channel.send(message(Channel.x, "Resolved."))).outcome == AttemptOutcome.failed
    receiver.behave(status=429, headers={"x-rate-limit-reset": "0"})
    limited = await channel.send(message(Channel.x, "Resolved."))
    assert (limited.outcome, limited.retry_after) == (AttemptOutcome.retry, 0.0)


def test_fit_post() -> None:
    link = "https://status.test/incidents/inc1"
    assert fit_post("Short.", link) == f"Short. {link}"
    long = fit_post("word " * 100, link)
    assert len(long) <= 280 and long.endswith(f"… {link}")
    assert len(fit_post("x" * 400)) == 280


def test_registry_builds_only_configured_channels(http: aiohttp.ClientSession) -> None:
    bare = build_adapters(Settings(demo=True), http)
    assert set(bare) == {Channel.email, Channel.webhook, Channel.slack, Channel.teams}
    full = build_adapters(
        Settings(
            demo=True,
            twilio_account_sid=SID,
            twilio_auth_token="t",
            twilio_from="+15005550006",
            mastodon_base_url="https://mastodon.example",
            mastodon_token="m",
            x_token="x",
            slack_bot_token="xoxb-1",
        ),
        http,
    )
    assert set(full) == set(Channel)
    assert all(adapter.channel == name for name, adapter in full.items())
    half = build_adapters(Settings(demo=True, twilio_account_sid=SID, mastodon_token="m"), http)
    assert Channel.sms not in half and Channel.mastodon not in half
