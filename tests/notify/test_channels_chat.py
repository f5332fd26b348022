"""Slack and Teams incoming webhooks against a local HTTP receiver."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from crisisdesk.notify.addresses import http_session
from crisisdesk.notify.channels import slack, teams
from crisisdesk.notify.channels.base import Message
from crisisdesk.notify.channels.slack import SlackChannel
from crisisdesk.notify.channels.teams import TeamsChannel
from crisisdesk.notify.models import AttemptOutcome, Channel, message_id
from tests.fixtures.peers import HttpReceiver
from tests.fixtures.ports import worker_port

PORT = worker_port(18240)
LINK = "https://status.test/incidents/inc1"


@pytest.fixture
async def receiver() -> AsyncIterator[HttpReceiver]:
    async with HttpReceiver(PORT) as peer:
        yield peer


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with http_session(allow_private=True) as session:
        yield session


def slack_message(**kw: object) -> Message:
    body = slack.payload(
        title="Sign-in failures: Investigating",
        text="We are investigating *failed sign-ins* for SSO users.",
        context=["*Status:* Investigating", "*Components:* Web app, API", "<!date^1790000000^{time}|20:00 UTC>"],
        link=LINK,
    )
    values: dict[str, object] = {
        "delivery_id": 1,
        "message_id": message_id("update:u1", "slack", "sub1"),
        "channel": Channel.slack,
        "address": f"http://127.0.0.1:{PORT}/services/T1/B1/xyz",
        "text": "Sign-in failures: Investigating",
        "body": slack.encode(body),
    }
    return Message(**(values | kw))  # type: ignore[arg-type]


def teams_message(**kw: object) -> Message:
    body = teams.payload(
        title="Sign-in failures: Investigating",
        text="We are investigating failed sign-ins for SSO users.",
        facts=[("Status", "Investigating"), ("Components", "Web app, API")],
        link=LINK,
    )
    values: dict[str, object] = {
        "delivery_id": 2,
        "message_id": message_id("update:u1", "teams", "sub2"),
        "channel": Channel.teams,
        "address": f"http://127.0.0.1:{PORT}/workflows/abc",
        "body": teams.encode(body),
    }
    return Message(**(values | kw))  # type: ignore[arg-type]


async def test_slack_block_kit_shape(receiver: HttpReceiver, http: aiohttp.ClientSession) -> None:
    receiver.behave(body="ok")
    result = await SlackChannel(http, timeout=2, allow_private=True).send(slack_message())
    assert (result.outcome, result.summary) == (AttemptOutcome.delivered, "ok")
    (request,) = receiver.received("/services/T1/B1/xyz")
    assert request.headers["content-type"] == "application/json"
    sent = request.json()
    assert sent["text"].startswith("Sign-in failures: Investigating: We are investigating")
    header, section, context = sent["blocks"]
    assert header == {
        "type": "header",
        "text": {"type": "plain_text", "text": "Sign-in failures: Investigating", "emoji": True},
    }
    assert section["type"] == "section" and section["text"]["type"] == "mrkdwn"
    assert context["type"] == "context"
    texts = [e["text"] for e in context["elements"]]
    assert texts[0] == "*Status:* Investigating"
    assert texts[-1] == f"<{LINK}|View on the status page>"


def test_slack_limits_and_escaping() -> None:
    body = slack.payload(title="x" * 200, text="y" * 5000, context=[])
    assert len(body["blocks"][0]["text"]["text"]) == 150
    assert len(body["blocks"][1]["text"]["text"]) == 3000
    assert slack.escape("a < b & c > d") == "a &lt; b &amp; c &gt; d"


@pytest.mark.parametrize(
    ("status", "answer", "outcome", "unreachable"),
    [
        (200, "ok", AttemptOutcome.delivered, False),
        (404, "no_service", AttemptOutcome.failed, True),
        (404, "channel_not_found", AttemptOutcome.failed, True),
        (410, "channel_is_archived", AttemptOutcome.failed, True),
        (403, "team_disabled", AttemptOutcome.failed, True),
        (400, "invalid_payload", AttemptOutcome.failed, False),
        (403, "action_prohibited", AttemptOutcome.failed, False),
        (429, "rate_limited", AttemptOutcome.retry, False),
        (500, "rollup_error", AttemptOutcome.retry, False),
    ],
)
async def test_slack_outcomes(
    receiver: HttpReceiver,
    http: aiohttp.ClientSession,
    status: int,
    answer: str,
    outcome: AttemptOutcome,
    unreachable: bool,
) -> None:
    receiver.behave(status=status, body=answer, headers={"Retry-After": "2"} if status == 429 else {})
    result = await SlackChannel(http, timeout=2, allow_private=True).send(slack_message())
    assert (result.outcome, result.unreachable, result.summary) == (outcome, unreachable, answer)
    if status == 429:
        assert result.retry_after == 2.0


async def test_teams_adaptive_card_shape(receiver: HttpReceiver, http: aiohttp.ClientSession) -> None:
    receiver.behave(status=202)
    result = await TeamsChannel(http, timeout=2, allow_private=True).send(teams_message())
    assert (result.outcome, result.code) == (AttemptOutcome.delivered, "HTTP 202")
    (request,) = receiver.received("/workflows/abc")
    sent = request.json()
    assert sent["type"] == "message"
    (attachment,) = sent["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert (card["type"], card["version"]) == ("AdaptiveCard", "1.4")
    assert card["body"][0]["text"] == "Sign-in failures: Investigating"
    assert card["body"][1]["facts"][0] == {"title": "Status", "value": "Investigating"}
    assert card["actions"] == [{"type": "Action.OpenUrl", "title": "View on the status page", "url": LINK}]


@pytest.mark.parametrize(
    ("status", "answer", "outcome", "unreachable"),
    [
        (200, "1", AttemptOutcome.delivered, False),
        (
            200,
            "Webhook message delivery failed with error: Microsoft Teams endpoint returned HTTP error 429",
            AttemptOutcome.retry,
            False,
        ),
        (200, "Webhook message delivery failed with error: Bad payload", AttemptOutcome.failed, False),
        (404, "", AttemptOutcome.failed, True),
        (410, "", AttemptOutcome.failed, True),
        (400, "bad card", AttemptOutcome.failed, False),
        (429, "", AttemptOutcome.retry, False),
        (502, "", AttemptOutcome.retry, False),
    ],
)
async def test_teams_outcomes(
    receiver: HttpReceiver,
    http: aiohttp.ClientSession,
    status: int,
    answer: str,
    outcome: AttemptOutcome,
    unreachable: bool,
) -> None:
    receiver.behave(status=status, body=answer)
    result = await TeamsChannel(http, timeout=2, allow_private=True).send(teams_message())
    assert (result.outcome, result.unreachable) == (outcome, unreachable)


async def test_chat_webhooks_time_out_into_a_retry(receiver: HttpReceiver, http: aiohttp.ClientSession) -> None:
    receiver.behave(hang_seconds=3)
    for channel, message in (
        (SlackChannel(http, timeout=0.5, allow_private=True), slack_message()),
        (TeamsChannel(http, timeout=0.5, allow_private=True), teams_message()),
    ):
        result = await channel.send(message)
        assert (result.outcome, result.code) == (AttemptOutcome.retry, "timeout")


async def test_chat_webhooks_refuse_private_hosts_unless_allowed(receiver: HttpReceiver) -> None:
    async with http_session(allow_private=False) as session:
        for result in (
            await SlackChannel(session, timeout=2, allow_private=False).send(slack_message()),
            await TeamsChannel(session, timeout=2, allow_private=False).send(teams_message()),
        ):
            assert (result.outcome, result.unreachable) == (AttemptOutcome.failed, True)
    assert receiver.count == 0


def test_each_chat_webhook_is_its_own_endpoint(http: aiohttp.ClientSession) -> None:
    message = slack_message()
    assert SlackChannel(http, timeout=1, allow_private=True).endpoint(message) == message.address
