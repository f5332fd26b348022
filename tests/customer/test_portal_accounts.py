"""What staff set up for private pages: allow-listed email domains (API and CSV) and notes (API)."""

from __future__ import annotations

import csv
import io

import httpx
from sqlalchemy import select

from crisisdesk.auth.models import Role, Scope
from crisisdesk.customer import importing
from crisisdesk.customer.models import Account, AccountDomain, AccountNote
from crisisdesk.kit.db import Database
from tests.fixtures.api import count_rows, error_locs, error_text
from tests.fixtures.auth import api_key_headers, make_actor
from tests.fixtures.incident import make_component, make_incident
from tests.fixtures.portal import make_account

HEADER = ",".join(importing.COLUMNS) + ",domains\n"


def _rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


async def _domains(db: Database) -> dict[str, list[str]]:
    """external id -> its domains."""
    async with db.sessionmaker() as session:
        rows = await session.execute(
            select(Account.external_id, AccountDomain.domain)
            .join(AccountDomain, AccountDomain.account_id == Account.id)
            .order_by(AccountDomain.domain)
        )
        found: dict[str, list[str]] = {}
        for external_id, domain in rows.all():
            found.setdefault(external_id, []).append(domain)
        return found


async def test_domains_through_the_api(client: httpx.AsyncClient, db: Database) -> None:
    admin = await api_key_headers(db, Role.admin)
    body = {"external_id": "acme", "name": "Acme", "domains": [" @Acme.Example ", "acme.example", "ACME.io."]}
    created = await client.post("/api/v1/accounts", json=body, headers=admin)
    assert created.status_code == 201, created.text
    account = created.json()
    assert account["domains"] == ["acme.example", "acme.io"]
    assert (await client.get(f"/api/v1/accounts/{account['id']}", headers=admin)).json()["domains"] == [
        "acme.example",
        "acme.io",
    ]
    # Unicode names are kept in their ASCII (IDNA) form, as mail domains are compared.
    umlaut = await client.post(
        "/api/v1/accounts", json={"external_id": "mu", "name": "Müller", "domains": ["Müller.example"]}, headers=admin
    )
    assert umlaut.status_code == 201 and umlaut.json()["domains"] == ["xn--mller-kva.example"]

    for bad, rule in (
        (["not a domain"], "is not a domain name"),
        (["localhost"], "is not a domain name"),
        (["user@acme.example"], "is not a domain name"),
        (["-acme.example"], "is not a domain name"),
        (["Gmail.com"], "public mail provider"),
    ):
        refused = await client.post(
            "/api/v1/accounts", json={"external_id": "x", "name": "X", "domains": bad}, headers=admin
        )
        assert refused.status_code == 422 and error_locs(refused) == [["body", "domains"]], bad
        assert rule in error_text(refused), bad
    taken = await client.post(
        "/api/v1/accounts", json={"external_id": "x", "name": "X", "domains": ["acme.io"]}, headers=admin
    )
    assert taken.status_code == 409 and error_locs(taken) == [["body", "domains"]]
    assert "allowed for the account 'acme'" in error_text(taken)
    assert await count_rows(db, Account) == 2  # nothing half-stored

    patched = await client.patch(
        f"/api/v1/accounts/{account['id']}", json={"domains": ["acme.io", "acme.dev"]}, headers=admin
    )
    assert patched.status_code == 200 and patched.json()["domains"] == ["acme.dev", "acme.io"]
    untouched = await client.patch(f"/api/v1/accounts/{account['id']}", json={"name": "Acme Corp"}, headers=admin)
    assert untouched.json()["domains"] == ["acme.dev", "acme.io"]
    other = (await client.post("/api/v1/accounts", json={"external_id": "y", "name": "Y"}, headers=admin)).json()
    moved = await client.patch(f"/api/v1/accounts/{other['id']}", json={"domains": ["acme.dev"]}, headers=admin)
    assert moved.status_code == 409
    cleared = await client.patch(f"/api/v1/accounts/{account['id']}", json={"domains": []}, headers=admin)
    assert cleared.json()["domains"] == []
    moved = await client.patch(f"/api/v1/accounts/{other['id']}", json={"domains": ["acme.dev"]}, headers=admin)
    assert moved.status_code == 200 and moved.json()["domains"] == ["acme.dev"]
    deleted = await client.delete(f"/api/v1/accounts/{other['id']}", headers=admin)
    assert deleted.status_code == 200
    assert await _domains(db) == {"mu": ["xn--mller-kva.example"]}


