"""Microsoft Teams incoming webhooks (Workflows or the older connectors): an Adaptive Card 1.4."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson

from crisisdesk.notify.channels.base import Message, SendResult
from crisisdesk.notify.channels.http import HttpChannel, classify
from crisisdesk.notify.models import Channel

CARD_TYPE = "application/vnd.microsoft.card.adaptive"
CARD_SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"


def payload(
    *,
    title: str,
    text: str,
    facts: list[tuple[str, str]],
    link: str | None = None,
    link_label: str = "View on the status page",
    extra_links: list[tuple[str, str]] | None = None,
) -> dict[str, Any]:
    """A message carrying one Adaptive Card: the title, the facts (status, components, time), the text, a link."""
    body: list[dict[str, Any]] = [
        {"type": "TextBlock", "text": title, "size": "Large", "weight": "Bolder", "wrap": True, "style": "heading"},
    ]
    if facts:
        body.append({"type": "FactSet", "facts": [{"title": name, "value": value} for name, value in facts]})
    if text:
        body.append({"type": "TextBlock", "text": text, "wrap": True})
    card: dict[str, Any] = {"$schema": CARD_SCHEMA, "type": "AdaptiveCard", "version": "1.4", "body": body}
    links = ([(link_label, link)] if link else []) + list(extra_links or ())
    if links:
        card["actions"] = [{"type": "Action.OpenUrl", "title": label, "url": url} for label, url in links]
    return {
        "type": "message",
        "summary": title,
        "attachments": [{"contentType": CARD_TYPE, "contentUrl": None, "content": card}],
    }


def encode(body: dict[str, Any]) -> bytes:
    return orjson.dumps(body)


class TeamsChannel(HttpChannel):
    channel = Channel.teams

    def __init__(self, http: aiohttp.ClientSession, *, timeout: float, allow_private: bool) -> None:
        super().__init__(http, timeout=timeout, allow_private=allow_private)

    def endpoint(self, message: Message) -> str:
        return message.address

    async def send(self, message: Message) -> SendResult:
        body = message.body
        if body is None:
            body = encode(payload(title=message.subject or message.text[:80], text=message.text, facts=[]))
        answer = await self.post(message.address, data=body, headers={"Content-Type": "application/json"})
        if isinstance(answer, SendResult):
            return answer
        # Older connectors answer 200 with the error of the Teams service in the body.
        if answer.status == 200 and answer.body.startswith("Webhook message delivery failed"):
            if "429" in answer.body or "HTTP error 5" in answer.body:
                return SendResult.retry(answer.code, answer.summary)
            return SendResult.failed(answer.code, answer.summary)
        return classify(answer, unreachable=frozenset({404, 410}))
