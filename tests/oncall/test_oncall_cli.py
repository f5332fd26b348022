"""crisisdesk oncall now / at / schedules against a migrated SQLite file."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from crisisdesk.auth import service as auth
from crisisdesk.auth.models import Role
from crisisdesk.cli import app
from crisisdesk.kit.db import Database
from crisisdesk.oncall import schedules
from crisisdesk.oncall.schedules import LayerInput

runner = CliRunner()


@pytest.fixture
def db_url(tmp_path: Path, sqlite_template: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    path = tmp_path / "cli.db"
    shutil.copy(sqlite_template, path)
    url = f"sqlite+aiosqlite:///{path}"
    monkeypatch.setenv("CRISISDESK_DEMO", "true")
    monkeypatch.setenv("CRISISDESK_DATABASE_URL", url)
    monkeypatch.setenv("CRISISDESK_BASE_URL", "http://status.test")
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.chdir(tmp_path)
    yield url


async def _seed(url: str) -> str:
    db = Database(url)
    try:
        async with db.session() as session:
            admin = await auth.create_user(
                session, email="root@example.com", name="Root", role=Role.admin, password=None
            )
            ana = await auth.create_user(
                session, email="ana@example.com", name="Ana Ortiz", role=Role.responder, password=None
            )
            ben = await auth.create_user(
                session, email="ben@example.com", name="Ben Berg", role=Role.responder, password=None
            )
            layer = LayerInput("primary", [ana.id, ben.id], datetime(2025, 10, 20, 9), "Europe/Berlin", "weekly")
            schedule = await schedules.create_schedule(
                session, auth.actor_for(admin), name="Incident commanders", time_zone="Europe/Berlin", layers=[layer]
            )
            return schedule.id
    finally:
        await db.dispose()


def test_oncall_at_by_name_and_id_across_the_october_change(db_url: str) -> None:
    schedule_id = asyncio.run(_seed(db_url))
    # Without an offset the time is read in the schedule's zone: 08:59 on Monday 27 October is still Ana.
    before = runner.invoke(app, ["oncall", "at", "incident commanders", "2025-10-27T08:59"])
    assert before.exit_code == 0, before.output
    assert "Ana Ortiz" in before.output and "Mon 2025-10-27 09:00" in before.output
    after = runner.invoke(app, ["oncall", "at", schedule_id, "2025-10-27T09:00+01:00"])
    assert after.exit_code == 0, after.output
    assert "Ben Berg" in after.output and "Mon 2025-11-03 09:00" in after.output


def test_oncall_now_and_schedules_list_every_schedule(db_url: str) -> None:
    schedule_id = asyncio.run(_seed(db_url))
    now = runner.invoke(app, ["oncall", "now"])
    assert now.exit_code == 0, now.output
    assert "Incident commanders" in now.output and ("Ana Ortiz" in now.output or "Ben Berg" in now.output)
    listed = runner.invoke(app, ["oncall", "schedules"])
    assert listed.exit_code == 0 and schedule_id in listed.output


def test_oncall_errors_are_one_line(db_url: str) -> None:
    asyncio.run(_seed(db_url))
    missing = runner.invoke(app, ["oncall", "now", "Nope"])
    assert missing.exit_code == 1 and "no schedule with id or name 'Nope'" in missing.output
    garbled = runner.invoke(app, ["oncall", "at", "Incident commanders", "next tuesday"])
    assert garbled.exit_code == 2 and "ISO 8601" in garbled.output
    skipped = runner.invoke(app, ["oncall", "at", "Incident commanders", "2026-03-29T02:30"])
    assert skipped.exit_code == 1 and "does not exist in Europe/Berlin" in skipped.output
