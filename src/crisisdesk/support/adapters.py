"""Replies out through a helpdesk's own API: Zendesk, Freshdesk and Intercom.

:func:`send_reply` posts one public answer on the helpdesk's ticket (or conversation), adds the
tags it is given, and marks it solved when asked. It receives its HTTP client, so the caller
pools connections and tests point it at a local receiver; :func:`http_client` makes one that
refuses non-public addresses unless ``CRISISDESK_ALLOW_PRIVATE_WEBHOOKS`` is set, since the API
address is an admin's input. A failure raises :class:`HelpdeskError` with the status, a short
excerpt of the answer and whether trying again later can help (timeouts, 429, 5xx).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Mapping
from html import escape
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from crisisdesk.config import Settings
from crisisdesk.notify.addresses import address_problem
from crisisdesk.support.models import Helpdesk, HelpdeskKind

EXCERPT = 300
INTERCOM_VERSION = "2.11"
FRESHDESK_RESOLVED = 4
USER_AGENT = "crisisdesk"


class HelpdeskError(Exception):
    """A reply the helpdesk did not take."""

    def __init__(
        self, message: str, *, status: int | None = None, retryable: bool = False, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.retryable = retryable
        self.retry_after = retry_after


def _excerpt(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= EXCERPT else flat[: EXCERPT - 1] + "…"


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "").strip()
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


def _check(response: httpx.Response, what: str) -> None:
    if response.is_success:
        return
    status = response.status_code
    raise HelpdeskError(
        f"{what}: HTTP {status}: {_excerpt(response.text)}",
        status=status,
        retryable=status == 429 or status >= 500,
        retry_after=_retry_after(response),
    )


def _ticket_path(external_id: str) -> str:
    cleaned = external_id.strip()
    if not cleaned or len(cleaned) > 200:
        raise HelpdeskError(f"{external_id!r} is not a ticket id of this helpdesk")
    return quote(cleaned, safe="")


def _text_to_html(body: str) -> str:
    """Freshdesk and Intercom take HTML bodies: escape the text and keep its line breaks."""
    paragraphs = [p for p in body.replace("\r\n", "\n").split("\n\n") if p.strip()]
    return "".join(f"<p>{escape(p).replace(chr(10), '<br>')}</p>" for p in paragraphs) or "<p></p>"


async def send_reply(
    helpdesk: Helpdesk,
    *,
    external_id: str,
    body: str,
    solve: bool,
    tags: list[str],
    client: httpx.AsyncClient,
    timeout: float,  # noqa: ASYNC109 - the per-request timeout httpx applies, part of the interface
) -> None:
    """Post ``body`` as a public reply on the helpdesk's ticket; tag it, and solve it when asked."""
    if not helpdesk.api_token:
        raise HelpdeskError(f"the helpdesk {helpdesk.name!r} has no API token, so crisisdesk cannot reply through it")
    ticket = _ticket_path(external_id)
    base = helpdesk.api_base_url.rstrip("/")
    try:
        if helpdesk.kind == HelpdeskKind.zendesk:
            await _zendesk(helpdesk, base, ticket, body, solve, tags, client, timeout)
        elif helpdesk.kind == HelpdeskKind.freshdesk:
            await _freshdesk(helpdesk, base, ticket, body, solve, tags, client, timeout)
        elif helpdesk.kind == HelpdeskKind.intercom:
            await _intercom(helpdesk, base, ticket, body, solve, client, timeout)
        else:
            raise HelpdeskError(f"crisisdesk cannot reply through a {helpdesk.kind} helpdesk")
    except httpx.TimeoutException:
        raise HelpdeskError(f"{helpdesk.name}: no answer within {timeout:g} s", retryable=True) from None
    except PrivateAddressRefused as exc:
        raise HelpdeskError(f"{helpdesk.name}: {exc}") from None
    except httpx.TransportError as exc:
        raise HelpdeskError(f"{helpdesk.name}: {type(exc).__name__}: {exc}", retryable=True) from None


async def _zendesk(
    helpdesk: Helpdesk,
    base: str,
    ticket: str,
    body: str,
    solve: bool,
    tags: list[str],
    client: httpx.AsyncClient,
    timeout: float,  # noqa: ASYNC109 - handed to httpx per request
) -> None:
    if not helpdesk.api_user:
        raise HelpdeskError(f"the helpdesk {helpdesk.name!r} has no API user (the agent's email the token belongs to)")
    update: dict[str, Any] = {"comment": {"body": body, "public": True}}
    if solve:
        update["status"] = "solved"
    if tags:
        update["additional_tags"] = list(tags)
    response = await client.put(
        f"{base}/api/v2/tickets/{ticket}.json",
        json={"ticket": update},
        auth=(f"{helpdesk.api_user}/token", helpdesk.api_token or ""),
        headers=_headers(),
        timeout=timeout,
    )
    _check(response, f"Zendesk ticket {ticket}")


