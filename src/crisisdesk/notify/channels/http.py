"""What the HTTP channels share: one POST through the worker's session, and reading its answer.

Each channel decides what a status means (a 404 is an unreachable Slack webhook but only a
failure for a generic webhook); here a send becomes either an :class:`HttpAnswer` or, when no
answer came, a :class:`SendResult` to try again later (timeouts, refused connections, DNS) or
to give up on (the host now resolves to a private address).
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import time
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp

from crisisdesk.notify.addresses import PrivateAddressRefused, SendGuard
from crisisdesk.notify.channels.base import ChannelAdapter, SendResult

SUMMARY_CHARS = 300  # of a response body kept in the attempt's summary
READ_LIMIT = 64 * 1024  # a larger answer is cut (and its connection not reused)


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    body: str
    headers: Mapping[str, str]

    @property
    def code(self) -> str:
        return f"HTTP {self.status}"

    @property
    def summary(self) -> str:
        text = " ".join(self.body.split())
        return text[:SUMMARY_CHARS]

    def retry_after(self) -> float | None:
        """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
        value = self.headers.get("Retry-After")
        if not value:
            return None
        value = value.strip()
        if value.isdecimal():
            return float(value)
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, when.timestamp() - time.time())


@functools.lru_cache(maxsize=65536)
def host_port(url: str) -> tuple[str, int]:
    """The host and port a URL connects to (cached: the same few URLs are posted to again and again)."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return (parts.hostname or "", port)


class HttpChannel(ChannelAdapter):
    """A channel that POSTs through the worker's shared :class:`aiohttp.ClientSession`."""

    def __init__(self, http: aiohttp.ClientSession, *, timeout: float, allow_private: bool) -> None:
        self.http = http
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.guard = SendGuard(http, allow_private=allow_private)

    async def post(
        self,
        url: str,
        *,
        data: bytes | str | Mapping[str, str],
        headers: Mapping[str, str],
    ) -> HttpAnswer | SendResult:
        """POST and read the answer; a :class:`SendResult` when there was none to read."""
        host, port = host_port(url)
        problem = await self.guard.problem(host, port)
        if problem:
            return SendResult.failed("refused", f"not sent: {problem}", unreachable=True)
        try:
            # Never follow a redirect: its target skips the address checks above (an IP literal
            # never reaches the resolver), so a receiver could aim the worker at internal hosts.
            async with self.http.post(
                url, data=data, headers=headers, timeout=self.timeout, allow_redirects=False
            ) as response:
                body = await response.content.read(READ_LIMIT)
                return HttpAnswer(response.status, body.decode("utf-8", "replace"), response.headers)
        except TimeoutError:
            return SendResult.retry("timeout", f"no answer within {self.timeout.total:g} s")
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, PrivateAddressRefused):
                return SendResult.failed("refused", f"not sent: {exc.os_error}", unreachable=True)
            return SendResult.retry("connect", f"cannot connect to {host}:{port}: {exc.os_error}")
        except (aiohttp.ClientError, OSError, asyncio.IncompleteReadError) as exc:
            # Named by type and host only: aiohttp's messages carry the whole URL, and a Slack or
            # Teams URL is a secret that the attempt's summary must not show.
            return SendResult.retry("connection", f"{type(exc).__name__} talking to {host}:{port}")


def classify(
    answer: HttpAnswer, *, unreachable: frozenset[int], retry: frozenset[int] = frozenset({408, 429})
) -> SendResult:
    """The common reading of an HTTP status: 2xx delivered, 5xx and ``retry`` again later, else failed."""
    status = answer.status
    if 200 <= status < 300:
        return SendResult.delivered(answer.code, answer.summary)
    if status >= 500 or status in retry:
        return SendResult.retry(answer.code, answer.summary or "try again later", retry_after=answer.retry_after())
    if 300 <= status < 400:
        return SendResult.failed(answer.code, "answered with a redirect, which is not followed: use the final URL")
    if status in unreachable:
        return SendResult.failed(answer.code, answer.summary or "gone", unreachable=True)
    return SendResult.failed(answer.code, answer.summary or "refused")
