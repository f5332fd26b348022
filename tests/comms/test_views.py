"""The comms console: the library and editor, writing from a template, drafts and the promise history."""

from __future__ import annotations

import re

import httpx
from sqlalchemy import select

from crisisdesk.auth.models import Role
from crisisdesk.comms.models import MessageTemplate, UpdateDraft
from crisisdesk.incident.models import IncidentUpdate
from crisisdesk.kit.db import Database
from tests.fixtures.auth import actor, make_actor
from tests.fixtures.comms import make_template, template_fields
from tests.fixtures.console import HTML, field_error, sign_in
from tests.fixtures.incident import make_component, make_incident


async def test_a_responders_free_text_goes_to_the_lead_who_approves_it(client: httpx.AsyncClient, db: Database) -> None:
    lead, _ = await make_actor(db, name="Carla Lead")
    _, admin = await make_actor(db, Role.admin)
    async with db.session() as s:
        incident = await make_incident(s, admin, severity="SEV1", roles={"communications_lead": lead.id})
    author, csrf = await sign_in(client, db, name="Rui Responder")
    page = await client.get(f"/console/incidents/{incident.id}")
    assert f'action="/console/incidents/{incident.id}/drafts" id="update-form"' in page.text
    assert "Submit for approval" in page.text and 'id="draft-note"' in page.text
    submitted = await client.post(
        f"/console/incidents/{incident.id}/drafts",
        headers=HTML,
        data={"csrf_token": csrf, "status": "identified", "body": "The IdP rotated its signing key."},
    )
    assert submitted.status_code == 303
    page = await client.get(f"/console/incidents/{incident.id}")
    pending = re.search(r'<ul class="list" id="pending-drafts">(.*?)</ul>', page.text, re.S)
    assert pending and "The IdP rotated its signing key." in pending.group(1)
    assert "Approve and publish" not in pending.group(1)  # the author cannot approve
    dashboard = await client.get("/console")
    assert "1 draft waiting for approval" in dashboard.text

    csrf = await _login_as(client, lead.email)
    page = await client.get(f"/console/incidents/{incident.id}")
    assert "Approve and publish" in page.text and "Publish update" in page.text  # the lead publishes directly
    async with db.session() as s:
        draft = await s.scalar(select(UpdateDraft))
    no_reason = await client.post(
        f"/console/drafts/{draft.id}/reject", headers=HTML, data={"csrf_token": csrf, "reason": " "}
    )
    assert no_reason.status_code == 422 and field_error(no_reason.text, "reason") == "say why the draft is rejected"
    approved = await client.post(f"/console/drafts/{draft.id}/approve", headers=HTML, data={"csrf_token": csrf})
    assert approved.status_code == 303
    page = await client.get(f"/console/incidents/{incident.id}")
    assert "approved and published Rui Responder" in page.text
    timeline = re.search(r'<ol id="timeline".*?</ol>', page.text, re.S)
    assert timeline and "The IdP rotated its signing key." in timeline.group(0)
    assert 'id="promise-summary">2 promises' in page.text
    async with db.session() as s:
        update = await s.scalar(select(IncidentUpdate).where(IncidentUpdate.approved_by_id == lead.id))
        assert update.author_id == author.id


async def _login_as(client: httpx.AsyncClient, email: str) -> str:
    from tests.fixtures.auth import login

    client.cookies.clear()
    return await login(client, email)


async def test_write_from_template_prefills_previews_and_publishes(client: httpx.AsyncClient, db: Database) -> None:
    _, admin = await make_actor(db, Role.admin)
    async with db.session() as s:
        sso = await make_component(s, "Sign-in (SSO)")
        template = await make_template(s, admin, phase="identified")
        incident = await make_incident(s, admin, severity="SEV1", components={sso.id: "major_outage"})
    _, csrf = await sign_in(client, db)  # a responder, not the Communications Lead
    page = await client.get(f"/console/incidents/{incident.id}/compose")
    assert page.status_code == 200
    assert re.search(r'<option value="Sign-in \(SSO\)" selected>', page.text)  # prefilled from the incident
    assert f"http://status.test/incidents/{incident.id}" in page.text
    assert 'data-variant="sms"' in page.text and "GSM-7" in page.text

    preview = await client.post(
        f"/console/incidents/{incident.id}/compose",
        headers=HTML,
        data={
            "csrf_token": csrf,
            "template_id": template.id,
            "action": "preview",
            "var:components": "Sign-in (SSO)",
            "var:workaround": "Sign in with a password",
            "var:incident_url": f"http://status.test/incidents/{incident.id}",
            "var:start_time": "2026-01-01T10:00",
            "var:next_update_at": "",
        },
    )
    assert preview.status_code == 200 and "Workaround: Sign in with a password" in preview.text
    bad = await client.post(
        f"/console/incidents/{incident.id}/compose",
        headers=HTML,
        data={"csrf_token": csrf, "template_id": template.id, "action": "publish", "var:incident_url": "ftp://x"},
    )
    assert bad.status_code == 422 and "http(s) URL" in (field_error(bad.text, "var:incident_url") or "")
    published = await client.post(
        f"/console/incidents/{incident.id}/compose",
        headers=HTML,
        data={
            "csrf_token": csrf,
            "template_id": template.id,
            "action": "publish",
            "status": "identified",
            "var:workaround": "Sign in with a password",
        },
    )
    assert published.status_code == 303, published.text
    async with db.session() as s:
        update = await s.scalar(select(IncidentUpdate).where(IncidentUpdate.template_id == template.id))
        assert update is not None and "Workaround: Sign in with a password" in update.body