async def _freshdesk(
    helpdesk: Helpdesk,
    base: str,
    ticket: str,
    body: str,
    solve: bool,
    tags: list[str],
    client: httpx.AsyncClient,
    timeout: float,  # noqa: ASYNC109 - handed to httpx per request
) -> None:
    # Freshdesk's API key is the user name; the password is ignored ("X" by convention).
    auth = (helpdesk.api_token or "", "X")
    url = f"{base}/api/v2/tickets/{ticket}"
    response = await client.post(
        f"{url}/reply", json={"body": _text_to_html(body)}, auth=auth, headers=_headers(), timeout=timeout
    )
    _check(response, f"Freshdesk ticket {ticket}")
    if not solve and not tags:
        return
    update: dict[str, Any] = {}
    if solve:
        update["status"] = FRESHDESK_RESOLVED
    if tags:
        # An update replaces the ticket's tags: keep the ones it has.
        current = await client.get(url, auth=auth, headers=_headers(), timeout=timeout)
        _check(current, f"Freshdesk ticket {ticket}")
        existing = _tags_of(current)
        update["tags"] = existing + [t for t in tags if t not in existing]
    response = await client.put(url, json=update, auth=auth, headers=_headers(), timeout=timeout)
    _check(response, f"Freshdesk ticket {ticket}")


def _tags_of(response: httpx.Response) -> list[str]:
    try:
        data = response.json()
    except ValueError:
        return []
    tags = data.get("tags") if isinstance(data, Mapping) else None
    return [t for t in tags if isinstance(t, str)] if isinstance(tags, list) else []


async def _intercom(
    helpdesk: Helpdesk,
    base: str,
    conversation: str,
    body: str,
    solve: bool,
    client: httpx.AsyncClient,
    timeout: float,  # noqa: ASYNC109 - handed to httpx per request
) -> None:
    if not helpdesk.api_user:
        raise HelpdeskError(f"the helpdesk {helpdesk.name!r} has no API user (the admin id replies are written as)")
    headers = {**_headers(), "authorization": f"Bearer {helpdesk.api_token}", "intercom-version": INTERCOM_VERSION}
    url = f"{base}/conversations/{conversation}"
    reply = {"message_type": "comment", "type": "admin", "admin_id": helpdesk.api_user, "body": _text_to_html(body)}
    response = await client.post(f"{url}/reply", json=reply, headers=headers, timeout=timeout)
    _check(response, f"Intercom conversation {conversation}")
    if solve:
        close = {"message_type": "close", "type": "admin", "admin_id": helpdesk.api_user}
        response = await client.post(f"{url}/parts", json=close, headers=headers, timeout=timeout)
        _check(response, f"Intercom conversation {conversation}")


def _headers() -> dict[str, str]:
    return {"accept": "application/json", "user-agent": USER_AGENT}


# --- the client -------------------------------------------------------------------------------


class PrivateAddressRefused(httpx.TransportError):
    """The helpdesk's host now resolves to a non-public address."""


class _PublicOnly(httpx.AsyncBaseTransport):
    """Refuses hosts that are, or resolve to, non-public addresses (checked again every 30 s)."""

    TTL = 30.0

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self._inner = inner
        self._checked: dict[tuple[str, int], tuple[float, str | None]] = {}

    async def _problem(self, host: str, port: int) -> str | None:
        now = time.monotonic()
        cached = self._checked.get((host, port))
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            addresses = [ipaddress.ip_address(host.strip("[]"))]
        except ValueError:
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except OSError:
                return None  # the request itself reports the DNS failure, as a retry
            addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
        answer = next((f"{host} resolves to {a}, a {p}" for a in addresses if (p := address_problem(a))), None)
        self._checked[(host, port)] = (now + self.TTL, answer)
        return answer

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        port = url.port or (443 if url.scheme == "https" else 80)
        problem = await self._problem(url.host, port)
        if problem:
            raise PrivateAddressRefused(f"{problem}; replies go only to public addresses", request=request)
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


def http_client(settings: Settings) -> httpx.AsyncClient:
    """The client for :func:`send_reply`: no redirects, the helpdesk timeout, public hosts only unless allowed."""
    transport: httpx.AsyncBaseTransport = httpx.AsyncHTTPTransport(retries=0)
    if not settings.allow_private_webhooks:
        transport = _PublicOnly(transport)
    return httpx.AsyncClient(transport=transport, follow_redirects=False, timeout=settings.helpdesk_timeout_seconds)


def api_host(helpdesk: Helpdesk) -> str:
    """The helpdesk API's host, for logs and pages (never the token)."""
    return urlsplit(helpdesk.api_base_url).netloc
