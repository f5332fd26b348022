"""CSV import and export of accounts.

Every bad cell is reported as ``line N, column C: rule``. By default the good rows are stored and
the bad ones reported; with ``all_or_nothing`` nothing is stored when any row is bad.

The ``domains`` column (the account's private-page email domains) is optional: a file without it
leaves the stored domains alone, and the export has it only when some account has a domain, so
files made before private pages existed read and export as they did.

A cell a spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@``, tab, carriage return first)
is exported behind an apostrophe, which the import takes off again (:mod:`crisisdesk.kit.csvcells`).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crisisdesk.catalog.models import Component
from crisisdesk.customer import accounts
from crisisdesk.customer.models import Account, AccountDomain
from crisisdesk.kit import csvcells
from crisisdesk.kit.errors import InvalidInput

COLUMNS = (
    "external_id",
    "name",
    "tier",
    "arr",
    "regions",
    "components",
    "contacts",
    "csm_owner",
    "helpdesk_org_id",
    "uptime_target",
    "credit_bands",
    "cap_percent",
    "claim_window_days",
)
OPTIONAL_COLUMNS = ("domains",)
ACCEPTED_COLUMNS = COLUMNS + OPTIONAL_COLUMNS
REQUIRED_COLUMNS = ("external_id", "name")
MAX_REPORTED_ERRORS = 1000
IMPORT_BATCH = 500
_CONTACT = re.compile(r"\s*(?P<name>[^<>]*?)\s*<(?P<email>[^<>]*)>\s*(?:\((?P<role>[^()]*)\))?\s*\Z")


@dataclass
class CellError:
    line: int
    column: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}, column {self.column}: {self.message}"


@dataclass
class ImportReport:
    rows: int = 0
    created: int = 0
    updated: int = 0
    refused_rows: int = 0
    error_count: int = 0
    stored: bool = True
    errors: list[CellError] = field(default_factory=list)

    def refuse(self, line: int, column: str, message: str) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append(CellError(line, column, message))


class _Components:
    """Components by id or name (case-insensitive), loaded once per import."""

    def __init__(self, components: Sequence[Component]) -> None:
        self.refs: dict[str, str | None] = {}
        self.names: dict[str, str] = {}
        counts: dict[str, int] = {}
        for c in components:
            if c.is_group:
                continue
            key = c.name.strip().casefold()
            counts[key] = counts.get(key, 0) + 1
            # A name two components share cannot say which one is meant: None marks it.
            self.refs[key] = None if key in self.refs else c.id
        for c in components:
            if not c.is_group:
                self.refs[c.id] = c.id
                self.names[c.id] = c.name if counts[c.name.strip().casefold()] == 1 and ";" not in c.name else c.id

    def resolve(self, ref: str) -> str:
        key = ref.strip()
        found = self.refs.get(key, self.refs.get(key.casefold(), ""))
        if found is None:
            raise InvalidInput(f"several components are named {key!r}; use its id", field="components")
        if not found:
            raise InvalidInput(f"no component {key!r}", field="components")
        return found


async def _components(session: AsyncSession) -> _Components:
    return _Components((await session.scalars(select(Component))).all())


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(";") if part.strip()]


def _number(value: str, column: str) -> float:
    try:
        number = float(value.strip())
    except ValueError:
        raise InvalidInput("must be a number", field=column) from None
    if number != number or number in (float("inf"), float("-inf")):
        raise InvalidInput("must be a number", field=column)
    return number


def _parse_contacts(value: str) -> list[accounts.Contact]:
    parsed: list[accounts.Contact] = []
    for part in _split(value):
        match = _CONTACT.match(part)
        if match is None:
            raise InvalidInput(f"{part!r} is not 'Name <email> (role)'", field="contacts")
        parsed.append(accounts.contact(match["name"], match["email"], match["role"]))
    return accounts.contacts(parsed)


def _parse_bands(value: str) -> list[dict[str, float]]:
    pairs: list[tuple[float, float]] = []
    for part in _split(value):
        below, colon, credit = part.partition(":")
        if not colon:
            raise InvalidInput(f"{part!r} is not 'uptime:credit_percent' (e.g. 99.9:10)", field="credit_bands")
        pairs.append((_number(below, "credit_bands"), _number(credit, "credit_bands")))
    return accounts.credit_bands(pairs)


def _parse_row(
    row: dict[str, str], line: int, lookup: _Components, report: ImportReport
) -> accounts.AccountData | None:
    """The row's values, or None after reporting each bad cell."""
    bad = False

    def cell(column: str, parse: Callable[[str], object]) -> object:
        nonlocal bad
        try:
            return parse(row.get(column) or "")
        except InvalidInput as exc:
            bad = True
            report.refuse(line, column, exc.message)
            return None

    def optional_int(column: str, check: Callable[[int], int]) -> Callable[[str], int | None]:
        def parse(value: str) -> int | None:
            if not value.strip():
                return None
            try:
                return check(int(value.strip()))
            except ValueError:
                raise InvalidInput("must be a whole number", field=column) from None

        return parse

    external_id = cell("external_id", lambda v: accounts.text(v, "external_id", required=True))
    name = cell("name", lambda v: accounts.text(v, "name", required=True, max_length=300))
    tier = cell("tier", lambda v: accounts.text(v, "tier", max_length=100))
    arr = cell("arr", lambda v: accounts.arr_cents(v) if v.strip() else 0)
    regions = cell("regions", lambda v: accounts.regions(_split(v)))
    components = cell("components", lambda v: list(dict.fromkeys(lookup.resolve(p) for p in _split(v))))
    contacts = cell("contacts", _parse_contacts)
    csm = cell("csm_owner", lambda v: accounts.text(v, "csm_owner", max_length=320))
    helpdesk = cell("helpdesk_org_id", lambda v: accounts.text(v, "helpdesk_org_id"))
    uptime = cell(
        "uptime_target",
        lambda v: (
            accounts.percent(_number(v, "uptime_target"), "uptime_target", above_zero=True) if v.strip() else None
        ),
    )
    bands = cell("credit_bands", _parse_bands)
    cap = cell(
        "cap_percent", lambda v: accounts.percent(_number(v, "cap_percent"), "cap_percent") if v.strip() else None
    )
    window = cell("claim_window_days", optional_int("claim_window_days", accounts.claim_window))
    domains = cell("domains", lambda v: accounts.domains(_split(v))) if "domains" in row else None
    if uptime is None and not bad:
        for column, value in (("credit_bands", bands), ("cap_percent", cap), ("claim_window_days", window)):
            if value:
                bad = True
                report.refuse(line, column, "needs an uptime_target in the same row")
    if bad:
        return None
    sla = None
    if isinstance(uptime, float):
        sla = accounts.Sla(
            uptime_target=uptime,
            credit_bands=bands,  # type: ignore[arg-type]
            cap_percent=cap,  # type: ignore[arg-type]
            claim_window_days=window,  # type: ignore[arg-type]
        )
    return accounts.AccountData(
        external_id=external_id,  # type: ignore[arg-type]
        name=name,  # type: ignore[arg-type]
        tier=tier,  # type: ignore[arg-type]
        arr_cents=arr,  # type: ignore[arg-type]
        regions=regions,  # type: ignore[arg-type]
        component_ids=components,  # type: ignore[arg-type]
        contacts=contacts,  # type: ignore[arg-type]
        csm_owner=csm,  # type: ignore[arg-type]
        helpdesk_org_id=helpdesk,  # type: ignore[arg-type]
        sla=sla,
        domains=domains,  # type: ignore[arg-type]
    )


