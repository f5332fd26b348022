"""The users and API keys API."""

from __future__ import annotations

import httpx

from crisisdesk.auth.models import ApiKey, Role, User
from crisisdesk.kit.db import Database
from tests.fixtures.api import count_rows, error_locs
from tests.fixtures.auth import api_key_headers, login, make_user

API = "/api/v1"


async def test_me_describes_the_key(client: httpx.AsyncClient, db: Database) -> None:
    me = await client.get(f"{API}/me", headers=await api_key_headers(db, Role.responder))
    assert me.status_code == 200
    assert me.json()["role"] == "responder" and me.json()["scopes"] == ["read", "write"]
    assert me.json()["via"] == "api_key"


async def test_admin_adds_users_others_cannot(client: httpx.AsyncClient, db: Database) -> None:
    admin = await api_key_headers(db, Role.admin)
    created = await client.post(
        f"{API}/users", headers=admin, json={"email": "New.Person@Example.com", "name": "New Person", "role": "viewer"}
    )
    assert created.status_code == 201
    assert created.json()["email"] == "new.person@example.com" and created.json()["role"] == "viewer"
    before = await count_rows(db, User)
    duplicate = await client.post(f"{API}/users", headers=admin, json={"email": "new.person@example.com", "name": "x"})
    assert duplicate.status_code == 409 and ["body", "email"] in error_locs(duplicate)
    bad_email = await client.post(f"{API}/users", headers=admin, json={"email": "nobody", "name": "x"})
    assert bad_email.status_code == 422 and ["body", "email"] in error_locs(bad_email)
    short = await client.post(f"{API}/users", headers=admin, json={"email": "a@b.co", "name": "x", "password": "123"})
    assert short.status_code == 422 and ["body", "password"] in error_locs(short)
    bad_role = await client.post(f"{API}/users", headers=admin, json={"email": "c@b.co", "name": "x", "role": "god"})
    assert bad_role.status_code == 422 and ["body", "role"] in error_locs(bad_role)
    refused = await client.post(
        f"{API}/users", headers=await api_key_headers(db), json={"email": "d@b.co", "name": "x"}
    )
    assert refused.status_code == 403
    assert await count_rows(db, User) == before + 1  # only the responder the last call created
    listed = await client.get(f"{API}/users", headers=admin)
    assert "new.person@example.com" in {u["email"] for u in listed.json()}
    assert all("password" not in str(u) for u in listed.json())


async def test_key_lifecycle_and_visibility(client: httpx.AsyncClient, db: Database) -> None:
    responder = await api_key_headers(db, Role.responder)
    created = await client.post(f"{API}/api-keys", headers=responder, json={"name": "deploy bot", "scopes": ["read"]})
    assert created.status_code == 201
    key = created.json()
    assert key["secret"].startswith(key["prefix"]) and key["scopes"] == ["read"]
    bot = {"authorization": f"Bearer {key['secret']}"}
    assert (await client.get(f"{API}/incidents", headers=bot)).status_code == 200
    mine = await client.get(f"{API}/api-keys", headers=responder)
    assert {k["name"] for k in mine.json()} == {"test", "deploy bot"}
    other = await api_key_headers(db, Role.responder)
    assert key["id"] not in {k["id"] for k in (await client.get(f"{API}/api-keys", headers=other)).json()}
    assert (await client.delete(f"{API}/api-keys/{key['id']}", headers=other)).status_code == 403
    assert (await client.delete(f"{API}/api-keys/nope", headers=responder)).status_code == 404
    assert (await client.delete(f"{API}/api-keys/{key['id']}", headers=responder)).status_code == 200
    assert (await client.get(f"{API}/incidents", headers=bot)).status_code == 401


async def test_empty_or_unknown_scopes_are_422(client: httpx.AsyncClient, db: Database) -> None:
    headers = await api_key_headers(db, Role.admin)
    before = await count_rows(db, ApiKey)
    for scopes in ([], ["root"], "read"):
        response = await client.post(f"{API}/api-keys", headers=headers, json={"name": "x", "scopes": scopes})
        assert response.status_code == 422 and any(loc[:2] == ["body", "scopes"] for loc in error_locs(response))
    assert await count_rows(db, ApiKey) == before


async def test_console_session_works_with_csrf_header(client: httpx.AsyncClient, db: Database) -> None:
    """The console's own scripts call the API with the session cookie; writes need the CSRF header."""
    async with db.session() as s:
        user = await make_user(s, role=Role.responder)
    csrf = await login(client, user.email)
    assert (await client.get(f"{API}/me")).json()["via"] == "session"
    body = {"name": "x", "severity": "SEV3", "body": "y"}
    assert (await client.post(f"{API}/incidents", json=body)).status_code == 403
    assert (await client.post(f"{API}/incidents", json=body, headers={"x-csrf-token": csrf})).status_code == 201
