"""Change topics: services record what changed; processes learn of it after the commit.

``record`` adds a row to ``change`` in the caller's transaction and remembers the topic on the
session, so the owner of the unit of work can run its after-commit hooks. Other processes see
the row through :class:`crisisdesk.kit.watch.ChangeWatcher` (LISTEN/NOTIFY on PostgreSQL,
polling on SQLite).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String, func
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from crisisdesk.kit.db import Base
from crisisdesk.kit.time import utcnow

PUBLIC = "public"  # something the public status page shows has changed
SNAPSHOT = "snapshot"  # a new public snapshot was stored


class Change(Base):
    __tablename__ = "change"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    topic: Mapped[str] = mapped_column(String(120), index=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, server_default=func.now())


def record(session: AsyncSession, *topics: str) -> None:
    """Note that these topics changed in the current transaction."""
    seen: set[str] = session.info.setdefault("topics", set())
    for topic in topics:
        if topic not in seen:
            seen.add(topic)
            session.add(Change(topic=topic))
