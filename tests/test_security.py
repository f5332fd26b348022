"""Security: every non-public route refuses anonymous requests; keys and passwords are stored safely."""

from __future__ import annotations

import re

import httpx
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from sqlalchemy import select

from crisisdesk.auth.models import Role, Scope, User
from crisisdesk.kit.db import Database
from crisisdesk.models import metadata
from tests.fixtures.api import error_locs
from tests.fixtures.auth import PASSWORD, api_key_headers, make_user

# Everything reachable without signing in. A route not listed here must refuse anonymous requests,
# so a new route is private unless someone adds it here on purpose.
PUBLIC_ROUTES = {
    ("GET", "/api/openapi.json"),
    ("GET", "/api/docs"),
    ("GET", "/status/live"),
    ("GET", "/login"),
    ("POST", "/login"),
    ("GET", "/healthz"),
    # Subscribing, confirming and managing a subscription: the token in the link is the key.
    ("GET", "/subscribe"),
    ("POST", "/subscribe"),
    ("GET", "/subscribe/sms/{ref}"),
    ("POST", "/subscribe/sms/{ref}"),
    ("GET", "/subscriptions/{token}"),
    ("POST", "/subscriptions/{token}"),
    ("GET", "/subscriptions/{token}/confirm"),
    ("GET", "/subscriptions/{token}/unsubscribe"),
    ("POST", "/subscriptions/{token}/unsubscribe"),
    # Alert sources: the token in the URL (or the Events v2 routing_key) is the key.
    ("POST", "/hooks/{token}"),
    ("POST", "/v2/enqueue"),
    # Helpdesk webhooks: the token in the URL routes, the vendor's signature authenticates.
    ("POST", "/support/hooks/{token}"),
    # A page's acknowledge link (the token is the key; only the POST acknowledges) and the heartbeat.
    ("GET", "/pages/ack/{token}"),
    ("POST", "/pages/ack/{token}"),
    ("GET", "/heartbeat"),
    # Private status pages sign their visitors in themselves (magic link or a trusted SSO header);
    # without a session a GET goes to /private and a POST is answered 401 with the sign-in form.
    ("GET", "/private"),
    ("POST", "/private/login"),
    ("GET", "/private/login/{token}"),
    ("POST", "/private/login/{token}"),
    ("POST", "/private/logout"),
    ("GET", "/private/status"),
    ("GET", "/private/notes/{note_id}"),
    ("POST", "/private/subscriptions"),
    ("POST", "/private/subscriptions/{subscriber_id}/delete"),
}
PUBLIC_MOUNTS = {"/static"}
# Served from the in-memory snapshot by PublicSiteMiddleware, in front of the routes.
SNAPSHOT_PATHS = ["/", "/api/v2/status.json"]


def _routes(app: FastAPI) -> list[tuple[str, str]]:
    """Every (method, path template) the application answers, HEAD aside."""
    found = []
    for context in iter_route_contexts(app.router.routes):
        path = context.path
        methods = context.methods
        if path is None or path in PUBLIC_MOUNTS:
            continue
        assert methods, f"{path} is neither a route with methods nor a known public mount"
        found.extend((method, path) for method in sorted(methods) if method != "HEAD")
    return found


def _concrete(path: str) -> str:
    """Fill every path parameter with a dummy value (a number for int converters)."""
    return re.sub(r"\{[^}:]+(:[^}]+)?\}", lambda m: "1" if m.group(1) in (":int", ":float") else "x", path)


async def test_every_non_public_route_refuses_anonymous_requests(app: FastAPI, client: httpx.AsyncClient) -> None:
    routes = _routes(app)
    assert len(routes) > 30, "the route walk found suspiciously few routes"
    assert PUBLIC_ROUTES <= set(routes), f"listed as public but not routed: {PUBLIC_ROUTES - set(routes)}"
    failures = []
    for method, template in routes:
        if (method, template) in PUBLIC_ROUTES:
            continue
        path = _concrete(template)
        response = await client.request(
            method, path, headers={"accept": "text/html"} if not path.startswith("/api/") else {}
        )
        if path.startswith("/api/"):
            ok = response.status_code == 401
        elif method == "GET":
            ok = response.status_code == 303 and response.headers["location"].startswith("/login")
        else:
            ok = response.status_code == 401
        if not ok:
            failures.append(f"{method} {path} -> {response.status_code} {response.headers.get('location', '')}")
    assert not failures, "anonymous requests were not refused:\n" + "\n".join(failures)


async def test_public_paths_answer_anonymously(client: httpx.AsyncClient) -> None:
    for path in [*SNAPSHOT_PATHS, "/healthz", "/api/openapi.json", "/login"]:
        response = await client.get(path)
        assert response.status_code == 200, f"{path} -> {response.status_code}"


