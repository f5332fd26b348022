"""API shapes for the notes written for an account's private status page."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class AccountNoteCreate(BaseModel):
    """A note for one account, shown on its private status page only."""

    model_config = ConfigDict(extra="forbid")

    body: str = Field(
        min_length=1, max_length=10_000, description="Markdown; rendered and sanitised like incident updates."
    )
    incident_id: str | None = Field(default=None, max_length=24, description="The incident the note is about.")


class AccountNoteRead(BaseModel):
    """A note written for the account."""

    model_config = ConfigDict(from_attributes=True)

    id: int = Field(description="Note id.")
    account_id: str = Field(description="The account it is written for.")
    incident_id: str | None = Field(description="The incident it is about, if any.")
    body: str = Field(description="The Markdown as written.")
    body_html: str = Field(description="The body rendered to sanitised HTML.")
    author_id: str | None = Field(description="Who wrote it (user id).")
    created_at: datetime = Field(description="When it was written.")


class AccountNoteDeletedRead(BaseModel):
    """The note that was deleted."""

    id: int = Field(description="The deleted note's id.")
