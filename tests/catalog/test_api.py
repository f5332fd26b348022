"""The component API: listing, creating (admins) and setting status, with bad input refused."""

from __future__ import annotations

import httpx

from crisisdesk.auth.models import Role
from crisisdesk.catalog.models import Component, ComponentStatusChange
from crisisdesk.kit.db import Database
from tests.fixtures.api import count_rows, error_locs
from tests.fixtures.auth import api_key_headers

API = "/api/v1"


async def test_admin_creates_groups_and_components(client: httpx.AsyncClient, db: Database) -> None:
    admin = await api_key_headers(db, Role.admin)
    group = await client.post(f"{API}/components", headers=admin, json={"name": "Sign-in", "is_group": True})
    assert group.status_code == 201 and group.json()["is_group"] is True
    sso = await client.post(
        f"{API}/components",
        headers=admin,
        json={"name": "SSO", "group_id": group.json()["id"], "description": "SAML and OIDC"},
    )
    assert sso.status_code == 201
    assert sso.json()["status"] == "operational" and sso.json()["group_id"] == group.json()["id"]
    listed = await client.get(f"{API}/components", headers=await api_key_headers(db, Role.viewer))
    assert [c["name"] for c in listed.json()] == ["Sign-in", "SSO"]
    one = await client.get(f"{API}/components/{sso.json()['id']}", headers=admin)
    assert one.json()["description"] == "SAML and OIDC"


async def test_a_responder_cannot_create_components(client: httpx.AsyncClient, db: Database) -> None:
    response = await client.post(f"{API}/components", headers=await api_key_headers(db), json={"name": "x"})
    assert response.status_code == 403
    assert await count_rows(db, Component) == 0


async def test_bad_component_input_names_the_field(client: httpx.AsyncClient, db: Database) -> None:
    """Empty name, unknown group, a group inside a group: each refused naming its field; nothing stored."""
    admin = await api_key_headers(db, Role.admin)
    empty = await client.post(f"{API}/components", headers=admin, json={"name": ""})
    assert empty.status_code == 422 and ["body", "name"] in error_locs(empty)
    blank = await client.post(f"{API}/components", headers=admin, json={"name": "   "})
    assert blank.status_code == 422 and ["body", "name"] in error_locs(blank)
    orphan = await client.post(f"{API}/components", headers=admin, json={"name": "x", "group_id": "nope"})
    assert orphan.status_code == 404 and ["body", "group_id"] in error_locs(orphan)
    assert await count_rows(db, Component) == 0
    group = (await client.post(f"{API}/components", headers=admin, json={"name": "G", "is_group": True})).json()
    nested = await client.post(
        f"{API}/components", headers=admin, json={"name": "H", "is_group": True, "group_id": group["id"]}
    )
    assert nested.status_code == 422 and ["body", "group_id"] in error_locs(nested)
    assert await count_rows(db, Component) == 1
    for position in (1_000_001, 2**40, 10**20):
        far = await client.post(f"{API}/components", headers=admin, json={"name": "Far", "position": position})
        assert far.status_code == 422 and error_locs(far) == [["body", "position"]], far.text
    assert await count_rows(db, Component) == 1


async def test_set_status_records_history(client: httpx.AsyncClient, db: Database) -> None:
    admin = await api_key_headers(db, Role.admin)
    responder = await api_key_headers(db)
    web = (await client.post(f"{API}/components", headers=admin, json={"name": "Web app"})).json()
    changed = await client.patch(
        f"{API}/components/{web['id']}", headers=responder, json={"status": "degraded_performance"}
    )
    assert changed.status_code == 200 and changed.json()["status"] == "degraded_performance"
    assert await count_rows(db, ComponentStatusChange) == 2


async def test_invalid_or_unknown_status_change_is_refused(client: httpx.AsyncClient, db: Database) -> None:
    """An invalid status is 422 on body.status, an unknown id 404, a group 422; no history written."""
    admin = await api_key_headers(db, Role.admin)
    web = (await client.post(f"{API}/components", headers=admin, json={"name": "Web app"})).json()
    group = (await client.post(f"{API}/components", headers=admin, json={"name": "G", "is_group": True})).json()
    bad = await client.patch(f"{API}/components/{web['id']}", headers=admin, json={"status": "broken"})
    assert bad.status_code == 422 and ["body", "status"] in error_locs(bad)
    missing = await client.patch(f"{API}/components/nope", headers=admin, json={"status": "major_outage"})
    assert missing.status_code == 404
    on_group = await client.patch(f"{API}/components/{group['id']}", headers=admin, json={"status": "major_outage"})
    assert on_group.status_code == 422
    assert await count_rows(db, ComponentStatusChange) == 1
