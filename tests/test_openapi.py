"""The OpenAPI document explains itself: summaries, tags, models and field descriptions everywhere."""

from __future__ import annotations

import httpx


async def test_every_api_operation_is_documented(client: httpx.AsyncClient) -> None:
    document = (await client.get("/api/openapi.json")).json()
    operations = [
        (path, method, op)
        for path, item in document["paths"].items()
        for method, op in item.items()
        if path.startswith("/api/v1/")
    ]
    assert len(operations) >= 25
    for path, method, op in operations:
        where = f"{method.upper()} {path}"
        assert op.get("summary"), f"{where} has no summary"
        assert op.get("tags"), f"{where} has no tags"
        assert op.get("description"), f"{where} has no description"
        success = [code for code in op["responses"] if code.startswith("2")]
        assert success, f"{where} documents no success answer"
        assert any("content" in op["responses"][code] for code in success), f"{where} has no response model"
        assert "401" in op["responses"], f"{where} does not document 401"


async def test_every_schema_field_has_a_description(client: httpx.AsyncClient) -> None:
    schemas = (await client.get("/api/openapi.json")).json()["components"]["schemas"]
    ours = {
        name: s
        for name, s in schemas.items()
        if name.endswith(("Read", "Create", "Patch", "Put", "Change", "Assign", "Cancel"))
    }
    assert {"IncidentRead", "IncidentCreate", "ComponentRead", "MaintenanceCreate", "ApiKeyCreate"} <= set(ours)
    missing = [
        f"{name}.{field}"
        for name, schema in ours.items()
        for field, spec in schema.get("properties", {}).items()
        if not spec.get("description")
    ]
    assert not missing, f"fields without a description: {missing}"


async def test_datetimes_are_documented_as_date_time(client: httpx.AsyncClient) -> None:
    schemas = (await client.get("/api/openapi.json")).json()["components"]["schemas"]
    next_update = schemas["IncidentCreate"]["properties"]["next_update_at"]
    assert any(option.get("format") == "date-time" for option in next_update["anyOf"])


async def test_swagger_ui_is_served(client: httpx.AsyncClient) -> None:
    page = await client.get("/api/docs")
    assert page.status_code == 200 and "swagger" in page.text.lower() and "/api/openapi.json" in page.text
