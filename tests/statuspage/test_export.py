"""Static export: the served bytes as files, swapped in atomically, and kept current by the watcher."""

from __future__ import annotations

import asyncio
import gzip
from pathlib import Path
from typing import Any

import httpx
import pytest

from crisisdesk.config import Settings
from crisisdesk.kit.db import Database
from crisisdesk.kit.errors import InvalidInput
from crisisdesk.statuspage import publish as publishing
from crisisdesk.statuspage.export import export_static, file_name, newest_version, watch_export
from tests.fixtures.incident import make_component
from tests.fixtures.statuspage import make_public_world


def test_paths_map_to_files_nginx_can_serve() -> None:
    assert file_name("/") == "index.html"
    assert file_name("/history") == "history/index.html"
    assert file_name("/incidents/abc123") == "incidents/abc123/index.html"
    assert file_name("/api/v2/summary.json") == "api/v2/summary.json"
    assert file_name("/assets/status.css") == "assets/status.css"
    with pytest.raises(ValueError):
        file_name("/../etc/passwd")


async def test_export_writes_the_bytes_the_server_serves(
    app: Any, client: httpx.AsyncClient, db: Database, settings: Settings, tmp_path: Path
) -> None:
    world = await make_public_world(db)
    out = tmp_path / "site"
    count = await export_static(db, settings, out)
    await publishing.load_latest(db, app.state.site)  # as the change watcher would within a moment
    served = app.state.site.files
    assert count == len(served)
    for path in ("/", "/history", f"/incidents/{world.open_incident.id}", "/api/v2/summary.json",
                 "/api/v2/scheduled-maintenances/active.json", "/history.rss", "/history.atom",
                 "/maintenance.ics", "/badge.svg", "/widget.js", "/assets/status.css"):  # fmt: skip
        assert path in served, path
    for path, entry in served.items():
        on_disk = out / file_name(path)
        response = await client.get(path, headers={"accept-encoding": "identity"})
        assert on_disk.read_bytes() == response.content == entry.body, path
        if entry.gzip_body is not None:
            assert gzip.decompress((on_disk.parent / (on_disk.name + ".gz")).read_bytes()) == entry.body
    assert out.is_symlink() and (out / "index.html").is_file()


async def test_reexport_swaps_the_whole_site_at_once(db: Database, settings: Settings, tmp_path: Path) -> None:
    out = tmp_path / "site"
    await export_static(db, settings, out)
    first_target = out.resolve()
    async with db.session() as s:
        await make_component(s, "Newly listed component")
    await export_static(db, settings, out)
    assert out.resolve() != first_target
    assert "Newly listed component" in (out / "index.html").read_text()
    versions = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".site.v"))
    assert len(versions) <= 2  # the live one and the one before it


async def test_export_refuses_to_overwrite_a_foreign_directory(
    db: Database, settings: Settings, tmp_path: Path
) -> None:
    foreign = tmp_path / "documents"
    foreign.mkdir()
    (foreign / "thesis.txt").write_text("precious")
    with pytest.raises(InvalidInput) as caught:
        await export_static(db, settings, foreign)
    assert caught.value.field == "out_dir"
    assert (foreign / "thesis.txt").read_text() == "precious"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert await export_static(db, settings, empty) > 10


async def test_watch_export_follows_new_snapshots(app: Any, db: Database, settings: Settings, tmp_path: Path) -> None:
    out = tmp_path / "live"
    task = asyncio.create_task(watch_export(db, settings, out, interval=0.05))
    try:
        for _ in range(100):
            if (out / "index.html").exists():
                break
            await asyncio.sleep(0.05)
        assert "Late arrival" not in (out / "index.html").read_text()
        await asyncio.sleep(0.3)  # let the first export's own publish finish before the next change

        async with db.session() as s:
            await make_component(s, "Late arrival")
        version = await newest_version(db)
        for _ in range(100):
            if (out / ".crisisdesk-export").read_text().strip() == str(version):
                break
            await asyncio.sleep(0.05)
        assert version > 1
        assert "Late arrival" in (out / "index.html").read_text()
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
