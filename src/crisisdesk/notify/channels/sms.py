"""SMS through the Twilio REST API (or anything that speaks it, at ``twilio_base_url``)."""

from __future__ import annotations

import base64
import json

import aiohttp

from crisisdesk.notify.channels.base import Message, SendResult
from crisisdesk.notify.channels.http import HttpAnswer, HttpChannel, classify
from crisisdesk.notify.models import Channel
from crisisdesk.notify.smstext import fit, plain

# Twilio error codes meaning this number will not receive: invalid "To", not a mobile number,
# the recipient replied STOP, landline or unreachable carrier.
UNREACHABLE_CODES = frozenset({21211, 21214, 21217, 21407, 21610, 21612, 21614})


class SmsChannel(HttpChannel):
    channel = Channel.sms

    def __init__(
        self,
        http: aiohttp.ClientSession,
        *,
        base_url: str,
        account_sid: str,
        auth_token: str,
        sender: str,
        timeout: float,
        allow_private: bool,
    ) -> None:
        super().__init__(http, timeout=timeout, allow_private=allow_private)
        self.url = f"{base_url.rstrip('/')}/2010-04-01/Accounts/{account_sid}/Messages.json"
        credentials = base64.b64encode(f"{account_sid}:{auth_token}".encode()).decode()
        self.headers = {"Accept": "application/json", "Authorization": f"Basic {credentials}"}
        # A messaging service SID ("MG…") lets Twilio pick the sending number.
        self.sender_field = "MessagingServiceSid" if sender.startswith("MG") else "From"
        self.sender = sender

    def endpoint(self, message: Message) -> str:
        return "twilio"

    async def send(self, message: Message) -> SendResult:
        form = {"To": message.address, self.sender_field: self.sender, "Body": fit(plain(message.text))}
        answer = await self.post(self.url, data=form, headers=self.headers)
        if isinstance(answer, SendResult):
            return answer
        return _read(answer)


def _read(answer: HttpAnswer) -> SendResult:
    try:
        data = json.loads(answer.body) if answer.body else {}
    except ValueError:
        data = {}
    if not isinstance(data, dict):
        data = {}
    if 200 <= answer.status < 300:
        return SendResult.delivered(answer.code, str(data.get("sid") or answer.summary))
    code = data.get("code")
    summary = f"Twilio {code}: {data.get('message', '')}" if code else answer.summary
    if answer.status < 500 and answer.status != 429 and code in UNREACHABLE_CODES:
        return SendResult.failed(answer.code, summary, unreachable=True)
    result = classify(answer, unreachable=frozenset())
    return SendResult(result.outcome, result.code, summary, result.unreachable, result.retry_after)
