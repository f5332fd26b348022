"""Checks every way a ticket comes in shares: addresses and times from outside."""

from __future__ import annotations

from datetime import datetime

from crisisdesk.kit.errors import InvalidInput
from crisisdesk.kit.time import MAX_YEAR, MIN_YEAR, utc_time
from crisisdesk.notify.addresses import normalize_email

MAX_EMAIL = 320


def check_email(value: str | None, *, field: str = "requester_email") -> str | None:
    """A requester's address, lower-cased, or None when blank; a value that is not one names ``field``."""
    text = (value or "").strip()
    if not text:
        return None
    if len(text) > MAX_EMAIL:
        raise InvalidInput(
            f"{text[:40]!r}… is longer than an email address can be ({MAX_EMAIL} characters)", field=field
        )
    return normalize_email(text, field=field)


def check_time(value: datetime, *, field: str) -> datetime:
    """``value`` in UTC, or a 422 naming ``field`` when it falls outside the years 1970 to 9000."""
    converted = utc_time(value)
    if converted is None:
        raise InvalidInput(f"{field} must be a time between the years {MIN_YEAR} and {MAX_YEAR}", field=field)
    return converted
