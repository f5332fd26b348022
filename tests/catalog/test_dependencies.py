"""Component dependencies: set by API and console, cycles and self-dependencies refused, followed
transitively by customer impact."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import select

from crisisdesk.auth.models import Role
from crisisdesk.catalog import dependencies
from crisisdesk.catalog.models import ComponentDependency
from crisisdesk.customer import impact
from crisisdesk.kit.db import Database
from crisisdesk.kit.errors import Forbidden, InvalidInput, NotFound
from tests.fixtures.api import count_rows, error_locs
from tests.fixtures.auth import api_key_headers, make_actor
from tests.fixtures.console import HTML, field_error, sign_in
from tests.fixtures.incident import make_component, make_incident

API = "/api/v1"


async def _chain(db: Database) -> dict[str, str]:
    """Identity ← API ← Dashboard, and Billing on its own; a group Platform."""
    async with db.session() as s:
        ids = {name: (await make_component(s, name)).id for name in ("Identity", "API", "Dashboard", "Billing")}
        ids["Platform"] = (await make_component(s, "Platform", is_group=True)).id
    _, admin = await make_actor(db, Role.admin)
    async with db.session() as s:
        await dependencies.add_dependency(s, admin, component_id=ids["API"], depends_on_id=ids["Identity"])
        await dependencies.add_dependency(s, admin, component_id=ids["Dashboard"], depends_on_id=ids["API"])
    return ids


async def _pairs(db: Database) -> set[tuple[str, str]]:
    async with db.sessionmaker() as s:
        rows = await s.execute(select(ComponentDependency.component_id, ComponentDependency.depends_on_id))
        return {(a, b) for a, b in rows}


async def test_service_refuses_self_cycles_groups_and_unknown_components(db: Database) -> None:
    ids = await _chain(db)
    _, admin = await make_actor(db, Role.admin)
    before = await _pairs(db)
    async with db.sessionmaker() as s:
        with pytest.raises(InvalidInput) as self_dep:
            await dependencies.add_dependency(s, admin, component_id=ids["API"], depends_on_id=ids["API"])
        assert self_dep.value.field == "depends_on" and "cannot depend on itself" in self_dep.value.message
        with pytest.raises(InvalidInput) as cycle:
            await dependencies.add_dependency(s, admin, component_id=ids["Identity"], depends_on_id=ids["Dashboard"])
        assert cycle.value.field == "depends_on"
        assert "cycle" in cycle.value.message and "Dashboard → API → Identity → Dashboard" in cycle.value.message
        with pytest.raises(InvalidInput) as group:
            await dependencies.add_dependency(s, admin, component_id=ids["API"], depends_on_id=ids["Platform"])
        assert group.value.field == "depends_on" and "is a group" in group.value.message
        with pytest.raises(InvalidInput) as unknown:
            await dependencies.add_dependency(s, admin, component_id=ids["API"], depends_on_id="nope")
        assert unknown.value.field == "depends_on" and "no component" in unknown.value.message
        with pytest.raises(NotFound) as missing:
            await dependencies.set_dependencies(s, admin, component_id="nope", depends_on_ids=[])
        assert missing.value.field == "component_id"
        _, responder = await make_actor(db)
        with pytest.raises(Forbidden):
            await dependencies.add_dependency(s, responder, component_id=ids["Billing"], depends_on_id=ids["API"])
        await s.rollback()
    assert await _pairs(db) == before
    async with db.session() as s:
        # Adding the same link twice is a no-op; removing answers whether there was one.
        assert not await dependencies.add_dependency(s, admin, component_id=ids["API"], depends_on_id=ids["Identity"])
        assert await dependencies.remove_dependency(s, admin, component_id=ids["API"], depends_on_id=ids["Identity"])
        assert not await dependencies.remove_dependency(
            s, admin, component_id=ids["API"], depends_on_id=ids["Identity"]
        )
    assert await _pairs(db) == {(ids["Dashboard"], ids["API"])}


async def test_api_reads_and_replaces_the_list(client: httpx.AsyncClient, db: Database) -> None:
    ids = await _chain(db)
    admin = await api_key_headers(db, Role.admin)
    viewer = await api_key_headers(db, Role.viewer)
    read = await client.get(f"{API}/components/{ids['API']}/dependencies", headers=viewer)
    assert read.status_code == 200
    assert read.json() == {
        "component_id": ids["API"],
        "depends_on": [{"id": ids["Identity"], "name": "Identity"}],
        "dependents": [{"id": ids["Dashboard"], "name": "Dashboard"}],
    }
    put = await client.put(
        f"{API}/components/{ids['Dashboard']}/dependencies",
        headers=admin,
        json={"depends_on": [ids["Billing"], ids["Identity"], ids["Billing"]]},
    )
    assert put.status_code == 200
    assert [d["name"] for d in put.json()["depends_on"]] == ["Billing", "Identity"]
    assert (ids["Dashboard"], ids["API"]) not in await _pairs(db)
    empty = await client.put(
        f"{API}/components/{ids['Dashboard']}/dependencies", headers=admin, json={"depends_on": []}
    )
    assert empty.status_code == 200 and empty.json()["depends_on"] == []


async def test_api_refusals_name_the_field_and_store_nothing(client: httpx.AsyncClient, db: Database) -> None:
    ids = await _chain(db)
    admin = await api_key_headers(db, Role.admin)
    before = await _pairs(db)
    url = f"{API}/components/{ids['Identity']}/dependencies"
    # Billing is fine, Dashboard closes a cycle: the whole list is refused, Billing is not kept.
    cycle = await client.put(url, headers=admin, json={"depends_on": [ids["Billing"], ids["Dashboard"]]})
    assert cycle.status_code == 422 and ["body", "depends_on"] in error_locs(cycle)
    assert "cycle" in cycle.json()["detail"][0]["msg"]
    itself = await client.put(url, headers=admin, json={"depends_on": [ids["Identity"]]})
    assert itself.status_code == 422 and "itself" in itself.json()["detail"][0]["msg"]
    unknown = await client.put(url, headers=admin, json={"depends_on": ["nope"]})
    assert unknown.status_code == 422 and ["body", "depends_on"] in error_locs(unknown)
    not_a_list = await client.put(url, headers=admin, json={"depends_on": "x"})
    assert not_a_list.status_code == 422
    missing = await client.put(f"{API}/components/nope/dependencies", headers=admin, json={"depends_on": []})
    assert missing.status_code == 404
    assert (await client.get(f"{API}/components/nope/dependencies", headers=admin)).status_code == 404
    responder = await client.put(url, headers=await api_key_headers(db), json={"depends_on": []})
    assert responder.status_code == 403
    assert await _pairs(db) == before
    assert await count_rows(db, ComponentDependency) == 2


async def test_console_shows_and_edits_dependencies(client: httpx.AsyncClient, db: Database) -> None:
    ids = await _chain(db)
    _, csrf = await sign_in(client, db, role=Role.admin)
    board = await client.get("/console/components")
    assert board.status_code == 200
    assert f'data-dependencies="{ids["API"]}"' in board.text and f'data-depends-on="{ids["Identity"]}"' in board.text
    assert "Edit dependencies" in board.text
    refused = await client.post(
        f"/console/components/{ids['Identity']}/dependencies",
        headers=HTML,
        data={"csrf_token": csrf, "depends_on": [ids["Dashboard"]]},
    )
    assert refused.status_code == 422
    assert "cycle" in (field_error(refused.text, "depends_on") or "")
    saved = await client.post(
        f"/console/components/{ids['Billing']}/dependencies",
        headers=HTML,
        data={"csrf_token": csrf, "depends_on": [ids["Identity"], ids["API"]]},
    )
    assert saved.status_code == 303
    assert {(ids["Billing"], ids["Identity"]), (ids["Billing"], ids["API"])} <= await _pairs(db)
    viewer = httpx.AsyncClient(transport=client._transport, base_url="http://status.test")  # type: ignore[attr-defined]
    async with viewer:
        _, viewer_csrf = await sign_in(viewer, db, role=Role.viewer)
        page = await viewer.get("/console/components")
        assert "Depends on:" in page.text and "Edit dependencies" not in page.text
        denied = await viewer.post(
            f"/console/components/{ids['Billing']}/dependencies",
            headers=HTML,
            data={"csrf_token": viewer_csrf},
        )
        assert denied.status_code == 403
    assert (ids["Billing"], ids["API"]) in await _pairs(db)


async def test_an_incident_reaches_dependents_transitively_with_its_status(db: Database) -> None:
    ids = await _chain(db)
    _, admin = await make_actor(db, Role.admin)
    async with db.session() as s:
        incident = await make_incident(s, admin, components={ids["Identity"]: "partial_outage"})
    async with db.sessionmaker() as s:
        found = await impact.affected_components(s, incident.id)
    assert [(c.name, c.status, c.via_id) for c in found] == [
        ("Identity", "partial_outage", None),
        ("API", "partial_outage", ids["Identity"]),
        ("Dashboard", "partial_outage", ids["Identity"]),
    ]
    assert all(c.since == incident.started_at for c in found)
