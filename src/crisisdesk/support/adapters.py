"""Replies out through a helpdesk's own API: Zendesk, Freshdesk and Intercom.

:func:`send_reply` posts one public answer on the helpdesk's ticket (or conversation), adds the
tags it is given, and marks it solved when asked. It is two steps, so a caller that retries can
keep them apart: :func:`post_reply` is the one call the customer sees (Zendesk's tags and status
ride on it), and :func:`finish_reply` the calls after it (Freshdesk's tags and status, Intercom's
tags and close), which may be repeated without harm. It receives its HTTP client, so the caller
pools connections and tests point it at a local receiver; :func:`http_client` makes one that
connects only to public addresses unless ``CRISISDESK_ALLOW_PRIVATE_WEBHOOKS`` is set, since the
API address is an admin's input. A failure raises :class:`HelpdeskError` with the status, a
short excerpt of the answer and whether trying again later can help (timeouts, 429, 5xx).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
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
    """Post ``body`` as a public reply on the helpdesk's ticket; tag it, and solve it when asked.

    Both steps in one go: a caller that retries on failure uses :func:`post_reply` and
    :func:`finish_reply` apart, or a failure after the post would post the reply again.
    """
    await post_reply(
        helpdesk, external_id=external_id, body=body, solve=solve, tags=tags, client=client, timeout=timeout
    )
    if has_follow_up(helpdesk, solve=solve, tags=tags):
        await finish_reply(helpdesk, external_id=external_id, solve=solve, tags=tags, client=client, timeout=timeout)


def has_follow_up(helpdesk: Helpdesk, *, solve: bool, tags: list[str]) -> bool:
    """Whether :func:`finish_reply` has anything to do after the post (Zendesk does it all in one call)."""
    return helpdesk.kind != HelpdeskKind.zendesk and (solve or bool(tags))


async def post_reply(
    helpdesk: Helpdesk,
    *,
    external_id: str,
    body: str,
    solve: bool,
    tags: list[str],
    client: httpx.AsyncClient,
    timeout: float,  # noqa: ASYNC109 - the per-request timeout httpx applies
) -> None:
    """The public reply itself, the one call the customer sees: never repeat it once it succeeded.

    Zendesk takes the tags and the solved status in the same call; the others need :func:`finish_reply`.
    """
    ticket, base = _target(helpdesk, external_id)
    async with _calling(helpdesk, timeout):
        if helpdesk.kind == HelpdeskKind.zendesk:
            await _zendesk(helpdesk, base, ticket, body, solve, tags, client, timeout)
        elif helpdesk.kind == HelpdeskKind.freshdesk:
            url = f"{base}/api/v2/tickets/{ticket}/reply"
            payload = {"body": _text_to_html(body)}
            response = await client.post(
                url, json=payload, auth=_freshdesk_auth(helpdesk), headers=_headers(), timeout=timeout
            )
            _check(response, f"Freshdesk ticket {ticket}")
        elif helpdesk.kind == HelpdeskKind.intercom:
            reply = {
                "message_type": "comment",
                "type": "admin",
                "admin_id": helpdesk.api_user,
                "body": _text_to_html(body),
            }
            response = await client.post(
                f"{base}/conversations/{ticket}/reply", json=reply, headers=_intercom_headers(helpdesk), timeout=timeout
            )
            _check(response, f"Intercom conversation {ticket}")
        else:
            raise HelpdeskError(f"crisisdesk cannot reply through a {helpdesk.kind} helpdesk")


async def finish_reply(
    helpdesk: Helpdesk,
    *,
    external_id: str,
    solve: bool,
    tags: list[str],
    client: httpx.AsyncClient,
    timeout: float,  # noqa: ASYNC109 - the per-request timeout httpx applies
) -> None:
    """After the post: add the tags and mark the ticket solved (Freshdesk, Intercom). Safe to repeat."""
    if not has_follow_up(helpdesk, solve=solve, tags=tags):
        return
    ticket, base = _target(helpdesk, external_id)
    async with _calling(helpdesk, timeout):
        if helpdesk.kind == HelpdeskKind.freshdesk:
            await _freshdesk_update(helpdesk, base, ticket, solve, tags, client, timeout)
        elif helpdesk.kind == HelpdeskKind.intercom:
            await _intercom_finish(helpdesk, base, ticket, solve, tags, client, timeout)


def _target(helpdesk: Helpdesk, external_id: str) -> tuple[str, str]:
    """The ticket's path segment and the API's base URL, once the helpdesk can be called at all."""
    if not helpdesk.api_token:
        raise HelpdeskError(f"the helpdesk {helpdesk.name!r} has no API token, so crisisdesk cannot reply through it")
    if helpdesk.kind == HelpdeskKind.zendesk and not helpdesk.api_user:
        raise HelpdeskError(f"the helpdesk {helpdesk.name!r} has no API user (the agent's email the token belongs to)")
    if helpdesk.kind == HelpdeskKind.intercom and not helpdesk.api_user:
        raise HelpdeskError(f"the helpdesk {helpdesk.name!r} has no API user (the admin id replies are written as)")
    return _ticket_path(external_id), helpdesk.api_base_url.rstrip("/")


@contextlib.asynccontextmanager
async def _calling(
    helpdesk: Helpdesk,
    timeout: float,  # noqa: ASYNC109 - only named in the error
) -> AsyncIterator[None]:
    """Transport failures as :class:`HelpdeskError`, saying whether a retry can help."""
    try:
        yield
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


def _freshdesk_auth(helpdesk: Helpdesk) -> tuple[str, str]:
    # Freshdesk's API key is the user name; the password is ignored ("X" by convention).
    return (helpdesk.api_token or "", "X")


async def _freshdesk_update(
    helpdesk: Helpdesk,
    base: str,
    ticket: str,
    solve: bool,
    tags: list[str],
    client: httpx.AsyncClient,
    timeout: float,  # noqa: ASYNC109 - handed to httpx per request
) -> None:
    auth = _freshdesk_auth(helpdesk)
    url = f"{base}/api/v2/tickets/{ticket}"
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


def _intercom_headers(helpdesk: Helpdesk) -> dict[str, str]:
    return {**_headers(), "authorization": f"Bearer {helpdesk.api_token}", "intercom-version": INTERCOM_VERSION}


async def _intercom_finish(
    helpdesk: Helpdesk,
    base: str,
    conversation: str,
    solve: bool,
    tags: list[str],
    client: httpx.AsyncClient,
    timeout: float,  # noqa: ASYNC109 - handed to httpx per request
) -> None:
    headers = _intercom_headers(helpdesk)
    url = f"{base}/conversations/{conversation}"
    for name in tags:
        # Intercom tags a conversation by the tag's id: POST /tags finds the tag by name or creates it.
        found = await client.post(f"{base}/tags", json={"name": name}, headers=headers, timeout=timeout)
        _check(found, f"Intercom tag {name!r}")
        tag_id = _id_of(found)
        if tag_id is None:
            raise HelpdeskError(f"Intercom tag {name!r}: the answer names no tag id: {_excerpt(found.text)}")
        tagged = await client.post(
            f"{url}/tags", json={"id": tag_id, "admin_id": helpdesk.api_user}, headers=headers, timeout=timeout
        )
        _check(tagged, f"Intercom conversation {conversation}")
    if solve:
        close = {"message_type": "close", "type": "admin", "admin_id": helpdesk.api_user}
        response = await client.post(f"{url}/parts", json=close, headers=headers, timeout=timeout)
        _check(response, f"Intercom conversation {conversation}")


def _id_of(response: httpx.Response) -> str | None:
    try:
        data = response.json()
    except ValueError:
        return None
    value = data.get("id") if isinstance(data, Mapping) else None
    return str(value) if isinstance(value, str | int) and not isinstance(value, bool) and str(value) else None


def _headers() -> dict[str, str]:
    return {"accept": "application/json", "user-agent": USER_AGENT}


# --- the client -------------------------------------------------------------------------------


class PrivateAddressRefused(httpx.TransportError):
    """The helpdesk's host is, or now resolves to, a non-public address."""


