"""Workarounds and ETAs: history, timeline, validation, approval, API, console, public page, templates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import orjson
import pytest
from sqlalchemy import func, select

from crisisdesk.auth.models import Role
from crisisdesk.comms import service as comms
from crisisdesk.config import Settings
from crisisdesk.incident import guidance
from crisisdesk.incident import service as incidents
from crisisdesk.incident.models import EtaEstimate, TimelineEvent, Workaround
from crisisdesk.kit import events
from crisisdesk.kit.db import Database
from crisisdesk.kit.errors import Conflict, Forbidden, InvalidInput, NotFound
from crisisdesk.kit.events import Change
from crisisdesk.kit.time import utcnow
from tests.fixtures.api import count_rows, error_locs, error_text
from tests.fixtures.auth import api_key_headers, make_actor
from tests.fixtures.console import HTML, field_error, sign_in, utc_local
from tests.fixtures.incident import make_incident, make_maintenance

API = "/api/v1"


async def _timeline(db: Database, incident_id: str) -> list[TimelineEvent]:
    async with db.sessionmaker() as s:
        return list(reversed(await incidents.timeline_of(s, incident_id)))


async def _public_changes(db: Database) -> int:
    async with db.sessionmaker() as s:
        return int(await s.scalar(select(func.count()).select_from(Change).where(Change.topic == events.PUBLIC)) or 0)


async def test_workaround_versions_history_and_timeline(db: Database) -> None:
    _, admin = await make_actor(db, Role.admin)
    async with db.session() as s:
        incident = await make_incident(s, admin)
    async with db.session() as s:
        first = await guidance.set_workaround(
            s, admin, incident_id=incident.id, body="Sign in with a **password**. <script>alert(1)</script>",
            published=False,
        )  # fmt: skip
    assert "<strong>password</strong>" in first.body_html and "<script>" not in first.body_html
    async with db.session() as s:
        # The same words and visibility again change nothing.
        again = await guidance.set_workaround(s, admin, incident_id=incident.id, body=first.body, published=False)
        assert again.id == first.id
        await guidance.set_workaround(s, admin, incident_id=incident.id, body=first.body, published=True)
    async with db.session() as s:
        await guidance.set_workaround(s, admin, incident_id=incident.id, body="Use the mobile app.", published=True)
    async with db.session() as s:
        await guidance.set_workaround(s, admin, incident_id=incident.id, body="", published=True)
    async with db.session() as s:
        now = await guidance.current(s, incident.id)
        workarounds, etas = await guidance.history(s, incident.id)
        with pytest.raises(Conflict) as nothing:
            await guidance.set_workaround(s, admin, incident_id=incident.id, body="  ", published=False)
    assert nothing.value.field == "body"
    assert now.workaround is None and now.eta is None
    assert [(w.body[:10], w.published) for w in workarounds] == [
        ("", False),
        ("Use the mo", True),
        ("Sign in wi", True),
        ("Sign in wi", False),
    ]
    assert etas == []
    kinds = [e.kind for e in await _timeline(db, incident.id) if e.kind.startswith("workaround")]
    assert kinds == ["workaround_set", "workaround_published", "workaround_set", "workaround_withdrawn"]
    summaries = [e.summary for e in await _timeline(db, incident.id) if e.kind.startswith("workaround")]
    assert summaries[0].startswith("Workaround set (internal): Sign in with a **password**")
    assert summaries[2] == "Workaround changed (published): Use the mobile app."


async def test_eta_moves_are_on_the_timeline_with_the_old_value_and_the_note(db: Database) -> None:
    _, admin = await make_actor(db, Role.admin)
    async with db.session() as s:
        incident = await make_incident(s, admin)
    first_eta = (utcnow() + timedelta(hours=1)).replace(second=0, microsecond=0)
    later = first_eta + timedelta(minutes=90)
    async with db.session() as s:
        await guidance.set_eta(s, admin, incident_id=incident.id, eta_at=first_eta, note="", published=True)
    async with db.session() as s:
        await guidance.set_eta(
            s, admin, incident_id=incident.id, eta_at=later.astimezone(), note="The rollback is slower", published=True
        )
    async with db.session() as s:
        now = await guidance.current(s, incident.id)
        assert now.eta is not None and now.eta.eta_at == later and now.eta.note == "The rollback is slower"
        await guidance.set_eta(s, admin, incident_id=incident.id, eta_at=None, note="Unknown again", published=False)
    async with db.session() as s:
        assert (await guidance.current(s, incident.id)).eta is None
        _, etas = await guidance.history(s, incident.id)
    assert [e.eta_at for e in etas] == [None, later, first_eta]
    eta_events = [e for e in await _timeline(db, incident.id) if e.kind.startswith("eta")]
    fmt = "%Y-%m-%d %H:%M UTC"
    assert [e.summary for e in eta_events] == [
        f"ETA set to {first_eta:{fmt}}, published",
        f"ETA set to {later:{fmt}} (was {first_eta:{fmt}}), published — The rollback is slower",
        f"ETA withdrawn (was {later:{fmt}}) — Unknown again",
    ]
    assert eta_events[1].data["previous_eta_at"] == first_eta.isoformat()


async def test_bad_guidance_is_refused_naming_the_field(db: Database) -> None:
    _, admin = await make_actor(db, Role.admin)
    async with db.session() as s:
        incident = await make_incident(s, admin, started_at=utcnow() - timedelta(hours=2))
        component_ids: list[str] = []
        maintenance = await make_maintenance(s, admin, component_ids)
    cases = [
        (dict(eta_at=incident.started_at - timedelta(minutes=1)), "eta_at", "before the incident started"),
        (dict(eta_at=datetime(9999, 12, 31, 23, 0, tzinfo=UTC)), "eta_at", "between the years 1970 and 9000"),
        (dict(eta_at=datetime(2030, 1, 1, 12, 0)), "eta_at", "time zone offset"),
        (dict(note="x" * 2001), "note", "at most 2000"),
        (dict(note="a\x00b"), "note", "NUL"),
    ]
    for kwargs, field, words in cases:
        values = {"eta_at": utcnow() + timedelta(hours=1), "note": "", "published": False, **kwargs}
        async with db.session() as s:
            with pytest.raises(InvalidInput) as refused:
                await guidance.set_eta(s, admin, incident_id=incident.id, **values)  # type: ignore[arg-type]
        assert refused.value.field == field and words in refused.value.message, refused.value.message
    async with db.session() as s:
        with pytest.raises(InvalidInput) as long_body:
            await guidance.set_workaround(s, admin, incident_id=incident.id, body="x" * 2001, published=False)
        with pytest.raises(NotFound):
            await guidance.set_workaround(s, admin, incident_id=maintenance.id, body="Wait.", published=False)
    assert long_body.value.field == "body" and "at most 2000" in long_body.value.message
    # A past ETA (after the start) is accepted: it may be recorded late.
    async with db.session() as s:
        await guidance.set_eta(
            s, admin, incident_id=incident.id, eta_at=utcnow() - timedelta(minutes=30), note="", published=False
        )
    assert await count_rows(db, EtaEstimate) == 1 and await count_rows(db, Workaround) == 0


async def test_resolved_incident_takes_no_new_guidance_but_can_be_cleared(db: Database) -> None:
    _, admin = await make_actor(db, Role.admin)
    async with db.session() as s:
        incident = await make_incident(s, admin)
        await guidance.set_workaround(s, admin, incident_id=incident.id, body="Use the app.", published=True)
    async with db.session() as s:
        loaded = await incidents.get_incident(s, incident.id)
        await incidents.post_update(s, admin, loaded, status="resolved", body="Fixed.")
    async with db.session() as s:
        with pytest.raises(Conflict) as refused:
            await guidance.set_workaround(s, admin, incident_id=incident.id, body="Other.", published=True)
        with pytest.raises(Conflict):
            await guidance.set_eta(s, admin, incident_id=incident.id, eta_at=utcnow(), note="", published=False)
    assert refused.value.field == "status" and "resolved" in refused.value.message
    async with db.session() as s:
        await guidance.set_workaround(s, admin, incident_id=incident.id, body="", published=False)
    async with db.session() as s:
        assert (await guidance.current(s, incident.id)).workaround is None


async def test_publishing_follows_the_approval_rule_and_wakes_the_public_page_only_when_public(db: Database) -> None:
    responder_user, responder = await make_actor(db, Role.responder)
    _, lead = await make_actor(db, Role.responder)
    _, admin = await make_actor(db, Role.admin)
    async with db.session() as s:
        incident = await make_incident(s, admin, severity="SEV1", roles={"communications_lead": lead.user_id})
    before = await _public_changes(db)
    async with db.session() as s:
        # SEV1 asks for approval of free text: a plain responder saves it internal, never published.
        await guidance.set_workaround(s, responder, incident_id=incident.id, body="Use the app.", published=False)
    assert await _public_changes(db) == before
    async with db.session() as s:
        assert not await guidance.may_publish(s, responder, await incidents.get_incident(s, incident.id))
        with pytest.raises(Forbidden) as refused:
            await guidance.set_workaround(s, responder, incident_id=incident.id, body="Use the app.", published=True)
    assert refused.value.field == "published" and "Communications Lead" in refused.value.message
    async with db.session() as s:
        await guidance.set_workaround(s, lead, incident_id=incident.id, body="Use the app.", published=True)
    assert await _public_changes(db) == before + 1
    async with db.session() as s:
        # Taking a published one off the page is a public change too.
        await guidance.set_workaround(s, responder, incident_id=incident.id, body="Use the app v2.", published=False)
    assert await _public_changes(db) == before + 2
    assert responder_user.id == responder.user_id


# ------------------------------------------------------------------------------ API


async def test_guidance_api(client: httpx.AsyncClient, db: Database) -> None:
    headers = await api_key_headers(db, Role.admin)
    _, admin = await make_actor(db, Role.admin)
    async with db.session() as s:
        incident = await make_incident(s, admin)
    base = f"{API}/incidents/{incident.id}"
    empty = await client.get(f"{base}/guidance", headers=headers)
    assert empty.status_code == 200 and empty.json() == {"workaround": None, "eta": None, "workarounds": [], "etas": []}
    set_w = await client.post(
        f"{base}/workaround", json={"body": "Use *SMS* codes.", "published": True}, headers=headers
    )
    assert set_w.status_code == 200, set_w.text
    assert set_w.json()["workaround"]["body_html"] == "<p>Use <em>SMS</em> codes.</p>\n"
    eta_at = (utcnow() + timedelta(hours=3)).replace(microsecond=0)
    set_e = await client.post(
        f"{base}/eta", json={"eta_at": eta_at.isoformat(), "note": "Vendor's estimate"}, headers=headers
    )
    assert set_e.status_code == 200, set_e.text
    body = (await client.get(f"{base}/guidance", headers=headers)).json()
    assert body["workaround"]["published"] is True and body["eta"]["published"] is False
    assert datetime.fromisoformat(body["eta"]["eta_at"]) == eta_at and body["eta"]["note"] == "Vendor's estimate"
    assert len(body["workarounds"]) == 1 and len(body["etas"]) == 1

    # Refusals name the field and store nothing.
    rows = await count_rows(db, EtaEstimate)
    before = await client.post(
        f"{base}/eta", json={"eta_at": (incident.started_at - timedelta(hours=1)).isoformat()}, headers=headers
    )
    assert before.status_code == 422 and error_locs(before) == [["body", "eta_at"]]
    naive = await client.post(f"{base}/eta", json={"eta_at": "2030-01-01T12:00:00"}, headers=headers)
    assert naive.status_code == 422 and "eta_at" in error_locs(naive)[0]
    extra = await client.post(f"{base}/workaround", json={"body": "x", "publish": True}, headers=headers)
    assert extra.status_code == 422
    too_long = await client.post(f"{base}/workaround", json={"body": "y" * 2001}, headers=headers)
    assert too_long.status_code == 422 and error_locs(too_long) == [["body", "body"]]
    assert "2000" in error_text(too_long)
    assert await count_rows(db, EtaEstimate) == rows
    missing = await client.get(f"{API}/incidents/nope/guidance", headers=headers)
    assert missing.status_code == 404
    anonymous = await client.post(f"{base}/workaround", json={"body": "x"})
    assert anonymous.status_code == 401
    viewer = await api_key_headers(db, Role.viewer)
    assert (await client.get(f"{base}/guidance", headers=viewer)).status_code == 200
    forbidden = await client.post(f"{base}/workaround", json={"body": "x"}, headers=viewer)
    assert forbidden.status_code == 403


# ------------------------------------------------------------------------------ public page


async def test_public_page_shows_only_the_published_current_guidance(client: httpx.AsyncClient, db: Database) -> None:
    _, admin = await make_actor(db, Role.admin)
    async with db.session() as s:
        incident = await make_incident(s, admin, name="Sign-in failures")
    async with db.session() as s:
        await guidance.set_workaround(
            s, admin, incident_id=incident.id, body="Internal: restart pod 7", published=False
        )
        await guidance.set_eta(
            s, admin, incident_id=incident.id, eta_at=datetime(2031, 3, 5, 14, 30, tzinfo=UTC), note="", published=False
        )
    page = (await client.get(f"/incidents/{incident.id}")).text
    assert "Sign-in failures" in page
    assert "restart pod 7" not in page and "Expected fix" not in page and "2031" not in page

    async with db.session() as s:
        await guidance.set_workaround(
            s, admin, incident_id=incident.id, body="Sign in with **SMS** codes.", published=True
        )
        await guidance.set_eta(
            s, admin, incident_id=incident.id, eta_at=datetime(2031, 3, 5, 14, 30, tzinfo=UTC),
            note="after the failover", published=True,
        )  # fmt: skip
    for path in (f"/incidents/{incident.id}", "/"):
        page = (await client.get(path)).text
        assert "Sign in with <strong>SMS</strong> codes." in page, path
        assert "Expected fix" in page and "Mar 05, 2031 · 14:30 UTC" in page and "after the failover" in page, path
    # The Statuspage v2 JSON keeps its format: no workaround or ETA fields.
    summary = orjson.loads((await client.get("/api/v2/summary.json")).content)
    assert "Sign in with" not in orjson.dumps(summary).decode()
    assert set(summary["incidents"][0]) >= {"id", "name", "incident_updates"}
    assert not {"workaround", "eta"} & set(summary["incidents"][0])

    # An unpublished newer version takes it off the page; so does resolving the incident.
    async with db.session() as s:
        await guidance.set_workaround(s, admin, incident_id=incident.id, body="Draft words", published=False)
    page = (await client.get(f"/incidents/{incident.id}")).text
    assert "SMS</strong> codes" not in page and "Draft words" not in page and "Expected fix" in page
    async with db.session() as s:
        await incidents.post_update(
            s, admin, await incidents.get_incident(s, incident.id), status="resolved", body="All good."
        )
    page = (await client.get(f"/incidents/{incident.id}")).text
    assert "All good." in page and "Expected fix" not in page


# ------------------------------------------------------------------------------ console


async def test_console_card_sets_withdraws_and_shows_history(client: httpx.AsyncClient, db: Database) -> None:
    _, csrf = await sign_in(client, db, Role.admin)
    _, admin = await make_actor(db, Role.admin)
    async with db.session() as s:
        incident = await make_incident(s, admin)
    url = f"/console/incidents/{incident.id}"
    page = await client.get(url)
    assert page.status_code == 200 and 'id="guidance"' in page.text and 'id="workaround-form"' in page.text

    saved = await client.post(
        f"{url}/workaround", data={"csrf_token": csrf, "body": "Use the *app*.", "published": "on"}, headers=HTML
    )
    assert saved.status_code == 303 and saved.headers["location"].endswith("#guidance")
    eta = utcnow() + timedelta(hours=2)
    saved = await client.post(
        f"{url}/eta", data={"csrf_token": csrf, "eta_at": utc_local(eta), "note": "Rolling back"}, headers=HTML
    )
    assert saved.status_code == 303
    page = await client.get(url)
    assert "Use the <em>app</em>." in page.text and "On the public page" in page.text
    assert eta.strftime("%Y-%m-%d %H:%M UTC") in page.text and "Rolling back" in page.text
    assert 'id="guidance-history"' in page.text

    refused = await client.post(
        f"{url}/eta", data={"csrf_token": csrf, "eta_at": "2001-01-01T00:00", "note": ""}, headers=HTML
    )
    assert refused.status_code == 422
    assert "before the incident started" in (field_error(refused.text, "eta_at") or "")
    missing = await client.post(f"{url}/eta", data={"csrf_token": csrf, "eta_at": ""}, headers=HTML)
    assert missing.status_code == 422 and field_error(missing.text, "eta_at")

    withdrawn = await client.post(f"{url}/workaround", data={"csrf_token": csrf, "action": "withdraw"}, headers=HTML)
    assert withdrawn.status_code == 303
    async with db.sessionmaker() as s:
        now = await guidance.current(s, incident.id)
    assert now.workaround is None and now.eta is not None
    timeline = (await client.get(url)).text
    assert "Workaround withdrawn" in timeline


# ------------------------------------------------------------------------------ templates


async def test_templates_fill_workaround_eta_and_eta_at_in_the_page_time_zone(db: Database) -> None:
    settings = Settings(demo=True, database_url="sqlite://", page_time_zone="Europe/Berlin", base_url="http://s.test")
    _, admin = await make_actor(db, Role.admin)
    async with db.session() as s:
        incident = await make_incident(s, admin)
        template = await comms.create_template(
            s,
            admin,
            scenario="Guidance",
            phase="identified",
            title="Sign-in failures",
            variables=[{"name": "workaround"}, {"name": "eta"}, {"name": "eta_at"}],
            body="Fix by {{ eta|time }}.{% if workaround %} Meanwhile: {{ workaround }}{% endif %}",
            email_subject="Expected fix {{ eta_at }}",
            email_text="{{ workaround }} / {{ eta_at }}",
        )
        await comms.approve_template(s, admin, template)
    async with db.session() as s:
        await guidance.set_workaround(s, admin, incident_id=incident.id, body="Use SMS codes.", published=False)
        await guidance.set_eta(
            s, admin, incident_id=incident.id, eta_at=datetime(2031, 1, 15, 13, 45, tzinfo=UTC), note="",
            published=False,
        )  # fmt: skip
    # Template words reach customers: internal guidance stays out of them.
    async with db.session() as s:
        values = await comms.incident_values(s, settings, await incidents.get_incident(s, incident.id))
    assert (values["workaround"], values["eta"], values["eta_at"]) == ("", None, "")
    async with db.session() as s:
        await guidance.set_workaround(s, admin, incident_id=incident.id, body="Use SMS codes.", published=True)
        await guidance.set_eta(
            s, admin, incident_id=incident.id, eta_at=datetime(2031, 1, 15, 13, 45, tzinfo=UTC), note="",
            published=True,
        )  # fmt: skip
    async with db.session() as s:
        published = await comms.publish_from_template(
            s, admin, settings, await incidents.get_incident(s, incident.id), template_id=template.id, values={}
        )
    # Berlin is UTC+1 in January.
    assert published.update.body == "Fix by 14:45 CET. Meanwhile: Use SMS codes."
    assert published.rendered.text("email_subject") == "Expected fix 15 Jan 2031, 14:45 CET"
    assert published.rendered.text("email_text") == "Use SMS codes. / 15 Jan 2031, 14:45 CET"
