"""Renders the whole public site from the database into a :class:`Site` (write time)."""

from __future__ import annotations

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from crisisdesk.config import Settings
from crisisdesk.statuspage.models import StatusPage
from crisisdesk.statuspage.store import Site

JSON = "application/json; charset=utf-8"


async def build_site(session: AsyncSession, settings: Settings, page: StatusPage) -> Site:
    site = Site()
    site.add("/api/v2/status.json", JSON, orjson.dumps({"page": {"id": page.id, "name": page.name}}))
    site.add("/", "text/html; charset=utf-8", f"<!doctype html><title>{page.name}</title>")
    return site
