"""The component status board: responders set a status outside incidents."""

from __future__ import annotations

import httpx
from sqlalchemy import select

from crisisdesk.auth.models import Role
from crisisdesk.catalog.models import Component, ComponentStatusChange
from crisisdesk.kit.db import Database
from tests.fixtures.console import HTML, sign_in
from tests.fixtures.incident import make_component


async def test_board_groups_components_and_sets_status(client: httpx.AsyncClient, db: Database) -> None:
    async with db.session() as s:
        group = await make_component(s, "Identity", is_group=True)
        sso = await make_component(s, "Sign-in (SSO)", group_id=group.id)
        await make_component(s, "Reporting")
    _, csrf = await sign_in(client, db)
    board = await client.get("/console/components")
    assert board.status_code == 200
    assert "Identity" in board.text and f'id="component-{sso.id}"' in board.text
    response = await client.post(
        f"/console/components/{sso.id}/status",
        headers=HTML,
        data={"csrf_token": csrf, "status": "degraded_performance"},
    )
    assert response.status_code == 303
    async with db.session() as s:
        assert (await s.get(Component, sso.id)).status == "degraded_performance"  # type: ignore[union-attr]
        history = list(
            await s.scalars(
                select(ComponentStatusChange.new_status).where(ComponentStatusChange.component_id == sso.id)
            )
        )
        assert history == ["operational", "degraded_performance"]
    dashboard = await client.get("/console")
    assert "Degraded performance" in dashboard.text
    summary = await client.get("/api/v2/components.json")
    assert any(c["id"] == sso.id and c["status"] == "degraded_performance" for c in summary.json()["components"])


async def test_bad_status_is_refused_and_viewers_cannot_set(client: httpx.AsyncClient, db: Database) -> None:
    async with db.session() as s:
        web = await make_component(s, "Web app")
        group = await make_component(s, "Platform", is_group=True)
    _, csrf = await sign_in(client, db)
    bad = await client.post(
        f"/console/components/{web.id}/status", headers=HTML, data={"csrf_token": csrf, "status": "melting"}
    )
    assert bad.status_code == 422 and "is not a component status" in bad.text
    on_group = await client.post(
        f"/console/components/{group.id}/status", headers=HTML, data={"csrf_token": csrf, "status": "major_outage"}
    )
    assert on_group.status_code == 422 and "is a group" in on_group.text
    missing = await client.post(
        "/console/components/nope/status", headers=HTML, data={"csrf_token": csrf, "status": "major_outage"}
    )
    assert missing.status_code == 404
    viewer = httpx.AsyncClient(transport=client._transport, base_url="http://status.test")  # type: ignore[attr-defined]
    async with viewer:
        _, viewer_csrf = await sign_in(viewer, db, role=Role.viewer)
        refused = await viewer.post(
            f"/console/components/{web.id}/status",
            headers=HTML,
            data={"csrf_token": viewer_csrf, "status": "major_outage"},
        )
        assert refused.status_code == 403
        assert 'name="status"' not in (await viewer.get("/console/components")).text
    async with db.session() as s:
        assert (await s.get(Component, web.id)).status == "operational"  # type: ignore[union-attr]
