"""CSV import of subscribers: errors by line, duplicates, pending confirmations, speed, and the CLI."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import select

from crisisdesk.auth.models import Role
from crisisdesk.config import Settings
from crisisdesk.kit.db import Database
from crisisdesk.kit.errors import InvalidInput
from crisisdesk.notify import importing
from crisisdesk.notify.addresses import normalize_email
from crisisdesk.notify.models import Delivery, Purpose, Subscriber, SubscriberComponent, SubscriberState
from tests.fixtures.api import count_rows
from tests.fixtures.auth import make_actor
from tests.fixtures.incident import make_component, make_incident
from tests.fixtures.notify import make_subscriber

CLI = str(Path(sys.executable).with_name("crisisdesk"))


def rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


async def test_errors_are_reported_by_line_and_duplicates_skipped(db: Database, settings: Settings) -> None:
    _, admin = await make_actor(db, Role.admin)
    async with db.session() as session:
        web = await make_component(session, "Web app")
        api = await make_component(session, "Public API")
        incident = await make_incident(session, admin, severity="SEV3")
        await make_subscriber(session, address="already@example.com")
    text = (
        "channel,address,components,incident\n"  # line 1
        "email,one@example.com,Web app;public api,\n"  # 2: components by name, any case
        f"email,two@example.com,{api.id},\n"  # 3: by id
        "email,not-an-email,,\n"  # 4
        "sms,+14155550199,,\n"  # 5
        "sms,4155550199,,\n"  # 6: no country code
        "webhook,ftp://example.com/x,,\n"  # 7
        "email,ONE@example.com,,\n"  # 8: a duplicate of line 2
        "email,already@example.com,,\n"  # 9: already subscribed
        "email,three@example.com,Billing,\n"  # 10: no such component
        f"email,four@example.com,,INC-{incident.number}\n"  # 11: follows one incident
        "email,five@example.com,,INC-999\n"  # 12: no such incident
        "\n"  # 13: blank lines are skipped
        "pigeon,coo@example.com,,\n"  # 14
        "email,six@example.com,Web app,extra,field\n"  # 15
    )
    seen: list[int] = []
    async with db.session() as session:
        report = await importing.import_rows(session, settings, rows(text), progress=seen.append)
    assert report.rows == 13 and report.imported == 4 and report.duplicates == 2
    refused = {p.line: p.message for p in report.errors}
    assert sorted(refused) == [4, 6, 7, 10, 12, 14, 15] and report.error_count == 7
    assert "not a valid email" in refused[4] and "country code" in refused[6] and "https://" in refused[7]
    assert "Billing" in refused[10] and "INC-999" in refused[12] and "channel" in refused[14]
    assert seen and seen[-1] == 13
    async with db.sessionmaker() as session:
        imported = {
            s.address: s for s in await session.scalars(select(Subscriber).where(Subscriber.source == "import"))
        }
        links = {(link.subscriber_id, link.component_id) for link in await session.scalars(select(SubscriberComponent))}
    assert set(imported) == {"one@example.com", "two@example.com", "+14155550199", "four@example.com"}
    assert all(s.state == SubscriberState.active and s.confirmed_at for s in imported.values())
    assert links == {(imported["one@example.com"].id, web.id), (imported["one@example.com"].id, api.id),
                     (imported["two@example.com"].id, api.id)}  # fmt: skip
    assert imported["four@example.com"].scope == "incident" and imported["four@example.com"].incident_id == incident.id
    assert await count_rows(db, Delivery) == 0, "confirmed imports send nothing"


async def test_pending_import_sends_each_a_confirmation_link(db: Database, settings: Settings) -> None:
    settings.allow_private_webhooks = True
    text = "channel,address\nemail,p1@example.com\nsms,+442079460001\nwebhook,http://127.0.0.1:18330/h\n"
    async with db.session() as session:
        report = await importing.import_rows(session, settings, rows(text), confirmed=False)
    assert report.imported == 3 and not report.errors
    async with db.sessionmaker() as session:
        found = {s.address: s for s in await session.scalars(select(Subscriber))}
        sent = {d.address: d for d in await session.scalars(select(Delivery))}
    assert found["p1@example.com"].state == found["+442079460001"].state == SubscriberState.pending
    assert found["http://127.0.0.1:18330/h"].state == SubscriberState.active
    assert found["http://127.0.0.1:18330/h"].secret.startswith("whsec_")  # type: ignore[union-attr]
    assert set(sent) == {"p1@example.com", "+442079460001"}
    email = sent["p1@example.com"]
    assert email.purpose == Purpose.confirm and email.subscriber_id == found["p1@example.com"].id
    link = f"http://status.test/subscriptions/{found['p1@example.com'].token}/confirm"
    assert email.payload is not None and link in email.payload["text"] and link in email.payload["html"]
    assert sent["+442079460001"].payload is not None
    assert f"/subscriptions/{found['+442079460001'].token}/confirm" in sent["+442079460001"].payload["text"]


@pytest.mark.parametrize(
    "text",
    ["", "address,channel\nx@example.com,email\n", "channel,address,colour\n", "channel;address\n"],
    ids=["empty", "columns-swapped", "unknown-column", "wrong-separator"],
)
async def test_the_header_must_name_the_columns(db: Database, settings: Settings, text: str) -> None:
    async with db.session() as session:
        with pytest.raises(InvalidInput) as refused:
            await importing.import_rows(session, settings, rows(text))
    assert refused.value.field == "file" and "channel,address" in refused.value.message
    assert await count_rows(db, Subscriber) == 0


async def test_a_large_import_is_fast(db: Database, settings: Settings) -> None:
    """20,000 rows in batches of 1,000: the rate is printed; the floor is far below what it does."""
    settings.allow_private_webhooks = True
    count = 20_000
    lines = ["channel,address"]
    lines += [f"email,bulk{n}@example.com" for n in range(count - 2_000)]
    lines += [f"sms,+1415200{n:04d}" for n in range(1_000)]
    lines += [f"webhook,http://127.0.0.1:18331/hook/{n}" for n in range(1_000)]
    data = rows("\n".join(lines))
    started = time.perf_counter()
    async with db.session() as session:
        report = await importing.import_rows(session, settings, data)
    elapsed = time.perf_counter() - started
    print(f"\nimported {report.imported} subscribers in {elapsed:.2f} s ({report.imported / elapsed:,.0f}/s)")
    assert report.imported == count and report.error_count == 0
    assert await count_rows(db, Subscriber) == report.imported
    assert elapsed < 30, f"{count} rows took {elapsed:.1f} s"
    # Importing the same file again adds nothing and reports every row a duplicate.
    async with db.session() as session:
        again = await importing.import_rows(session, settings, data)
    assert again.imported == 0 and again.duplicates == report.imported


def _cli(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


async def test_cli_import_and_count(db: Database, database_url: str, tmp_path: Path) -> None:
    """``crisisdesk subscribers import`` as a user runs it: progress, summary, refused lines by number."""
    async with db.session() as session:
        await make_component(session, "Web app")
    path = tmp_path / "subscribers.csv"
    path.write_text(
        "\ufeffchannel,address,components\n"
        "email,cli1@example.com,Web app\n"
        "email,cli2@example.com,\n"
        "email,broken,\n"
        "email,CLI1@example.com,\n"
        "sms,4155550100,\n",
        encoding="utf-8",
    )
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "CRISISDESK_DEMO": "true",
        "CRISISDESK_DATABASE_URL": database_url,
        "CRISISDESK_BASE_URL": "http://status.test",
        "COLUMNS": "200",  # one message per line, as in a wide terminal
    }
    done = _cli(env, tmp_path, "subscribers", "import", str(path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Imported 2 of 5 rows: 1 duplicates skipped, 2 lines refused." in done.stdout
    assert "line 4: address: 'broken' is not a valid email address" in done.stderr
    assert "line 6: address: '4155550100' has no country code" in done.stderr
    assert "Importing" in done.stderr, "a progress bar is shown"

    pending = tmp_path / "pending.csv"
    pending.write_text("channel,address\nemail,later@example.com\n", encoding="utf-8")
    assert _cli(env, tmp_path, "subscribers", "import", str(pending), "--pending").returncode == 0
    counted = _cli(env, tmp_path, "subscribers", "count")
    assert counted.returncode == 0, counted.stderr
    email_row = next(line for line in counted.stdout.splitlines() if "email" in line)
    assert [cell for cell in email_row.replace("│", " ").split()] == ["email", "2", "1", "0", "3"]

    missing = _cli(env, tmp_path, "subscribers", "import", str(tmp_path / "nope.csv"))
    assert missing.returncode == 2 and "is not a file" in missing.stderr
    bad_header = tmp_path / "bad.csv"
    bad_header.write_text("email,address\n", encoding="utf-8")
    refused = _cli(env, tmp_path, "subscribers", "import", str(bad_header))
    assert refused.returncode == 1 and "the first line must be the header" in refused.stderr


_LOCAL_CHARS = "aZ09.!#$%&'*+/=?^_`{|}~-\"ü @()[]\\,;:"
_DOMAINS = ["example.com", "EXAMPLE.org", "xn--bcher-kva.example", "localhost", "test", "-x.com", "example.com.",
            "ex_ample.com", "[127.0.0.1]", "münchen.de"]  # fmt: skip


@hypothesis_settings(max_examples=400, deadline=None)
@given(locals_=st.lists(st.text(alphabet=_LOCAL_CHARS, max_size=10), min_size=1, max_size=8),
       domain=st.sampled_from(_DOMAINS))  # fmt: skip
def test_the_import_email_shortcut_agrees_with_the_full_check(locals_: list[str], domain: str) -> None:
    """Once a domain passed the full check, plain local parts skip it: the answer must be the same."""
    checker = importing._EmailChecker()
    for local in locals_:
        address = f"{local}@{domain}"
        try:
            expected: str | None = normalize_email(address)
        except InvalidInput:
            expected = None
        try:
            got: str | None = checker.check(address)
        except InvalidInput:
            got = None
        assert got == expected, address
