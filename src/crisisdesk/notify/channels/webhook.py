"""Signed webhooks: the Statuspage envelope, POSTed with Standard Webhooks headers.

``webhook-id`` is the delivery's message id, the same on every retry and re-send, so a receiver
drops repeats by it. The signature covers id, timestamp and body with the subscriber's
``whsec_…`` secret.
"""

from __future__ import annotations

import functools
import time
from datetime import UTC, datetime

import aiohttp
from standardwebhooks.webhooks import Webhook

from crisisdesk.notify.channels.base import Message, SendResult
from crisisdesk.notify.channels.http import HttpChannel, classify, host_port
from crisisdesk.notify.models import Channel

USER_AGENT = "crisisdesk-webhooks/1"
UNREACHABLE = frozenset({410})


@functools.lru_cache(maxsize=65536)
def _signer(secret: str) -> Webhook:
    # Decoding the secret is the costly part of a Webhook; subscribers keep theirs.
    return Webhook(secret)


def sign(message_id: str, body: bytes, secret: str, at: float | None = None) -> dict[str, str]:
    """The Standard Webhooks headers for ``body``."""
    timestamp = int(at if at is not None else time.time())
    signature = _signer(secret).sign(message_id, datetime.fromtimestamp(timestamp, UTC), body.decode())
    return {"webhook-id": message_id, "webhook-timestamp": str(timestamp), "webhook-signature": signature}


class WebhookChannel(HttpChannel):
    channel = Channel.webhook

    def __init__(self, http: aiohttp.ClientSession, *, timeout: float, allow_private: bool) -> None:
        super().__init__(http, timeout=timeout, allow_private=allow_private)

    def endpoint(self, message: Message) -> str:
        host, port = host_port(message.address)
        return f"{host}:{port}"

    async def send(self, message: Message) -> SendResult:
        body = message.body if message.body is not None else message.text.encode()
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
        if message.secret:
            headers |= sign(message.message_id, body, message.secret)
        else:
            headers["webhook-id"] = message.message_id
        answer = await self.post(message.address, data=body, headers=headers)
        if isinstance(answer, SendResult):
            return answer
        return classify(answer, unreachable=UNREACHABLE)
