"""Notes written for one account: shown on that account's private status page, and nowhere public.

The body is Markdown, rendered and sanitised once when written (as incident updates are).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crisisdesk.auth.service import Actor
from crisisdesk.customer import accounts
from crisisdesk.customer.models import AccountNote
from crisisdesk.incident.models import Incident
from crisisdesk.kit.errors import InvalidInput, NotFound
from crisisdesk.kit.render import markdown_to_html
from crisisdesk.kit.time import utcnow

MAX_BODY = 10_000


def _check_body(body: str) -> str:
    cleaned = body.strip()
    if not cleaned:
        raise InvalidInput("must not be empty", field="body")
    if "\x00" in cleaned:
        raise InvalidInput("must not contain a NUL character", field="body")
    if len(cleaned) > MAX_BODY:
        raise InvalidInput(f"is {len(cleaned)} characters; at most {MAX_BODY} are allowed", field="body")
    return cleaned


async def write(
    session: AsyncSession, actor: Actor, *, account_id: str, body: str, incident_id: str | None = None
) -> AccountNote:
    """Write a note for the account, optionally about one incident."""
    await accounts.get(session, account_id)
    text = _check_body(body)
    incident = incident_id.strip() if incident_id else None
    if incident is not None and ("\x00" in incident or await session.get(Incident, incident) is None):
        raise InvalidInput(f"no incident with id {incident!r}", field="incident_id")
    note = AccountNote(
        account_id=account_id,
        incident_id=incident,
        body=text,
        body_html=markdown_to_html(text),
        author_id=actor.user_id,
        created_at=utcnow(),
    )
    session.add(note)
    await session.flush()
    return note


async def list_notes(
    session: AsyncSession, account_id: str, *, limit: int = 50, offset: int = 0
) -> Sequence[AccountNote]:
    """The account's notes, newest first."""
    statement = (
        select(AccountNote)
        .where(AccountNote.account_id == account_id)
        .order_by(AccountNote.created_at.desc(), AccountNote.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return (await session.scalars(statement)).all()


async def get(session: AsyncSession, account_id: str, note_id: int) -> AccountNote:
    """One of the account's notes; another account's note is as unknown as a missing one."""
    note = await session.scalar(
        select(AccountNote).where(AccountNote.id == note_id, AccountNote.account_id == account_id)
    )
    if note is None:
        raise NotFound("no such note for this account", field="note_id")
    return note


async def delete(session: AsyncSession, account_id: str, note_id: int) -> AccountNote:
    """Delete one of the account's notes."""
    note = await get(session, account_id, note_id)
    await session.delete(note)
    await session.flush()
    return note