async def test_template_editor_shows_the_field_that_is_wrong(client: httpx.AsyncClient, db: Database) -> None:
    _, csrf = await sign_in(client, db)
    fields = template_fields()
    data: dict[str, str] = {"csrf_token": csrf, "action": "save"}
    data.update({k: v for k, v in fields.items() if isinstance(v, str)})
    for index, variable in enumerate(fields["variables"]):
        data[f"var_name_{index}"] = variable["name"]
        data[f"var_type_{index}"] = variable["type"]
        if variable["required"]:
            data[f"var_required_{index}"] = "on"
    refused = await client.post("/console/templates", headers=HTML, data={**data, "slack": "{{ customer }} down"})
    assert refused.status_code == 422
    assert "&#39;customer&#39;" in (field_error(refused.text, "slack") or "")
    assert "{{ customer }} down</textarea>" in refused.text  # what was typed stays
    saved = await client.post("/console/templates", headers=HTML, data=data)
    assert saved.status_code == 303
    page = await client.get(saved.headers["location"])
    assert "Awaiting approval" in page.text and 'data-variant="social"' in page.text
    library = await client.get("/console/templates")
    assert "Identity provider outage" in library.text
    async with db.session() as s:
        assert (await s.scalar(select(MessageTemplate))).approved_at is None


async def test_declare_page_offers_templates_and_declares_from_one(client: httpx.AsyncClient, db: Database) -> None:
    admin_user, _ = await make_actor(db, Role.admin)
    async with db.session() as s:
        sso = await make_component(s, "Sign-in (SSO)")
        template = await make_template(s, actor(admin_user))
    _, csrf = await sign_in(client, db)
    page = await client.get("/console/incidents/new")
    assert 'id="declare-template-picker"' in page.text and template.id in page.text
    form = await client.get("/console/incidents/new/template", params={"template_id": template.id})
    assert form.status_code == 200 and 'id="compose-form"' in form.text
    declared = await client.post(
        "/console/incidents/new/template",
        headers=HTML,
        data={
            "csrf_token": csrf,
            "template_id": template.id,
            "action": "publish",
            "severity": "SEV1",
            f"component:{sso.id}": "major_outage",
            "var:components": "Sign-in (SSO)",
            "var:start_time": "2026-01-01T10:00",
        },
    )
    assert declared.status_code == 303, declared.text
    page = await client.get(declared.headers["location"])
    assert "Sign-in failures for Sign-in (SSO)" in page.text


async def test_an_admin_turns_free_text_approval_off_for_a_severity(client: httpx.AsyncClient, db: Database) -> None:
    _, csrf = await sign_in(client, db, role=Role.admin)
    page = await client.get("/console/severity")
    assert page.text.count('name="free_text_approval" value="on" checked') == 2  # SEV1 and SEV2 by default
    response = await client.post(
        "/console/severity/SEV2",
        headers=HTML,
        data={"csrf_token": csrf, "cadence_minutes": "30", "required_roles": "incident_commander"},
    )
    assert response.status_code == 303
    page = await client.get("/console/severity")
    assert page.text.count('name="free_text_approval" value="on" checked') == 1
    from crisisdesk.incident import policy as policies
    from crisisdesk.incident.models import Severity

    async with db.session() as s:
        assert (await policies.get_policy(s, Severity.SEV2)).free_text_approval is False
        assert (await policies.get_policy(s, Severity.SEV1)).free_text_approval is True
