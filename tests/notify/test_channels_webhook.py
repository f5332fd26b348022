"""Signed webhooks against a local HTTP receiver that verifies them with the standardwebhooks library."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest
from standardwebhooks.webhooks import Webhook

from crisisdesk.notify.addresses import http_session
from crisisdesk.notify.channels.base import Message
from crisisdesk.notify.channels.webhook import WebhookChannel
from crisisdesk.notify.models import AttemptOutcome, Channel, message_id
from tests.fixtures.peers import HttpReceiver
from tests.fixtures.ports import worker_port

PORT = worker_port(18230)
SECRET = "whsec_" + base64.b64encode(b"a-secret-of-thirty-two-bytes-!!!").decode()
BODY = json.dumps({"meta": {"generated_at": "2026-11-24T20:00:00Z"}, "incident": {"id": "inc1"}}).encode()


def make_message(path: str = "/hook", port: int = PORT, **kw: object) -> Message:
    values: dict[str, object] = {
        "delivery_id": 1,
        "message_id": message_id("update:u1", "webhook", "sub1"),
        "channel": Channel.webhook,
        "address": f"http://127.0.0.1:{port}{path}",
        "body": BODY,
        "secret": SECRET,
    }
    return Message(**(values | kw))  # type: ignore[arg-type]


@pytest.fixture
async def receiver() -> AsyncIterator[HttpReceiver]:
    async with HttpReceiver(PORT) as peer:
        yield peer


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with http_session(allow_private=True) as session:
        yield session


@pytest.fixture
def channel(http: aiohttp.ClientSession) -> WebhookChannel:
    return WebhookChannel(http, timeout=1, allow_private=True)


async def test_the_receiver_verifies_the_signature_and_sees_a_stable_webhook_id(
    receiver: HttpReceiver, channel: WebhookChannel
) -> None:
    message = make_message()
    result = await channel.send(message)
    assert (result.outcome, result.code) == (AttemptOutcome.delivered, "HTTP 200")
    await channel.send(message)  # a retry
    first, second = receiver.received("/hook")
    assert first.headers["content-type"] == "application/json"
    assert first.body == BODY
    assert Webhook(SECRET).verify(first.body, first.headers) == json.loads(BODY)
    assert Webhook(SECRET).verify(second.body, second.headers)
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == message.message_id
    # A receiver with another secret refuses it.
    other = "whsec_" + base64.b64encode(b"another-secret-thirty-two-bytes!").decode()
    with pytest.raises(Exception, match="signature"):
        Webhook(other).verify(first.body, first.headers)
    # So does one that sees a tampered body.
    with pytest.raises(Exception, match="signature"):
        Webhook(SECRET).verify(first.body.replace(b"inc1", b"inc2"), first.headers)


@pytest.mark.parametrize(
    ("status", "outcome", "unreachable"),
    [
        (200, AttemptOutcome.delivered, False),
        (202, AttemptOutcome.delivered, False),
        (204, AttemptOutcome.delivered, False),
        (408, AttemptOutcome.retry, False),
        (429, AttemptOutcome.retry, False),
        (500, AttemptOutcome.retry, False),
        (503, AttemptOutcome.retry, False),
        (410, AttemptOutcome.failed, True),
        (400, AttemptOutcome.failed, False),
        (401, AttemptOutcome.failed, False),
        (404, AttemptOutcome.failed, False),
        (301, AttemptOutcome.failed, False),
    ],
)
async def test_outcome_per_status(
    receiver: HttpReceiver, channel: WebhookChannel, status: int, outcome: AttemptOutcome, unreachable: bool
) -> None:
    receiver.behave(status=status, body="receiver says hi")
    result = await channel.send(make_message())
    assert (result.outcome, result.code, result.unreachable) == (outcome, f"HTTP {status}", unreachable)
    assert receiver.count == 1


async def test_retry_after_is_passed_on(receiver: HttpReceiver, channel: WebhookChannel) -> None:
    receiver.behave(status=429, headers={"Retry-After": "7"}, body="slow down")
    result = await channel.send(make_message())
    assert (result.outcome, result.retry_after, result.summary) == (AttemptOutcome.retry, 7.0, "slow down")
    receiver.behave(status=503, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})
    assert (await channel.send(make_message())).retry_after == 0.0  # a date in the past


async def test_a_receiver_hanging_past_the_timeout_is_retried(receiver: HttpReceiver, channel: WebhookChannel) -> None:
    receiver.behave(hang_seconds=3)
    result = await channel.send(make_message())
    assert (result.outcome, result.code) == (AttemptOutcome.retry, "timeout")


async def test_nobody_listening_is_retried(channel: WebhookChannel) -> None:
    result = await channel.send(make_message(port=PORT + 1))
    assert (result.outcome, result.code) == (AttemptOutcome.retry, "connect")


async def test_unsigned_without_a_secret_still_carries_the_id(receiver: HttpReceiver, channel: WebhookChannel) -> None:
    await channel.send(make_message(secret=None))
    (request,) = receiver.received()
    assert request.headers["webhook-id"].startswith("msg_")
    assert "webhook-signature" not in request.headers


async def test_loopback_is_refused_at_send_time_unless_allowed(receiver: HttpReceiver) -> None:
    """A URL stored earlier (or a host re-pointed since) that is loopback now: nothing is posted."""
    async with http_session(allow_private=False) as guarded, aiohttp.ClientSession() as plain:
        for session in (guarded, plain):
            channel = WebhookChannel(session, timeout=1, allow_private=False)
            for address in (f"http://127.0.0.1:{PORT}/hook", f"http://localhost:{PORT}/hook"):
                result = await channel.send(make_message(address=address))
                assert (result.outcome, result.unreachable) == (AttemptOutcome.failed, True), address
                assert "loopback" in result.summary
    assert receiver.count == 0


def test_endpoint_is_host_and_port(channel: WebhookChannel) -> None:
    assert channel.endpoint(make_message()) == f"127.0.0.1:{PORT}"
    assert channel.endpoint(make_message(address="https://hooks.example.com/a/b")) == "hooks.example.com:443"


async def test_a_redirect_is_not_followed(receiver: HttpReceiver, channel: WebhookChannel) -> None:
    """A receiver answering 307 towards another address must not steer the worker there.

    Tried: /hook answers 307 with Location pointing at /internal on the same peer (an IP literal,
    as an attacker would use for 169.254.169.254); the worker must not send anything to it.
    """
    internal = f"http://127.0.0.1:{PORT}/internal"
    receiver.behave("/hook", status=307, headers={"Location": internal})
    result = await channel.send(make_message("/hook"))
    assert result.outcome is AttemptOutcome.failed and result.code == "HTTP 307"
    assert "redirect" in result.summary
    assert receiver.received("/internal") == []
