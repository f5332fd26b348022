"""The seeded library: every scenario and phase, every channel filled, approved, and within limits."""

from __future__ import annotations

import pytest

from crisisdesk.comms import library, service
from crisisdesk.comms.templates import VARIANTS
from crisisdesk.config import Settings
from crisisdesk.kit.db import Database
from crisisdesk.seed import seed_demo

SCENARIOS = {
    library.IDP: {"investigating", "identified", "monitoring", "resolved"},
    library.PERF: {"investigating", "identified", "monitoring", "resolved"},
    library.EXPORT: {"investigating", "identified", "monitoring", "resolved"},
    library.SECURITY: {"investigating", "identified", "monitoring", "resolved"},
    library.MAINTENANCE: {"scheduled", "in_progress", "completed"},
}


def test_the_library_covers_each_scenario_and_phase() -> None:
    found: dict[str, set[str]] = {}
    for fields in library.entries():
        found.setdefault(fields["scenario"], set()).add(fields["phase"])
    assert found == SCENARIOS


@pytest.mark.parametrize("zone", ["Etc/UTC", "America/Los_Angeles", "Asia/Kolkata"])
def test_every_library_template_renders_on_every_channel_without_warnings(zone: str) -> None:
    settings = Settings(demo=True, page_time_zone=zone)
    for fields in library.entries():
        service.validate(fields)
        rendered = service.preview(settings, fields)
        where = f"{fields['scenario']} / {fields['phase']}"
        assert rendered.warnings == [], (where, rendered.warnings)
        for variant in VARIANTS:
            assert rendered.text(variant).strip(), (where, variant)
        assert rendered.variants["sms"].sms["encoding"] == "GSM-7", where  # type: ignore[index]


async def test_the_demo_seeds_the_library_approved(db: Database, settings: Settings) -> None:
    await seed_demo(db, settings)
    async with db.session() as s:
        templates = await service.list_templates(s)
        assert len(templates) == len(library.ENTRIES)
        assert all(t.approved_at is not None for t in templates)
        assert await library.seed_library(s, None) == 0  # type: ignore[arg-type]  # nothing left to add