async def test_domains_column_in_csv_import_and_export(db: Database) -> None:
    async with db.session() as session:
        web = await make_component(session, "Web app")
    text = (
        HEADER
        + f"acme,Acme,,,,{web.id},,,,,,,,Acme.example; acme.io\n"
        + "beta,Beta,,,,,,,,,,,,\n"
        + "gamma,Gamma,,,,,,,,,,,,acme.io\n"  # 4: acme.io is on line 2 already
        + "delta,Delta,,,,,,,,,,,,gmail.com\n"  # 5: a public mail provider
        + "eps,Eps,,,,,,,,,,,,no_domain\n"  # 6: not a domain
    )
    async with db.session() as session:
        report = await importing.import_text(session, text)
    found = [str(e) for e in report.errors]
    assert found == [
        "line 4, column domains: acme.io is also listed on line 2",
        "line 5, column domains: gmail.com is a public mail provider: anyone can have an address there",
        "line 6, column domains: 'no_domain' is not a domain name like example.com",
    ]
    assert (report.created, report.refused_rows) == (2, 3)
    assert await _domains(db) == {"acme": ["acme.example", "acme.io"]}

    # Export carries the column once a domain exists, and reads back to the same file.
    async with db.sessionmaker() as session:
        exported = await importing.export_csv(session)
    rows = _rows(exported)
    assert rows[0] == [*importing.COLUMNS, "domains"]
    assert rows[1][0] == "acme" and rows[1][-1] == "acme.example;acme.io"
    assert rows[2][0] == "beta" and rows[2][-1] == ""
    async with db.session() as session:
        again = await importing.import_text(session, exported)
    assert (again.created, again.updated, again.error_count) == (0, 2, 0)
    async with db.sessionmaker() as session:
        assert await importing.export_csv(session) == exported

    # A file without the column leaves domains alone; one that names a held domain is refused.
    async with db.session() as session:
        kept = await importing.import_text(session, ",".join(importing.COLUMNS) + "\nacme,Acme Inc,,,,,,,,,,,\n")
        taken = await importing.import_text(session, "external_id,name,domains\nbeta,Beta,acme.io\n")
    assert kept.error_count == 0 and await _domains(db) == {"acme": ["acme.example", "acme.io"]}
    assert [str(e) for e in taken.errors] == [
        "line 2, column domains: acme.io is allowed for the account 'acme'; remove it there first"
    ]
    async with db.session() as session:
        cleared = await importing.import_text(session, "external_id,name,domains\nacme,Acme Inc,\nbeta,Beta,acme.io\n")
    # Moving a domain takes two imports: the one that frees it, then the one that claims it.
    assert cleared.error_count == 1 and await _domains(db) == {}
    async with db.session() as session:
        claimed = await importing.import_text(session, "external_id,name,domains\nbeta,Beta,acme.io\n")
    assert claimed.error_count == 0 and await _domains(db) == {"beta": ["acme.io"]}


async def test_export_without_domains_keeps_the_old_header(db: Database) -> None:
    async with db.session() as session:
        await importing.import_text(session, "external_id,name\nacme,Acme\n")
        exported = await importing.export_csv(session)
    assert _rows(exported)[0] == list(importing.COLUMNS)


async def test_notes_api(client: httpx.AsyncClient, db: Database) -> None:
    writer = await api_key_headers(db, Role.responder)
    reader = await api_key_headers(db, Role.admin, scopes=[Scope.read])
    _, admin = await make_actor(db, Role.admin)
    async with db.session() as session:
        account = await make_account(session, "acme")
        other = await make_account(session, "beta")
        incident = await make_incident(session, admin, name="Queue backlog")
    url = f"/api/v1/accounts/{account.id}/notes"
    written = await client.post(
        url,
        json={"body": "Hi **team**. <script>alert(1)</script> [docs](javascript:alert(1))", "incident_id": incident.id},
        headers=writer,
    )
    assert written.status_code == 201, written.text
    note = written.json()
    assert note["account_id"] == account.id and note["incident_id"] == incident.id and note["author_id"]
    assert "<strong>team</strong>" in note["body_html"]
    assert "<script" not in note["body_html"] and 'href="javascript' not in note["body_html"]
    second = await client.post(url, json={"body": "Second"}, headers=writer)
    listed = await client.get(url, headers=reader)
    assert [n["id"] for n in listed.json()] == [second.json()["id"], note["id"]]
    assert (await client.get(url, params={"limit": 1, "offset": 1}, headers=reader)).json()[0]["id"] == note["id"]

    assert (await client.post(url, json={"body": "x"}, headers=reader)).status_code == 403
    for body, field in (
        ({"body": "   "}, "body"),
        ({"body": "x" * 10_001}, "body"),
        ({"body": "x", "incident_id": "nope"}, "incident_id"),
        ({"body": "x", "extra": 1}, "extra"),
    ):
        refused = await client.post(url, json=body, headers=writer)
        assert refused.status_code == 422 and error_locs(refused)[0][-1] == field, (body, refused.text)
    missing = await client.post("/api/v1/accounts/nope/notes", json={"body": "x"}, headers=writer)
    assert missing.status_code == 404 and error_locs(missing) == [["body", "account_id"]]
    assert (await client.get("/api/v1/accounts/nope/notes", headers=reader)).status_code == 404
    assert await count_rows(db, AccountNote) == 2

    # A note is deleted through its own account only.
    wrong = await client.delete(f"/api/v1/accounts/{other.id}/notes/{note['id']}", headers=writer)
    assert wrong.status_code == 404
    assert (await client.delete(f"{url}/{note['id']}", headers=reader)).status_code == 403
    assert (await client.delete(f"{url}/99999999999", headers=writer)).status_code == 422
    gone = await client.delete(f"{url}/{note['id']}", headers=writer)
    assert gone.status_code == 200 and gone.json() == {"id": note["id"]}
    assert [n["id"] for n in (await client.get(url, headers=reader)).json()] == [second.json()["id"]]
