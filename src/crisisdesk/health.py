"""A public health check for load balancers and operators."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from crisisdesk.kit.runtime import runtime_of
from crisisdesk.statuspage.store import SiteStore

router = APIRouter(tags=["operations"])


class HealthRead(BaseModel):
    """Whether this process can reach its database, and which snapshot it serves."""

    status: str = Field(description="Always ok while the process answers; the public page serves either way.")
    database: bool = Field(description="Whether the last check of the database succeeded.")
    snapshot_version: int = Field(description="Version of the public snapshot this process serves (0: none yet).")


@router.get("/healthz", summary="Health check", response_model=HealthRead)
async def healthz(request: Request) -> HealthRead:
    """Answers without touching the database, so it stays fast while the database is down."""
    store: SiteStore = request.app.state.site
    return HealthRead(status="ok", database=runtime_of(request).watcher.healthy, snapshot_version=store.version)
