from __future__ import annotations

from datetime import datetime

from sqlalchemy import LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from crisisdesk.kit.db import Base
from crisisdesk.kit.ids import new_id
from crisisdesk.kit.time import utcnow


class StatusPage(Base):
    """The public page's identity (one row); ``render_seq`` serialises snapshot renders."""

    __tablename__ = "status_page"

    id: Mapped[str] = mapped_column(String(24), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    url: Mapped[str] = mapped_column(String(500))
    time_zone: Mapped[str] = mapped_column(String(64), default="Etc/UTC")
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    render_seq: Mapped[int] = mapped_column(default=0)


class Snapshot(Base):
    """One rendering of the whole public site: zlib-compressed JSON of path -> file."""

    __tablename__ = "snapshot"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    digest: Mapped[str] = mapped_column(String(64))
    # The newest change row this rendering includes; a newer "public" change means re-render.
    covers_change_id: Mapped[int] = mapped_column(default=0)
    payload: Mapped[bytes] = mapped_column(LargeBinary)
