"""Checking and normalising subscriber addresses: email, phone numbers and webhook URLs.

Webhook URLs are checked twice: when they are given (scheme, and every address the host
resolves to must be public) and again when a message is sent, because a host that resolved
publicly at signup can later resolve to 127.0.0.1 or a cloud metadata address (DNS rebinding).
:class:`PublicOnlyResolver` refuses such answers inside the HTTP client's connector, and
:class:`SendGuard` covers hosts given as IP literals, which the connector never resolves.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
import weakref
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import phonenumbers
from aiohttp.abc import AbstractResolver, ResolveResult
from email_validator import EmailNotValidError, validate_email

from crisisdesk.kit.errors import InvalidInput
from crisisdesk.notify.models import Channel

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_URL_LENGTH = 2048  # the width of Subscriber.address


def normalize_email(value: str, *, field: str = "address") -> str:
    """A valid email address, lower-cased; no DNS lookups."""
    candidate = (value or "").strip()
    if not candidate:
        raise InvalidInput("Enter an email address.", field=field)
    try:
        checked = validate_email(candidate, check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidInput(f"{candidate!r} is not a valid email address: {exc}", field=field) from exc
    return checked.normalized.lower()


def normalize_phone(value: str, *, field: str = "address") -> str:
    """A valid phone number in E.164 form (``+14155550123``); it must carry its country code."""
    candidate = (value or "").strip()
    if not candidate:
        raise InvalidInput("Enter a phone number.", field=field)
    if not candidate.startswith(("+", "00")):
        raise InvalidInput(
            f"{candidate!r} has no country code: write the number in international form, e.g. +14155550123.",
            field=field,
        )
    if candidate.startswith("00"):
        candidate = "+" + candidate[2:]
    try:
        number = phonenumbers.parse(candidate, None)
    except phonenumbers.NumberParseException as exc:
        raise InvalidInput(f"{candidate!r} is not a phone number: {exc}", field=field) from exc
    if not phonenumbers.is_valid_number(number):
        raise InvalidInput(f"{candidate!r} is not a valid phone number for its country code.", field=field)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def address_problem(address: IPAddress) -> str | None:
    """Why a webhook may not be sent to this IP address, or None when it is public."""
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped or address.sixtofour
        if mapped is not None:
            problem = address_problem(mapped)
            # Callers write "a <problem>": the IPv6 form goes after, not as "a an IPv4-mapped …".
            return f"{problem} written as IPv6" if problem else None
    if address.is_unspecified:
        return "unspecified address"
    if address.is_loopback:
        return "loopback address"
    if address.is_link_local:
        return "link-local address"
    if address.is_multicast:
        return "multicast address"
    if address.is_reserved:
        return "reserved address"
    if address.is_private:
        return "private address"
    if not address.is_global:
        return "non-public address"
    return None


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


async def _resolve(host: str, port: int) -> list[IPAddress]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    # Scope ids ("fe80::1%eth0") are stripped: they do not change what kind of address it is.
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]


async def check_webhook_url(value: str, *, allow_private: bool, field: str = "address") -> str:
    """A webhook URL that may be posted to: http(s), resolving, and public unless ``allow_private``."""
    url = (value or "").strip()
    if not url:
        raise InvalidInput("Enter a URL.", field=field)
    if len(url) > MAX_URL_LENGTH:
        raise InvalidInput(f"The URL is longer than {MAX_URL_LENGTH} characters.", field=field)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidInput(f"{url!r} is not a valid URL: {exc}", field=field) from exc
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise InvalidInput(f"The URL must start with https:// (not {scheme or 'no scheme'}).", field=field)
    if scheme == "http" and not allow_private:
        raise InvalidInput("The URL must use https:// so the messages are encrypted in transit.", field=field)
    host = parts.hostname
    if not host:
        raise InvalidInput(f"{url!r} names no host.", field=field)
    literal = _literal(host)
    if literal is not None:
        addresses = [literal]
    else:
        try:
            addresses = await _resolve(host, port or (443 if scheme == "https" else 80))
        except (OSError, UnicodeError) as exc:
            raise InvalidInput(f"The host {host!r} does not resolve to an address.", field=field) from exc
    if not allow_private:
        for address in addresses:
            problem = address_problem(address)
            if problem:
                where = f"{host} is" if literal is not None else f"The host {host!r} resolves to {address},"
                raise InvalidInput(f"{where} a {problem}; webhooks may only be sent to public addresses.", field=field)
    return url


async def check_address(channel: Channel | str, value: str, *, allow_private: bool, field: str = "address") -> str:
    """The normalised address for a subscriber on ``channel``, or :class:`InvalidInput` naming ``field``."""
    match Channel(channel):
        case Channel.email:
            return normalize_email(value, field=field)
        case Channel.sms:
            return normalize_phone(value, field=field)
        case Channel.webhook | Channel.slack | Channel.teams:
            return await check_webhook_url(value, allow_private=allow_private, field=field)
        case _:
            raise InvalidInput(f"Nobody subscribes to {channel}: it posts to this installation's account.", field=field)


def shown_address(channel: str, address: str) -> str:
    """An address as the console shows it: Slack and Teams webhook URLs are secrets, so only their host."""
    if channel in (Channel.slack, Channel.teams):
        parts = urlsplit(address)
        return f"{parts.scheme}://{parts.netloc}/…{address[-4:]}"
    if channel == Channel.webhook:
        # A query string often carries a token.
        parts = urlsplit(address)
        return f"{parts.scheme}://{parts.netloc}{parts.path}" + ("?…" if parts.query else "")
    return address


class PrivateAddressRefused(OSError):
    """A webhook host now resolves to a non-public address (DNS rebinding, or a changed record)."""


class PublicOnlyResolver(AbstractResolver):
    """An aiohttp resolver that refuses hosts resolving to any non-public address."""

    def __init__(self) -> None:
        self._inner = aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        for result in results:
            problem = address_problem(ipaddress.ip_address(result["host"].split("%")[0]))
            if problem:
                raise PrivateAddressRefused(f"{host} resolves to {result['host']}, a {problem}")
        return results

    async def close(self) -> None:
        await self._inner.close()


_guarded_sessions: weakref.WeakSet[aiohttp.ClientSession] = weakref.WeakSet()


def http_session(*, allow_private: bool, limit: int = 0, **kwargs: Any) -> aiohttp.ClientSession:
    """The shared client session for HTTP channels; refuses non-public addresses unless allowed."""
    connector_args: dict[str, Any] = {"limit": limit, "ttl_dns_cache": 60}
    if not allow_private:
        connector_args["resolver"] = PublicOnlyResolver()
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(**connector_args), **kwargs)
    if not allow_private:
        _guarded_sessions.add(session)
    return session


class SendGuard:
    """The send-time check of an HTTP channel: may we connect to this host now?

    With a session from :func:`http_session`, the resolver checks names and only IP literals
    are looked at here; with another session, names are resolved here too (cached briefly).
    """

    TTL = 30.0

    def __init__(self, session: aiohttp.ClientSession, *, allow_private: bool) -> None:
        self.allow_private = allow_private
        self._resolver_guards = session in _guarded_sessions
        self._cache: dict[tuple[str, int], tuple[float, str | None]] = {}

    async def problem(self, host: str, port: int) -> str | None:
        """Why sending to ``host`` is refused now, or None."""
        if self.allow_private:
            return None
        key = (host, port)
        cached = self._cache.get(key)
        now = time.monotonic()
        if cached is not None and cached[0] > now:
            return cached[1]
        literal = _literal(host)
        if literal is not None:
            problem = address_problem(literal)
            answer = f"{host} is a {problem}" if problem else None
        elif self._resolver_guards:
            answer = None
        else:
            try:
                addresses = await _resolve(host, port)
            except OSError:
                return None  # the send itself reports the DNS failure, as a retry
            answer = next(
                (f"{host} resolves to {a}, a {p}" for a in addresses if (p := address_problem(a))),
                None,
            )
        self._cache[key] = (now + self.TTL, answer)
        return answer