async def test_an_unknown_or_malformed_key_is_401(client: httpx.AsyncClient) -> None:
    for authorization in ("Bearer cdk_not-a-real-key", "Bearer ", "Basic YWRtaW46YWRtaW4="):
        response = await client.get("/api/v1/incidents", headers={"authorization": authorization})
        assert response.status_code == 401, authorization


async def test_api_keys_are_stored_hashed(client: httpx.AsyncClient, db: Database) -> None:
    """The secret appears in no column of any table; only its digest and a short prefix are kept."""
    headers = await api_key_headers(db, Role.admin)
    created = await client.post("/api/v1/api-keys", headers=headers, json={"name": "ci", "scopes": ["read"]})
    assert created.status_code == 201
    secret = created.json()["secret"]
    assert secret.startswith("cdk_") and len(secret) > 30
    assert (await client.get("/api/v1/me", headers={"authorization": f"Bearer {secret}"})).status_code == 200
    secrets_used = [secret, headers["authorization"].removeprefix("Bearer ")]
    async with db.sessionmaker() as session:
        for table in metadata.sorted_tables:
            for row in (await session.execute(select(table))).all():
                text = repr(tuple(row))
                for value in secrets_used:
                    assert value not in text, f"an API key secret is stored in {table.name}"
                    assert value[12:] not in text, f"most of an API key secret is stored in {table.name}"
    listed = await client.get("/api/v1/api-keys", headers=headers)
    assert all("secret" not in key for key in listed.json())


async def test_a_revoked_key_gets_401(client: httpx.AsyncClient, db: Database) -> None:
    headers = await api_key_headers(db, Role.responder)
    key_id = (await client.get("/api/v1/api-keys", headers=headers)).json()[0]["id"]
    revoked = await client.delete(f"/api/v1/api-keys/{key_id}", headers=headers)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    after = await client.get("/api/v1/incidents", headers=headers)
    assert after.status_code == 401 and "revoked" in after.json()["detail"][0]["msg"]


async def test_a_read_scoped_key_gets_403_on_every_kind_of_write(client: httpx.AsyncClient, db: Database) -> None:
    headers = await api_key_headers(db, Role.admin, scopes=[Scope.read])
    writes = [
        ("POST", "/api/v1/incidents", {"name": "x", "severity": "SEV2", "body": "y"}),
        ("PATCH", "/api/v1/components/x", {"status": "major_outage"}),
        ("POST", "/api/v1/components", {"name": "x"}),
        ("POST", "/api/v1/users", {"email": "a@example.com", "name": "A"}),
        ("PUT", "/api/v1/severity-policies/SEV1", {"cadence_minutes": 5}),
        (
            "POST",
            "/api/v1/maintenances",
            {
                "name": "x",
                "body": "y",
                "scheduled_for": "2030-01-01T00:00:00Z",
                "scheduled_until": "2030-01-01T01:00:00Z",
            },
        ),
    ]
    for method, path, body in writes:
        response = await client.request(method, path, headers=headers, json=body)
        assert response.status_code == 403, f"{method} {path} -> {response.status_code}"


async def test_a_read_key_cannot_mint_a_write_key(client: httpx.AsyncClient, db: Database) -> None:
    headers = await api_key_headers(db, Role.responder, scopes=[Scope.read])
    response = await client.post("/api/v1/api-keys", headers=headers, json={"name": "x", "scopes": ["read", "write"]})
    assert response.status_code == 403 and ["body", "scopes"] in error_locs(response)


async def test_a_viewers_key_cannot_get_write_scope(client: httpx.AsyncClient, db: Database) -> None:
    headers = await api_key_headers(db, Role.viewer)
    me = await client.get("/api/v1/me", headers=headers)
    assert me.json()["scopes"] == ["read"]
    response = await client.post("/api/v1/api-keys", headers=headers, json={"name": "x", "scopes": ["write"]})
    assert response.status_code in (403, 422) and ["body", "scopes"] in error_locs(response)
    admin = await api_key_headers(db, Role.admin)
    for_viewer = await client.post(
        "/api/v1/api-keys", headers=admin, json={"name": "x", "scopes": ["write"], "user_id": me.json()["id"]}
    )
    assert for_viewer.status_code == 422 and ["body", "scopes"] in error_locs(for_viewer)


async def test_passwords_are_stored_as_argon2id(client: httpx.AsyncClient, db: Database) -> None:
    async with db.session() as session:
        await make_user(session, email="hashed@example.com")
    admin = await api_key_headers(db, Role.admin)
    created = await client.post(
        "/api/v1/users",
        headers=admin,
        json={"email": "api-user@example.com", "name": "Api", "password": "another long secret"},
    )
    assert created.status_code == 201 and "password" not in created.text
    async with db.sessionmaker() as session:
        hashes = dict((await session.execute(select(User.email, User.password_hash))).all())
    for email, plain in (("hashed@example.com", PASSWORD), ("api-user@example.com", "another long secret")):
        assert hashes[email].startswith("$argon2id$")
        assert plain not in hashes[email]
