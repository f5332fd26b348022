"""Address checks: what a subscriber may give, and where a webhook may be sent."""

from __future__ import annotations

import ipaddress

import aiohttp
import pytest

from crisisdesk.kit.errors import InvalidInput
from crisisdesk.notify.addresses import (
    PrivateAddressRefused,
    SendGuard,
    address_problem,
    check_address,
    check_webhook_url,
    http_session,
    normalize_email,
    normalize_phone,
)
from crisisdesk.notify.models import Channel
from tests.fixtures.peers import HttpReceiver
from tests.fixtures.ports import worker_port

PORT = worker_port(18210)


def test_email_is_normalised_and_lower_cased() -> None:
    assert normalize_email("  Alice.Smith@Example.COM ") == "alice.smith@example.com"


@pytest.mark.parametrize("bad", ["", "alice", "alice@", "@example.com", "a b@example.com", "alice@exa mple.com"])
def test_malformed_email_is_refused_naming_the_field(bad: str) -> None:
    with pytest.raises(InvalidInput) as info:
        normalize_email(bad, field="email")
    assert info.value.field == "email"
    assert info.value.status_code == 422


def test_phone_numbers_become_e164() -> None:
    assert normalize_phone("+1 (415) 555-2671") == "+14155552671"
    assert normalize_phone("0044 20 7946 0958") == "+442079460958"


def test_phone_without_country_code_is_refused_with_a_hint() -> None:
    with pytest.raises(InvalidInput, match=r"no country code.*international form") as info:
        normalize_phone("415 555 2671", field="phone")
    assert info.value.field == "phone"


@pytest.mark.parametrize("bad", ["+1 555", "+999 123", "call me", "+"])
def test_invalid_phone_numbers_are_refused(bad: str) -> None:
    with pytest.raises(InvalidInput):
        normalize_phone(bad)


@pytest.mark.parametrize(
    ("url", "rule"),
    [
        ("ftp://hooks.example.com/x", "https://"),
        ("javascript:alert(1)", "https://"),
        ("file:///etc/passwd", "https://"),
        ("http://8.8.8.8/hook", "must use https"),
        ("https://127.0.0.1/hook", "loopback"),
        ("https://localhost:8443/hook", "loopback"),
        ("https://10.1.2.3/hook", "private"),
        ("https://192.168.0.10/hook", "private"),
        ("https://172.16.5.4/hook", "private"),
        ("https://169.254.169.254/latest/meta-data", "link-local"),
        ("https://0.0.0.0/hook", "unspecified"),
        ("https://224.0.0.1/hook", "multicast"),
        ("https://100.64.0.1/hook", "non-public"),
        ("https://240.0.0.1/hook", "reserved"),
        ("https://[::1]/hook", "loopback"),
        ("https://[fe80::1]/hook", "link-local"),
        ("https://[fd00::1]/hook", "private"),
        ("https://[::ffff:10.0.0.1]/hook", "is a private address written as IPv6;"),
        ("https://[::ffff:127.0.0.1]/hook", "is a loopback address written as IPv6;"),
        ("https:///nohost", "names no host"),
        ("https://example.com:99999/", "not a valid URL"),
        ("https://no-such-host.invalid/hook", "does not resolve"),
    ],
)
async def test_webhook_urls_that_are_not_public_https_are_refused(url: str, rule: str) -> None:
    with pytest.raises(InvalidInput, match=rule) as info:
        await check_webhook_url(url, allow_private=False, field="url")
    assert info.value.field == "url"


async def test_public_https_url_is_accepted() -> None:
    assert (
        await check_webhook_url(" https://8.8.8.8/hooks/status ", allow_private=False) == "https://8.8.8.8/hooks/status"
    )
    assert await check_webhook_url("https://[2001:4860:4860::8888]/h", allow_private=False)


async def test_allow_private_lets_loopback_and_plain_http_through() -> None:
    assert await check_webhook_url("http://127.0.0.1:18210/hook", allow_private=True)
    assert await check_webhook_url("http://localhost/hook", allow_private=True)
    # Still only HTTP, and the host must still resolve.
    with pytest.raises(InvalidInput, match="https://"):
        await check_webhook_url("gopher://127.0.0.1/", allow_private=True)
    with pytest.raises(InvalidInput, match="does not resolve"):
        await check_webhook_url("http://no-such-host.invalid/", allow_private=True)


async def test_check_address_dispatches_per_channel() -> None:
    assert await check_address(Channel.email, "Bob@Example.com", allow_private=False) == "bob@example.com"
    assert await check_address("sms", "+14155552671", allow_private=False) == "+14155552671"
    assert await check_address(Channel.slack, "https://8.8.8.8/services/T/B/x", allow_private=False)
    with pytest.raises(InvalidInput, match="loopback"):
        await check_address(Channel.teams, "https://127.0.0.1/x", allow_private=False)
    with pytest.raises(InvalidInput):
        await check_address(Channel.mastodon, "@me@example.social", allow_private=False)


def test_address_rules() -> None:
    assert address_problem(ipaddress.ip_address("8.8.8.8")) is None
    assert address_problem(ipaddress.ip_address("2001:4860:4860::8888")) is None
    assert address_problem(ipaddress.ip_address("::")) == "unspecified address"
    assert address_problem(ipaddress.ip_address("2002:0a00:0001::1")) == "private address written as IPv6"


async def test_guarded_session_refuses_a_name_that_now_resolves_to_loopback() -> None:
    """DNS rebinding: the name passed the signup check, now it points at loopback; no request leaves."""
    async with HttpReceiver(PORT) as receiver, http_session(allow_private=False) as session:
        with pytest.raises(aiohttp.ClientConnectorError) as info:
            await session.post(f"http://localhost:{PORT}/hook", data=b"{}")
        assert isinstance(info.value.os_error, PrivateAddressRefused)
        assert receiver.count == 0
        guard = SendGuard(session, allow_private=False)
        assert await guard.problem("127.0.0.1", PORT) == "127.0.0.1 is a loopback address"
        assert await guard.problem("localhost", PORT) is None  # left to the resolver


async def test_guard_resolves_names_itself_for_a_plain_session() -> None:
    async with aiohttp.ClientSession() as session:
        guard = SendGuard(session, allow_private=False)
        problem = await guard.problem("localhost", PORT)
        assert problem is not None and "loopback" in problem
        assert await SendGuard(session, allow_private=True).problem("localhost", PORT) is None


async def test_allowed_session_reaches_loopback() -> None:
    async with HttpReceiver(PORT) as receiver, http_session(allow_private=True) as session:
        async with session.post(f"http://localhost:{PORT}/hook", data=b"{}") as response:
            assert response.status == 200
        assert receiver.count == 1
