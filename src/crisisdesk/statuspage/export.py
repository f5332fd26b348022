"""Static export: the public site as files that nginx or a CDN serves as-is.

The layout is documented in docs/decisions/0003-static-export-layout.md. Each export is written
to a fresh versioned directory next to ``out_dir``; ``out_dir`` itself is a symbolic link that is
swapped to the new directory in one ``rename``, so a reader sees the old site or the new one,
never a mix. The files are a stored snapshot, byte for byte what the servers serve.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import shutil
from pathlib import Path

from sqlalchemy import func, select

from crisisdesk.config import Settings
from crisisdesk.kit.db import Database
from crisisdesk.kit.errors import InvalidInput
from crisisdesk.statuspage import publish as publishing
from crisisdesk.statuspage.models import Snapshot
from crisisdesk.statuspage.store import Site, make_file

log = logging.getLogger(__name__)
MARKER = ".crisisdesk-export"  # names a directory as ours, so an export never replaces anything else
KEEP = 2  # the live directory and the one before it, for readers still holding an old path


def file_name(path: str) -> str:
    """Where a URL path lives on disk: "/" -> index.html, "/history" -> history/index.html.

    A path whose last segment has an extension ("/api/v2/summary.json") is stored as itself.
    """
    if path == "/":
        return "index.html"
    relative = path.strip("/")
    parts = relative.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"refusing to export the unsafe path {path!r}")
    return relative if "." in parts[-1] else f"{relative}/index.html"


def write_tree(site: Site, directory: Path, *, version: int) -> int:
    """Write every file (and a .gz sibling where the server would gzip); returns the file count."""
    count = 0
    for path, (content_type, body) in sorted(site.files.items()):
        target = directory / file_name(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(body)
        count += 1
        served = make_file(path, content_type, body, cache_control="", cors=False)
        if served.gzip_body is not None:
            target.with_name(target.name + ".gz").write_bytes(served.gzip_body)
    (directory / MARKER).write_text(f"{version}\n")
    return count


def _prepare_target(out_dir: Path) -> None:
    """Accept a missing path, our own symlink, an empty directory, or a previous export."""
    if out_dir.is_symlink() or not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise InvalidInput(f"{out_dir} exists and is not a directory", field="out_dir")
    if not any(out_dir.iterdir()):
        out_dir.rmdir()
        return
    if (out_dir / MARKER).exists():
        # An export from before the symlink layout: move it aside so the link can take its place.
        out_dir.rename(out_dir.with_name(f".{out_dir.name}.old-{secrets.token_hex(4)}"))
        return
    raise InvalidInput(f"{out_dir} is not empty and is not a crisisdesk export; choose another directory",
                       field="out_dir")  # fmt: skip


def install_site(site: Site, out_dir: Path, *, version: int) -> int:
    """Write the site to a new directory and switch ``out_dir`` to it atomically."""
    out_dir = out_dir.absolute()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    _prepare_target(out_dir)
    prefix = f".{out_dir.name}.v"
    fresh = out_dir.with_name(f"{prefix}{version}-{secrets.token_hex(4)}")
    fresh.mkdir()
    try:
        count = write_tree(site, fresh, version=version)
        fresh.chmod(0o755)
        link = out_dir.with_name(f".{out_dir.name}.link-{secrets.token_hex(4)}")
        link.symlink_to(fresh.name)
        os.replace(link, out_dir)
    except BaseException:
        shutil.rmtree(fresh, ignore_errors=True)
        raise
    _prune(out_dir, prefix, keep=fresh)
    return count


def _prune(out_dir: Path, prefix: str, *, keep: Path) -> None:
    old = sorted((p for p in out_dir.parent.glob(f"{prefix}*") if p != keep), key=lambda p: p.stat().st_mtime)
    for path in old[: max(0, len(old) - (KEEP - 1))]:
        shutil.rmtree(path, ignore_errors=True)
    for path in out_dir.parent.glob(f".{out_dir.name}.old-*"):
        shutil.rmtree(path, ignore_errors=True)


async def latest_snapshot(db: Database) -> tuple[int, Site] | None:
    async with db.sessionmaker() as session:
        query = select(Snapshot.id, Snapshot.payload).order_by(Snapshot.id.desc()).limit(1)
        row = (await session.execute(query)).first()
    return None if row is None else (row.id, Site.unpack(row.payload))


async def newest_version(db: Database) -> int:
    async with db.sessionmaker() as session:
        return int(await session.scalar(select(func.coalesce(func.max(Snapshot.id), 0))) or 0)


async def _export(db: Database, settings: Settings, out_dir: Path) -> tuple[int, int]:
    await publishing.publish(db, settings)
    latest = await latest_snapshot(db)
    assert latest is not None, "publish stores a snapshot"
    version, site = latest
    return version, await asyncio.to_thread(install_site, site, out_dir, version=version)


async def export_static(db: Database, settings: Settings, out_dir: Path) -> int:
    """Render the site now (stored as a snapshot if it changed) and write it; returns the file count."""
    _, count = await _export(db, settings, out_dir)
    return count


async def watch_export(db: Database, settings: Settings, out_dir: Path, *, interval: float = 1.0) -> None:
    """Export now, then again whenever a newer snapshot is stored, until cancelled.

    A database outage is logged and waited out; the last export stays in place meanwhile.
    """
    exported, _ = await _export(db, settings, out_dir)
    failing = False
    while True:
        await asyncio.sleep(interval)
        try:
            latest = await latest_snapshot(db) if await newest_version(db) > exported else None
            if latest is not None:
                version, site = latest
                count = await asyncio.to_thread(install_site, site, out_dir, version=version)
                exported = version
                log.info("exported snapshot %s (%s files) to %s", version, count, out_dir)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not failing:
                log.error("static export paused: %s", exc)
            failing = True
            continue
        if failing:
            log.warning("static export resumed")
        failing = False
