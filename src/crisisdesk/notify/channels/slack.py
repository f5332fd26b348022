"""Slack incoming webhooks: a Block Kit message (header, the text, a context line with status, time and link)."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson

from crisisdesk.notify.channels.base import Message, SendResult
from crisisdesk.notify.channels.http import HttpChannel, classify
from crisisdesk.notify.models import Channel

# Slack answers these (with 404/410/403) when the webhook's channel or app is gone for good.
GONE = frozenset(
    {"no_service", "channel_not_found", "channel_is_archived", "no_team", "team_disabled", "invalid_token"}
)
HEADER_LIMIT = 150  # characters of a header block
SECTION_LIMIT = 3000  # characters of a section's text


def escape(text: str) -> str:
    """Slack's mrkdwn escaping of ``&``, ``<`` and ``>``."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def payload(
    *,
    title: str,
    text: str,
    context: list[str],
    link: str | None = None,
    link_label: str = "View on the status page",
    extra_links: list[tuple[str, str]] | None = None,
) -> dict[str, Any]:
    """A Block Kit message; ``text`` is mrkdwn (already escaped), ``context`` items too."""
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _cut(title, HEADER_LIMIT), "emoji": True}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _cut(text or " ", SECTION_LIMIT)}},
    ]
    items = list(context)
    if link:
        items.append(f"<{link}|{escape(link_label)}>")
    for label, url in extra_links or ():
        items.append(f"<{url}|{escape(label)}>")
    if items:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": item} for item in items[:10]]})
    # ``text`` is what notifications and screen readers show.
    return {"text": _cut(f"{title}: {text}", SECTION_LIMIT), "blocks": blocks, "unfurl_links": False}


def encode(body: dict[str, Any]) -> bytes:
    return orjson.dumps(body)


class SlackChannel(HttpChannel):
    channel = Channel.slack

    def __init__(self, http: aiohttp.ClientSession, *, timeout: float, allow_private: bool) -> None:
        super().__init__(http, timeout=timeout, allow_private=allow_private)

    def endpoint(self, message: Message) -> str:
        # Slack limits each incoming webhook (about one message a second), not the host.
        return message.address

    async def send(self, message: Message) -> SendResult:
        body = message.body if message.body is not None else encode({"text": message.text})
        answer = await self.post(message.address, data=body, headers={"Content-Type": "application/json"})
        if isinstance(answer, SendResult):
            return answer
        if answer.body.strip() in GONE:
            return SendResult.failed(answer.code, answer.summary, unreachable=True)
        return classify(answer, unreachable=frozenset({404, 410}))