Resolve = Callable[[str, int], Awaitable[list[str]]]


async def _lookup(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


class _PublicOnly(httpx.AsyncBaseTransport):
    """Connects only to public addresses, and only to the very address it checked.

    A host name is resolved here and every address it has must be public; the request then goes
    to the first of them, with the name kept in the Host header and as the TLS server name. httpx
    never resolves the name itself, so an answer that changes between the check and the
    connection (DNS rebinding) cannot send the request elsewhere. A name that does not resolve is
    refused here (a retry) rather than left to a second lookup. Answers are kept 30 s.
    """

    TTL = 30.0

    def __init__(self, inner: httpx.AsyncBaseTransport, *, resolve: Resolve = _lookup) -> None:
        self._inner = inner
        self._resolve = resolve
        self._checked: dict[tuple[str, int], tuple[float, str, str | None]] = {}

    async def _address(self, host: str, port: int) -> tuple[str, str | None]:
        """The address to connect to, and why it is refused (None when it is public)."""
        try:
            literal = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            pass
        else:
            problem = address_problem(literal)
            return host, f"{host} is a {problem}" if problem else None
        now = time.monotonic()
        cached = self._checked.get((host, port))
        if cached is not None and cached[0] > now:
            return cached[1], cached[2]
        try:
            found = [ipaddress.ip_address(a.split("%")[0]) for a in await self._resolve(host, port)]
        except (OSError, UnicodeError, ValueError) as exc:
            raise httpx.ConnectError(f"{host} does not resolve to an address: {exc}") from None
        if not found:
            raise httpx.ConnectError(f"{host} does not resolve to an address")
        problem = next((f"{host} resolves to {a}, a {p}" for a in found if (p := address_problem(a))), None)
        self._checked[(host, port)] = (now + self.TTL, str(found[0]), problem)
        return str(found[0]), problem

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        port = url.port or (443 if url.scheme == "https" else 80)
        try:
            address, problem = await self._address(url.host, port)
        except httpx.ConnectError as exc:
            raise httpx.ConnectError(str(exc), request=request) from None
        if problem:
            raise PrivateAddressRefused(f"{problem}; replies go only to public addresses", request=request)
        if address != url.host:
            # The Host header was set from the name when the request was built, and stays.
            request.url = url.copy_with(host=address)
            if url.scheme == "https":
                request.extensions = {**request.extensions, "sni_hostname": url.host}
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
