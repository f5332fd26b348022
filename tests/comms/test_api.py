"""The comms API: templates, previews, publishing from a template, drafts and promises over HTTP."""

from __future__ import annotations

import httpx
from sqlalchemy import select

from crisisdesk.auth.models import Role
from crisisdesk.comms.models import MessageTemplate, UpdateDraft
from crisisdesk.incident.models import Incident
from crisisdesk.kit.db import Database
from crisisdesk.notify.models import UpdateMessage
from tests.fixtures.api import count_rows, error_locs, error_text
from tests.fixtures.auth import api_key_headers, make_actor
from tests.fixtures.comms import template_fields
from tests.fixtures.incident import make_component

API = "/api/v1"


async def test_templates_over_the_api_from_draft_to_publishing(client: httpx.AsyncClient, db: Database) -> None:
    responder = await api_key_headers(db, Role.responder)
    admin = await api_key_headers(db, Role.admin)
    async with db.session() as s:
        web = (await make_component(s, "Web app")).id

    created = await client.post(f"{API}/templates", headers=responder, json=template_fields())
    assert created.status_code == 201, created.text
    template = created.json()
    assert template["approved_at"] is None and template["variables"][0]["type"] == "components"
    tid = template["id"]

    preview = await client.post(
        f"{API}/templates/{tid}/preview",
        headers=responder,
        json={"values": {"components": ["Web app"], "workaround": "Use the mobile app"}},
    )
    assert preview.status_code == 200, preview.text
    channels = {c["variant"]: c for c in preview.json()["channels"]}
    assert set(channels) >= {"title", "body", "email_subject", "email_html", "sms", "slack", "teams", "social"}
    assert channels["title"]["text"] == "Sign-in failures for Web app"
    assert channels["sms"]["sms"]["encoding"] == "GSM-7" and channels["sms"]["sms"]["segments"] == 1
    assert preview.json()["warnings"] == []

    declared = await client.post(
        f"{API}/incidents/from-template",
        headers=responder,
        json={"template_id": tid, "severity": "SEV1", "components": {web: "major_outage"}},
    )
    assert declared.status_code == 409 and ["body", "template_id"] in error_locs(declared)
    assert "approval" in error_text(declared)

    assert (await client.post(f"{API}/templates/{tid}/approve", headers=responder)).status_code == 403
    approved = await client.post(f"{API}/templates/{tid}/approve", headers=admin)
    assert approved.status_code == 200 and approved.json()["approved_at"]

    declared = await client.post(
        f"{API}/incidents/from-template",
        headers=responder,
        json={"template_id": tid, "severity": "SEV1", "components": {web: "major_outage"}},
    )
    assert declared.status_code == 201, declared.text
    incident = declared.json()
    assert incident["name"] == "Sign-in failures for Web app" and incident["severity"] == "SEV1"

    # A misspelt variable used to be dropped silently: the update went out without the workaround.
    misspelt = await client.post(
        f"{API}/incidents/{incident['id']}/updates/from-template",
        headers=responder,
        json={"template_id": tid, "status": "identified", "values": {"work_around": "Use the mobile app"}},
    )
    assert misspelt.status_code == 422 and ["body", "values", "work_around"] in error_locs(misspelt)
    assert "workaround" in error_text(misspelt)
    update = await client.post(
        f"{API}/incidents/{incident['id']}/updates/from-template",
        headers=responder,
        json={"template_id": tid, "status": "identified", "values": {"workaround": "Use the mobile app"}},
    )
    assert update.status_code == 201, update.text
    assert "Workaround: Use the mobile app" in update.json()["body"]
    async with db.sessionmaker() as s:
        channels_written = set(
            await s.scalars(select(UpdateMessage.channel).where(UpdateMessage.update_id == update.json()["id"]))
        )
    assert channels_written == {"email", "sms", "slack", "teams", "social"}

    # A responder's edit of the approved template sends it back for approval.
    patched = await client.patch(
        f"{API}/templates/{tid}", headers=responder, json={"sms": "Sign-in failing since {{ start_time|time }}."}
    )
    assert patched.status_code == 200 and patched.json()["approved_at"] is None
    listed = await client.get(f"{API}/templates", params={"approved": "true"}, headers=responder)
    assert listed.json() == []