async def _refuse_taken_domains(
    session: AsyncSession, good: list[tuple[int, accounts.AccountData]], report: ImportReport
) -> list[tuple[int, accounts.AccountData]]:
    """Drop the rows that list a domain another account holds, or one an earlier row listed."""
    wanted = [d for _, data in good for d in data.domains or []]
    if not wanted:
        return good
    owners = await accounts.domain_owners(session, wanted)
    first_line: dict[str, int] = {}
    kept: list[tuple[int, accounts.AccountData]] = []
    for line, data in good:
        problems = []
        for name in data.domains or []:
            owner = owners.get(name)
            if name in first_line:
                problems.append(f"{name} is also listed on line {first_line[name]}")
            elif owner is not None and owner[1] != data.external_id:
                problems.append(f"{name} is allowed for the account {owner[1]!r}; remove it there first")
        if problems:
            for problem in problems:
                report.refuse(line, "domains", problem)
            report.refused_rows += 1
            continue
        for name in data.domains or []:
            first_line[name] = line
        kept.append((line, data))
    return kept


async def import_rows(
    session: AsyncSession,
    rows: Iterable[list[str]],
    *,
    all_or_nothing: bool = False,
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Check every row, then store the good ones (or none, when all_or_nothing and any is bad)."""
    report = ImportReport()
    reader = iter(rows)
    header = next(reader, None)
    if header is None:
        raise InvalidInput("the file is empty; the first line must be the header", field="file")
    names = [h.strip().lower() for h in header]
    unknown = [n for n in names if n not in ACCEPTED_COLUMNS]
    if unknown:
        raise InvalidInput(
            f"line 1: unknown column {unknown[0]!r}; the columns are {','.join(ACCEPTED_COLUMNS)}", field="file"
        )
    missing = [n for n in REQUIRED_COLUMNS if n not in names]
    if missing:
        raise InvalidInput(f"line 1: the header lacks the column {missing[0]!r}", field="file")
    if len(set(names)) != len(names):
        raise InvalidInput("line 1: a column is named twice", field="file")
    lookup = await _components(session)
    checked: list[tuple[int, accounts.AccountData]] = []
    seen: dict[str, int] = {}
    # A csv reader counts physical lines: a record with a quoted line break starts where it starts.
    counted = getattr(rows, "line_num", None)
    next_line = (counted + 1) if isinstance(counted, int) else 2
    for values in reader:
        line = next_line
        counted = getattr(rows, "line_num", None)
        next_line = (counted + 1) if isinstance(counted, int) else line + 1
        if not any(v.strip() for v in values):
            continue
        report.rows += 1
        if len(values) != len(names):
            report.refuse(line, "*", f"has {len(values)} cells, the header {len(names)}")
            report.refused_rows += 1
            continue
        cells = (csvcells.read_cell(value) for value in values)
        data = _parse_row(dict(zip(names, cells, strict=True)), line, lookup, report)
        if data is not None and data.external_id in seen:
            report.refuse(line, "external_id", f"repeats line {seen[data.external_id]}")
            data = None
        if data is None:
            report.refused_rows += 1
            continue
        seen[data.external_id] = line
        checked.append((line, data))
    good = [data for _, data in await _refuse_taken_domains(session, checked, report)]
    report.errors.sort(key=lambda e: e.line)  # domains are checked after the other cells
    if all_or_nothing and report.error_count:
        report.stored = False
        return report
    for start in range(0, len(good), IMPORT_BATCH):
        batch = good[start : start + IMPORT_BATCH]
        created = await accounts.upsert_many(session, batch)
        report.created += created
        report.updated += len(batch) - created
        if progress is not None:
            progress(start + len(batch) + report.refused_rows)
    await session.flush()
    if progress is not None:
        progress(report.rows)
    return report


async def import_text(session: AsyncSession, content: str, *, all_or_nothing: bool = False) -> ImportReport:
    return await import_rows(session, csv.reader(io.StringIO(content)), all_or_nothing=all_or_nothing)


def _row(account: Account, lookup: _Components, *, with_domains: bool) -> list[str]:
    sla = account.sla
    domains = [";".join(row.domain for row in account.domains)] if with_domains else []
    return [
        account.external_id,
        account.name,
        account.tier or "",
        accounts.format_arr(account.arr_cents),
        ";".join(account.regions),
        ";".join(lookup.names.get(link.component_id, link.component_id) for link in account.components),
        ";".join(f"{c.name} <{c.email}>" + (f" ({c.role})" if c.role else "") for c in account.contacts),
        account.csm_owner or "",
        account.helpdesk_org_id or "",
        accounts.format_number(sla.uptime_target) if sla else "",
        ";".join(
            f"{accounts.format_number(b['below'])}:{accounts.format_number(b['credit_percent'])}"
            for b in (sla.credit_bands if sla else [])
        ),
        accounts.format_number(sla.cap_percent) if sla and sla.cap_percent is not None else "",
        str(sla.claim_window_days) if sla and sla.claim_window_days is not None else "",
        *domains,
    ]


async def export_csv(session: AsyncSession) -> str:
    """Every account in the import format, ordered by external id."""
    lookup = await _components(session)
    out = io.StringIO()
    writer = csvcells.writer(out, lineterminator="\n")
    with_domains = await session.scalar(select(AccountDomain.domain).limit(1)) is not None
    writer.writerow(ACCEPTED_COLUMNS if with_domains else COLUMNS)
    statement = select(Account).order_by(Account.external_id).execution_options(yield_per=500)
    async for account in await session.stream_scalars(statement):
        writer.writerow(_row(account, lookup, with_domains=with_domains))
    return out.getvalue()
