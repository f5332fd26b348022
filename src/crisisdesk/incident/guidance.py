"""Workarounds and ETAs: what customers can do meanwhile, and when the fix is expected.

Each change is a new row, so the history of what was said stays answerable; the newest row is
current. An empty workaround body, or an ETA without an instant, withdraws it. ``published``
puts it on the public page; the console, the agent brief and message templates always see the
current one.

Choices: an ETA in the past is accepted (it may be recorded late, or be overdue and still the
team's best word), but never before the incident started. Setting a workaround or an ETA on a
resolved incident is refused (there is nothing left to work around or to wait for), while
withdrawing stays possible so stale words can be cleared. Publishing follows the rule for
public updates: on a severity whose policy asks for approval of free text, only the
Communications Lead or an admin publishes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crisisdesk.auth.models import Scope
from crisisdesk.auth.service import Actor
from crisisdesk.incident import policy as policies
from crisisdesk.incident import service
from crisisdesk.incident.models import EtaEstimate, Incident, Kind, Severity, Workaround
from crisisdesk.kit import events
from crisisdesk.kit.errors import Conflict, Forbidden, InvalidInput
from crisisdesk.kit.render import markdown_to_html
from crisisdesk.kit.time import MAX_YEAR, MIN_YEAR, as_utc, utc_time, utcnow

# A template variable holds at most 2000 characters (comms), and a workaround is read in a hurry.
MAX_WORKAROUND = 2_000
MAX_NOTE = 2_000
# As elsewhere: instants outside these years are refused rather than stored.


@dataclass(frozen=True)
class Guidance:
    """The current workaround and ETA of an incident; None where there is none or it was withdrawn."""

    workaround: Workaround | None
    eta: EtaEstimate | None


def format_instant(value: datetime) -> str:
    """An instant as the timeline writes it: UTC to the minute."""
    return as_utc(value).strftime("%Y-%m-%d %H:%M UTC")


def check_workaround(body: str) -> str:
    body = body.strip()
    if "\x00" in body:
        raise InvalidInput("the workaround must not contain a NUL character", field="body")
    if len(body) > MAX_WORKAROUND:
        raise InvalidInput(
            f"the workaround is {len(body)} characters; at most {MAX_WORKAROUND} are allowed", field="body"
        )
    return body


def check_note(note: str) -> str:
    note = note.strip()
    if "\x00" in note:
        raise InvalidInput("the note must not contain a NUL character", field="note")
    if len(note) > MAX_NOTE:
        raise InvalidInput(f"the note is {len(note)} characters; at most {MAX_NOTE} are allowed", field="note")
    return note


def check_eta(eta_at: datetime | None, incident: Incident) -> datetime | None:
    if eta_at is None:
        return None
    if eta_at.tzinfo is None or eta_at.utcoffset() is None:
        raise InvalidInput("eta_at needs a time zone offset, e.g. 2026-01-01T12:00:00Z", field="eta_at")
    value = utc_time(eta_at)
    if value is None:
        raise InvalidInput(f"eta_at must be between the years {MIN_YEAR} and {MAX_YEAR}", field="eta_at")
    if value < as_utc(incident.started_at):
        raise InvalidInput(
            f"eta_at must not be before the incident started ({format_instant(incident.started_at)})", field="eta_at"
        )
    return value


async def _incident(session: AsyncSession, actor: Actor, incident_id: str) -> Incident:
    actor.require(Scope.write)
    # A maintenance has no workaround or ETA: its id is "no incident" here (404).
    return await service.get_incident(session, incident_id, kind=Kind.incident)


async def may_publish(session: AsyncSession, actor: Actor, incident: Incident) -> bool:
    """Publishing is public free text: the severity policy's approval rule applies to it."""
    if not actor.can(Scope.write):
        return False
    policy = await policies.get_policy(session, Severity(incident.severity or Severity.SEV3))
    return not policy.free_text_approval or await service.may_approve(session, actor, incident)


async def _check_publish(session: AsyncSession, actor: Actor, incident: Incident, *, field: str) -> None:
    if not await may_publish(session, actor, incident):
        raise Forbidden(
            f"publishing on a {incident.severity} incident needs the Communications Lead or an admin; "
            "save it unpublished and ask them to publish it",
            field=field,
        )


async def _newest_workaround(session: AsyncSession, incident_id: str) -> Workaround | None:
    return await session.scalar(
        select(Workaround)
        .where(Workaround.incident_id == incident_id)
        .order_by(Workaround.created_at.desc(), Workaround.id.desc())
        .limit(1)
    )


async def _newest_eta(session: AsyncSession, incident_id: str) -> EtaEstimate | None:
    return await session.scalar(
        select(EtaEstimate)
        .where(EtaEstimate.incident_id == incident_id)
        .order_by(EtaEstimate.created_at.desc(), EtaEstimate.id.desc())
        .limit(1)
    )


