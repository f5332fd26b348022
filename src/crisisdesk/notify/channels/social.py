"""The installation's own social accounts: Mastodon statuses and X posts, 280 characters at most."""

from __future__ import annotations

import json
import time

import aiohttp

from crisisdesk.notify.channels.base import Message, SendResult
from crisisdesk.notify.channels.http import HttpAnswer, HttpChannel, classify
from crisisdesk.notify.models import Channel

POST_LIMIT = 280
ELLIPSIS = "…"


def fit_post(text: str, link: str | None = None, limit: int = POST_LIMIT) -> str:
    """``text`` shortened with an ellipsis so that it, a space and ``link`` take at most ``limit`` characters."""
    text = " ".join(text.split())
    tail = f" {link}" if link else ""
    if len(text) + len(tail) <= limit:
        return text + tail
    room = limit - len(tail) - len(ELLIPSIS)
    if room <= 0:
        return (text[: limit - 1] + ELLIPSIS) if len(text) > limit else text
    cut = text[:room]
    # End on a word when one ends reasonably close to the cut.
    space = cut.rfind(" ")
    if space >= room * 0.7:
        cut = cut[:space]
    return cut.rstrip() + ELLIPSIS + tail


def _text(message: Message) -> str:
    return fit_post(message.text)


def _delivered(answer: HttpAnswer, key: str) -> SendResult:
    try:
        data = json.loads(answer.body)
    except ValueError:
        data = {}
    found = data.get(key) if isinstance(data, dict) else None
    if isinstance(found, dict):  # X nests the post under "data"
        found = found.get("id")
    return SendResult.delivered(answer.code, f"posted {found}" if found else answer.summary)


class MastodonChannel(HttpChannel):
    channel = Channel.mastodon

    def __init__(self, http: aiohttp.ClientSession, *, base_url: str, token: str, timeout: float) -> None:
        # The instance is the operator's own choice, so it is not held to the public-address rule.
        super().__init__(http, timeout=timeout, allow_private=True)
        self.url = f"{base_url.rstrip('/')}/api/v1/statuses"
        self.token = token

    def endpoint(self, message: Message) -> str:
        return "mastodon"

    async def send(self, message: Message) -> SendResult:
        headers = {
            "Authorization": f"Bearer {self.token}",
            # Mastodon returns the first status for a repeated key, so a re-send does not post twice.
            "Idempotency-Key": message.message_id,
            "Accept": "application/json",
        }
        answer = await self.post(self.url, data={"status": _text(message), "visibility": "public"}, headers=headers)
        if isinstance(answer, SendResult):
            return answer
        if 200 <= answer.status < 300:
            return _delivered(answer, "id")
        return classify(answer, unreachable=frozenset())


class XChannel(HttpChannel):
    channel = Channel.x

    def __init__(self, http: aiohttp.ClientSession, *, base_url: str, token: str, timeout: float) -> None:
        super().__init__(http, timeout=timeout, allow_private=True)
        self.url = f"{base_url.rstrip('/')}/2/tweets"
        self.token = token

    def endpoint(self, message: Message) -> str:
        return "x"

    async def send(self, message: Message) -> SendResult:
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
        answer = await self.post(self.url, data=json.dumps({"text": _text(message)}), headers=headers)
        if isinstance(answer, SendResult):
            return answer
        if 200 <= answer.status < 300:
            return _delivered(answer, "data")
        if answer.status == 403 and "duplicate content" in answer.body:
            # X refuses a post identical to one just made: the first try got through before a crash.
            return SendResult.delivered(answer.code, "already posted (X refused a duplicate)")
        result = classify(answer, unreachable=frozenset())
        if answer.status == 429 and result.retry_after is None:
            reset = answer.headers.get("x-rate-limit-reset", "")
            if reset.isdecimal():
                wait = max(0.0, int(reset) - time.time())
                return SendResult.retry(result.code, result.summary, retry_after=wait)
        return result
