"""Customer accounts: CSV import (bad cells by line and column, all-or-nothing, upsert), export, API, CLI."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from pathlib import Path

import httpx
from sqlalchemy import select

from crisisdesk.auth.models import Role, Scope
from crisisdesk.customer import accounts, importing
from crisisdesk.customer.models import Account, AccountComponent, AccountContact, SlaContract
from crisisdesk.kit.db import Database
from tests.fixtures.api import count_rows
from tests.fixtures.auth import api_key_headers
from tests.fixtures.incident import make_component

CLI = str(Path(sys.executable).with_name("crisisdesk"))
HEADER = ",".join(importing.COLUMNS) + "\n"
GOOD = (
    "acme,Acme Corp,Enterprise,120000.50,eu-west;us-east,Web app;Public API,"
    '"Ann Lee <ann@acme.example> (admin);Bob Roe <BOB@acme.example>",csm@us.example,zd-1,'
    "99.9,99.9:10;99:25;95:100,50,30\n"
)


def parse(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


async def _components(db: Database) -> tuple[str, str]:
    async with db.session() as session:
        web = await make_component(session, "Web app")
        api = await make_component(session, "Public API")
    return web.id, api.id


async def _account(db: Database, external_id: str) -> Account:
    async with db.sessionmaker() as session:
        account = await session.scalar(select(Account).where(Account.external_id == external_id))
        assert account is not None
        return account


async def test_import_stores_every_field(db: Database) -> None:
    web, api = await _components(db)
    async with db.session() as session:
        report = await importing.import_rows(session, parse(HEADER + GOOD + f"small,Small Co,,0,,{web},,,,,,,\n"))
    assert (report.rows, report.created, report.updated, report.error_count) == (2, 2, 0, 0)
    acme = await _account(db, "acme")
    assert (acme.name, acme.tier, acme.arr_cents, acme.regions) == (
        "Acme Corp",
        "Enterprise",
        12000050,
        ["eu-west", "us-east"],
    )
    assert sorted(link.component_id for link in acme.components) == sorted([web, api])
    assert [(c.name, c.email, c.role) for c in acme.contacts] == [
        ("Ann Lee", "ann@acme.example", "admin"),
        ("Bob Roe", "bob@acme.example", None),
    ]
    assert (acme.csm_owner, acme.helpdesk_org_id) == ("csm@us.example", "zd-1")
    assert acme.sla is not None
    assert acme.sla.uptime_target == 99.9 and acme.sla.cap_percent == 50 and acme.sla.claim_window_days == 30
    assert acme.sla.credit_bands == [
        {"below": 99.9, "credit_percent": 10},
        {"below": 99.0, "credit_percent": 25},
        {"below": 95.0, "credit_percent": 100},
    ]
    small = await _account(db, "small")
    assert small.sla is None and small.tier is None and small.arr_cents == 0


async def test_every_bad_cell_is_reported_by_line_and_column(db: Database) -> None:
    await _components(db)
    text = (
        HEADER  # line 1
        + GOOD  # 2: good, stored
        + ",No Id,,,,,,,,,,,\n"  # 3: external_id empty
        + "b3,,,,,,,,,,,,\n"  # 4: name empty
        + "b4,Arr,,-5,,,,,,,,,\n"  # 5: negative ARR
        + "b5,Arr2,,abc,,,,,,,,,\n"  # 6: ARR not a number
        + "b6,Cents,,1.005,,,,,,,,,\n"  # 7: three decimals
        + "b7,Region,,,EU West!,,,,,,,,\n"  # 8: bad region code
        + "b8,Comp,,,,Billing,,,,,,,\n"  # 9: no such component
        + "b9,Contact,,,,,Ann ann@x.example,,,,,,\n"  # 10: contact not Name <email>
        + "b10,Email,,,,,Ann <not-an-email>,,,,,,\n"  # 11: bad email
        + "b11,Uptime,,,,,,,,101,,,\n"  # 12: uptime above 100
        + "b12,Bands,,,,,,,,99.9,99.9-10,,\n"  # 13: band without a colon
        + "b13,Bands2,,,,,,,,99.9,99:10;99.9:25,,\n"  # 14: lower uptime, smaller credit
        + "b14,Cap,,,,,,,,99.9,,150,\n"  # 15: cap above 100
        + "b15,Window,,,,,,,,99.9,,,soon\n"  # 16: claim window not a number
        + "b16,NoTarget,,,,,,,,,99:10,,\n"  # 17: bands without an uptime target
        + "b17,Short,\n"  # 18: too few cells
        + "acme,Twice,,,,,,,,,,,\n"  # 19: external id repeats line 2
        + "b18,Two bad,,x,,Nope,,,,,,,\n"  # 20: two bad cells, both reported
    )
    async with db.session() as session:
        report = await importing.import_rows(session, parse(text))
    found = [str(e) for e in report.errors]
    expected = [
        ("line 3, column external_id:", "must not be empty"),
        ("line 4, column name:", "must not be empty"),
        ("line 5, column arr:", "must be a non-negative number"),
        ("line 6, column arr:", "must be a non-negative number"),
        ("line 7, column arr:", "at most two decimals"),
        ("line 8, column regions:", "is not a region code"),
        ("line 9, column components:", "no component 'Billing'"),
        ("line 10, column contacts:", "is not 'Name <email> (role)'"),
        ("line 11, column contacts:", "is not a valid email address"),
        ("line 12, column uptime_target:", "at most 100"),
        ("line 13, column credit_bands:", "is not 'uptime:credit_percent'"),
        ("line 14, column credit_bands:", "smaller credit"),
        ("line 15, column cap_percent:", "at most 100"),
        ("line 16, column claim_window_days:", "must be a whole number"),
        ("line 17, column credit_bands:", "needs an uptime_target"),
        ("line 18, column *:", "has 3 cells, the header 13"),
        ("line 19, column external_id:", "repeats line 2"),
        ("line 20, column arr:", "must be a non-negative number"),
        ("line 20, column components:", "no component 'Nope'"),
    ]
    assert len(found) == len(expected), found
    for message, (where, rule) in zip(found, expected, strict=True):
        assert message.startswith(where) and rule in message, (message, where, rule)
    assert (report.rows, report.created, report.refused_rows, report.stored) == (19, 1, 18, True)
    assert await count_rows(db, Account) == 1  # only the good row


async def test_all_or_nothing_stores_nothing_when_a_row_is_bad(db: Database) -> None:
    await _components(db)
    text = HEADER + GOOD + "b1,Bad ARR,,lots,,,,,,,,,\n"
    async with db.session() as session:
        report = await importing.import_rows(session, parse(text), all_or_nothing=True)
    assert not report.stored and report.error_count == 1
    assert str(report.errors[0]).startswith("line 3, column arr:")
    for model in (Account, AccountComponent, AccountContact, SlaContract):
        assert await count_rows(db, model) == 0


async def test_import_upserts_on_external_id(db: Database) -> None:
    web, _ = await _components(db)
    async with db.session() as session:
        await importing.import_rows(session, parse(HEADER + GOOD))
    first = await _account(db, "acme")
    changed = f"acme,Acme Inc,Growth,10,us-east,{web},Cy Poe <cy@acme.example> (billing),,,,,,\n"
    async with db.session() as session:
        report = await importing.import_rows(session, parse(HEADER + changed))
    assert (report.created, report.updated) == (0, 1)
    second = await _account(db, "acme")
    assert second.id == first.id and (second.name, second.tier, second.arr_cents) == ("Acme Inc", "Growth", 1000)
    assert [link.component_id for link in second.components] == [web]
    assert [c.email for c in second.contacts] == ["cy@acme.example"]
    assert second.sla is None
    assert await count_rows(db, Account) == 1 and await count_rows(db, SlaContract) == 0
    assert await count_rows(db, AccountContact) == 1


async def test_export_round_trip(db: Database) -> None:
    web, _ = await _components(db)
    text = HEADER + GOOD + f'z9,"Zed, Ltd",Free,0.07,,{web},,,,99.5,,,\n'
    async with db.session() as session:
        await importing.import_rows(session, parse(text))
    async with db.sessionmaker() as session:
        exported = await importing.export_csv(session)
    rows = parse(exported)
    assert rows[0] == list(importing.COLUMNS)
    assert rows[1][:6] == ["acme", "Acme Corp", "Enterprise", "120000.50", "eu-west;us-east", "Web app;Public API"] or (
        rows[1][:5] == ["acme", "Acme Corp", "Enterprise", "120000.50", "eu-west;us-east"]
        and set(rows[1][5].split(";")) == {"Web app", "Public API"}
    )
    assert rows[1][6] == "Ann Lee <ann@acme.example> (admin);Bob Roe <bob@acme.example>"
    assert rows[1][9:] == ["99.9", "99.9:10;99:25;95:100", "50", "30"]
    assert rows[2][:4] == ["z9", "Zed, Ltd", "Free", "0.07"]
    async with db.session() as session:
        again = await importing.import_rows(session, parse(exported))
    assert (again.created, again.updated, again.error_count) == (0, 2, 0)
    async with db.sessionmaker() as session:
        assert await importing.export_csv(session) == exported


FORMULAS = {
    # external id: (name, tier, CSM owner, helpdesk org id)
    "=1": ('=HYPERLINK("http://evil.example","Open")', "@Enterprise", "=cmd|' /C calc'!A0", "-42"),
    "f2": ("+Plus Ltd", "-Minus tier", "@ann", "+7"),
    "f3": ("'=Quoted on purpose", "''+Two quotes", "'plain apostrophe", None),
    "f4": ("Plain Ltd", None, None, None),
}


async def test_export_keeps_formulas_out_of_spreadsheets_and_imports_back_exactly(db: Database) -> None:
    """A cell starting with =, +, -, @ goes out behind an apostrophe and comes back as it was."""
    async with db.session() as session:
        formula_component = await make_component(session, "=Sum component")
        await accounts.upsert_many(
            session,
            [
                accounts.AccountData(
                    external_id=ext,
                    name=name,
                    tier=tier,
                    csm_owner=csm,
                    helpdesk_org_id=org,
                    component_ids=[formula_component.id] if ext != "f4" else [],
                    contacts=[accounts.Contact("=Eve", "eve@formula.example", "@admin")] if ext == "=1" else [],
                )
                for ext, (name, tier, csm, org) in FORMULAS.items()
            ],
        )
    async with db.sessionmaker() as session:
        exported = await importing.export_csv(session)
    rows = {row[0]: row for row in parse(exported)[1:]}
    assert set(rows) == {"'=1", "f2", "f3", "f4"}
    assert rows["'=1"][1:3] == ['\'=HYPERLINK("http://evil.example","Open")', "'@Enterprise"]
    assert rows["'=1"][5:9] == [
        "'=Sum component",
        "'=Eve <eve@formula.example> (@admin)",
        "'=cmd|' /C calc'!A0",
        "'-42",
    ]
    assert rows["f2"][1:3] == ["'+Plus Ltd", "'-Minus tier"] and rows["f2"][7:9] == ["'@ann", "'+7"]
    assert rows["f3"][1:3] == ["''=Quoted on purpose", "'''+Two quotes"]
    assert rows["f3"][7] == "'plain apostrophe" and rows["f4"][1:3] == ["Plain Ltd", ""]
    assert not any(cell.startswith(("=", "+", "-", "@", "\t", "\r")) for row in rows.values() for cell in row)

    async with db.session() as session:
        again = await importing.import_text(session, exported)
    assert (again.created, again.updated, again.error_count) == (0, 4, 0), again.errors
    async with db.sessionmaker() as session:
        assert await importing.export_csv(session) == exported
        stored = {
            a.external_id: (a.name, a.tier, a.csm_owner, a.helpdesk_org_id)
            for a in await session.scalars(select(Account))
        }
        [contact] = await session.scalars(select(AccountContact))
    assert stored == FORMULAS
    assert (contact.name, contact.role) == ("=Eve", "@admin")


async def test_api_crud_and_permissions(client: httpx.AsyncClient, db: Database) -> None:
    web, api = await _components(db)
    admin = await api_key_headers(db, Role.admin)
    reader = await api_key_headers(db, Role.admin, scopes=[Scope.read])
    body = {
        "external_id": "acme",
        "name": "Acme Corp",
        "tier": "Enterprise",
        "arr": "1500.25",
        "regions": ["EU-West"],
        "components": [web],
        "contacts": [{"name": "Ann Lee", "email": "Ann@Acme.example", "role": "admin"}],
        "sla": {"uptime_target": 99.9, "credit_bands": [{"below": 99, "credit_percent": 25}], "cap_percent": 30},
    }
    assert (await client.post("/api/v1/accounts", json=body)).status_code == 401
    assert (await client.post("/api/v1/accounts", json=body, headers=reader)).status_code == 403
    created = await client.post("/api/v1/accounts", json=body, headers=admin)
    assert created.status_code == 201, created.text
    account = created.json()
    assert account["arr"] == "1500.25" and account["arr_cents"] == 150025 and account["regions"] == ["eu-west"]
    assert account["contacts"] == [{"name": "Ann Lee", "email": "ann@acme.example", "role": "admin"}]
    assert account["sla"]["credit_bands"] == [{"below": 99.0, "credit_percent": 25.0}]
    # The same external id again is a conflict naming the field.
    twice = await client.post("/api/v1/accounts", json=body, headers=admin)
    assert twice.status_code == 409 and "external_id" in twice.text
    # Bad input is refused naming the field, and nothing is stored.
    for bad, field in (
        ({"arr": "-1"}, "arr"),
        ({"arr": "1.001"}, "arr"),
        ({"components": ["cmp_nope"]}, "components"),
        ({"contacts": [{"name": "X", "email": "nope"}]}, "contacts"),
        ({"regions": ["bad region"]}, "regions"),
        ({"sla": {"uptime_target": 120}}, "uptime_target"),
        ({"name": ""}, "name"),
    ):
        refused = await client.post("/api/v1/accounts", json=body | {"external_id": "other"} | bad, headers=admin)
        assert refused.status_code == 422 and field in refused.text, (bad, refused.text)
    assert await count_rows(db, Account) == 1

    read = await client.get(f"/api/v1/accounts/{account['id']}", headers=reader)
    assert read.status_code == 200 and read.json()["name"] == "Acme Corp"
    listed = await client.get("/api/v1/accounts", params={"component": web}, headers=reader)
    assert listed.json()["total"] == 1 and listed.json()["items"][0]["id"] == account["id"]
    assert (await client.get("/api/v1/accounts", params={"component": api}, headers=reader)).json()["total"] == 0
    assert (await client.get("/api/v1/accounts", params={"tier": "Free"}, headers=reader)).json()["total"] == 0

    patched = await client.patch(
        f"/api/v1/accounts/{account['id']}", json={"tier": None, "components": [api], "sla": None}, headers=admin
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["tier"] is None and patched.json()["components"] == [api] and patched.json()["sla"] is None
    assert patched.json()["name"] == "Acme Corp"
    assert (
        await client.patch(f"/api/v1/accounts/{account['id']}", json={"arr": None}, headers=admin)
    ).status_code == 422
    assert (await client.patch(f"/api/v1/accounts/{account['id']}", json={"x": 1}, headers=admin)).status_code == 422
    assert (await client.delete(f"/api/v1/accounts/{account['id']}", headers=reader)).status_code == 403
    deleted = await client.delete(f"/api/v1/accounts/{account['id']}", headers=admin)
    assert deleted.status_code == 200 and deleted.json() == {"id": account["id"]}
    assert (await client.get(f"/api/v1/accounts/{account['id']}", headers=reader)).status_code == 404
    assert await count_rows(db, AccountContact) == 0 and await count_rows(db, AccountComponent) == 0


async def test_api_import_and_export(client: httpx.AsyncClient, db: Database) -> None:
    await _components(db)
    admin = await api_key_headers(db, Role.admin)
    reader = await api_key_headers(db, Role.admin, scopes=[Scope.read])
    csv_headers = admin | {"content-type": "text/csv"}
    text = HEADER + GOOD + "b1,Bad,,,,Nope,,,,,,,\n"
    assert (await client.post("/api/v1/accounts/import", content=text, headers=reader)).status_code == 403
    refused = await client.post(
        "/api/v1/accounts/import", params={"all_or_nothing": "true"}, content=text, headers=csv_headers
    )
    assert refused.status_code == 422 and refused.json()["stored"] is False
    assert refused.json()["errors"] == [{"line": 3, "column": "components", "message": "no component 'Nope'"}]
    assert await count_rows(db, Account) == 0
    done = await client.post("/api/v1/accounts/import", content=text, headers=csv_headers)
    assert done.status_code == 200 and (done.json()["created"], done.json()["error_count"]) == (1, 1)
    bad_header = await client.post("/api/v1/accounts/import", content="id,nom\n1,2\n", headers=csv_headers)
    assert bad_header.status_code == 422 and "unknown column 'id'" in bad_header.text
    exported = await client.get("/api/v1/accounts/export", headers=admin)
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    assert parse(exported.text)[1][0] == "acme"


def test_cli_import_export_count(database_url: str, tmp_path: Path) -> None:
    """``crisisdesk accounts import`` as a user runs it: bad cells by line and column, all-or-nothing."""
    path = tmp_path / "accounts.csv"
    path.write_text(
        "\ufeff" + HEADER + "a1,One,Free,10,,,,,,,,,\n" + "a2,Two,,ten,,,,,,,,,\n" + "a3,Three,,,,,,,,,,,\n",
        encoding="utf-8",
    )
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "CRISISDESK_DEMO": "true",
        "CRISISDESK_DATABASE_URL": database_url,
        "CRISISDESK_BASE_URL": "http://status.test",
        "COLUMNS": "200",
    }

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([CLI, *args], env=env, capture_output=True, text=True, timeout=120, check=False)

    strict = cli("accounts", "import", str(path), "--all-or-nothing")
    assert strict.returncode == 1, strict.stdout + strict.stderr
    assert "line 3, column arr: must be a non-negative number" in strict.stderr
    assert "nothing imported" in strict.stderr
    assert "0 accounts" in cli("accounts", "count").stdout
    done = cli("accounts", "import", str(path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Imported 2 of 3 rows: 2 created, 0 updated, 1 refused." in done.stdout
    assert "line 3, column arr: must be a non-negative number" in done.stderr
    assert "2 accounts" in cli("accounts", "count").stdout
    exported = cli("accounts", "export")
    assert exported.returncode == 0 and [r[0] for r in parse(exported.stdout)] == ["external_id", "a1", "a3"]


async def test_lines_are_counted_in_the_file_and_rows_checked_as_a_whole(db: Database) -> None:
    async with db.session() as session:
        await make_component(session, "Web app")
        await make_component(session, "Web app")  # a name two components share
    text = (
        HEADER  # line 1
        + 'q1,"Two\nlines",,,,,,,,,,,\n'  # lines 2-3: a quoted line break, refused as a control character
        + "q2,Ambiguous,,,,Web app,,,,,,,\n"  # line 4
        + 'q3,Twice,,,,,"A <a@x.example>;B <A@x.example>",,,,,,\n'  # line 5: one address twice
    )
    async with db.session() as session:
        report = await importing.import_rows(session, csv.reader(io.StringIO(text)))
    found = [str(e) for e in report.errors]
    assert found[0].startswith("line 2, column name:") and "control characters" in found[0]
    assert found[1].startswith("line 4, column components:") and "use its id" in found[1]
    assert found[2].startswith("line 5, column contacts:") and "a@x.example is listed twice" in found[2]
    assert len(found) == 3 and await count_rows(db, Account) == 0


async def test_import_keeps_the_downtime_rule_set_through_the_api(client: httpx.AsyncClient, db: Database) -> None:
    admin = await api_key_headers(db, Role.admin)
    rule = "Downtime is any minute in which more than 5% of requests fail."
    body = {"external_id": "acme", "name": "Acme", "sla": {"uptime_target": 99.9, "downtime_rule": rule}}
    assert (await client.post("/api/v1/accounts", json=body, headers=admin)).status_code == 201
    async with db.session() as session:
        report = await importing.import_rows(session, parse(HEADER + "acme,Acme,,,,,,,,99.95,,,\n"))
    assert report.updated == 1
    account = await _account(db, "acme")
    assert account.sla is not None and account.sla.uptime_target == 99.95 and account.sla.downtime_rule == rule
