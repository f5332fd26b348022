"""Server-rendered pages: one Jinja2 environment for the console and the public site."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from fastapi.templating import Jinja2Templates

from crisisdesk.kit.time import iso

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"
STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

templates = Jinja2Templates(directory=str(TEMPLATES_DIR))


def humanize(delta: timedelta | None) -> str:
    """A short duration: 45s, 12m, 3h 20m, 2d 4h."""
    if delta is None:
        return "—"
    seconds = int(abs(delta.total_seconds()))
    if seconds < 60:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h" if hours else f"{days}d"


def fmt_time(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M UTC") -> str:
    return value.strftime(fmt) if value else "—"


templates.env.filters["humanize"] = humanize
templates.env.filters["iso"] = iso
templates.env.filters["fmt_time"] = fmt_time
