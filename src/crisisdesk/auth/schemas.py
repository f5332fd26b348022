"""API shapes for users, API keys and errors."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from crisisdesk.auth.models import Role, Scope


class ErrorDetail(BaseModel):
    """One problem with a request."""

    loc: list[str | int] = Field(default_factory=list, description="Where the problem is, e.g. ['body', 'status'].")
    msg: str = Field(description="What is wrong, in words a person can act on.")
    type: str = Field(description="A machine-readable kind of error, e.g. InvalidInput or missing.")


class ErrorRead(BaseModel):
    """The body of every 4xx/5xx answer of the API."""

    detail: list[ErrorDetail] = Field(description="The problems found; each names its field in loc.")


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI descriptions of the error answers a route can give."""
    meaning = {
        401: "No API key or session, or the key is unknown or revoked.",
        403: "The key or user lacks the scope this action needs, or the CSRF token is missing.",
        404: "No such object.",
        409: "The request conflicts with the current state (e.g. resolving twice).",
        413: "The request body is larger than the configured limit.",
        422: "The input is invalid; loc names the field.",
    }
    return {code: {"model": ErrorRead, "description": meaning[code]} for code in codes}


class UserRead(BaseModel):
    """A user of the console and the API."""

    model_config = ConfigDict(from_attributes=True)

    id: str = Field(description="User id.")
    email: str = Field(description="Login email, lower case.")
    name: str = Field(description="Display name.")
    role: Role = Field(description="admin, responder or viewer.")
    is_active: bool = Field(description="Whether the user can sign in and act.")
    created_at: datetime = Field(description="When the user was added (ISO 8601 with offset).")


class UserCreate(BaseModel):
    """A new user (admins only)."""

    model_config = ConfigDict(extra="forbid")

    email: str = Field(min_length=3, max_length=254, description="Login email; must be unique.")
    name: str = Field(min_length=1, max_length=200, description="Display name.")
    role: Role = Field(default=Role.responder, description="admin, responder or viewer.")
    password: str | None = Field(
        default=None,
        min_length=8,
        max_length=200,
        description="Console password (at least 8 characters); leave empty for an API-only user.",
    )


class MeRead(UserRead):
    """The acting user, with the scopes this request carries."""

    scopes: list[Scope] = Field(description="What this request may do: read, write, admin.")
    via: str = Field(description="How the request authenticated: api_key or session.")


class ApiKeyRead(BaseModel):
    """An API key; the secret itself is never shown again after creation."""

    model_config = ConfigDict(from_attributes=True)

    id: str = Field(description="Key id (use it to revoke the key).")
    name: str = Field(description="What the key is for.")
    prefix: str = Field(description="The first characters of the secret, to recognise it.")
    scopes: list[Scope] = Field(description="What the key may do.")
    user_id: str = Field(description="The user the key acts as.")
    created_at: datetime = Field(description="When the key was created.")
    last_used_at: datetime | None = Field(description="When the key was last used, if ever.")
    revoked_at: datetime | None = Field(description="When the key was revoked; a revoked key gets 401.")


class ApiKeyCreate(BaseModel):
    """A new API key for yourself, or for another user (admins only)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, description="What the key is for.")
    scopes: list[Scope] = Field(min_length=1, description="read, write and/or admin; within the owner's role.")
    user_id: str | None = Field(default=None, description="Owner of the key; yourself when omitted.")


class ApiKeyCreated(ApiKeyRead):
    """A key just created: the only time its secret is shown."""

    secret: str = Field(description="Send as 'Authorization: Bearer <secret>'. Shown once; store it now.")
