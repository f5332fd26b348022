"""JSON error answers shared by the application's handlers and the server's lean paths."""

from __future__ import annotations

import orjson
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError

CONFLICT = "this conflicts with something stored meanwhile: reload the page and try again"
INVALID_VALUE = "a value in this request cannot be stored (out of range or not valid text)"


def too_large(size: int, max_bytes: int) -> bytes:
    """The 413 body for a request body over CRISISDESK_MAX_BODY_BYTES."""
    detail = {
        "loc": ["body"],
        "type": "too_large",
        "msg": f"the request body is {size} bytes; at most {max_bytes} are accepted",
    }
    return orjson.dumps({"detail": [detail]})


def refused_by_database(exc: Exception) -> tuple[int, str, str] | None:
    """A 4xx for errors about the request's data (SQLSTATE classes 22 and 23), None for outages.

    Services validate what they store; this is the net under them, so a value that slipped
    through (a NUL character PostgreSQL refuses, a number out of range, a race on a unique key)
    is the client's 4xx and not "database unreachable".
    """
    if isinstance(exc, IntegrityError):
        return 409, "Conflict", CONFLICT
    if isinstance(exc, DataError):
        return 422, "InvalidValue", INVALID_VALUE
    if isinstance(exc, DBAPIError):
        sqlstate = str(getattr(exc.orig, "sqlstate", "") or "")
        if sqlstate.startswith("23"):
            return 409, "Conflict", CONFLICT
        if sqlstate.startswith("22"):
            return 422, "InvalidValue", INVALID_VALUE
    return None


def brief(exc: BaseException) -> str:
    """A database error for the log without SQLAlchemy's echo of the statement's parameters
    (they can hold a hook's token or a person's address): the driver's own message."""
    original = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    return f"{type(original).__name__}: {original}"[:500]


def database_unreachable(snapshot_version: object) -> str:
    return (
        "The database is unreachable. The public status page keeps serving its last "
        f"published snapshot (version {snapshot_version}); console changes cannot be saved until "
        "the database is back."
    )
