"""What every channel is: ``send(message) -> SendResult``, and nothing else.

A channel never retries and never touches the database. It answers what happened, in a way
the ledger can act on: delivered, try again later, or failed for good (and whether the
address itself is unreachable, so its subscriber is quarantined).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field

from crisisdesk.notify.models import AttemptOutcome, Channel


@dataclass(frozen=True)
class Message:
    """One rendered message for one delivery."""

    delivery_id: int
    message_id: str  # stable across retries: email Message-ID, ``webhook-id``
    channel: Channel
    address: str  # email address, E.164 number, or URL
    subject: str = ""
    text: str = ""
    html: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)  # e.g. List-Unsubscribe
    body: bytes | None = None  # the request body of HTTP channels (JSON)
    secret: str | None = None  # Standard Webhooks signing secret


@dataclass(frozen=True)
class SendResult:
    outcome: AttemptOutcome
    code: str | None  # "250", "HTTP 500", "timeout"
    summary: str  # the provider's answer in brief, never a secret
    unreachable: bool = False  # the address is permanently bad: quarantine its subscriber
    retry_after: float | None = None  # seconds the provider asked us to wait

    @classmethod
    def delivered(cls, code: str | None, summary: str = "") -> SendResult:
        return cls(AttemptOutcome.delivered, code, summary)

    @classmethod
    def retry(cls, code: str | None, summary: str, *, retry_after: float | None = None) -> SendResult:
        return cls(AttemptOutcome.retry, code, summary, retry_after=retry_after)

    @classmethod
    def failed(cls, code: str | None, summary: str, *, unreachable: bool = False) -> SendResult:
        return cls(AttemptOutcome.failed, code, summary, unreachable=unreachable)


class ChannelAdapter(ABC):
    """A channel: one instance per worker, holding its connections (SMTP pool, HTTP session)."""

    channel: Channel

    def endpoint(self, message: Message) -> str:
        """The key that per-endpoint concurrency and the circuit breaker count by."""
        return self.channel.value

    @abstractmethod
    async def send(self, message: Message) -> SendResult: ...

    async def close(self) -> None:  # noqa: B027 - channels without connections have nothing to close
        """Release connections when the worker stops."""
