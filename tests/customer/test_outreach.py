"""Proactive outreach: exactly the affected accounts, each with its own impact, over real SMTP; CSM tasks."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from datetime import UTC, datetime

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from crisisdesk.auth.models import Role
from crisisdesk.comms import service as comms
from crisisdesk.config import Settings
from crisisdesk.customer import accounts as account_service
from crisisdesk.customer import affected, impact, outreach
from crisisdesk.customer.models import Account, CsmTask, Outreach, OutreachAccount, TaskStatus
from crisisdesk.incident import guidance
from crisisdesk.incident import service as incidents
from crisisdesk.kit.db import Database
from crisisdesk.kit.errors import Conflict, Forbidden, InvalidInput
from crisisdesk.notify.models import Delivery, Purpose
from crisisdesk.notify.tasks import delivery_worker
from tests.fixtures.api import count_rows, error_locs, error_text
from tests.fixtures.auth import api_key_headers
from tests.fixtures.console import HTML, sign_in
from tests.fixtures.outreach import ACCOUNTS, CSM, make_outreach_world, outreach_template_fields
from tests.fixtures.peers import SmtpSink
from tests.fixtures.ports import worker_port

API = "/api/v1"


async def _stored(db: Database) -> tuple[int, int, int, int]:
    return (
        await count_rows(db, Outreach),
        await count_rows(db, OutreachAccount),
        await count_rows(db, Delivery),
        await count_rows(db, CsmTask),
    )


async def test_outreach_reaches_exactly_the_affected_accounts_each_with_its_own_impact(
    app: FastAPI, client: httpx.AsyncClient, db: Database, settings: Settings
) -> None:
    world = await make_outreach_world(db)
    async with db.session() as s:
        await guidance.set_workaround(
            s, world.admin, incident_id=world.incident_id, body="Use SMS codes.", published=True
        )
        await guidance.set_eta(
            s, world.admin, incident_id=world.incident_id, eta_at=datetime(2031, 1, 15, 13, 45, tzinfo=UTC), note="",
            published=True,
        )  # fmt: skip
    headers = await api_key_headers(db, Role.admin)
    url = f"{API}/incidents/{world.incident_id}/outreach"

    preview = await client.post(url, json={"template_id": world.template_id, "dry_run": True}, headers=headers)
    assert preview.status_code == 200, preview.text
    body = preview.json()
    assert body["dry_run"] is True and body["outreach"] is None
    # Acme (2 contacts), Beta (1) and Delta (none) use Sign-in; Gamma uses only Billing.
    assert (body["account_count"], body["delivery_count"], body["task_count"]) == (3, 3, 1)
    assert body["accounts_without_contacts"] == 1
    sample = body["sample"]
    assert sample["account_name"] == "Acme" and sample["to"] == ["ops@acme.example", "cfo@acme.example"]
    assert sample["subject"] == "Acme: Sign-in failures"
    assert "Dear Acme team (Enterprise)" in sample["text"] and "Workaround: Use SMS codes." in sample["text"]
    assert "Expected fix: 15 Jan 2031, 13:45 UTC" in sample["text"]
    assert await _stored(db) == (0, 0, 0, 0)

    sent = await client.post(url, json={"template_id": world.template_id}, headers=headers)
    assert sent.status_code == 201, sent.text
    stored = sent.json()["outreach"]
    assert stored["account_count"] == 3 and stored["delivery_count"] == 3 and stored["task_count"] == 1
    assert stored["subject"] == "Acme: Sign-in failures" and stored["deliveries"] == {"pending": 3}

    # A double click: the same template again within a minute is refused, and nothing more is stored.
    again = await client.post(url, json={"template_id": world.template_id}, headers=headers)
    assert again.status_code == 409 and error_locs(again) == [["body", "template_id"]]
    assert await _stored(db) == (1, 3, 3, 1)

    settings.smtp_host, settings.smtp_port = "127.0.0.1", worker_port(18800)
    async with SmtpSink(settings.smtp_port) as sink:
        async with delivery_worker(app.state.runtime) as worker:
            assert await worker.run_once() == 3
        await sink.wait_for(3)
        mails = {tuple(m.rcpt_tos): m.message for m in sink.received}
    assert set(mails) == {("ops@acme.example",), ("cfo@acme.example",), ("it@beta.example",)}
    for address in ("ops@acme.example", "cfo@acme.example"):
        message = mails[(address,)]
        assert message["Subject"] == "Acme: Sign-in failures"
        text = message.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
        assert "Dear Acme team (Enterprise)" in text and "Sign-in has been affected for you since" in text
        assert "Beta" not in text
    beta = mails[("it@beta.example",)]
    assert beta["Subject"] == "Beta: Sign-in failures"
    beta_text = beta.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    assert "Dear Beta team (Pro)" in beta_text and "Acme" not in beta_text
    assert "<p>Dear Beta team,</p>" in beta.get_body(preferencelist=("html",)).get_content()  # type: ignore[union-attr]

    listed = (await client.get(url, headers=headers)).json()
    assert [o["id"] for o in listed] == [stored["id"]] and listed[0]["deliveries"] == {"delivered": 3}
    assert listed[0]["template_name"] == "Proactive outreach (identified)"

    acme = (await client.get(f"{API}/accounts/{world.accounts['acme']}/outreach", headers=headers)).json()
    assert len(acme) == 1 and acme[0]["contacts"] == ["ops@acme.example", "cfo@acme.example"]
    assert acme[0]["delivery_count"] == 2 and acme[0]["task_id"] is not None
    assert acme[0]["impact"]["tier"] == "Enterprise" and acme[0]["impact"]["arr_cents"] == 9_000_000
    assert [c["name"] for c in acme[0]["impact"]["components"]] == ["Sign-in"]
    assert acme[0]["impact"]["components"][0]["status"] == "major_outage"
    delta = (await client.get(f"{API}/accounts/{world.accounts['delta']}/outreach", headers=headers)).json()
    assert delta[0]["contacts"] == [] and delta[0]["delivery_count"] == 0
    gamma = await client.get(f"{API}/accounts/{world.accounts['gamma']}/outreach", headers=headers)
    assert gamma.status_code == 200 and gamma.json() == []

    async with db.sessionmaker() as s:
        rows = list(await s.scalars(select(Delivery).order_by(Delivery.address)))
        events = [e for e in await incidents.timeline_of(s, world.incident_id) if e.kind == "outreach_sent"]
    assert {r.purpose for r in rows} == {Purpose.outreach} and {r.channel for r in rows} == {"email"}
    assert {r.subject for r in rows} == {
        f"outreach:{stored['id']}:{world.accounts['acme']}",
        f"outreach:{stored['id']}:{world.accounts['beta']}",
    }
    assert len(events) == 1 and "3 affected accounts, 3 emails, 1 CSM tasks" in events[0].summary


async def test_csm_tasks_only_for_top_tiers_and_one_per_account_and_incident(
    client: httpx.AsyncClient, db: Database, settings: Settings
) -> None:
    world = await make_outreach_world(db)
    async with db.session() as s:
        plan = await outreach.send(
            s, world.admin, settings, incident_id=world.incident_id, template_id=world.template_id
        )
    assert plan.task_count == 1
    async with db.sessionmaker() as s:
        [task] = list(await s.scalars(select(CsmTask)))
    assert task.account_id == world.accounts["acme"] and task.assignee == CSM and task.status == TaskStatus.open
    assert task.title == "Call Acme about INC-1: Sign-in failures" and "Sign-in" in task.body
    assert task.due_at is not None

    # Another template, with Pro counted as top tier too: Acme keeps its open task, Beta and Delta get one.
    async with db.session() as s:
        other = await comms.create_template(s, world.admin, **outreach_template_fields(phase="monitoring"))
        await comms.approve_template(s, world.admin, other)
    async with db.session() as s:
        second = await outreach.send(
            s, world.admin, settings, incident_id=world.incident_id, template_id=other.id,
            top_tiers=["enterprise", "PRO"],
        )  # fmt: skip
    assert second.task_count == 2
    async with db.sessionmaker() as s:
        tasks = {t.account_id: t for t in await s.scalars(select(CsmTask))}
        records = {r.account_id: r.task_id for r in await s.scalars(select(OutreachAccount).where(
            OutreachAccount.outreach_id == second.outreach.id))}  # type: ignore[union-attr]  # fmt: skip
    assert set(tasks) == {world.accounts[a] for a in ("acme", "beta", "delta")}
    assert records[world.accounts["acme"]] == task.id
    assert tasks[world.accounts["beta"]].assignee is None

    headers = await api_key_headers(db, Role.responder)
    mine = await client.get(f"{API}/csm-tasks", params={"assignee": CSM.upper(), "status": "open"}, headers=headers)
    assert mine.status_code == 200 and mine.json()["total"] == 1
    [item] = mine.json()["items"]
    assert item["account_name"] == "Acme" and item["incident_number"] == 1 and item["id"] == task.id
    done = await client.post(f"{API}/csm-tasks/{task.id}/done", headers=headers)
    assert done.status_code == 200 and done.json()["status"] == "done" and done.json()["done_at"]
    twice = await client.post(f"{API}/csm-tasks/{task.id}/done", headers=headers)
    assert twice.status_code == 409 and error_locs(twice) == [["body", "status"]]
    assert (await client.get(f"{API}/csm-tasks", params={"status": "done"}, headers=headers)).json()["total"] == 1
    open_ = (await client.get(f"{API}/csm-tasks", params={"status": "open"}, headers=headers)).json()
    assert open_["total"] == 2
    bad = await client.get(f"{API}/csm-tasks", params={"status": "closed"}, headers=headers)
    assert bad.status_code == 422 and error_locs(bad) == [["body", "status"]]
    assert (await client.post(f"{API}/csm-tasks/999999/done", headers=headers)).status_code == 404
    async with db.sessionmaker() as s:
        kinds = [e.kind for e in await incidents.timeline_of(s, world.incident_id)]
    assert "csm_task_done" in kinds
    # After the task is done, a further outreach opens a new one for Acme.
    async with db.session() as s:
        third = await comms.create_template(s, world.admin, **outreach_template_fields(phase="resolved"))
        await comms.approve_template(s, world.admin, third)
    async with db.session() as s:
        plan = await outreach.send(s, world.admin, settings, incident_id=world.incident_id, template_id=third.id)
    assert plan.task_count == 1


async def test_unapproved_or_archived_templates_are_refused_and_nothing_is_stored(
    client: httpx.AsyncClient, db: Database
) -> None:
    world = await make_outreach_world(db, approve=False)
    headers = await api_key_headers(db, Role.admin)
    url = f"{API}/incidents/{world.incident_id}/outreach"
    for dry_run in (True, False):
        refused = await client.post(url, json={"template_id": world.template_id, "dry_run": dry_run}, headers=headers)
        assert refused.status_code == 409, refused.text
        assert error_locs(refused) == [["body", "template_id"]] and "approval" in error_text(refused)
    async with db.session() as s:
        template = await comms.get_template(s, world.template_id)
        await comms.approve_template(s, world.admin, template)
        await comms.archive_template(s, world.admin, template)
    archived = await client.post(url, json={"template_id": world.template_id}, headers=headers)
    assert archived.status_code == 409 and "archived" in error_text(archived)
    missing = await client.post(url, json={"template_id": "nope"}, headers=headers)
    assert missing.status_code == 404 and error_locs(missing) == [["body", "template_id"]]
    assert await _stored(db) == (0, 0, 0, 0)


async def test_tiers_and_contact_roles_narrow_it(db: Database, settings: Settings) -> None:
    world = await make_outreach_world(db)
    async with db.session() as s:
        plan = await outreach.send(
            s, world.admin, settings, incident_id=world.incident_id, template_id=world.template_id,
            tiers=["enterprise"], contact_roles=["BILLING"],
        )  # fmt: skip
    assert (plan.account_count, plan.delivery_count, plan.task_count) == (1, 1, 1)
    assert plan.tiers == ["enterprise"] and plan.contact_roles == ["BILLING"]
    async with db.sessionmaker() as s:
        [delivery] = list(await s.scalars(select(Delivery)))
        [record] = list(await s.scalars(select(OutreachAccount)))
        [event] = [e for e in await incidents.timeline_of(s, world.incident_id) if e.kind == "outreach_sent"]
    assert delivery.address == "cfo@acme.example" and record.contacts == ["cfo@acme.example"]
    assert "tiers enterprise; contacts BILLING" in event.summary
    async with db.session() as s:
        with pytest.raises(InvalidInput) as bad:
            await outreach.send(
                s, world.admin, settings, incident_id=world.incident_id, template_id=world.template_id,
                tiers=["x" * 101], dry_run=True,
            )  # fmt: skip
    assert bad.value.field == "tiers"
    async with db.session() as s:
        nobody = await outreach.send(
            s, world.admin, settings, incident_id=world.incident_id, template_id=world.template_id,
            tiers=["Platinum"], dry_run=True,
        )  # fmt: skip
    assert nobody.account_count == 0 and nobody.sample is None


async def test_accounts_are_read_a_page_at_a_time(
    db: Database, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = await make_outreach_world(db)
    async with db.session() as s:
        await account_service.upsert_many(
            s,
            [
                account_service.AccountData(
                    external_id=f"bulk{i}", name=f"Bulk {i:02d}", tier="Pro", arr_cents=1000 + i,
                    component_ids=[world.components["Sign-in"]],
                    contacts=[account_service.Contact(f"P{i}", f"p{i}@bulk.example", "admin")],
                )
                for i in range(7)
            ],
        )  # fmt: skip
    pages: list[int] = []
    real = affected.page

    async def spy(session: AsyncSession, found: affected.Snapshot, ids: list[str]) -> list[impact.AccountImpact]:
        loaded = await real(session, found, ids)
        pages.append(len(loaded))
        return loaded

    monkeypatch.setattr(outreach, "PAGE", 4)
    monkeypatch.setattr(affected, "page", spy)
    async with db.session() as s:
        plan = await outreach.send(
            s, world.admin, settings, incident_id=world.incident_id, template_id=world.template_id
        )
    assert pages == [4, 4, 2]
    assert plan.account_count == 10 and plan.delivery_count == 3 + 7
    async with db.sessionmaker() as s:
        recorded = await s.scalar(select(func.count()).select_from(OutreachAccount))
        addresses = set(await s.scalars(select(Delivery.address)))
    assert recorded == 10 and {f"p{i}@bulk.example" for i in range(7)} <= addresses


def _bulk(world_components: dict[str, str], i: int, arr_cents: int) -> account_service.AccountData:
    return account_service.AccountData(
        external_id=f"bulk{i}",
        name=f"Bulk {i}",
        tier="Pro",
        arr_cents=arr_cents,
        component_ids=[world_components["Sign-in"]],
        contacts=[account_service.Contact(f"P{i}", f"p{i}@bulk.example", "admin")],
    )


@pytest.mark.parametrize("change", ["a larger account arrives", "a sent account shrinks"])
async def test_an_import_during_the_send_neither_skips_nor_repeats_an_account(
    db: Database, settings: Settings, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    """Accounts change between two pages (committed by an import on PostgreSQL): the outreach still
    writes once to each account that was affected when it started, and to no other."""
    world = await make_outreach_world(db)
    async with db.session() as s:
        await account_service.upsert_many(s, [_bulk(world.components, i, 1_000_000 - i) for i in range(4)])
    # Largest ARR first: Acme, Beta, Bulk 0-3, Delta; two a page.
    before = ["acme", "beta", "bulk0", "bulk1", "bulk2", "bulk3", "delta"]
    ext, name, tier, _, uses, people, csm = ACCOUNTS[0]
    import_ = [
        _bulk(world.components, 9, 50_000_000)
        if change == "a larger account arrives"
        else account_service.AccountData(
            external_id=ext, name=name, tier=tier, arr_cents=1, csm_owner=csm,
            component_ids=[world.components[c] for c in uses],
            contacts=[account_service.Contact(n, e, r) for n, e, r in people],
        )
    ]  # fmt: skip
    real = outreach._contacts
    calls = 0

    async def contacts_then_import(session: AsyncSession, ids: Sequence[str], roles: Sequence[str]) -> object:
        nonlocal calls
        calls += 1
        found = await real(session, ids, roles)
        if calls == 1:  # the first page is read: the import lands before the second is
            if db.is_sqlite:  # one writer at a time: the send's own transaction stands in for the import's
                await account_service.upsert_many(session, import_)
            else:
                async with asyncio.timeout(20), db.session() as other:
                    await account_service.upsert_many(other, import_)
        return found

    monkeypatch.setattr(outreach, "PAGE", 2)
    monkeypatch.setattr(outreach, "_contacts", contacts_then_import)
    async with db.session() as s:
        plan = await outreach.send(
            s, world.admin, settings, incident_id=world.incident_id, template_id=world.template_id
        )
    assert calls == 4 and plan.account_count == len(before)
    async with db.sessionmaker() as s:
        written = list(
            await s.scalars(select(Account.external_id).join(OutreachAccount, OutreachAccount.account_id == Account.id))
        )
        addresses = sorted(await s.scalars(select(Delivery.address).where(Delivery.purpose == Purpose.outreach)))
    assert sorted(written) == before
    assert addresses == sorted(
        ["ops@acme.example", "cfo@acme.example", "it@beta.example", *(f"p{i}@bulk.example" for i in range(4))]
    )


async def test_who_may_send_and_bad_renders(client: httpx.AsyncClient, db: Database, settings: Settings) -> None:
    world = await make_outreach_world(db)
    async with db.session() as s:
        # A responder without the IC or Communications Lead role may preview but not send.
        preview = await outreach.send(
            s, world.responder, settings, incident_id=world.incident_id, template_id=world.template_id, dry_run=True
        )
        assert preview.account_count == 3
        with pytest.raises(Forbidden):
            await outreach.send(
                s, world.responder, settings, incident_id=world.incident_id, template_id=world.template_id
            )
    async with db.session() as s:
        plan = await outreach.send(
            s, world.commander, settings, incident_id=world.incident_id, template_id=world.template_id
        )
    assert plan.outreach is not None
    viewer = await api_key_headers(db, Role.viewer)
    url = f"{API}/incidents/{world.incident_id}/outreach"
    assert (await client.post(url, json={"template_id": world.template_id}, headers=viewer)).status_code == 403
    assert (await client.get(url, headers=viewer)).status_code == 200
    assert (await client.post(url, json={"template_id": world.template_id})).status_code == 401
    # A subject that renders too long for one account refuses the whole send, naming the variant.
    async with db.session() as s:
        long = await comms.create_template(
            s, world.admin, **outreach_template_fields(phase="resolved", email_subject="{{ account.name * 60 }}")
        )
        await comms.approve_template(s, world.admin, long)
    before = await _stored(db)
    with pytest.raises(InvalidInput) as refused:
        async with db.session() as s:
            await outreach.send(s, world.admin, settings, incident_id=world.incident_id, template_id=long.id)
    assert refused.value.field == "email_subject" and "at most 200" in refused.value.message
    assert await _stored(db) == before
    async with db.session() as s:
        with pytest.raises(Conflict):
            await outreach.send(s, world.admin, settings, incident_id=world.incident_id, template_id=world.template_id)


async def test_console_outreach_card_preview_send_and_tasks_page(client: httpx.AsyncClient, db: Database) -> None:
    world = await make_outreach_world(db)
    _, csrf = await sign_in(client, db, Role.admin)
    page = await client.get(f"/console/incidents/{world.incident_id}")
    assert (
        page.status_code == 200 and 'id="outreach-form"' in page.text and "Proactive outreach (identified)" in page.text
    )
    assert 'value="Enterprise"' in page.text and 'value="Pro"' in page.text

    form = {"csrf_token": csrf, "template_id": world.template_id, "top_tiers": "Enterprise", "action": "preview"}
    preview = await client.post(f"/console/incidents/{world.incident_id}/outreach", data=form, headers=HTML)
    assert preview.status_code == 200, preview.text
    assert 'data-count="accounts">3<' in preview.text and 'data-count="emails">3<' in preview.text
    assert "What Acme receives" in preview.text and "Dear Acme team (Enterprise)" in preview.text
    assert 'id="outreach-send-form"' in preview.text
    assert await _stored(db) == (0, 0, 0, 0)

    sent = await client.post(
        f"/console/incidents/{world.incident_id}/outreach", data={**form, "action": "send"}, headers=HTML
    )
    assert sent.status_code == 303 and sent.headers["location"].endswith("#outreach")
    assert (await _stored(db))[:3] == (1, 3, 3)
    twice = await client.post(
        f"/console/incidents/{world.incident_id}/outreach", data={**form, "action": "send"}, headers=HTML
    )
    assert twice.status_code == 409 and "less than a minute ago" in twice.text
    page = await client.get(f"/console/incidents/{world.incident_id}")
    assert 'id="outreach-list"' in page.text and "3 accounts, 3 emails" in page.text

    tasks = await client.get("/console/csm-tasks")
    assert tasks.status_code == 200 and "Call Acme about INC-1" in tasks.text and CSM in tasks.text
    async with db.sessionmaker() as s:
        task_id = await s.scalar(select(CsmTask.id))
    done = await client.post(
        f"/console/csm-tasks/{task_id}/done", data={"csrf_token": csrf, "status": "open"}, headers=HTML
    )
    assert done.status_code == 303 and done.headers["location"] == "/console/csm-tasks?status=open"
    after = await client.get("/console/csm-tasks?status=open")
    assert "Call Acme" not in after.text and "No tasks." in after.text
    assert "Call Acme" in (await client.get("/console/csm-tasks?status=done")).text
    bad = await client.get("/console/csm-tasks?status=closed")
    assert bad.status_code == 422 and "not a task status" in bad.text


async def test_the_card_lists_tiers_from_the_tier_index_without_reading_every_account(
    client: httpx.AsyncClient, db: Database
) -> None:
    """The incident page is loaded often: its tier choices come from a walk of the tier index
    (one probe per tier), not SELECT DISTINCT over every account."""
    world = await make_outreach_world(db)
    async with db.session() as s:
        await account_service.upsert_many(
            s,
            [
                account_service.AccountData(external_id="tiny", name="Tiny", tier="basic"),
                account_service.AccountData(external_id="none", name="No tier"),
            ],
        )
    await sign_in(client, db, Role.admin)
    statements: list[str] = []

    def seen(conn: object, cursor: object, statement: str, *args: object) -> None:
        statements.append(" ".join(statement.split()))

    event.listen(db.engine.sync_engine, "before_cursor_execute", seen)
    try:
        page = await client.get(f"/console/incidents/{world.incident_id}", headers=HTML)
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", seen)
    assert page.status_code == 200
    shown = re.findall(r'<input type="checkbox" name="tiers" value="([^"]*)"', page.text)
    assert shown == ["basic", "Enterprise", "Pro"]
    assert not [s for s in statements if re.search(r"SELECT DISTINCT account\.tier", s, re.I)]
    assert [s for s in statements if "WITH RECURSIVE t(tier)" in s]