async def test_bad_templates_are_422_naming_the_field_and_nothing_is_stored(
    client: httpx.AsyncClient, db: Database
) -> None:
    headers = await api_key_headers(db, Role.responder)
    cases = [
        ({"sms": "{{ customer_name }}"}, ["body", "sms"], "'customer_name'"),
        ({"email_html": "<p>{% for x in components %}</p>"}, ["body", "email_html"], "syntax error on line 1"),
        ({"body": "{{ ''.__class__.__mro__ }}"}, ["body", "body"], "not allowed"),
        ({"variables": [{"name": "start_time", "type": "url"}]}, ["body", "variables", "0", "type"], "datetime"),
        ({"phase": "whenever"}, ["body", "phase"], "not a phase"),
        # A NUL used to reach PostgreSQL, which refused it, and the app answered 503 "database unreachable".
        ({"sms": "Down\x00"}, ["body", "sms"], "NUL"),
        ({"scenario": "Outage\x00"}, ["body", "scenario"], "NUL"),
        ({"variables": [{"name": "who", "label": "W\x00"}]}, ["body", "variables", "0", "label"], "NUL"),
    ]
    for overrides, loc, message in cases:
        response = await client.post(f"{API}/templates", headers=headers, json=template_fields(**overrides))
        assert response.status_code == 422, (overrides, response.text)
        assert loc in error_locs(response), (overrides, response.text)
        assert message in error_text(response), (overrides, error_text(response))
    assert await count_rows(db, MessageTemplate) == 0
    missing = await client.post(f"{API}/templates/nope/preview", headers=headers, json={})
    assert missing.status_code == 404
    for path in (f"{API}/templates/a%00b", f"{API}/updates/a%00b/deliveries"):  # PostgreSQL refused: 503
        assert (await client.get(path, headers=headers)).status_code == 404, path
    huge_phase = await client.post(f"{API}/templates", headers=headers, json=template_fields(phase="x" * 100_000))
    assert huge_phase.status_code == 422 and len(huge_phase.text) < 1000  # the message does not echo it all

    tid = (await client.post(f"{API}/templates", headers=headers, json=template_fields())).json()["id"]
    nul = await client.post(f"{API}/templates/{tid}/preview", headers=headers, json={"values": {"workaround": "a\x00"}})
    assert nul.status_code == 422 and ["body", "values", "workaround"] in error_locs(nul), nul.text
    unknown = await client.post(f"{API}/templates/{tid}/preview", headers=headers, json={"values": {"eta": "soon"}})
    assert unknown.status_code == 422 and ["body", "values", "eta"] in error_locs(unknown), unknown.text
    admin = await api_key_headers(db, Role.admin)
    assert (await client.post(f"{API}/templates/{tid}/approve", headers=admin)).status_code == 200
    declared = await client.post(
        f"{API}/incidents/from-template",
        headers=headers,
        json={"template_id": tid, "severity": "SEV3", "values": {"components": ["Web"], "x": 1}},
    )
    assert declared.status_code == 422 and ["body", "values", "x"] in error_locs(declared), declared.text
    assert await count_rows(db, Incident) == 0


async def test_drafts_over_the_api(client: httpx.AsyncClient, db: Database) -> None:
    lead_user, _ = await make_actor(db, Role.responder)
    admin = await api_key_headers(db, Role.admin)
    responder = await api_key_headers(db, Role.responder)
    viewer = await api_key_headers(db, Role.viewer)
    declared = await client.post(
        f"{API}/incidents",
        headers=admin,
        json={
            "name": "Exports stuck",
            "severity": "SEV1",
            "body": "Investigating.",
            "roles": {"communications_lead": lead_user.id},
        },
    )
    iid = declared.json()["id"]
    refused = await client.post(
        f"{API}/incidents/{iid}/updates", headers=responder, json={"status": "identified", "body": "Queue stuck."}
    )
    assert refused.status_code == 403 and "draft" in error_text(refused)

    draft = await client.post(
        f"{API}/incidents/{iid}/drafts", headers=responder, json={"status": "identified", "body": "Queue stuck."}
    )
    assert draft.status_code == 201 and draft.json()["state"] == "pending"
    did = draft.json()["id"]
    assert (await client.get(f"{API}/incidents/{iid}/drafts", headers=viewer)).json()[0]["id"] == did
    assert (await client.post(f"{API}/drafts/{did}/approve", headers=viewer)).status_code == 403
    assert (await client.post(f"{API}/drafts/{did}/approve", headers=responder)).status_code == 403
    no_reason = await client.post(f"{API}/drafts/{did}/reject", headers=admin, json={"reason": ""})
    assert no_reason.status_code == 422 and ["body", "reason"] in error_locs(no_reason)
    nul_reason = await client.post(f"{API}/drafts/{did}/reject", headers=admin, json={"reason": "no\x00"})
    assert nul_reason.status_code == 422 and ["body", "reason"] in error_locs(nul_reason)
    nul_body = await client.post(
        f"{API}/incidents/{iid}/drafts", headers=responder, json={"status": "identified", "body": "Queue\x00"}
    )
    assert nul_body.status_code == 422 and ["body", "body"] in error_locs(nul_body)

    approved = await client.post(f"{API}/drafts/{did}/approve", headers=admin)
    assert approved.status_code == 200, approved.text
    assert approved.json()["body"] == "Queue stuck." and approved.json()["status"] == "identified"
    async with db.sessionmaker() as s:
        assert (await s.get(UpdateDraft, did)).state == "published"
    again = await client.post(f"{API}/drafts/{did}/approve", headers=admin)
    assert again.status_code == 409

    promises = await client.get(f"{API}/incidents/{iid}/promises", headers=viewer)
    assert promises.status_code == 200
    first, second = promises.json()
    assert first["kept_at"] and first["overdue_seconds"] == 0 and second["kept_at"] is None

    policy = await client.put(f"{API}/severity-policies/SEV1", headers=admin, json={"free_text_approval": False})
    assert policy.status_code == 200 and policy.json()["free_text_approval"] is False
    free = await client.post(
        f"{API}/incidents/{iid}/updates", headers=responder, json={"status": "monitoring", "body": "Draining."}
    )
    assert free.status_code == 201