async def set_workaround(
    session: AsyncSession, actor: Actor, *, incident_id: str, body: str, published: bool
) -> Workaround:
    """Set, change, publish or (with an empty body) withdraw the workaround; returns the current row.

    Setting the same words with the same visibility again changes nothing and returns the row.
    """
    incident = await _incident(session, actor, incident_id)
    body = check_workaround(body)
    newest = await _newest_workaround(session, incident.id)
    current = newest if newest is not None and newest.body else None
    if not body:
        if current is None:
            raise Conflict("there is no workaround to withdraw", field="body")
        published = False
    else:
        if not incident.is_open:
            raise Conflict("the incident is resolved: it needs no workaround any more", field="status")
        if current is not None and current.body == body and current.published == published:
            return current
        if published:
            await _check_publish(session, actor, incident, field="published")
    now = utcnow()
    row = Workaround(
        incident_id=incident.id,
        body=body,
        body_html=markdown_to_html(body) if body else "",
        published=published,
        author_id=actor.user_id,
        created_at=now,
    )
    session.add(row)
    await session.flush()
    if not body:
        kind, summary = "workaround_withdrawn", "Workaround withdrawn"
    elif current is not None and current.body == body:
        kind = "workaround_published" if published else "workaround_unpublished"
        summary = "Workaround published" if published else "Workaround taken off the public page"
    else:
        kind = "workaround_set"
        visibility = "published" if published else "internal"
        summary = f"Workaround {'changed' if current is not None else 'set'} ({visibility}): {body[:200]}"
    await service.timeline(
        session, incident, actor, kind, summary, workaround_id=row.id, published=published, body=body[:2000]
    )
    incident.updated_at = now
    if published or (current is not None and current.published):
        events.record(session, events.PUBLIC)
    return row


async def set_eta(
    session: AsyncSession, actor: Actor, *, incident_id: str, eta_at: datetime | None, note: str, published: bool
) -> EtaEstimate:
    """Set, move, publish or (with eta_at None) withdraw the ETA; the note says why it moved.

    Setting the same estimate, note and visibility again changes nothing and returns the row.
    """
    incident = await _incident(session, actor, incident_id)
    note = check_note(note)
    value = check_eta(eta_at, incident)
    newest = await _newest_eta(session, incident.id)
    current = newest if newest is not None and newest.eta_at is not None else None
    if value is None:
        if current is None:
            raise Conflict("there is no ETA to withdraw", field="eta_at")
        published = False
    else:
        if not incident.is_open:
            raise Conflict("the incident is resolved: it needs no ETA any more", field="status")
        if (
            current is not None
            and current.eta_at is not None
            and as_utc(current.eta_at) == value
            and current.note == note
            and current.published == published
        ):
            return current
        if published:
            await _check_publish(session, actor, incident, field="published")
    now = utcnow()
    row = EtaEstimate(
        incident_id=incident.id, eta_at=value, note=note, published=published, author_id=actor.user_id, created_at=now
    )
    session.add(row)
    await session.flush()
    was = format_instant(current.eta_at) if current is not None and current.eta_at is not None else None
    if value is None:
        kind, summary = "eta_withdrawn", f"ETA withdrawn (was {was})"
    else:
        kind = "eta_set"
        summary = f"ETA set to {format_instant(value)}" + (
            f" (was {was})" if was and was != format_instant(value) else ""
        )
        summary += ", published" if published else ", internal"
    if note:
        summary += f" — {note[:200]}"
    await service.timeline(
        session,
        incident,
        actor,
        kind,
        summary,
        eta_id=row.id,
        eta_at=value.isoformat() if value else None,
        previous_eta_at=as_utc(current.eta_at).isoformat() if current is not None and current.eta_at else None,
        note=note,
        published=published,
    )
    incident.updated_at = now
    if published or (current is not None and current.published):
        events.record(session, events.PUBLIC)
    return row


async def current(session: AsyncSession, incident_id: str) -> Guidance:
    """The current workaround and ETA, published or not."""
    workaround = await _newest_workaround(session, incident_id)
    eta = await _newest_eta(session, incident_id)
    return Guidance(
        workaround=workaround if workaround is not None and workaround.body else None,
        eta=eta if eta is not None and eta.eta_at is not None else None,
    )


async def current_many(session: AsyncSession, incident_ids: list[str]) -> dict[str, Guidance]:
    """The current guidance of several incidents in two queries (for the public page)."""
    if not incident_ids:
        return {}
    workarounds: dict[str, Workaround] = {}
    for row in await session.scalars(
        select(Workaround)
        .where(Workaround.incident_id.in_(incident_ids))
        .order_by(Workaround.created_at.desc(), Workaround.id.desc())
    ):
        workarounds.setdefault(row.incident_id, row)
    etas: dict[str, EtaEstimate] = {}
    for eta in await session.scalars(
        select(EtaEstimate)
        .where(EtaEstimate.incident_id.in_(incident_ids))
        .order_by(EtaEstimate.created_at.desc(), EtaEstimate.id.desc())
    ):
        etas.setdefault(eta.incident_id, eta)
    answer = {}
    for incident_id in incident_ids:
        w, e = workarounds.get(incident_id), etas.get(incident_id)
        answer[incident_id] = Guidance(
            workaround=w if w is not None and w.body else None,
            eta=e if e is not None and e.eta_at is not None else None,
        )
    return answer


async def history(session: AsyncSession, incident_id: str) -> tuple[list[Workaround], list[EtaEstimate]]:
    """Every workaround and ETA the incident had, newest first."""
    workarounds = await session.scalars(
        select(Workaround)
        .where(Workaround.incident_id == incident_id)
        .order_by(Workaround.created_at.desc(), Workaround.id.desc())
    )
    etas = await session.scalars(
        select(EtaEstimate)
        .where(EtaEstimate.incident_id == incident_id)
        .order_by(EtaEstimate.created_at.desc(), EtaEstimate.id.desc())
    )
    return list(workarounds), list(etas)
