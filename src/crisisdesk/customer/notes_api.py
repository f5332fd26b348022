"""REST API: notes written for an account's private status page."""

from __future__ import annotations

from fastapi import APIRouter, Path, Query

from crisisdesk.auth.deps import ApiReader, ApiWriter, Tx
from crisisdesk.auth.schemas import errors
from crisisdesk.customer import accounts, notes
from crisisdesk.customer.note_schemas import AccountNoteCreate, AccountNoteDeletedRead, AccountNoteRead

router = APIRouter(tags=["accounts"])
NoteId = Path(ge=1, le=2**31 - 1, description="Note id.")


@router.get(
    "/accounts/{account_id}/notes",
    summary="List an account's notes",
    response_model=list[AccountNoteRead],
    responses=errors(401, 403, 404, 422),
)
async def list_notes(
    account_id: str,
    session: Tx,
    actor: ApiReader,
    limit: int = Query(default=50, ge=1, le=500, description="At most this many, newest first."),
    offset: int = Query(default=0, ge=0, le=2**31 - 1, description="Skip this many (for paging)."),
) -> list[AccountNoteRead]:
    """The notes written for the account, newest first."""
    await accounts.get(session, account_id)
    found = await notes.list_notes(session, account_id, limit=limit, offset=offset)
    return [AccountNoteRead.model_validate(n) for n in found]


@router.post(
    "/accounts/{account_id}/notes",
    summary="Write a note for an account",
    status_code=201,
    response_model=AccountNoteRead,
    responses=errors(401, 403, 404, 422),
)
async def write_note(account_id: str, data: AccountNoteCreate, session: Tx, actor: ApiWriter) -> AccountNoteRead:
    """Write a note (Markdown) that the account's people see on their private status page."""
    note = await notes.write(session, actor, account_id=account_id, body=data.body, incident_id=data.incident_id)
    return AccountNoteRead.model_validate(note)


@router.delete(
    "/accounts/{account_id}/notes/{note_id}",
    summary="Delete a note",
    response_model=AccountNoteDeletedRead,
    responses=errors(401, 403, 404, 422),
)
async def delete_note(account_id: str, session: Tx, actor: ApiWriter, note_id: int = NoteId) -> AccountNoteDeletedRead:
    """Delete one of the account's notes; it leaves the private page at once."""
    await notes.delete(session, account_id, note_id)
    return AccountNoteDeletedRead(id=note_id)
