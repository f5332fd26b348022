"""Numbers past what a query can hold are a 422 naming the parameter, never a 500 (SQLite) or an
anonymous refusal (PostgreSQL); unknown incident ids are a 404 naming incident_id."""

from __future__ import annotations

import httpx
import pytest

from crisisdesk.auth.models import Role
from crisisdesk.kit.db import MAX_INT_ID, MAX_OFFSET, Database
from tests.fixtures.api import error_locs
from tests.fixtures.auth import api_key_headers
from tests.fixtures.console import HTML, sign_in
from tests.fixtures.impact import make_world
from tests.fixtures.incident import make_incident

API = "/api/v1"
HUGE = 10**20


@pytest.mark.parametrize("number", [MAX_OFFSET + 1, HUGE])
async def test_offsets_past_the_bound_are_refused_by_name(client: httpx.AsyncClient, db: Database, number: int) -> None:
    admin = await api_key_headers(db, Role.admin)
    world = await make_world(db)
    async with db.session() as s:
        incident = await make_incident(s, world.admin, components={world.components["Identity"]: "major_outage"})
    pages = [
        f"{API}/incidents/{incident.id}/impact/accounts",
        f"{API}/csm-tasks",
        f"{API}/accounts/{world.accounts['globex']}/outreach",
        f"{API}/accounts",
    ]
    for path in pages:
        refused = await client.get(path, params={"offset": number}, headers=admin)
        assert refused.status_code == 422 and error_locs(refused) == [["query", "offset"]], (path, refused.text)
        # The bound itself still pages (past the end: nothing).
        last = await client.get(path, params={"offset": MAX_OFFSET}, headers=admin)
        assert last.status_code == 200, (path, last.text)
        items = last.json() if isinstance(last.json(), list) else last.json()["items"]
        assert items == []


@pytest.mark.parametrize("task_id", [0, MAX_INT_ID + 1, HUGE])
async def test_task_ids_past_the_bound_are_refused_by_name(
    client: httpx.AsyncClient, db: Database, task_id: int
) -> None:
    admin = await api_key_headers(db, Role.admin)
    refused = await client.post(f"{API}/csm-tasks/{task_id}/done", headers=admin)
    assert refused.status_code == 422 and error_locs(refused) == [["path", "task_id"]], refused.text
    missing = await client.post(f"{API}/csm-tasks/{MAX_INT_ID}/done", headers=admin)
    assert missing.status_code == 404 and error_locs(missing) == [["body", "task_id"]]


async def test_console_task_ids_past_the_bound_are_refused(client: httpx.AsyncClient, db: Database) -> None:
    _, csrf = await sign_in(client, db, Role.admin)
    for task_id, status in [(HUGE, 422), (MAX_INT_ID + 1, 422), (MAX_INT_ID, 404)]:
        answer = await client.post(
            f"/console/csm-tasks/{task_id}/done", data={"csrf_token": csrf}, headers=HTML, follow_redirects=False
        )
        assert answer.status_code == status, (task_id, answer.text[:300])
        assert ("task_id" in answer.text) is (status == 422)


async def test_incident_ids_no_row_can_have_are_404_naming_the_incident(
    client: httpx.AsyncClient, db: Database
) -> None:
    """A NUL (PostgreSQL refuses it in text) or an over-long id is simply no incident."""
    admin = await api_key_headers(db, Role.admin)
    world = await make_world(db)
    for bad in ("a%00b", "x" * 65):
        for path in ("impact", "impact/accounts", f"impact/accounts/{world.accounts['globex']}", "impact.csv"):
            missing = await client.get(f"{API}/incidents/{bad}/{path}", headers=admin)
            assert missing.status_code == 404 and error_locs(missing) == [["body", "incident_id"]], (path, missing.text)
    _, _ = await sign_in(client, db, Role.viewer)
    for path in ("impact", "impact/accounts", "impact.csv"):
        page = await client.get(f"/console/incidents/a%00b/{path}", headers=HTML)
        assert page.status_code == 404, (path, page.text[:200])
