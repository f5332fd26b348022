"""Signing in and out, CSRF, role checks on every console route, users and API keys pages."""

from __future__ import annotations

import re
from typing import Any

import httpx
from fastapi.routing import iter_route_contexts
from sqlalchemy import func, select

from crisisdesk.auth import service
from crisisdesk.auth.models import ApiKey, Role, Scope, UserSession
from crisisdesk.kit.db import Database
from tests.fixtures.auth import PASSWORD, login, make_user
from tests.fixtures.console import HTML, field_error, sign_in


async def _sessions(db: Database) -> int:
    async with db.session() as s:
        return int(await s.scalar(select(func.count()).select_from(UserSession)) or 0)


def _login_token(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match
    return match.group(1)


async def test_login_sets_a_secure_session_cookie_and_logout_ends_it(client: httpx.AsyncClient, db: Database) -> None:
    async with db.session() as s:
        user = await make_user(s, email="ops@example.com")
    page = await client.get("/login?next=/console/incidents")
    assert page.status_code == 200 and 'name="csrf_token"' in page.text
    assert "crisisdesk_csrf" in page.headers["set-cookie"]
    form = {
        "email": "OPS@example.com",
        "password": PASSWORD,
        "csrf_token": _login_token(page.text),
        "next": "/console/incidents",
    }
    response = await client.post("/login", data=form)
    assert response.status_code == 303 and response.headers["location"] == "/console/incidents"
    cookie = next(v for k, v in response.headers.multi_items() if k == "set-cookie" and "crisisdesk_session=" in v)
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie and "Max-Age=43200" in cookie
    assert "Secure" not in cookie  # secure_cookies is off in the test settings
    console = await client.get("/console")
    assert console.status_code == 200 and user.name in console.text
    csrf = re.search(r'<meta name="csrf-token" content="([^"]+)">', console.text)
    assert csrf
    assert await _sessions(db) == 1

    refused = await client.post("/logout", data={"csrf_token": "forged"})
    assert refused.status_code == 403 and await _sessions(db) == 1
    response = await client.post("/logout", data={"csrf_token": csrf.group(1)})
    assert response.status_code == 303 and response.headers["location"] == "/login"
    assert await _sessions(db) == 0
    after = await client.get("/console", follow_redirects=False)
    assert after.status_code == 303 and after.headers["location"].startswith("/login")


async def test_secure_cookies_when_configured(client: httpx.AsyncClient, db: Database, app: Any) -> None:
    async with db.session() as s:
        user = await make_user(s)
    page = await client.get("/login")
    app.state.runtime.settings.secure_cookies = True
    response = await client.post(
        "/login", data={"email": user.email, "password": PASSWORD, "csrf_token": _login_token(page.text)}
    )
    cookie = next(v for k, v in response.headers.multi_items() if k == "set-cookie" and "crisisdesk_session=" in v)
    assert "Secure" in cookie


async def test_login_without_csrf_is_refused(client: httpx.AsyncClient, db: Database) -> None:
    async with db.session() as s:
        user = await make_user(s)
    await client.get("/login")
    response = await client.post("/login", data={"email": user.email, "password": PASSWORD}, headers=HTML)
    assert response.status_code == 403
    forged = await client.post("/login", data={"email": user.email, "password": PASSWORD, "csrf_token": "x"})
    assert forged.status_code == 403
    assert await _sessions(db) == 0 and "crisisdesk_session" not in client.cookies


async def test_wrong_password_gives_400_and_no_session(client: httpx.AsyncClient, db: Database) -> None:
    async with db.session() as s:
        user = await make_user(s)
    page = await client.get("/login")
    response = await client.post(
        "/login", data={"email": user.email, "password": "not it", "csrf_token": _login_token(page.text)}
    )
    assert response.status_code == 400
    assert "The email or password is wrong" in response.text
    assert f'value="{user.email}"' in response.text  # the email is kept
    assert "crisisdesk_session" not in client.cookies and await _sessions(db) == 0


async def test_next_only_follows_local_paths(client: httpx.AsyncClient, db: Database) -> None:
    async with db.session() as s:
        user = await make_user(s)
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
        page = await client.get("/login")
        response = await client.post(
            "/login",
            data={"email": user.email, "password": PASSWORD, "next": target, "csrf_token": _login_token(page.text)},
        )
        assert response.headers["location"] == "/console", target


def _console_routes(app: Any) -> list[tuple[str, str]]:
    routes = []
    for context in iter_route_contexts(app.router.routes):
        if context.path and context.methods and (context.path.startswith("/console") or context.path == "/logout"):
            path = re.sub(r"\{[^}]+\}", "x", context.path).replace("/console/severity/x", "/console/severity/SEV2")
            routes.extend((method, path) for method in sorted(context.methods) if method != "HEAD")
    return routes


async def test_every_console_route_refuses_anonymous_requests(client: httpx.AsyncClient, app: Any) -> None:
    routes = _console_routes(app)
    assert ("GET", "/console") in routes and ("POST", "/console/incidents") in routes and len(routes) > 20
    for method, path in routes:
        response = await client.request(
            method, path, follow_redirects=False, data={"x": "1"} if method == "POST" else None
        )
        if method == "GET":
            assert response.status_code == 303, (method, path, response.status_code)
            assert response.headers["location"].startswith("/login?next="), path
        else:
            assert response.status_code in (401, 403), (method, path, response.status_code)


async def test_viewers_cannot_write_anywhere(client: httpx.AsyncClient, db: Database, app: Any) -> None:
    _, csrf = await sign_in(client, db, role=Role.viewer)
    reads = [path for method, path in _console_routes(app) if method == "GET" and path != "/console/events"]
    for path in reads:
        response = await client.get(path, headers=HTML)
        expected = {
            "/console/users": 403,
            "/console/incidents/new": 403,
            "/console/maintenance/new": 403,
            # Writing messages: templates and composing from them.
            "/console/templates/new": 403,
            "/console/incidents/new/template": 403,
            "/console/incidents/x/compose": 403,
            # Declaring from an alert group is declaring.
            "/console/alerts/groups/x/declare": 403,
            # Managing schedules and escalation policies is for admins.
            "/console/oncall/schedules/new": 403,
            "/console/oncall/policies/new": 403,
            "/console/oncall/schedules/x/edit": 403,
            "/console/oncall/policies/x/edit": 403,
            # Only admins open other people's contact methods.
            "/console/oncall/people/x": 403,
        }
        assert response.status_code in (expected.get(path, 200), 404), (path, response.status_code)
    # Managing their own API keys (read-only ones) is the one thing viewers may post.
    writes = [
        path
        for method, path in _console_routes(app)
        if method == "POST" and path != "/logout" and not path.startswith("/console/api-keys")
    ]
    assert len(writes) > 10
    for path in writes:
        path = path.replace("/rules/x/", "/rules/1/")  # a notification rule's id is a number
        response = await client.post(path, data={"csrf_token": csrf, "status": "major_outage"}, headers=HTML)
        assert response.status_code == 403, (path, response.status_code)


async def test_console_posts_need_the_session_csrf_token(client: httpx.AsyncClient, db: Database) -> None:
    await sign_in(client, db)
    response = await client.post(
        "/console/incidents", data={"name": "x", "severity": "SEV1", "body": "y"}, headers=HTML
    )
    assert response.status_code == 403 and "CSRF" in response.text


async def test_admin_creates_users(client: httpx.AsyncClient, db: Database) -> None:
    _, csrf = await sign_in(client, db, role=Role.admin)
    response = await client.post(
        "/console/users",
        headers=HTML,
        data={
            "csrf_token": csrf,
            "name": "Dana Scully",
            "email": "dana@example.com",
            "role": "viewer",
            "password": "trust no one",
        },
    )
    assert response.status_code == 200 and "can now sign in" in response.text
    assert "dana@example.com" in response.text
    form = {"csrf_token": csrf, "name": "Dana", "email": "dana@example.com", "role": "viewer", "password": "12345678"}
    duplicate = await client.post("/console/users", headers=HTML, data=form)
    assert duplicate.status_code == 409 and "already exists" in (field_error(duplicate.text, "email") or "")
    form = {"csrf_token": csrf, "name": "Fox", "email": "fox@example.com", "role": "pilot", "password": "12345678"}
    short = await client.post("/console/users", headers=HTML, data=form)
    assert short.status_code == 422 and field_error(short.text, "role")
    assert 'value="fox@example.com"' in short.text
    other = httpx.AsyncClient(transport=client._transport, base_url="http://status.test")  # type: ignore[attr-defined]
    async with other:
        assert await login(other, "dana@example.com", "trust no one")


async def test_api_keys_show_the_secret_once_and_revoke(client: httpx.AsyncClient, db: Database) -> None:
    user, csrf = await sign_in(client, db)
    response = await client.post(
        "/console/api-keys", headers=HTML, data={"csrf_token": csrf, "name": "deploys", "scopes": ["read", "write"]}
    )
    assert response.status_code == 201
    secret = re.search(r'<code class="secret">(cdk_[^<]+)</code>', response.text)
    assert secret
    listing = await client.get("/console/api-keys")
    assert secret.group(1) not in listing.text and "deploys" in listing.text
    api = await client.get("/api/v1/incidents", headers={"authorization": f"Bearer {secret.group(1)}"})
    assert api.status_code == 200
    too_much = await client.post(
        "/console/api-keys", headers=HTML, data={"csrf_token": csrf, "name": "root", "scopes": "admin"}
    )
    assert too_much.status_code == 422 and field_error(too_much.text, "scopes")
    async with db.session() as s:
        key = await s.scalar(select(ApiKey).where(ApiKey.user_id == user.id))
        assert key is not None and (await s.scalar(select(func.count()).select_from(ApiKey))) == 1
    revoked = await client.post(f"/console/api-keys/{key.id}/revoke", data={"csrf_token": csrf})
    assert revoked.status_code == 303
    api = await client.get("/api/v1/incidents", headers={"authorization": f"Bearer {secret.group(1)}"})
    assert api.status_code == 401


async def test_users_manage_only_their_own_keys(client: httpx.AsyncClient, db: Database) -> None:
    async with db.session() as s:
        owner = await make_user(s)
        key, _ = await service.create_api_key(s, service.actor_for(owner), name="theirs", scopes=[Scope.read])
    _, csrf = await sign_in(client, db)
    assert "theirs" not in (await client.get("/console/api-keys")).text
    response = await client.post(f"/console/api-keys/{key.id}/revoke", data={"csrf_token": csrf}, headers=HTML)
    assert response.status_code == 403


async def test_live_js_is_served_and_included(client: httpx.AsyncClient, db: Database) -> None:
    script = await client.get("/static/live.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert "EventSource" in script.text and "/console/events" in script.text
    await sign_in(client, db)
    assert '<script src="/static/live.js" defer></script>' in (await client.get("/console")).text
    assert (await client.get("/static/app.css")).status_code == 200
