"""Slack direct messages through the bot token: ``POST {api}/chat.postMessage`` to a member id.

Slack's Web API answers 200 with ``{"ok": false, "error": …}`` when it refuses; a rate limit is
``ratelimited`` (or HTTP 429) with ``Retry-After``. A token that is wrong or revoked, or a member
the bot cannot reach, fails for good; the rest are tried again later.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson

from crisisdesk.notify.channels.base import Message, SendResult
from crisisdesk.notify.channels.http import HttpAnswer, HttpChannel, classify
from crisisdesk.notify.models import Channel

# Errors that no retry will cure (https://api.slack.com/methods/chat.postMessage#errors).
PERMANENT = frozenset(
    {
        "invalid_auth",
        "not_authed",
        "account_inactive",
        "token_revoked",
        "token_expired",
        "no_permission",
        "missing_scope",
        "not_allowed_token_type",
        "invalid_arguments",
        "invalid_blocks",
        "msg_too_long",
        "no_text",
        "team_access_not_granted",
        "ekm_access_denied",
    }
)
# The member or their conversation cannot be reached: the address itself is bad.
UNREACHABLE = frozenset({"channel_not_found", "user_not_found", "user_disabled", "is_archived", "cannot_dm_bot"})
RETRY = frozenset(
    {"ratelimited", "rate_limited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)


def _error(answer: HttpAnswer) -> str | None:
    """Slack's ``error`` when the answer is ``{"ok": false}``; None when it is ``ok``."""
    try:
        document: Any = orjson.loads(answer.body)
    except orjson.JSONDecodeError:
        return "unreadable answer"
    if not isinstance(document, dict):
        return "unreadable answer"
    if document.get("ok") is True:
        return None
    return str(document.get("error") or "unknown_error")


class SlackDmChannel(HttpChannel):
    channel = Channel.slack_dm

    def __init__(
        self, http: aiohttp.ClientSession, *, api_url: str, token: str, timeout: float, allow_private: bool
    ) -> None:
        super().__init__(http, timeout=timeout, allow_private=allow_private)
        self.url = f"{api_url.rstrip('/')}/chat.postMessage"
        self.token = token

    def endpoint(self, message: Message) -> str:
        return "slack-api"

    async def send(self, message: Message) -> SendResult:
        body = (
            message.body
            if message.body is not None
            else orjson.dumps({"channel": message.address, "text": message.text})
        )
        headers = {"Content-Type": "application/json; charset=utf-8", "Authorization": f"Bearer {self.token}"}
        answer = await self.post(self.url, data=body, headers=headers)
        if isinstance(answer, SendResult):
            return answer
        if answer.status != 200:
            return classify(answer, unreachable=frozenset({404, 410}))
        error = _error(answer)
        if error is None:
            return SendResult.delivered(answer.code, "ok")
        summary = f"slack: {error}"
        if error in RETRY:
            return SendResult.retry(answer.code, summary, retry_after=answer.retry_after())
        if error in UNREACHABLE:
            return SendResult.failed(answer.code, summary, unreachable=True)
        if error in PERMANENT:
            return SendResult.failed(answer.code, summary)
        return SendResult.retry(answer.code, summary, retry_after=answer.retry_after())
