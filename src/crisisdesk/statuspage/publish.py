"""Publishing: render the site, store it as a new snapshot, and serve it.

Renders are serialised by bumping ``status_page.render_seq`` first: the row lock (PostgreSQL)
or the write lock (SQLite) makes a second renderer wait and then read the newer state, so a
snapshot never overtakes a later one with older content.
"""

from __future__ import annotations

import logging

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from crisisdesk.config import Settings
from crisisdesk.kit import events
from crisisdesk.kit.db import Database
from crisisdesk.kit.events import Change
from crisisdesk.statuspage.models import Snapshot, StatusPage
from crisisdesk.statuspage.render import build_site
from crisisdesk.statuspage.store import Site, SiteStore

log = logging.getLogger(__name__)
KEEP_SNAPSHOTS = 20


async def ensure_page(session: AsyncSession, settings: Settings) -> StatusPage:
    page = await session.scalar(select(StatusPage).limit(1))
    if page is None:
        page = StatusPage(name=settings.page_name, url=settings.base_url, time_zone=settings.page_time_zone)
        session.add(page)
        await session.flush()
    return page


async def publish(
    db: Database, settings: Settings, store: SiteStore | None = None, *, force: bool = False
) -> int | None:
    """Render and store a snapshot if the content changed; returns its version, or None."""
    async with db.session() as session:
        # Write first: the lock is taken before anything is read, so this render sees every commit
        # that finished before it, and a concurrent render waits for this one.
        await session.execute(update(StatusPage).values(render_seq=StatusPage.render_seq + 1))
        page = await ensure_page(session, settings)
        covers = await session.scalar(select(func.coalesce(func.max(Change.id), 0))) or 0
        site = await build_site(session, settings, page)
        payload, digest = site.pack()
        latest = (
            await session.execute(select(Snapshot.id, Snapshot.digest).order_by(Snapshot.id.desc()).limit(1))
        ).first()
        if latest is not None and latest.digest == digest and not force:
            await session.execute(update(Snapshot).where(Snapshot.id == latest.id).values(covers_change_id=covers))
            version = None
        else:
            snapshot = Snapshot(digest=digest, payload=payload, covers_change_id=covers)
            session.add(snapshot)
            await session.flush()
            version = snapshot.id
            events.record(session, events.SNAPSHOT)
            await session.execute(delete(Snapshot).where(Snapshot.id <= version - KEEP_SNAPSHOTS))
    if version is not None and store is not None:
        store.install(version, site)
        await store.notify()
    return version


async def stale(db: Database) -> bool:
    """Whether a public change is newer than the newest snapshot (a render was missed)."""
    async with db.sessionmaker() as session:
        newest_public = await session.scalar(select(func.max(Change.id)).where(Change.topic == events.PUBLIC))
        covered = await session.scalar(select(func.max(Snapshot.covers_change_id)))
    return newest_public is not None and (covered is None or newest_public > covered)


async def load_latest(db: Database, store: SiteStore) -> bool:
    """Install the newest stored snapshot if this process serves an older one."""
    async with db.sessionmaker() as session:
        newest = await session.scalar(select(func.max(Snapshot.id)))
        if newest is None or newest <= store.version:
            return False
        payload = await session.scalar(select(Snapshot.payload).where(Snapshot.id == newest))
    if payload is None:
        return False
    installed = store.install(newest, Site.unpack(payload))
    if installed:
        await store.notify()
    return installed
