"""Slack direct messages (pages) through chat.postMessage, against a local HTTP receiver standing in for Slack's API."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import orjson
import pytest

from crisisdesk.config import Settings
from crisisdesk.notify.addresses import http_session
from crisisdesk.notify.channels.base import Message
from crisisdesk.notify.channels.registry import build_adapters
from crisisdesk.notify.channels.slack_dm import SlackDmChannel
from crisisdesk.notify.models import AttemptOutcome, Channel
from tests.fixtures.peers import HttpReceiver
from tests.fixtures.server import free_port

TOKEN = "xoxb-1234-test"


@pytest.fixture
async def receiver() -> AsyncIterator[HttpReceiver]:
    async with HttpReceiver(free_port()) as peer:
        yield peer


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with http_session(allow_private=True) as session:
        yield session


def channel(http: aiohttp.ClientSession, receiver: HttpReceiver) -> SlackDmChannel:
    return SlackDmChannel(
        http, api_url=f"http://127.0.0.1:{receiver.port}/api/", token=TOKEN, timeout=3, allow_private=True
    )


def message(**kw: object) -> Message:
    body = {"channel": "U024BE7LH", "text": "Page: checkout down", "blocks": [{"type": "section"}]}
    values: dict[str, object] = {
        "delivery_id": 1,
        "message_id": "m1",
        "channel": Channel.slack_dm,
        "address": "U024BE7LH",
        "text": "Page: checkout down",
        "body": orjson.dumps(body),
    }
    return Message(**(values | kw))  # type: ignore[arg-type]


async def test_posts_to_chat_post_message_with_the_bot_token(
    http: aiohttp.ClientSession, receiver: HttpReceiver
) -> None:
    receiver.behave(status=200, body='{"ok": true, "channel": "D1", "ts": "1.2"}')
    result = await channel(http, receiver).send(message())
    assert result.outcome == AttemptOutcome.delivered
    request = receiver.requests[0]
    assert request.path == "/api/chat.postMessage"
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.json()["channel"] == "U024BE7LH" and request.json()["blocks"] == [{"type": "section"}]


@pytest.mark.parametrize(
    ("status", "body", "headers", "outcome", "unreachable", "retry_after"),
    [
        (200, '{"ok": false, "error": "ratelimited"}', {"Retry-After": "7"}, AttemptOutcome.retry, False, 7.0),
        (429, "", {"Retry-After": "30"}, AttemptOutcome.retry, False, 30.0),
        (200, '{"ok": false, "error": "invalid_auth"}', {}, AttemptOutcome.failed, False, None),
        (200, '{"ok": false, "error": "channel_not_found"}', {}, AttemptOutcome.failed, True, None),
        (200, '{"ok": false, "error": "internal_error"}', {}, AttemptOutcome.retry, False, None),
        (503, "upstream down", {}, AttemptOutcome.retry, False, None),
        (200, "<html>not json</html>", {}, AttemptOutcome.retry, False, None),
    ],
)
async def test_reads_slack_answers(
    http: aiohttp.ClientSession,
    receiver: HttpReceiver,
    status: int,
    body: str,
    headers: dict[str, str],
    outcome: AttemptOutcome,
    unreachable: bool,
    retry_after: float | None,
) -> None:
    receiver.behave(status=status, body=body, headers=headers)
    result = await channel(http, receiver).send(message())
    assert (result.outcome, result.unreachable, result.retry_after) == (outcome, unreachable, retry_after)
    assert TOKEN not in result.summary


async def test_the_channel_exists_only_with_a_bot_token(http: aiohttp.ClientSession) -> None:
    assert Channel.slack_dm not in build_adapters(Settings(demo=True), http)
    with_token = build_adapters(Settings(demo=True, slack_bot_token=TOKEN), http)
    assert isinstance(with_token[Channel.slack_dm], SlackDmChannel)
